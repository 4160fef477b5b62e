//go:build linux

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

type family struct {
	name           string
	server         netip.Addr
	clients        []netip.Addr
	lan            netip.Prefix
	edge           netip.Prefix // covers clients[2] and clients[3], not [1] or [4]
	icmp           model.Protocol
	icmpTestedFrom netip.Addr
}

var families = []family{
	{"ipv4", server4, client4, netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("198.18.0.8/30"), model.ProtocolICMP, client4[0]},
	{"ipv6", server6, client6, netip.MustParsePrefix("2001:db8::/64"), netip.MustParsePrefix("2001:db8::8/126"), model.ProtocolICMPv6, client6[0]},
}

func ap(a netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(a, uint16(port)) }

func mustApply(t testing.TB, dp *Dataplane, ns *nettest.Netns, rs RuleSet) ApplyResult {
	t.Helper()
	res, err := dp.Apply(ns.Path(), rs)
	if err != nil {
		t.Fatalf("Apply(%s): %v", rs.Name, err)
	}
	return res
}

func mustRead(t testing.TB, dp *Dataplane, ns *nettest.Netns) *State {
	t.Helper()
	st, err := dp.Read(ns.Path())
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return st
}

// serverRuleSet allows TCP and UDP 80 from the client LAN and ICMP from
// the first client address, ingress; nothing egress (strict: replies are
// established, neighbour discovery passes by itself).
func serverRuleSet(f family, mode model.Mode) RuleSet {
	return RuleSet{Name: "ep-" + string(mode), Mode: mode, Ingress: []Entry{
		{Peer: f.lan, Protocol: model.ProtocolTCP, Port: 80, RuleID: "web"},
		{Peer: f.lan, Protocol: model.ProtocolUDP, Port: 80, RuleID: "udp80"},
		{Peer: netip.PrefixFrom(f.icmpTestedFrom, f.icmpTestedFrom.BitLen()), Protocol: f.icmp, RuleID: "ping"},
	}}
}

// TestModesRealPackets: for each mode and family, allowed TCP, UDP and ICMP
// pass; others are dropped (enforce) or pass (audit, observe); the verdict
// log carries the documented prefixes; counters count; read-back equals.
func TestModesRealPackets(t *testing.T) {
	nettest.RequireRoot(t)
	for _, mode := range []model.Mode{model.ModeObserve, model.ModeAudit, model.ModeEnforce} {
		for _, f := range families {
			t.Run(string(mode)+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				p := newPair(t)
				serve(t, p.server, 80, 81)
				logs := listenNFLOG(t, p.server)
				dp := New(nil)
				rs := serverRuleSet(f, mode)
				mustApply(t, dp, p.server, rs)
				if st := mustRead(t, dp, p.server); !st.Equal(rs) {
					t.Fatalf("read-back differs from applied:\n%+v", st.RuleSet)
				}
				c := f.clients[0]
				for _, pr := range []struct {
					name    string
					allowed bool
					fn      func() error
				}{
					{"tcp 80", true, func() error { return probeTCP(p.client, c, ap(f.server, 80), time.Second) }},
					{"udp 80", true, func() error { return probeUDP(p.client, c, ap(f.server, 80), time.Second) }},
					{"icmp from allowed", true, func() error { return probeICMP(p.client, c, f.server, time.Second) }},
					{"tcp 81", false, func() error { return probeTCP(p.client, c, ap(f.server, 81), blocked) }},
					{"udp 81", false, func() error { return probeUDP(p.client, c, ap(f.server, 81), blocked) }},
					{"icmp from other", false, func() error { return probeICMP(p.client, f.clients[1], f.server, blocked) }},
				} {
					err := pr.fn()
					wantPass := pr.allowed || mode != model.ModeEnforce
					if wantPass && err != nil {
						t.Errorf("%s: want pass, got %v", pr.name, err)
					}
					if !wantPass && err == nil {
						t.Errorf("%s: want dropped, got through", pr.name)
					}
				}
				var want, notWant []string
				switch mode {
				case model.ModeObserve:
					want = []string{verdictlog.Format(model.VerdictObserved, "web"), verdictlog.Format(model.VerdictObserved, "udp80"),
						verdictlog.Format(model.VerdictObserved, "ping"), verdictlog.Format(model.VerdictObserved, rs.Name)}
					notWant = []string{verdictlog.Format(model.VerdictDeny, rs.Name), verdictlog.Format(model.VerdictAuditDeny, rs.Name)}
				case model.ModeAudit:
					want = []string{verdictlog.Format(model.VerdictAuditDeny, rs.Name)}
					notWant = []string{verdictlog.Format(model.VerdictObserved, "web"), verdictlog.Format(model.VerdictDeny, rs.Name)}
				case model.ModeEnforce:
					want = []string{verdictlog.Format(model.VerdictDeny, rs.Name)}
					notWant = []string{verdictlog.Format(model.VerdictAuditDeny, rs.Name), verdictlog.Format(model.VerdictObserved, "web")}
				}
				for _, w := range want {
					if !logs.wait(w, time.Second) {
						t.Errorf("no NFLOG record with prefix %q", w)
					}
				}
				for _, w := range notWant {
					if logs.has(w) {
						t.Errorf("unexpected NFLOG record %q", w)
					}
				}
				st := mustRead(t, dp, p.server)
				for _, id := range []string{"web", "udp80", "ping"} {
					if st.Counters[id].Packets == 0 || st.Counters[id].Bytes == 0 {
						t.Errorf("counter of rule %s = %+v, want > 0", id, st.Counters[id])
					}
				}
				if !st.Equal(rs) {
					t.Errorf("read-back differs from applied after traffic")
				}
			})
		}
	}
}

