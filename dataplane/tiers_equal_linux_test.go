//go:build linux

package dataplane

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
)

// tierEqualRuleSet is a rule set with both ClusterNetworkPolicy tiers in
// both directions and both families: Accept, Deny and Pass entries of
// several policies (priorities), nested and overlapping peers, port
// ranges, any-protocol entries and a NetworkPolicy tier between them.
// Its addresses (198.19.60.0/24, 2001:db8:60::/48) are used by no other
// test; the table is only programmed and read back, no packets flow.
func tierEqualRuleSet() RuleSet {
	p := netip.MustParsePrefix
	return RuleSet{Name: "ep-tier-equal", Mode: model.ModeEnforce,
		Ingress: []Entry{
			{Peer: p("198.19.60.0/24"), Protocol: model.ProtocolTCP, Port: 80, RuleID: "np-web"},
			{Peer: p("2001:db8:60::/64"), Protocol: model.ProtocolTCP, Port: 80, RuleID: "np-web"},
			{Peer: p("198.19.60.7/32"), Protocol: model.ProtocolUDP, Port: 53, RuleID: "np-dns"},
		},
		Egress: []Entry{
			{Peer: p("198.19.60.128/25"), Protocol: model.ProtocolTCP, Port: 443, EndPort: 445, RuleID: "np-out"},
			{Peer: p("2001:db8:60:1::/64"), RuleID: "np-out-any"},
		},
		Admin: Tiers{
			Ingress: []Entry{
				// priority 1: pass a /27's TCP 80..81 to the NetworkPolicy tier
				{Peer: p("198.19.60.0/27"), Protocol: model.ProtocolTCP, Port: 80, EndPort: 81, RuleID: "cnp/admin/p1/ingress-0", Action: ActionPass},
				{Peer: p("2001:db8:60::/123"), Protocol: model.ProtocolTCP, Port: 80, EndPort: 81, RuleID: "cnp/admin/p1/ingress-0", Action: ActionPass},
				// priority 2: accept a /28 on any protocol, a host on UDP
				{Peer: p("198.19.60.16/28"), RuleID: "cnp/admin/p2/ingress-0", Action: ActionAccept},
				{Peer: p("2001:db8:60::10/124"), RuleID: "cnp/admin/p2/ingress-0", Action: ActionAccept},
				{Peer: p("198.19.60.9/32"), Protocol: model.ProtocolUDP, Port: 5353, RuleID: "cnp/admin/p2/ingress-1", Action: ActionAccept},
				// priority 3: deny the whole /24 and /48 on TCP 1-1024, then everything
				{Peer: p("198.19.60.0/24"), Protocol: model.ProtocolTCP, Port: 1, EndPort: 1024, RuleID: "cnp/admin/p3/ingress-0", Action: ActionDeny},
				{Peer: p("2001:db8:60::/48"), Protocol: model.ProtocolTCP, Port: 1, EndPort: 1024, RuleID: "cnp/admin/p3/ingress-0", Action: ActionDeny},
				{Peer: p("198.19.60.0/24"), RuleID: "cnp/admin/p3/ingress-1", Action: ActionDeny},
				{Peer: p("2001:db8:60::/48"), RuleID: "cnp/admin/p3/ingress-1", Action: ActionDeny},
			},
			Egress: []Entry{
				{Peer: p("198.19.60.128/25"), Protocol: model.ProtocolTCP, Port: 443, RuleID: "cnp/admin/p1/egress-0", Action: ActionPass},
				{Peer: p("198.19.60.192/26"), RuleID: "cnp/admin/p2/egress-0", Action: ActionDeny},
				{Peer: p("2001:db8:60:1::/64"), Protocol: model.ProtocolUDP, Port: 123, RuleID: "cnp/admin/p2/egress-1", Action: ActionAccept},
				{Peer: p("2001:db8:60::/48"), Protocol: model.ProtocolSCTP, Port: 9000, EndPort: 9100, RuleID: "cnp/admin/p3/egress-0", Action: ActionDeny},
			},
		},
		Baseline: Tiers{
			Ingress: []Entry{
				{Peer: p("198.19.60.32/27"), Protocol: model.ProtocolTCP, Port: 22, RuleID: "cnp/baseline/b1/ingress-0", Action: ActionDeny},
				{Peer: p("198.19.60.32/28"), RuleID: "cnp/baseline/b2/ingress-0", Action: ActionAccept},
				{Peer: p("2001:db8:60::/48"), Protocol: model.ProtocolTCP, Port: 8080, RuleID: "cnp/baseline/b2/ingress-1", Action: ActionDeny},
				{Peer: p("0.0.0.0/0"), RuleID: "not-isolated.baseline", Action: ActionAccept},
				{Peer: p("::/0"), RuleID: "not-isolated.baseline", Action: ActionAccept},
			},
			Egress: []Entry{
				{Peer: p("198.19.60.0/24"), Protocol: model.ProtocolUDP, Port: 1, EndPort: 65535, RuleID: "cnp/baseline/b1/egress-0", Action: ActionDeny},
				{Peer: p("2001:db8:60:2::1/128"), Protocol: model.ProtocolTCP, Port: 25, RuleID: "cnp/baseline/b1/egress-1", Action: ActionDeny},
			},
		},
	}
}

