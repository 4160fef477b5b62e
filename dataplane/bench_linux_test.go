//go:build linux

package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
)

// Connection-rate benchmarks follow KERNEL.md: sequential TCP connect and
// close from the client netns to the server netns, closed with SO_LINGER 0
// (no TIME_WAIT to exhaust the ephemeral ports), fresh namespaces per
// variant, and the no-table baseline measured in the same run, interleaved
// with the variant in rounds, so the reported ratio compares like with like.

// benchEntries returns n TCP entries for peers that never connect
// (198.19.0.0/16, several ports once the addresses run out), followed by
// the entry allowing the benchmark client.
func benchEntries(n int) []Entry {
	es := make([]Entry, 0, n+1)
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		es = append(es, Entry{Peer: netip.PrefixFrom(a, 32), Protocol: model.ProtocolTCP, Port: 1000 + i>>16, RuleID: fmt.Sprintf("peer-%d", i%100)})
	}
	return append(es, Entry{Peer: netip.PrefixFrom(client4[0], 32), Protocol: model.ProtocolTCP, Port: 80, RuleID: "client"})
}

// applyRuleChains programs the iptables-style layout into ns: one rule per
// entry in one chain, the client's rule last, then drop.
func applyRuleChains(b *testing.B, ns *nettest.Netns, entries []Entry) {
	b.Helper()
	withConn(b, ns, func(c *nftables.Conn) {
		t := &nftables.Table{Name: "bench", Family: nftables.TableFamilyINet}
		c.AddTable(t)
		pol := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(ctStateIs(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())})
		for i, e := range entries {
			a := e.Peer.Addr().As4()
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(e.Port >> 8), byte(e.Port)}},
				&expr.Counter{}, accept(),
			}})
			if i%2000 == 1999 { // keep one batch within the socket buffers
				if err := c.Flush(); err != nil {
					b.Fatalf("flush rules: %v", err)
				}
			}
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
	})
}

// applyConntrackOnly programs a table whose only rule makes the netns
// track connections.
func applyConntrackOnly(b *testing.B, ns *nettest.Netns) {
	withConn(b, ns, func(c *nftables.Conn) {
		t := &nftables.Table{Name: "bench", Family: nftables.TableFamilyINet}
		c.AddTable(t)
		pol := nftables.ChainPolicyAccept
		ch := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &pol})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(ctStateIs(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())})
	})
}

func withConn(b *testing.B, ns *nettest.Netns, fn func(c *nftables.Conn)) {
	f, err := openNetns(ns.Path())
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	c, err := dial(int(f.Fd()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseLasting()
	fn(c)
	if err := c.Flush(); err != nil {
		b.Fatalf("flush: %v", err)
	}
}

// connectLoop opens and closes n TCP connections from the client of p to
// the server's port 80 and returns the elapsed time. All sockets are made
// on one thread inside the client netns.
func connectLoop(b *testing.B, p pair, n int) time.Duration {
	var d time.Duration
	p.client.Do(b, func() error {
		dst := &unix.SockaddrInet4{Port: 80, Addr: server4.As4()}
		start := time.Now()
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 2})
			if err := unix.Connect(fd, dst); err != nil {
				unix.Close(fd)
				if err == unix.EINTR { // a runtime signal; try this one again
					i--
					continue
				}
				return fmt.Errorf("connect: %w", err)
			}
			unix.Close(fd)
		}
		d = time.Since(start)
		return nil
	})
	return d
}