// TestEdgesOfRangesAndPrefixes: port range 8000-8002 from a /30 (/126):
// the first and last port and address pass, one beyond each edge does not.
func TestEdgesOfRangesAndPrefixes(t *testing.T) {
	nettest.RequireRoot(t)
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			p := newPair(t)
			serve(t, p.server, 7999, 8000, 8001, 8002, 8003)
			dp := New(nil)
			rs := RuleSet{Name: "edges", Mode: model.ModeEnforce, Ingress: []Entry{
				{Peer: f.edge, Protocol: model.ProtocolTCP, Port: 8000, EndPort: 8002, RuleID: "range"}}}
			mustApply(t, dp, p.server, rs)
			in, below, first, last, above := f.clients[2], f.clients[1], f.clients[2], f.clients[3], f.clients[4]
			for _, pr := range []struct {
				src  netip.Addr
				port int
				ok   bool
			}{
				{in, 7999, false}, {in, 8000, true}, {in, 8002, true}, {in, 8003, false},
				{below, 8000, false}, {first, 8001, true}, {last, 8001, true}, {above, 8001, false},
			} {
				timeout := time.Second
				if !pr.ok {
					timeout = blocked
				}
				err := probeTCP(p.client, pr.src, ap(f.server, pr.port), timeout)
				if pr.ok != (err == nil) {
					t.Errorf("tcp %s -> %d: allowed=%v, err=%v", pr.src, pr.port, pr.ok, err)
				}
			}
		})
	}
}

// TestEstablishedSurvivesAllowingUpdates: updates that still allow a
// connection (other entries added and removed, LogAllowed toggled, audit ↔
// enforce) leave it working.
func TestEstablishedSurvivesAllowingUpdates(t *testing.T) {
	nettest.RequireRoot(t)
	f := families[0]
	p := newPair(t)
	serve(t, p.server, 80)
	dp := New(nil)
	rs := serverRuleSet(f, model.ModeEnforce)
	mustApply(t, dp, p.server, rs)
	c, err := dialTCP(p.client, f.clients[0], ap(f.server, 80), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other := Entry{Peer: netip.MustParsePrefix("198.19.0.0/16"), Protocol: model.ProtocolTCP, Port: 22, RuleID: "ssh"}
	steps := []func(RuleSet) RuleSet{
		func(r RuleSet) RuleSet { r.Ingress = append(append([]Entry{}, r.Ingress...), other); return r },
		func(r RuleSet) RuleSet { r.LogAllowed = true; return r },
		func(r RuleSet) RuleSet { r.Mode = model.ModeAudit; return r },
		func(r RuleSet) RuleSet { r.Mode = model.ModeEnforce; r.Ingress = r.Ingress[:1]; return r },
	}
	for i, step := range steps {
		rs = step(rs)
		res, err := dp.Apply(p.server.Path(), rs)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if res.Rebuilt || res.Cut != 0 {
			t.Errorf("step %d: %+v, want no rebuild and no cut", i, res)
		}
		if err := echo(c, time.Second); err != nil {
			t.Fatalf("step %d: established connection broken: %v", i, err)
		}
	}
}

// TestAuditToEnforceCutsDisallowed: a connection audit let through (no
// entry allows it) is cut by the promotion to enforce; an allowed one lives.
func TestAuditToEnforceCutsDisallowed(t *testing.T) {
	nettest.RequireRoot(t)
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			p := newPair(t)
			serve(t, p.server, 80, 81)
			dp := New(nil)
			rs := serverRuleSet(f, model.ModeAudit)
			mustApply(t, dp, p.server, rs)
			good, err := dialTCP(p.client, f.clients[0], ap(f.server, 80), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer good.Close()
			bad, err := dialTCP(p.client, f.clients[0], ap(f.server, 81), time.Second)
			if err != nil {
				t.Fatalf("audit mode dropped a connection: %v", err)
			}
			defer bad.Close()
			if err := echo(bad, time.Second); err != nil {
				t.Fatal(err)
			}
			rs.Mode = model.ModeEnforce
			res := mustApply(t, dp, p.server, rs)
			if res.Cut != 1 {
				t.Errorf("Apply cut %d conntrack entries, want 1", res.Cut)
			}
			if err := echo(bad, blocked); err == nil {
				t.Errorf("disallowed connection still works after promotion to enforce")
			}
			if err := echo(good, time.Second); err != nil {
				t.Errorf("allowed connection broken by promotion: %v", err)
			}
		})
	}
}

