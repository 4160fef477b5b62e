package containers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nanoseg/nanoseg/model"
)

// fakeRuntime answers Containers with cs, or err.
type fakeRuntime struct {
	name string
	cs   []Container
	err  error
}

func (f *fakeRuntime) Name() string { return f.name }
func (f *fakeRuntime) Containers(context.Context) ([]Container, error) {
	return f.cs, f.err
}
func (f *fakeRuntime) Watch(ctx context.Context, _ func()) error { <-ctx.Done(); return nil }

// fakeNetns is a host of netns paths with inodes and addresses.
type fakeNetns map[string]struct {
	ino   uint64
	addrs []netip.Addr
}

func newTestSource(ns fakeNetns, rts ...Runtime) *Source {
	s := NewSource(nil, rts...)
	s.inode = func(p string) (uint64, error) {
		if n, ok := ns[p]; ok {
			return n.ino, nil
		}
		return 0, fmt.Errorf("stat %s: no such file", p)
	}
	s.addrs = func(p string) ([]netip.Addr, error) {
		if n, ok := ns[p]; ok {
			return n.addrs, nil
		}
		return nil, errors.New("gone")
	}
	return s
}

func addr(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }

func TestSourceMapsContainersToEndpoints(t *testing.T) {
	id := func(c byte) string { return strings.Repeat(string(c), 64) }
	ns := fakeNetns{
		"/run/netns/netns-web": {1, addr("198.18.216.10")},
		"/run/netns/netns-api": {2, addr("198.18.216.11")},
		"/proc/42/ns/net":      {3, addr("198.18.216.12")},
		"/run/netns/netns-pod": {4, addr("198.18.216.13")},
		"/run/netns/netns-own": {5, addr("198.18.216.14")},
	}
	rt := &fakeRuntime{name: "podman unix:///p.sock", cs: []Container{
		// A compose service with image metadata and compose bookkeeping.
		{Runtime: "podman", ID: id('a'), Name: "shop-web-1", Running: true, NetnsPath: "/run/netns/netns-web",
			Labels: map[string]string{LabelComposeProject: "shop", LabelComposeService: "web", "com.docker.compose.config-hash": "abc",
				"com.docker.compose.container-number": "1", "org.opencontainers.image.revision": "1234", "io.podman.annotations.x": "y",
				"maintainer": "someone", "tier": "front", "image.digest": "sha256:" + strings.Repeat("0", 64), "parent": id('f')},
			Ports: []model.ContainerPort{{Port: 8080, Protocol: model.ProtocolTCP}}},
		// A sidecar joining web's netns (network_mode: service:web).
		{Runtime: "podman", ID: id('b'), Name: "shop-proxy-1", Running: true, NetnsOf: id('a'), NetnsPath: "/run/netns/netns-web",
			Labels: map[string]string{LabelComposeProject: "shop", LabelComposeService: "proxy"},
			Ports:  []model.ContainerPort{{Port: 9901, Protocol: model.ProtocolTCP}, {Port: 8080, Protocol: model.ProtocolTCP}}},
		// nanoseg.io labels win over compose's.
		{Runtime: "podman", ID: id('c'), Name: "api_2", Running: true, NetnsPath: "/run/netns/netns-api",
			Labels: map[string]string{LabelNamespace: "payments", LabelWorkload: "api", LabelComposeProject: "shop", LabelApp: "api-v2"}},
		// No labels, no sandbox key: the name without its replica suffix,
		// the netns of its process; in the default namespace.
		{Runtime: "containerd/default", ID: id('d'), Name: "", Running: true, Pid: 42},
		// A Podman pod: its infra container holds the netns; members join it.
		{Runtime: "podman", ID: id('e'), Name: "eeeeeeeeeeee-infra", Pod: "batch", Running: true, NetnsPath: "/run/netns/netns-pod"},
		{Runtime: "podman", ID: id('1'), Name: "batch-worker", Pod: "batch", Running: true, NetnsOf: id('e'), Labels: map[string]string{"team": "ops"}},
		{Runtime: "podman", ID: id('2'), Name: "db-3", Running: true, NetnsPath: "/run/netns/netns-own"},
		// Not running, or on the host's network: no endpoint.
		{Runtime: "podman", ID: id('3'), Name: "stopped", Running: false, NetnsPath: "/run/netns/netns-gone"},
		{Runtime: "podman", ID: id('4'), Name: "hostnet", Running: true, Pid: 77, HostNetwork: true},
		// Running but its netns is gone already: left for the next list.
		{Runtime: "podman", ID: id('5'), Name: "racing", Running: true, NetnsPath: "/run/netns/netns-racing"},
	}}
	s := newTestSource(ns, rt)
	snap, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []model.Endpoint{
		{Netns: "containerd-default-dddddddddddd", Path: "/proc/42/ns/net", NetnsInode: 3, Namespace: "default", Workload: "dddddddddddd",
			Labels: map[string]string{"app": "dddddddddddd"}, Addrs: addr("198.18.216.12")},
		{Netns: "netns-api", Path: "/run/netns/netns-api", NetnsInode: 2, Namespace: "payments", Workload: "api",
			Labels: map[string]string{LabelNamespace: "payments", LabelWorkload: "api", LabelComposeProject: "shop", "app": "api-v2"}, Addrs: addr("198.18.216.11")},
		{Netns: "netns-own", Path: "/run/netns/netns-own", NetnsInode: 5, Namespace: "default", Workload: "db",
			Labels: map[string]string{"app": "db"}, Addrs: addr("198.18.216.14")},
		{Netns: "netns-pod", Path: "/run/netns/netns-pod", NetnsInode: 4, Namespace: "default", Workload: "batch",
			Labels: map[string]string{"team": "ops", "app": "batch"}, Addrs: addr("198.18.216.13")},
		{Netns: "netns-web", Path: "/run/netns/netns-web", NetnsInode: 1, Namespace: "shop", Workload: "web",
			Labels: map[string]string{LabelComposeProject: "shop", LabelComposeService: "web", "tier": "front", "app": "web"}, Addrs: addr("198.18.216.10"),
			Ports: []model.ContainerPort{{Port: 8080, Protocol: model.ProtocolTCP}, {Port: 9901, Protocol: model.ProtocolTCP}}},
	}
	if d := cmp.Diff(want, snap.Endpoints, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("endpoints (-want +got):\n%s", d)
	}
	for _, n := range []string{"shop", "payments", "default"} {
		if snap.Namespaces[n]["kubernetes.io/metadata.name"] != n {
			t.Errorf("namespace %s missing from %v", n, snap.Namespaces)
		}
	}
	notes := s.Notes()
	if len(notes) != 1 || notes[0].Runtime != "podman unix:///p.sock" || notes[0].Container != "hostnet" || !strings.Contains(notes[0].Reason, "host's network") {
		t.Errorf("notes = %+v, want one for hostnet on the host's network", notes)
	}
}

