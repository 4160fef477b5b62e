package containerd_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/inventory/containers/containerd"
)

// TestNewErrors checks that New refuses what it cannot use, naming it:
// a namespace containerd would reject, a relative socket path, a path with
// no socket, and a socket nobody listens on (containerd stopped, its
// socket file left behind). None needs root or a containerd.
func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	for _, c := range []struct {
		name, socket, namespace string
		want                    error
		mention                 string
	}{
		{"namespace with a slash", stale, "a/b", containerd.ErrBadNamespace, `"a/b"`},
		{"namespace ending in a dot", stale, "k8s.", containerd.ErrBadNamespace, `"k8s."`},
		{"namespace too long", stale, strings.Repeat("n", 77), containerd.ErrBadNamespace, "at most 76"},
		{"relative socket", "run/containerd.sock", "default", containerd.ErrUnreachable, `"run/containerd.sock"`},
		{"no socket", filepath.Join(dir, "none.sock"), "default", containerd.ErrUnreachable, "none.sock"},
		{"nobody listening", "unix://" + stale, "default", containerd.ErrUnreachable, stale},
	} {
		t.Run(c.name, func(t *testing.T) {
			rt, err := containerd.New(c.socket, c.namespace)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("New(%q, %q) = %v, %v; want an error wrapping %v that mentions %s", c.socket, c.namespace, rt, err, c.want, c.mention)
			}
			t.Log(err)
		})
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the stale socket must still exist for the last case to mean anything: %v", err)
	}
}