// reorderTiers returns rs with the priorities of Admin policies p1 and p2
// swapped and Baseline policy b2 moved before b1. Each swapped pair
// overlaps partly, so the order changes which rule decides some packets and
// no rule is shadowed entirely (a rule with no element left is not in the
// read-back rule set).
func reorderTiers(rs RuleSet) RuleSet {
	out := rs
	byPolicy := func(es []Entry, first string) []Entry {
		c := slices.Clone(es)
		slices.SortStableFunc(c, func(a, b Entry) int {
			rank := func(e Entry) int {
				if strings.Contains(e.RuleID, first) {
					return 0
				}
				return 1
			}
			return cmp.Compare(rank(a), rank(b))
		})
		return c
	}
	out.Admin = Tiers{Ingress: byPolicy(rs.Admin.Ingress, "/p2/"), Egress: byPolicy(rs.Admin.Egress, "/p2/")}
	out.Baseline = Tiers{Ingress: byPolicy(rs.Baseline.Ingress, "/b2/"), Egress: rs.Baseline.Egress}
	return out
}

// TestTiersReadBackEqual: a table with Admin and Baseline tiers (Accept,
// Deny, Pass; several priorities; IPv4 and IPv6; both directions), read
// back from the kernel, is Equal to the rule set programmed, a second
// Apply of it sends nothing, and the same holds after the policies change
// order. The drift check (Reconciler) and the "in sync" status rely on
// this: were it false, every endpoint under a ClusterNetworkPolicy would be
// reprogrammed each drift round and never shown in sync.
func TestTiersReadBackEqual(t *testing.T) {
	nettest.RequireRoot(t)
	ns := nettest.New(t)
	dp := New(nil)
	check := func(name string, rs RuleSet) {
		t.Helper()
		mustApply(t, dp, ns, rs)
		st := mustRead(t, dp, ns)
		if !st.Equal(rs) {
			want := Elements(rs)
			t.Errorf("%s: read-back not Equal to the applied rule set (%d elements read, %d wanted)", name, len(st.Elements), len(want))
			for i := range max(len(want), len(st.Elements)) {
				var g, w Element
				if i < len(st.Elements) {
					g = st.Elements[i]
				}
				if i < len(want) {
					w = want[i]
				}
				if g != w {
					t.Logf("first differing element %d: read %+v, want %+v", i, g, w)
					break
				}
			}
		}
		// The read-back rule set, named as adoption names it (an enforce
		// table does not hold the name), is what the node keeps applying
		// to a table it adopts: it must program the table as found.
		rb := st.RuleSet
		rb.Name = rs.Name
		if !st.Equal(rb) {
			t.Errorf("%s: read-back not Equal to its own read-back rule set", name)
			if got, want := Elements(rb), st.Elements; !slices.Equal(got, want) {
				t.Logf("Elements(read-back rule set): %d elements, read %d", len(got), len(want))
			}
		}
		if res := mustApply(t, dp, ns, rb); !res.Unchanged {
			t.Errorf("%s: Apply of the read-back rule set = %+v, want Unchanged", name, res)
		}
		if res := mustApply(t, dp, ns, rs); !res.Unchanged {
			t.Errorf("%s: second Apply of the same rule set = %+v, want Unchanged", name, res)
		}
	}
	rs := tierEqualRuleSet()
	check("initial", rs)
	check("reordered", reorderTiers(rs))
	check("back", rs)
}
