package containerd_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/inventory/containers/containerd"
)

// TestNewRefusesBadInput checks that New and Open refuse what containerd
// would (a namespace that is no containerd identifier) and what cannot be
// a socket or a runtime URI's query, naming the field.
func TestNewRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		name, socket, namespace string
		query                   url.Values
		want                    error
		mention                 string
	}{
		{"namespace with a slash", "/run/c.sock", "a/b", nil, containerd.ErrBadNamespace, `"a/b"`},
		{"namespace ending in a dot", "/run/c.sock", "k8s.", nil, containerd.ErrBadNamespace, `"k8s."`},
		{"namespace too long", "/run/c.sock", strings.Repeat("n", 77), nil, containerd.ErrBadNamespace, "at most 76"},
		{"relative socket", "run/containerd.sock", "default", nil, nil, `"run/containerd.sock"`},
		{"query key", "/run/c.sock", "", url.Values{"ns": {"x"}}, nil, `"ns"`},
		{"namespace twice", "/run/c.sock", "", url.Values{"namespace": {"a", "b"}}, nil, "namespace given 2 times"},
		{"bad namespace in the query", "/run/c.sock", "", url.Values{"namespace": {"-x"}}, containerd.ErrBadNamespace, `"-x"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.query != nil {
				_, err = containerd.Open(c.socket, c.query)
			} else {
				_, err = containerd.New(c.socket, c.namespace)
			}
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("err = %v; want an error wrapping %v that mentions %s", err, c.want, c.mention)
			}
			t.Log(err)
		})
	}
}

// TestUnreachableContainerd checks that a containerd that is not there
// (no socket; a socket file nobody listens on, as a stopped containerd
// leaves) is no error of New, and an error wrapping ErrUnreachable of
// Containers, Watch and Version. No root or containerd needed.
func TestUnreachableContainerd(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	for _, sock := range []string{filepath.Join(dir, "none.sock"), "unix://" + stale} {
		rt, err := containerd.New(sock, "")
		if err != nil {
			t.Fatalf("New(%q) = %v, want no error: it does not connect", sock, err)
		}
		if want := "containerd unix://" + strings.TrimPrefix(sock, "unix://") + " namespace default"; rt.Name() != want {
			t.Errorf("Name() = %q, want %q", rt.Name(), want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, errList := rt.Containers(ctx)
		errWatch := rt.Watch(ctx, func() {})
		_, errVersion := rt.(interface {
			Version(context.Context) (string, error)
		}).Version(ctx)
		cancel()
		for what, err := range map[string]error{"Containers": errList, "Watch": errWatch, "Version": errVersion} {
			if !errors.Is(err, containerd.ErrUnreachable) || !strings.Contains(err.Error(), dir) {
				t.Errorf("%s on %s: %v; want an error wrapping ErrUnreachable that names the socket", what, sock, err)
			}
		}
		t.Log(errList)
	}
}