// TestValidationFailureLeavesKernelUnchanged and adoption by a new process.
func TestValidationFailureAndAdoption(t *testing.T) {
	nettest.RequireRoot(t)
	f := families[0]
	p := newPair(t)
	serve(t, p.server, 80)
	dp := New(nil)
	rs := serverRuleSet(f, model.ModeEnforce)
	mustApply(t, dp, p.server, rs)
	if err := probeTCP(p.client, f.clients[0], ap(f.server, 80), time.Second); err != nil {
		t.Fatal(err)
	}
	before := mustRead(t, dp, p.server)
	bad := rs
	bad.Ingress = append([]Entry{{Peer: f.lan, Protocol: model.ProtocolTCP, Port: 0, EndPort: 5, RuleID: "bad"}}, rs.Ingress...)
	bad.Mode = model.ModeObserve
	if _, err := dp.Apply(p.server.Path(), bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Apply(invalid) = %v, want ErrInvalid", err)
	}
	after := mustRead(t, dp, p.server)
	if !after.Equal(rs) || after.Counters["web"] != before.Counters["web"] {
		t.Fatalf("kernel changed by a failed apply: %+v", after.RuleSet)
	}
	// A new process (a new Dataplane) adopts the table: nothing sent,
	// counters kept; an added peer changes elements only.
	dp2 := New(nil)
	if res := mustApply(t, dp2, p.server, rs); !res.Unchanged {
		t.Errorf("adoption: %+v, want Unchanged", res)
	}
	rs.Ingress = append(rs.Ingress, Entry{Peer: netip.MustParsePrefix("198.19.0.1/32"), Protocol: model.ProtocolTCP, Port: 443, RuleID: "web"})
	res := mustApply(t, dp2, p.server, rs)
	if res.Added != 1 || res.Deleted != 0 || res.Rebuilt || res.Rewritten || res.Created {
		t.Errorf("adding one peer: %+v, want exactly one element added", res)
	}
	st := mustRead(t, dp2, p.server)
	if !st.Equal(rs) || st.Counters["web"].Packets < before.Counters["web"].Packets {
		t.Errorf("after adding a peer: equal=%v counters %+v (before %+v)", st.Equal(rs), st.Counters["web"], before.Counters["web"])
	}
}

