package containerd

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nanoseg/nanoseg/model"
)

// TestPortsLabel decodes nerdctl's ports label: one port per container
// port and protocol (a port published on IPv4 and IPv6 is one), sorted;
// protocols as nanoseg spells them; what is not such JSON gives none.
func TestPortsLabel(t *testing.T) {
	for _, c := range []struct {
		label string
		want  []model.ContainerPort
	}{
		{"", nil},
		{"not json", nil},
		{`[]`, nil},
		{`[{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":"0.0.0.0"},{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":"::"},` +
			`{"HostPort":53,"ContainerPort":53,"Protocol":"udp"},{"HostPort":1,"ContainerPort":0,"Protocol":"tcp"},{"ContainerPort":9,"Protocol":"bogus"},{"ContainerPort":7}]`,
			[]model.ContainerPort{{Port: 7, Protocol: model.ProtocolTCP}, {Port: 53, Protocol: model.ProtocolUDP}, {Port: 80, Protocol: model.ProtocolTCP}}},
	} {
		if got := portsLabel(c.label); !slices.Equal(got, c.want) {
			t.Errorf("portsLabel(%s) = %v, want %v", c.label, got, c.want)
		}
	}
}

// TestNetnsOwners groups containers by netns path (paths that cannot be
// read, as here, compare by name) and picks the owner: the one whose spec
// made the netns, else the first running one, else the first.
func TestNetnsOwners(t *testing.T) {
	es := []netnsEntry{
		{path: "/run/netns/a", running: false},     // 0: first, stopped
		{path: "/run/netns/a", running: true},      // 1: first running: owner of a
		{path: "/run/netns/b/../a", running: true}, // 2: same path once cleaned
		{path: ""}, // 3: none
		{path: "/proc/999999991/ns/net", running: true},                // 4: joins 5's
		{path: "/proc/999999991/ns/net", creates: true, running: true}, // 5: made it
		{path: "/run/netns/c"},                                         // 6: alone, stopped
	}
	want := []int{1, 1, 1, -1, 5, 5, 6}
	if d := cmp.Diff(want, netnsOwners(es)); d != "" {
		t.Errorf("netnsOwners (-want +got):\n%s", d)
	}
}

// TestSpecNetns reads the network namespace entry of OCI specs: a path, a
// new netns, none (the host's network), and a spec that is not JSON.
func TestSpecNetns(t *testing.T) {
	spec := func(ns ...map[string]string) []byte {
		b, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "linux": map[string]any{"namespaces": ns}})
		return b
	}
	for _, c := range []struct {
		name      string
		raw       []byte
		wantNil   bool
		wantPath  string
		wantKnown bool
	}{
		{"joins a path", spec(map[string]string{"type": "pid"}, map[string]string{"type": "network", "path": "/run/netns/x"}), false, "/run/netns/x", true},
		{"new netns", spec(map[string]string{"type": "network"}), false, "", true},
		{"host network", spec(map[string]string{"type": "pid"}, map[string]string{"type": "mount"}), true, "", true},
		{"not json", []byte("{"), true, "", false},
		{"empty", nil, true, "", false},
	} {
		ns, known := specNetns(c.raw)
		if known != c.wantKnown || (ns == nil) != c.wantNil || (ns != nil && ns.Path != c.wantPath) {
			t.Errorf("%s: specNetns = %+v, %v; want nil %v, path %q, known %v", c.name, ns, known, c.wantNil, c.wantPath, c.wantKnown)
		}
	}
	for path, want := range map[string]bool{"/proc/12/ns/net": true, "/proc/12/ns/net/": true, "/proc/self/ns/net": false, "/proc/12/ns/pid": false, "/run/netns/x": false} {
		if got := procNetns(path); got != want {
			t.Errorf("procNetns(%q) = %v, want %v", path, got, want)
		}
	}
}
