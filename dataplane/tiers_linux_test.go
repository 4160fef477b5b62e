//go:build linux

package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// tierRuleSet is the server's rule set of TestTiersRealPackets: a
// NetworkPolicy tier that allows TCP and UDP 80 from the LAN, behind an
// Admin tier (in precedence order) of a Pass, two Accepts and two Denies.
func tierRuleSet(f family, mode model.Mode) RuleSet {
	c := f.clients
	return RuleSet{Name: "ep-tiers", Mode: mode,
		Ingress: []Entry{
			{Peer: f.lan, Protocol: model.ProtocolTCP, Port: 80, RuleID: "np-web"},
			{Peer: f.lan, Protocol: model.ProtocolUDP, Port: 80, RuleID: "np-udp"},
		},
		Admin: Tiers{Ingress: []Entry{
			{Peer: host(c[2]), Protocol: model.ProtocolTCP, Port: 80, RuleID: "cnp/admin/a/ingress-0", Action: ActionPass},
			{Peer: host(c[3]), RuleID: "cnp/admin/b/ingress-0", Action: ActionAccept},
			{Peer: host(c[4]), Protocol: model.ProtocolTCP, Port: 81, RuleID: "cnp/admin/b/ingress-1", Action: ActionAccept},
			{Peer: f.lan, Protocol: model.ProtocolTCP, Port: 80, EndPort: 81, RuleID: "cnp/admin/c/ingress-0", Action: ActionDeny},
			{Peer: f.lan, RuleID: "cnp/admin/c/ingress-1", Action: ActionDeny},
		}},
	}
}

// TestTiersRealPackets: an Admin Deny beats the NetworkPolicy tier's
// allow (TCP and UDP), a Pass hands the connection to the NetworkPolicy
// tier, an Admin Accept beats the default and a later Deny (an
// any-protocol Accept before a port Deny, a port Accept before an
// any-protocol Deny); every rule counts its packets, and the read-back
// equals the rule set. In enforce and observe mode the Admin Denies drop
// and their deny records carry the rule ids; in audit mode (issue 15) the
// same connections get through, logged as audit-deny with the Admin
// rule's id, and once the rule set is promoted to enforce they are
// dropped and logged deny.
func TestTiersRealPackets(t *testing.T) {
	nettest.RequireRoot(t)
	cases := []struct {
		mode model.Mode
		f    family
	}{{model.ModeEnforce, families[0]}, {model.ModeEnforce, families[1]}, {model.ModeAudit, families[0]}, {model.ModeObserve, families[0]}}
	for _, tc := range cases {
		f := tc.f
		t.Run(string(tc.mode)+"/"+f.name, func(t *testing.T) {
			t.Parallel()
			p := newPair(t)
			serve(t, p.server, 80, 81)
			logs := listenNFLOG(t, p.server)
			dp := New(nil)
			rs := tierRuleSet(f, tc.mode)
			mustApply(t, dp, p.server, rs)
			if st := mustRead(t, dp, p.server); !st.Equal(rs) {
				t.Fatalf("read-back differs from applied:\n%+v", st.RuleSet)
			}
			c := f.clients
			probes := []struct {
				name    string
				allowed bool
				fn      func(time.Duration) error
			}{
				{"c0 tcp 80: Admin Deny beats the NetworkPolicy allow", false, func(d time.Duration) error { return probeTCP(p.client, c[0], ap(f.server, 80), d) }},
				{"c0 udp 80: any-protocol Admin Deny beats the NetworkPolicy allow", false, func(d time.Duration) error { return probeUDP(p.client, c[0], ap(f.server, 80), d) }},
				{"c2 tcp 80: Pass, then the NetworkPolicy allows", true, func(d time.Duration) error { return probeTCP(p.client, c[2], ap(f.server, 80), d) }},
				{"c2 tcp 81: the Pass does not match, the Deny does", false, func(d time.Duration) error { return probeTCP(p.client, c[2], ap(f.server, 81), d) }},
				{"c3 tcp 81: any-protocol Accept before the port Deny", true, func(d time.Duration) error { return probeTCP(p.client, c[3], ap(f.server, 81), d) }},
				{"c4 tcp 81: port Accept before the Denies", true, func(d time.Duration) error { return probeTCP(p.client, c[4], ap(f.server, 81), d) }},
				{"c4 udp 80: any-protocol Deny", false, func(d time.Duration) error { return probeUDP(p.client, c[4], ap(f.server, 80), d) }},
			}
			run := func(mode model.Mode) {
				t.Helper()
				for _, pr := range probes {
					allowed := pr.allowed || mode == model.ModeAudit
					d := time.Second
					if !allowed {
						d = blocked
					}
					err := pr.fn(d)
					if allowed && err != nil {
						t.Errorf("%s: %s: want pass, got %v", mode, pr.name, err)
					}
					if !allowed && err == nil {
						t.Errorf("%s: %s: want dropped, got through", mode, pr.name)
					}
				}
			}
			run(tc.mode)
			verdict, other := model.VerdictDeny, model.VerdictAuditDeny
			if tc.mode == model.ModeAudit {
				verdict, other = other, verdict
			}
			for _, id := range []string{"cnp/admin/c/ingress-0", "cnp/admin/c/ingress-1"} {
				if w := verdictlog.Format(verdict, id); !logs.wait(w, time.Second) {
					t.Errorf("no NFLOG record %q", w)
				}
				if w := verdictlog.Format(other, id); logs.has(w) {
					t.Errorf("%s mode: an Admin Deny logged %q", tc.mode, w)
				}
			}
			st := mustRead(t, dp, p.server)
			for _, id := range []string{"np-web", "cnp/admin/a/ingress-0", "cnp/admin/b/ingress-0", "cnp/admin/b/ingress-1", "cnp/admin/c/ingress-0", "cnp/admin/c/ingress-1"} {
				if st.Counters[id].Packets == 0 {
					t.Errorf("counter of rule %s = %+v, want > 0", id, st.Counters[id])
				}
			}
			if st.Counters["np-udp"].Packets != 0 {
				t.Errorf("counter of np-udp = %+v: the Admin Deny should have decided first", st.Counters["np-udp"])
			}
			if !st.Equal(rs) {
				t.Errorf("read-back differs from applied after traffic")
			}
			if got := st.RuleSet.Admin.Ingress; len(got) == 0 || got[0].Action == "" {
				t.Errorf("read-back Admin tier without actions: %+v", got)
			}
			if tc.mode != model.ModeAudit {
				return
			}
			// Promoted to enforce: the connections audit mode let
			// through are dropped, logged deny with the Admin rule's id.
			before := st.Counters["cnp/admin/c/ingress-0"].Packets
			enf := tierRuleSet(f, model.ModeEnforce)
			mustApply(t, dp, p.server, enf)
			run(model.ModeEnforce)
			if w := verdictlog.Format(model.VerdictDeny, "cnp/admin/c/ingress-0"); !logs.wait(w, time.Second) {
				t.Errorf("after promotion: no NFLOG record %q", w)
			}
			st = mustRead(t, dp, p.server)
			if got := st.Counters["cnp/admin/c/ingress-0"].Packets; got <= before {
				t.Errorf("after promotion: counter of cnp/admin/c/ingress-0 = %d, was %d; want more", got, before)
			}
			if !st.Equal(enf) {
				t.Errorf("after promotion: read-back differs from applied")
			}
		})
	}
}