// TestDriftRestored: a table deleted, or a rule removed, behind nanoseg's
// back is put back by the Reconciler, and filtering works again.
func TestDriftRestored(t *testing.T) {
	nettest.RequireRoot(t)
	f := families[0]
	p := newPair(t)
	serve(t, p.server, 80, 81)
	dp := New(nil)
	r, err := NewReconciler(dp, ReconcilerConfig{Resync: 50 * time.Millisecond, MinInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rs := serverRuleSet(f, model.ModeEnforce)
	if _, err := r.Set("server", p.server.Path(), rs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	tamper := func(name string, fn func(c *nftables.Conn)) {
		nf, err := os.Open(p.server.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer nf.Close()
		c, err := nftables.New(nftables.WithNetNSFd(int(nf.Fd())))
		if err != nil {
			t.Fatal(err)
		}
		fn(c)
		if err := c.Flush(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for !mustRead(t, dp, p.server).Equal(rs) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not restored within 3s", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := probeTCP(p.client, f.clients[0], ap(f.server, 81), blocked); err == nil {
			t.Errorf("%s: after restore, a disallowed connection got through", name)
		}
	}
	tamper("delete table", func(c *nftables.Conn) { c.DelTable(Table()) })
	tamper("flush ingress chain", func(c *nftables.Conn) { c.FlushChain(&nftables.Chain{Name: ChainIngress, Table: Table()}) })
	tamper("delete a base chain rule", func(c *nftables.Conn) {
		rules, err := c.GetRules(Table(), &nftables.Chain{Name: ChainInput, Table: Table()})
		if err != nil || len(rules) == 0 {
			t.Fatalf("list input rules: %v", err)
		}
		if err := c.DelRule(rules[0]); err != nil {
			t.Fatal(err)
		}
	})
	tamper("add a foreign chain", func(c *nftables.Conn) { c.AddChain(&nftables.Chain{Name: "foreign", Table: Table()}) })
	tamper("delete element", func(c *nftables.Conn) {
		s := &nftables.Set{Name: SetIngress4, Table: Table()}
		els := Elements(rs)
		_ = c.SetDeleteElements(s, []nftables.SetElement{encodeElement(els[0])})
	})
	if st, _ := r.Status("server"); st.Repairs < 5 || st.Err != nil {
		t.Errorf("status %+v, want >= 5 repairs and no error", st)
	}
}

// TestFailedEndpointIsolated: an endpoint whose rule set fails keeps its
// previous rules and reports the error; another endpoint is unaffected.
func TestFailedEndpointIsolated(t *testing.T) {
	nettest.RequireRoot(t)
	a, b := nettest.New(t), nettest.New(t)
	r, err := NewReconciler(New(nil), ReconcilerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rsA, rsB := serverRuleSet(families[0], model.ModeAudit), serverRuleSet(families[1], model.ModeEnforce)
	if _, err := r.Set("a", a.Path(), rsA); err != nil {
		t.Fatal(err)
	}
	badB := rsB
	badB.Ingress = []Entry{{Peer: families[1].lan, Protocol: model.ProtocolICMPv6, Port: 1, RuleID: "x"}}
	if _, err := r.Set("b", b.Path(), rsB); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Set("b", b.Path(), badB); err == nil {
		t.Fatal("Set(invalid) succeeded")
	}
	st, _ := r.Status("b")
	if st.Err == nil || st.Desired.Name != rsB.Name || len(st.Desired.Ingress) != len(rsB.Ingress) {
		t.Errorf("status of failed endpoint: %+v", st)
	}
	if n, err := r.Sync(context.Background()); n != 0 || err != nil {
		t.Errorf("Sync = %d, %v; want nothing to repair", n, err)
	}
	for ns, rs := range map[*nettest.Netns]RuleSet{a: rsA, b: rsB} {
		if s := mustRead(t, New(nil), ns); !s.Equal(rs) {
			t.Errorf("%s: kernel does not hold the last good rule set", rs.Name)
		}
	}
}

// bigRuleSet returns n4 IPv4 and n6 IPv6 single-address TCP entries (from
// 198.19.0.0/16 and 2001:db8:ffff::/48, away from the test LAN) plus the
// rule set of serverRuleSet.
func bigRuleSet(f family, mode model.Mode, n4, n6 int, salt int) RuleSet {
	rs := serverRuleSet(f, mode)
	for i := range n4 {
		a := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		rs.Ingress = append(rs.Ingress, Entry{Peer: netip.PrefixFrom(a, 32), Protocol: model.ProtocolTCP, Port: 1000 + salt, RuleID: fmt.Sprintf("peer-%d", i%50)})
	}
	for i := range n6 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 14: byte(i >> 8), 15: byte(i)})
		// A port range: these go to the interval (pipapo) map, the IPv4
		// ones above to the exact (hash) map.
		rs.Ingress = append(rs.Ingress, Entry{Peer: netip.PrefixFrom(a, 128), Protocol: model.ProtocolTCP, Port: 1000 + salt, EndPort: 1001 + salt, RuleID: fmt.Sprintf("peer-%d", i%50)})
	}
	return rs
}

// TestLargeSetComplete: 20,000 elements go in with one apply (one
// transaction) and are all there; filtering still works; a one-peer update
// is one added element.
func TestLargeSetComplete(t *testing.T) {
	nettest.RequireRoot(t)
	f := families[0]
	p := newPair(t)
	serve(t, p.server, 80, 81)
	dp := New(nil)
	rs := bigRuleSet(f, model.ModeEnforce, 10000, 10000, 0)
	res := mustApply(t, dp, p.server, rs)
	if !res.Created || res.Added != 20003 {
		t.Errorf("Apply: %+v, want created with 20003 elements", res)
	}
	st := mustRead(t, dp, p.server)
	if len(st.Elements) != 20003 || !st.Equal(rs) {
		t.Fatalf("read back %d elements, equal=%v; want 20003, true", len(st.Elements), st.Equal(rs))
	}
	perMap := map[string]int{}
	for _, e := range st.Elements {
		perMap[e.setName()]++
	}
	if perMap[SetIngressExact4] != 10000 || perMap[SetIngress6] != 10000 {
		t.Errorf("elements per map: %v; want 10000 in %s and in %s", perMap, SetIngressExact4, SetIngress6)
	}
	if err := probeTCP(p.client, f.clients[0], ap(f.server, 80), time.Second); err != nil {
		t.Errorf("allowed connection with 20k elements: %v", err)
	}
	if err := probeTCP(p.client, f.clients[0], ap(f.server, 81), blocked); err == nil {
		t.Errorf("disallowed connection got through with 20k elements")
	}
	rs.Ingress = append(rs.Ingress, Entry{Peer: netip.MustParsePrefix("198.18.200.1/32"), Protocol: model.ProtocolUDP, Port: 5, RuleID: "one"})
	if res := mustApply(t, dp, p.server, rs); res.Added != 1 || res.Deleted != 0 || res.Rebuilt {
		t.Errorf("one-peer update: %+v", res)
	}
}

// TestConnectLoopDuringUpdates: while rule sets that both allow the
// client's port 80 replace each other, no connection attempt fails.
func TestConnectLoopDuringUpdates(t *testing.T) {
	nettest.RequireRoot(t)
	f := families[0]
	p := newPair(t)
	serve(t, p.server, 80)
	dp := New(nil)
	a := bigRuleSet(f, model.ModeEnforce, 1000, 0, 0)
	b := bigRuleSet(f, model.ModeAudit, 500, 500, 1)
	b.LogAllowed = true
	mustApply(t, dp, p.server, a)
	var attempts, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			attempts.Add(1)
			if err := probeTCP(p.client, f.clients[0], ap(f.server, 80), 2*time.Second); err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}
	}()
	for i := range 20 {
		rs := a
		if i%2 == 0 {
			rs = b
		}
		if _, err := dp.Apply(p.server.Path(), rs); err != nil {
			t.Errorf("update %d: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-done
	if failures.Load() != 0 || attempts.Load() < 20 {
		t.Errorf("%d of %d connections failed during updates (first: %v)", failures.Load(), attempts.Load(), firstErr.Load())
	}
	t.Logf("%d connections during 20 updates, none failed", attempts.Load())
}

// flushNeighbours empties the IPv6 neighbour cache of ns, so the next
// packet needs neighbour discovery.
func flushNeighbours(t *testing.T, ns *nettest.Netns) {
	t.Helper()
	h := ns.Netlink(t)
	neighs, err := h.NeighList(0, unix.AF_INET6)
	if err != nil {
		t.Fatalf("list neighbours: %v", err)
	}
	for _, n := range neighs {
		n := n
		_ = h.NeighDel(&n)
	}
}

// TestNeighbourDiscoveryStrictEgress: with an enforcing rule set that
// allows nothing egress, IPv6 neighbour discovery still works (the server
// must solicit the client's address to answer), while a connection the
// server opens itself is dropped.
func TestNeighbourDiscoveryStrictEgress(t *testing.T) {
	nettest.RequireRoot(t)
	f := families[1]
	p := newPair(t)
	serve(t, p.server, 80)
	serve(t, p.client, 81)
	dp := New(nil)
	rs := RuleSet{Name: "strict", Mode: model.ModeEnforce, Ingress: []Entry{{Peer: f.lan, Protocol: model.ProtocolTCP, Port: 80, RuleID: "web"}}}
	mustApply(t, dp, p.server, rs)
	flushNeighbours(t, p.server)
	flushNeighbours(t, p.client)
	if err := probeTCP(p.client, f.clients[0], ap(f.server, 80), 2*time.Second); err != nil {
		t.Errorf("IPv6 connection with neighbour discovery under strict egress: %v", err)
	}
	if err := probeTCP(p.server, f.server, ap(f.clients[0], 81), blocked); err == nil {
		t.Errorf("server opened a connection that no egress entry allows")
	}
}