// A container restarted with a new netns is a new endpoint (another
// inode), and a runtime that cannot be reached keeps the endpoints whose
// netns is still the same, beside the other runtimes' endpoints.
func TestSourceRestartAndUnreachableRuntime(t *testing.T) {
	ns := fakeNetns{
		"/run/netns/netns-a": {10, addr("198.18.216.20")},
		"/run/netns/netns-b": {11, addr("198.18.216.21")},
		"/run/netns/netns-c": {12, addr("198.18.216.22")},
	}
	p := &fakeRuntime{name: "podman", cs: []Container{
		{Runtime: "podman", ID: "a1", Name: "a", Running: true, NetnsPath: "/run/netns/netns-a"},
		{Runtime: "podman", ID: "b1", Name: "b", Running: true, NetnsPath: "/run/netns/netns-b"},
	}}
	d := &fakeRuntime{name: "docker", cs: []Container{{Runtime: "docker", ID: "c1", Name: "c", Running: true, NetnsPath: "/run/netns/netns-c"}}}
	s := newTestSource(ns, p, d)
	list := func() map[string]uint64 {
		t.Helper()
		snap, err := s.List(context.Background())
		if err != nil {
			t.Fatalf("List: %v (an unreachable runtime must not fail the list)", err)
		}
		out := map[string]uint64{}
		for _, e := range snap.Endpoints {
			out[e.Workload] = e.NetnsInode
		}
		return out
	}
	if got := list(); !cmp.Equal(got, map[string]uint64{"a": 10, "b": 11, "c": 12}) {
		t.Fatalf("first list: %v", got)
	}
	// b restarts: same path, a new namespace.
	ns["/run/netns/netns-b"] = struct {
		ino   uint64
		addrs []netip.Addr
	}{21, addr("198.18.216.21")}
	if got := list(); got["b"] != 21 {
		t.Fatalf("after b's restart: %v, want b with inode 21", got)
	}
	// Podman goes away; meanwhile a's netns is deleted. b stays (same
	// netns), a goes (nothing left to enforce), docker's c is unaffected.
	p.err = errors.New("dial unix /p.sock: connection refused")
	delete(ns, "/run/netns/netns-a")
	if got := list(); !cmp.Equal(got, map[string]uint64{"b": 21, "c": 12}) {
		t.Fatalf("podman unreachable: %v, want b kept and c", got)
	}
	notes := s.Notes()
	if len(notes) != 1 || notes[0].Runtime != "podman" || !strings.Contains(notes[0].Reason, "unreachable") {
		t.Errorf("notes = %+v, want podman unreachable", notes)
	}
	// Back: its own answer counts again.
	p.err = nil
	p.cs = p.cs[1:]
	if got := list(); !cmp.Equal(got, map[string]uint64{"b": 21, "c": 12}) || len(s.Notes()) != 0 {
		t.Fatalf("podman back: %v, notes %v", got, s.Notes())
	}
}

func TestIsNoiseLabel(t *testing.T) {
	for _, c := range []struct {
		k, v  string
		noise bool
	}{
		{LabelComposeProject, "shop", false},
		{LabelComposeService, "web", false},
		{"com.docker.compose.config-hash", "x", true},
		{"com.docker.compose.project.working_dir", "/src", true},
		{"org.opencontainers.image.source", "x", true},
		{"io.podman.compose.version", "1", true},
		{"io.containerd.image.config.stop-signal", "SIGTERM", true},
		{"build", "sha256:" + strings.Repeat("ab", 32), true},
		{"of", strings.Repeat("0a", 32), true},
		{"version", "1.2", true},
		{"tier", "front", false},
		{"nerdctl/ports", `[{"HostPort":8080}]`, true},
		{"nerdctl/name", "web-1", true},
		{LabelWorkload, "api", false},
	} {
		if got := IsNoiseLabel(c.k, c.v); got != c.noise {
			t.Errorf("IsNoiseLabel(%q, %q) = %v, want %v", c.k, c.v, got, c.noise)
		}
	}
}