// TestBaselineLosesToNetworkPolicy: the Baseline tier is looked up after
// the NetworkPolicy tier: a connection the NetworkPolicy tier allows
// passes a Baseline Deny; what it does not allow meets the Baseline Deny
// (dropped, counted, logged with its id); what no Baseline rule decides
// meets the accept-everything end the compiler puts there.
func TestBaselineLosesToNetworkPolicy(t *testing.T) {
	nettest.RequireRoot(t)
	f := families[0]
	p := newPair(t)
	serve(t, p.server, 80, 81)
	logs := listenNFLOG(t, p.server)
	dp := New(nil)
	c := f.clients
	rs := RuleSet{Name: "ep-base", Mode: model.ModeEnforce,
		Ingress: []Entry{{Peer: host(c[0]), Protocol: model.ProtocolTCP, Port: 80, RuleID: "np-web"}},
		Baseline: Tiers{Ingress: []Entry{
			{Peer: f.lan, Protocol: model.ProtocolTCP, Port: 80, RuleID: "cnp/baseline/floor/ingress-0", Action: ActionDeny},
			{Peer: netip.MustParsePrefix("0.0.0.0/0"), RuleID: "not-isolated.baseline", Action: ActionAccept},
			{Peer: netip.MustParsePrefix("::/0"), RuleID: "not-isolated.baseline", Action: ActionAccept},
		}},
	}
	mustApply(t, dp, p.server, rs)
	if err := probeTCP(p.client, c[0], ap(f.server, 80), time.Second); err != nil {
		t.Errorf("c0 tcp 80 (NetworkPolicy allows): %v", err)
	}
	if err := probeTCP(p.client, c[1], ap(f.server, 80), blocked); err == nil {
		t.Errorf("c1 tcp 80 (Baseline Deny): got through")
	}
	if err := probeTCP(p.client, c[1], ap(f.server, 81), time.Second); err != nil {
		t.Errorf("c1 tcp 81 (no Baseline rule): %v", err)
	}
	if w := verdictlog.Format(model.VerdictDeny, "cnp/baseline/floor/ingress-0"); !logs.wait(w, time.Second) {
		t.Errorf("no NFLOG record %q", w)
	}
	st := mustRead(t, dp, p.server)
	for _, id := range []string{"np-web", "cnp/baseline/floor/ingress-0", "not-isolated.baseline"} {
		if st.Counters[id].Packets == 0 {
			t.Errorf("counter of rule %s = %+v, want > 0", id, st.Counters[id])
		}
	}
	if !st.Equal(rs) {
		t.Errorf("read-back differs from applied")
	}
}

// TestTierReorderAtomic: two rule sets give the same two Admin policies
// opposite priorities (an Accept of c0 and a Deny of the LAN on TCP 80).
// While a connect loop runs from c0 (allowed by one, dropped by the
// other) and from c1 (dropped by both), the dataplane swaps them back and
// forth. Each swap is one transaction: c1 is never let through and never
// reaches the default verdict (whose records carry their own id), which a
// table without either rule for a moment would show.
func TestTierReorderAtomic(t *testing.T) {
	nettest.RequireRoot(t)
	l := newAtomicLab(t)
	a := RuleSet{Name: "ep-order", Mode: model.ModeEnforce, IngressDefault: "default-reached", Admin: Tiers{Ingress: []Entry{l.accept, l.deny}}}
	b := a
	b.Admin = Tiers{Ingress: []Entry{l.deny, l.accept}}
	mustApply(t, l.dp, l.p.server, a)
	n := l.flip(t, 40, b, a, 100*time.Millisecond, nil)
	if n.leaked != 0 {
		t.Errorf("c1 got through %d times during the reorders", n.leaked)
	}
	if w, ok := l.reachedDefault(); ok {
		t.Errorf("a connection reached the default verdict (%q) during the reorders", w)
	}
	if n.opened == 0 || n.failed == 0 {
		t.Errorf("c0: %d opened, %d dropped; want both verdicts seen", n.opened, n.failed)
	}
	t.Logf("c0: %d opened, %d dropped during 40 reorders", n.opened, n.failed)
}
