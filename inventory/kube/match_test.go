package kube

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	nss := []nsInfo{
		{inode: 1, path: "/run/netns/a", addrs: addrs("198.18.0.1", "2001:db8::1")},
		{inode: 2, path: "/proc/77/ns/net", addrs: addrs("198.18.0.2")},
		{inode: 3, path: "/run/netns/c", addrs: addrs("198.18.0.3")},
		{inode: 4, path: "/run/netns/d", addrs: addrs("198.18.0.3")},
		{inode: 5, path: "/run/netns/e", addrs: addrs("198.18.0.5", "198.18.0.6")},
		{inode: 6, path: "/run/netns/f", addrs: addrs("198.18.0.7")},
		{inode: 7, path: "/run/netns/empty"},
	}
	pods := map[string][]netip.Addr{
		"ns_dual":     addrs("198.18.0.1", "2001:db8::1"),
		"ns_proc":     addrs("198.18.0.2"),
		"ns_twice":    addrs("198.18.0.3"),
		"ns_share-a":  addrs("198.18.0.5"),
		"ns_share-b":  addrs("198.18.0.6"),
		"ns_partial":  addrs("198.18.0.7", "2001:db8::7"),
		"ns_nowhere":  addrs("198.18.0.9"),
		"ns_mapped":   {netip.MustParseAddr("::ffff:198.18.0.1")}, // also dual's: ambiguous by pods
		"ns_no-addrs": nil,
	}
	got := match(nss, pods)
	want := map[string]struct {
		code  string
		inode uint64
		in    string // substring of the reason
	}{
		"ns_dual":     {ReasonAmbiguous, 0, "holds addresses of 2 pods (ns_dual, ns_mapped)"},
		"ns_mapped":   {ReasonAmbiguous, 0, "/run/netns/a"},
		"ns_proc":     {"", 2, ""},
		"ns_twice":    {ReasonAmbiguous, 0, "2 network namespaces hold addresses of the pod (/run/netns/c, /run/netns/d)"},
		"ns_share-a":  {ReasonAmbiguous, 0, "ns_share-a, ns_share-b"},
		"ns_share-b":  {ReasonAmbiguous, 0, "ns_share-a, ns_share-b"},
		"ns_partial":  {ReasonPartial, 0, "/run/netns/f holds some of the pod's addresses but not 2001:db8::7"},
		"ns_nowhere":  {ReasonNotFound, 0, "no network namespace of this node holds 198.18.0.9"},
		"ns_no-addrs": {ReasonNotFound, 0, "no addresses"},
	}
	if len(got) != len(pods) {
		t.Errorf("answers for %d pods, want %d", len(got), len(pods))
	}
	for k, w := range want {
		g := got[k]
		if g.Code != w.code || g.Inode != w.inode || !strings.Contains(g.Reason, w.in) || (w.code == "") != (g.Reason == "") {
			t.Errorf("%s: got %+v, want code %q inode %d reason containing %q", k, g, w.code, w.inode, w.in)
		}
	}
	delete(pods, "ns_mapped")
	if g := match(nss, pods)["ns_dual"]; g.Inode != 1 || g.Path != "/run/netns/a" {
		t.Errorf("dual-stack pod alone in its namespace: %+v, want /run/netns/a", g)
	}
}

// BenchmarkMatch: one node's 110 pods among 120 namespaces.
func BenchmarkMatch(b *testing.B) {
	var nss []nsInfo
	pods := map[string][]netip.Addr{}
	for i := range 120 {
		a4 := netip.AddrFrom4([4]byte{198, 18, byte(i / 200), byte(i%200 + 1)})
		a6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)})
		nss = append(nss, nsInfo{inode: uint64(i + 1), path: "/run/netns/cni-" + a4.String(), addrs: []netip.Addr{a4, a6}})
		if i < 110 {
			pods[NetnsKey("shop", a4.String())] = []netip.Addr{a4, a6}
		}
	}
	b.ReportAllocs()
	for range b.N {
		if got := match(nss, pods); len(got) != 110 {
			b.Fatal(len(got))
		}
	}
}