// acceptLoop accepts and closes connections on port 80 in p's server.
func acceptLoop(b *testing.B, p pair) {
	var l net.Listener
	p.server.Do(b, func() error {
		var err error
		l, err = net.Listen("tcp4", ":80")
		return err
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	b.Cleanup(func() { l.Close() })
}

// BenchmarkConnRate measures three fresh pairs in turn, in rounds: no table
// (the baseline), nanoseg's table with only the client's entry (the cost of
// conntrack and the table itself: a netns tracks connections only once a
// rule uses ct), and the variant. "ratio" is variant / no table, the
// issue's measure; "ratio-vs-empty" is variant / empty table, the cost of
// the entries alone.
func BenchmarkConnRate(b *testing.B) {
	nettest.RequireRoot(b)
	variants := []struct {
		name  string
		n     int
		chain bool
	}{
		// conntrack-only: one rule, "ct state established,related accept",
		// nothing else: the floor any stateful table pays.
		{"conntrack-only", -1, true},
		{"set-1k", 1000, false}, {"set-10k", 10000, false}, {"set-100k", 100000, false},
		{"chain-1k", 1000, true}, {"chain-10k", 10000, true},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			base, empty, test := newPair(b), newPair(b), newPair(b)
			for _, p := range []pair{base, empty, test} {
				acceptLoop(b, p)
			}
			dp := New(nil)
			if _, err := dp.Apply(empty.server.Path(), RuleSet{Name: "bench", Mode: model.ModeEnforce, Ingress: benchEntries(0)}); err != nil {
				b.Fatal(err)
			}
			switch {
			case v.n < 0:
				applyConntrackOnly(b, test.server)
			case v.chain:
				applyRuleChains(b, test.server, benchEntries(v.n))
			default:
				rs := RuleSet{Name: "bench", Mode: model.ModeEnforce, Ingress: benchEntries(v.n)}
				if _, err := dp.Apply(test.server.Path(), rs); err != nil {
					b.Fatal(err)
				}
			}
			r := connRates(b, base, empty, test)
			rb, re, rt := r[0], r[1], r[2]
			b.ReportMetric(rt, "conns/s")
			b.ReportMetric(rb, "no-table-conns/s")
			b.ReportMetric(re, "empty-table-conns/s")
			b.ReportMetric(rt/rb, "ratio")
			b.ReportMetric(rt/re, "ratio-vs-empty")
		})
	}
}

// smallRuleSet is a typical endpoint: a dozen entries.
func smallRuleSet(i int) RuleSet {
	rs := RuleSet{Name: fmt.Sprintf("ep-%d", i), Mode: model.ModeEnforce}
	for j := range 6 {
		rs.Ingress = append(rs.Ingress, Entry{Peer: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(j)}), 32), Protocol: model.ProtocolTCP, Port: 80, RuleID: "web"})
		rs.Egress = append(rs.Egress, Entry{Peer: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 2, byte(j)}), 32), Protocol: model.ProtocolUDP, Port: 53, RuleID: "dns"})
	}
	return rs
}

// applyWorkers is how many endpoints applyAll programs at once. Applies
// spend most of their time waiting for the kernel, not on the CPU (a
// transaction that deletes map elements took 7-19 ms here against about
// 1 ms for one that adds them; an RCU grace period, we believe), so more
// workers than cores pay off.
const applyWorkers = 16

// applyAll applies rs(i) to every namespace with applyWorkers workers and
// fails the benchmark on the first error.
func applyAll(b *testing.B, dp *Dataplane, nss []*nettest.Netns, rs func(int) RuleSet) {
	var wg sync.WaitGroup
	errs := make(chan error, len(nss))
	work := make(chan int)
	for range applyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := dp.Apply(nss[i].Path(), rs(i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range nss {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func deleteTables(b *testing.B, nss []*nettest.Netns) {
	for _, ns := range nss {
		withConn(b, ns, func(c *nftables.Conn) { c.DelTable(Table()) })
	}
}

// BenchmarkApplyFresh: time to program a fresh rule set into 1, 100 and
// 1000 endpoint namespaces (applyWorkers workers).
func BenchmarkApplyFresh(b *testing.B) {
	nettest.RequireRoot(b)
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("endpoints-%d", n), func(b *testing.B) {
			nss := make([]*nettest.Netns, n)
			for i := range nss {
				nss[i] = nettest.New(b)
			}
			dp := New(nil)
			b.ResetTimer()
			for range b.N {
				applyAll(b, dp, nss, smallRuleSet)
				b.StopTimer()
				deleteTables(b, nss)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/endpoint")
		})
	}
}

// BenchmarkPeer1000: 1000 endpoints hold a rule set. "add": time to add
// one more peer (a new address for an existing rule id, so only a map
// element changes) to all of them; each iteration adds another. "remove":
// time to remove one peer again from all of them, which in enforce mode
// includes the conntrack scan that cuts disallowed connections (applyWorkers workers).
func BenchmarkPeer1000(b *testing.B) {
	nettest.RequireRoot(b)
	const n = 1000
	nss := make([]*nettest.Netns, n)
	for i := range nss {
		nss[i] = nettest.New(b)
	}
	dp := New(nil)
	applyAll(b, dp, nss, smallRuleSet)
	extra := 0
	withPeers := func(k int) func(int) RuleSet {
		return func(i int) RuleSet {
			rs := smallRuleSet(i)
			for j := range k {
				a := netip.AddrFrom4([4]byte{198, 18, 10 + byte(j>>8), byte(j)})
				rs.Ingress = append(rs.Ingress, Entry{Peer: netip.PrefixFrom(a, 32), Protocol: model.ProtocolTCP, Port: 443, RuleID: "web"})
			}
			return rs
		}
	}
	b.Run("add", func(b *testing.B) {
		for range b.N {
			extra++
			applyAll(b, dp, nss, withPeers(extra))
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/1000-endpoints")
	})
	b.Run("drift-check", func(b *testing.B) {
		// One Reconciler pass over 1000 endpoints that have not drifted:
		// read back and compare each (default 8 workers).
		r, err := NewReconciler(dp, ReconcilerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		for i, ns := range nss {
			if _, err := r.Set(fmt.Sprintf("ep-%d", i), ns.Path(), withPeers(extra)(i)); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for range b.N {
			if n, err := r.Sync(context.Background()); n != 0 || err != nil {
				b.Fatalf("Sync = %d, %v; want no repairs", n, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/1000-endpoints")
	})
	b.Run("remove", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			extra++
			applyAll(b, dp, nss, withPeers(extra))
			b.StartTimer()
			extra--
			applyAll(b, dp, nss, withPeers(extra))
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/1000-endpoints")
	})
}

// adminEntries returns n Admin tier entries none of which matches the
// benchmark client: a third any-protocol Denies of one address, a third
// TCP Denies of a /24 on a port range, a third Passes of one address and
// port (policies of ten rules each, as rule ids).
func adminEntries(n int) []Entry {
	es := make([]Entry, 0, n)
	actions := []Action{ActionDeny, ActionDeny, ActionPass}
	for i := range n {
		e := Entry{RuleID: fmt.Sprintf("cnp/admin/p%d/ingress-%d", i/10, i%10), Action: actions[i%3]}
		switch i % 3 {
		case 0:
			e.Peer = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 200 + byte(i>>8&3), byte(i)}), 32)
		case 1:
			e.Peer = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 210 + byte(i%40), 0}), 24)
			e.Protocol, e.Port, e.EndPort = model.ProtocolTCP, 1000+i, 2000+i
		default:
			e.Peer = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, 250 + byte(i>>8&3), byte(i)}), 32)
			e.Protocol, e.Port = model.ProtocolTCP, 80
		}
		es = append(es, e)
	}
	return es
}

