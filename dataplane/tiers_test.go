package dataplane

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

// lookupTier is the kernel's lookup of one tier, direction and family
// over the elements Elements made: the protocol map, then the
// any-protocol map; the first element found decides (they are disjoint).
func lookupTier(els []Element, t Tier, dir model.Direction, peer netip.Addr, proto uint8, port uint16) (string, bool) {
	for _, anyp := range []bool{false, true} {
		for _, e := range els {
			if e.Tier != t || e.Dir != dir || (e.Protocol == ProtocolAny) != anyp || !e.Peer.Contains(peer) {
				continue
			}
			if !anyp {
				if n, _ := e.Protocol.Number(); n != proto || port < e.PortFrom || port > e.PortTo {
					continue
				}
			}
			return e.RuleID, true
		}
	}
	return "", false
}

// TestTierElementsFirstMatch: for random overlapping tier entries of
// every kind, the element the kernel finds first belongs to the first
// entry that matches, for every address, protocol and port tried; and
// the maps hold no overlapping elements (pipapo refuses them).
func TestTierElementsFirstMatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	protos := []model.Protocol{ProtocolAny, model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP}
	actions := []Action{ActionAccept, ActionDeny, ActionPass}
	for round := range 200 {
		var entries []Entry
		for i := range 1 + rng.IntN(12) {
			bits := 24 + rng.IntN(9)
			pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(rng.IntN(64))}), bits).Masked()
			e := Entry{Peer: pfx, Protocol: protos[rng.IntN(len(protos))], RuleID: fmt.Sprintf("cnp/admin/p/ingress-%d", i), Action: actions[rng.IntN(len(actions))]}
			if e.Protocol != ProtocolAny && rng.IntN(3) > 0 {
				e.Port = 78 + rng.IntN(6)
				if rng.IntN(2) == 0 {
					e.EndPort = e.Port + rng.IntN(4)
				}
			}
			entries = append(entries, e)
		}
		rs := RuleSet{Name: "r", Mode: model.ModeEnforce, Admin: Tiers{Ingress: entries}}
		if err := rs.Validate(); err != nil {
			t.Fatal(err)
		}
		els := Elements(rs)
		for i, a := range els {
			for _, b := range els[i+1:] {
				if a.setName() == b.setName() && a.Peer.Overlaps(b.Peer) && a.Protocol == b.Protocol && a.PortFrom <= b.PortTo && b.PortFrom <= a.PortTo {
					t.Fatalf("round %d: overlapping elements %+v and %+v", round, a, b)
				}
			}
		}
		for host := range 66 {
			peer := netip.AddrFrom4([4]byte{198, 18, 0, byte(host)})
			for _, proto := range []uint8{6, 17, 132, 1} {
				for port := uint16(76); port <= 88; port++ {
					want, wok := "", false
					for _, e := range entries {
						if e.matches(peer, proto, port) {
							want, wok = e.RuleID, true
							break
						}
					}
					got, gok := lookupTier(els, TierAdmin, model.Ingress, peer, proto, port)
					if got != want || gok != wok {
						t.Fatalf("round %d: %s proto %d port %d: kernel finds %q %v, first match %q %v\nentries %v", round, peer, proto, port, got, gok, want, wok, entries)
					}
				}
			}
		}
	}
}

// TestTierValidate: tier entries need an action, NetworkPolicy-tier ones
// must not have one, and a rule id names one tier, direction and action.
func TestTierValidate(t *testing.T) {
	p := netip.MustParsePrefix("198.18.0.0/24")
	for _, rs := range []RuleSet{
		{Name: "r", Mode: model.ModeEnforce, Ingress: []Entry{{Peer: p, RuleID: "x", Action: ActionDeny}}},
		{Name: "r", Mode: model.ModeEnforce, Admin: Tiers{Ingress: []Entry{{Peer: p, RuleID: "x"}}}},
		{Name: "r", Mode: model.ModeEnforce, Admin: Tiers{Ingress: []Entry{{Peer: p, RuleID: "x", Action: "allow"}}}},
		{Name: "r", Mode: model.ModeEnforce, Ingress: []Entry{{Peer: p, RuleID: "x"}}, Admin: Tiers{Ingress: []Entry{{Peer: p, RuleID: "x", Action: ActionDeny}}}},
		{Name: "r", Mode: model.ModeEnforce, Admin: Tiers{Ingress: []Entry{{Peer: p, RuleID: "x", Action: ActionDeny}}, Egress: []Entry{{Peer: p, RuleID: "x", Action: ActionDeny}}}},
		{Name: "r", Mode: model.ModeEnforce, Admin: Tiers{Ingress: []Entry{{Peer: p, RuleID: "x", Action: ActionDeny}}}, Baseline: Tiers{Ingress: []Entry{{Peer: p, RuleID: "x", Action: ActionDeny}}}},
	} {
		if err := rs.Validate(); err == nil {
			t.Errorf("%+v: valid", rs)
		}
	}
}

