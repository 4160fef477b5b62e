package dataplane

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

// lookupElements is the kernel's lookup over elements, in Go: the maps of
// one direction and family in order any, exact, range; the first element
// of a map that matches (they are disjoint, so at most one does).
func lookupElements(els []Element, dir model.Direction, a netip.Addr, proto uint8, port uint16) string {
	for _, k := range []mapKind{kindAny, kindExact, kindRange} {
		for _, e := range els {
			if e.Dir != dir || e.kind() != k || !e.Peer.Contains(a) {
				continue
			}
			n, _ := e.Protocol.Number()
			if e.Protocol == ProtocolAny || n == proto && port >= e.PortFrom && port <= e.PortTo {
				return e.RuleID
			}
		}
	}
	return ""
}

// TestElementsMatchAllows: for random overlapping rule sets, the elements
// are disjoint within each map and decide every probe as RuleSet.Allows
// does (same rule id), so kernel and Go agree on what is allowed and on
// which rule counts it.
func TestElementsMatchAllows(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	protos := []model.Protocol{model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP, model.ProtocolICMP, ProtocolAny}
	addr := func() netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(r.IntN(64))}) }
	for iter := range 300 {
		var rs RuleSet
		rs.Name, rs.Mode = "prop", model.ModeEnforce
		for i := range 1 + r.IntN(12) {
			e := Entry{Peer: netip.PrefixFrom(addr(), 26+r.IntN(7)).Masked(), Protocol: protos[r.IntN(len(protos))], RuleID: fmt.Sprintf("r%d", i)}
			if e.Protocol.HasPorts() && r.IntN(4) > 0 {
				e.Port = 1 + r.IntN(20)
				if r.IntN(2) == 0 {
					e.EndPort = e.Port + r.IntN(10)
				}
			}
			rs.Ingress = append(rs.Ingress, e)
		}
		if err := rs.Validate(); err != nil {
			t.Fatalf("generated invalid rule set: %v", err)
		}
		els := Elements(rs)
		for i, a := range els {
			for _, b := range els[i+1:] {
				if a.setName() == b.setName() && a.Protocol == b.Protocol && a.Peer.Overlaps(b.Peer) &&
					a.PortFrom <= b.PortTo && b.PortFrom <= a.PortTo {
					t.Fatalf("iter %d: elements overlap: %+v and %+v\nrule set %+v", iter, a, b, rs.Ingress)
				}
			}
		}
		for range 200 {
			a := addr()
			pr := []uint8{6, 17, 132, 1, 47}[r.IntN(5)]
			port := uint16(r.IntN(32))
			want, _ := rs.Allows(model.Ingress, a, pr, port)
			if got := lookupElements(els, model.Ingress, a, pr, port); got != want {
				t.Fatalf("iter %d: probe %s proto %d port %d: elements say %q, Allows %q\nentries %v", iter, a, pr, port, got, want, rs.Ingress)
			}
		}
	}
}