// BenchmarkConnRateTiers: new connections per second through 100,000
// NetworkPolicy-tier entries with 1,000 Admin rules in front of them
// (none matching, so every connection takes the Admin lookups and goes on
// to the NetworkPolicy tier), against the same 100,000 entries without
// the Admin tier and against no table, interleaved in rounds on fresh
// pairs (KERNEL.md). "ratio-vs-developer" is the measure.
func BenchmarkConnRateTiers(b *testing.B) {
	nettest.RequireRoot(b)
	base, dev, tiers := newPair(b), newPair(b), newPair(b)
	for _, p := range []pair{base, dev, tiers} {
		acceptLoop(b, p)
	}
	dp := New(nil)
	rs := RuleSet{Name: "bench", Mode: model.ModeEnforce, Ingress: benchEntries(100000)}
	if _, err := dp.Apply(dev.server.Path(), rs); err != nil {
		b.Fatal(err)
	}
	rs.Admin = Tiers{Ingress: adminEntries(1000)}
	if _, err := dp.Apply(tiers.server.Path(), rs); err != nil {
		b.Fatal(err)
	}
	r := connRates(b, base, dev, tiers)
	rb, rd, rt := r[0], r[1], r[2]
	b.ReportMetric(rt, "conns/s")
	b.ReportMetric(rd, "developer-only-conns/s")
	b.ReportMetric(rb, "no-table-conns/s")
	b.ReportMetric(rt/rd, "ratio-vs-developer")
	b.ReportMetric(rt/rb, "ratio")
}

// connRates warms each pair up, then times rounds of 250 new connections
// on each pair in turn (so load drifts hit every pair alike) until b.N
// connections are made, and returns each pair's new connections per
// second, in the order given.
func connRates(b *testing.B, pairs ...pair) []float64 {
	for _, p := range pairs {
		connectLoop(b, p, 200) // warm up
	}
	const round = 250
	took := make([]time.Duration, len(pairs))
	n := 0
	b.ResetTimer()
	for done := 0; done < b.N; done += len(pairs) * round {
		for i, p := range pairs {
			took[i] += connectLoop(b, p, round)
		}
		n += round
	}
	b.StopTimer()
	out := make([]float64, len(pairs))
	for i, d := range took {
		out[i] = float64(n) / d.Seconds()
	}
	return out
}