// TestRenderTiers: the Admin tier's lookups come first, then the jump to
// the NetworkPolicy chain; a Pass goes there, a Deny drops in observe
// mode too and in audit mode is logged audit-deny and accepted; without
// tiers the table is as before.
func TestRenderTiers(t *testing.T) {
	f := netip.MustParsePrefix("198.18.0.0/24")
	rs := RuleSet{Name: "r", Mode: model.ModeObserve,
		Admin:    Tiers{Ingress: []Entry{{Peer: f, RuleID: "cnp/admin/a/ingress-0", Protocol: model.ProtocolTCP, Port: 80, Action: ActionPass}, {Peer: f, RuleID: "cnp/admin/a/ingress-1", Action: ActionDeny}}},
		Baseline: Tiers{Egress: []Entry{{Peer: f, RuleID: "cnp/baseline/b/egress-0", Action: ActionPass}}},
	}
	o, err := Render(rs)
	if err != nil {
		t.Fatal(err)
	}
	l := layoutOf(o)
	want := map[string][]string{
		ChainIngress: {"meta nfproto ipv4 ip saddr . meta l4proto . th dport vmap @admin-ingress-v4", "meta nfproto ipv4 ip saddr . meta l4proto vmap @admin-ingress-any-v4",
			"meta nfproto ipv6 ip6 saddr . meta l4proto . th dport vmap @admin-ingress-v6", "meta nfproto ipv6 ip6 saddr . meta l4proto vmap @admin-ingress-any-v6", "goto ingress-np"},
		RuleChain("cnp/admin/a/ingress-0"):   {`counter name "rule-cnp/admin/a/ingress-0"`, "goto ingress-np"},
		RuleChain("cnp/admin/a/ingress-1"):   {`counter name "rule-cnp/admin/a/ingress-1"`, `limit rate 10/second burst 20 packets log prefix "nanoseg:deny:cnp/admin/a/ingress-1" group 18`, "drop"},
		RuleChain("cnp/baseline/b/egress-0"): {`counter name "rule-cnp/baseline/b/egress-0"`, `log prefix "nanoseg:observed:cnp/baseline/b/egress-0" group 18`, "accept"},
	}
	for ch, rules := range want {
		if got := l.chains[ch]; fmt.Sprint(got) != fmt.Sprint(rules) {
			t.Errorf("chain %s:\n got %q\nwant %q", ch, got, rules)
		}
	}
	np := l.chains[ChainEgressNP]
	if len(np) < 2 || np[len(np)-1] != `log prefix "nanoseg:observed:r" group 18` {
		t.Errorf("chain %s: %q", ChainEgressNP, np)
	}
	// Audit mode (issue 15): a Deny of either tier is a would-be denial,
	// logged audit-deny with its rule id and accepted; Decide agrees, and
	// nothing is cut. Enforce drops again.
	rs.Mode = model.ModeAudit
	rs.Baseline.Egress = append(rs.Baseline.Egress, Entry{Peer: netip.MustParsePrefix("198.18.1.0/24"), RuleID: "cnp/baseline/b/egress-1", Action: ActionDeny})
	o, err = Render(rs)
	if err != nil {
		t.Fatal(err)
	}
	l = layoutOf(o)
	for _, id := range []string{"cnp/admin/a/ingress-1", "cnp/baseline/b/egress-1"} {
		want := []string{fmt.Sprintf("counter name %q", RuleChain(id)), fmt.Sprintf(`log prefix "nanoseg:audit-deny:%s" group 18 accept`, id)}
		if got := l.chains[RuleChain(id)]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("audit: chain %s:\n got %q\nwant %q", RuleChain(id), got, want)
		}
		if a := chainAction(l.chains[RuleChain(id)], TierAdmin); a != ActionDeny {
			t.Errorf("audit: chain %s reads back as %q, want deny", RuleChain(id), a)
		}
	}
	peer := netip.MustParseAddr("198.18.0.9")
	if id, v := rs.Decide(model.Ingress, peer, 6, 443); id != "cnp/admin/a/ingress-1" || v != model.VerdictAuditDeny {
		t.Errorf("audit: Decide = %s %s, want the Admin Deny's id, audit-deny", id, v)
	}
	if id, v := rs.Decide(model.Egress, netip.MustParseAddr("198.18.1.9"), 6, 443); id != "cnp/baseline/b/egress-1" || v != model.VerdictAuditDeny {
		t.Errorf("audit: Decide = %s %s, want the Baseline Deny's id, audit-deny", id, v)
	}
	if id, v := rs.Decide(model.Ingress, peer, 6, 80); id == "cnp/admin/a/ingress-0" || v != model.VerdictAuditDeny {
		t.Errorf("audit: Decide after a Pass = %s %s, want the default's audit-deny", id, v)
	}
	if rs.denies() {
		t.Errorf("audit: denies() = true; an audit rule set drops nothing, so nothing is cut")
	}
	for _, m := range []model.Mode{model.ModeEnforce, model.ModeObserve} {
		rs.Mode = m
		if _, v := rs.Decide(model.Ingress, peer, 6, 443); v != model.VerdictDeny || !rs.denies() {
			t.Errorf("%s: Decide = %s, denies() = %v; want deny, true", m, v, rs.denies())
		}
	}
	plain, err := Render(RuleSet{Name: "r", Mode: model.ModeObserve})
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.Sets) != 12 || len(plain.Chains) != 4 {
		t.Errorf("a rule set without tiers has %d maps and %d chains", len(plain.Sets), len(plain.Chains))
	}
}
