//go:build linux

package agent

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/inventory/containers"
)

// fakeRuntime is a container runtime that answers a fixed list, or an
// error while down is set.
type fakeRuntime struct {
	name string
	list atomic.Pointer[[]containers.Container]
	down atomic.Bool
}

func (f *fakeRuntime) Name() string { return f.name }

func (f *fakeRuntime) Containers(context.Context) ([]containers.Container, error) {
	if f.down.Load() {
		return nil, errors.New("dial unix " + f.name + ": connect: no such file or directory")
	}
	return *f.list.Load(), nil
}

func (f *fakeRuntime) Watch(ctx context.Context, _ func()) error {
	<-ctx.Done()
	return nil
}

// TestContainerStatus: GET /v1/containers (what `nanoseg status` prints)
// names the runtimes the agent cannot reach, since when and why, and the
// containers it reports but does not enforce (host network); a runtime
// that goes away shows there at the next inventory refresh, with its
// host-network container still listed (its last answer).
func TestContainerStatus(t *testing.T) {
	hostNet := &fakeRuntime{name: "fakert /run/up.sock"}
	hostNet.list.Store(&[]containers.Container{
		{Runtime: "podman", ID: "0123456789abcdef", Name: "node-exporter", Running: true, Pid: 1, HostNetwork: true},
		{Runtime: "podman", ID: "fedcba9876543210", Name: "stopped", HostNetwork: true},
	})
	gone := &fakeRuntime{name: "fakert /run/gone.sock"}
	gone.list.Store(&[]containers.Container{})
	gone.down.Store(true)
	containers.Register("fakert", func(socket string, _ url.Values) (containers.Runtime, error) {
		if socket == "/run/up.sock" {
			return hostNet, nil
		}
		return gone, nil
	})
	cfg := testAgentConfig(t, "")
	cfg.Containers = []string{"fakert:///run/up.sock", "fakert:///run/gone.sock"}
	start := time.Now()
	a := runTestAgent(t, cfg)
	c := client.New(cfg.Socket, "")
	ctx := context.Background()

	st, err := c.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Runtimes) != 2 {
		t.Fatalf("runtimes: %+v, want 2", st.Runtimes)
	}
	up, down := st.Runtimes[0], st.Runtimes[1]
	if up.Name != hostNet.name || !up.Reachable || up.Error != "" || up.Since.Before(start.Add(-time.Second)) {
		t.Errorf("reachable runtime: %+v", up)
	}
	if down.Name != gone.name || down.Reachable || !strings.Contains(down.Error, "connect: no such file") || down.Since.IsZero() || down.Since.Before(start.Add(-time.Second)) {
		t.Errorf("unreachable runtime: %+v", down)
	}
	want := []controller.NotEnforced{{Runtime: hostNet.name, Container: "node-exporter", Reason: "uses the host's network (no netns of its own): reported, never enforced"}}
	if len(st.NotEnforced) != 1 || st.NotEnforced[0] != want[0] {
		t.Errorf("not enforced: %+v, want %+v", st.NotEnforced, want)
	}

	// The first runtime goes away: unreachable at the next refresh, since
	// then; its host-network container stays listed as last reported.
	hostNet.down.Store(true)
	before := time.Now()
	if err := a.refreshInventory(ctx); err != nil {
		t.Fatal(err)
	}
	st, err = c.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Runtimes[0]; r.Reachable || r.Since.Before(before) || !strings.Contains(r.Error, "up.sock") {
		t.Errorf("runtime gone: %+v, want unreachable since %v", r, before)
	}
	if r := st.Runtimes[1]; !r.Since.Equal(down.Since) {
		t.Errorf("runtime still unreachable: since %v, want %v (unchanged)", r.Since, down.Since)
	}
	if len(st.NotEnforced) != 1 {
		t.Errorf("not enforced while its runtime is away: %+v", st.NotEnforced)
	}
	// Back with no host-network container: none listed.
	hostNet.list.Store(&[]containers.Container{})
	hostNet.down.Store(false)
	if err := a.refreshInventory(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err = c.Containers(ctx); err != nil || !st.Runtimes[0].Reachable || len(st.NotEnforced) != 0 {
		t.Errorf("runtime back: %+v, %v", st, err)
	}
}
