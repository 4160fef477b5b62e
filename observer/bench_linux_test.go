//go:build linux

package observer

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
)

// BenchmarkObservedConnRate compares the rate of new TCP connections
// between two namespaces with the observer attached to both (conntrack
// events, verdict-log socket, DNS capture) against the same setup without
// it. Both pairs have the same conntrack-using table; rounds alternate
// between them (KERNEL.md: fresh namespaces per variant, interleaved runs,
// connections closed with SO_LINGER 0 so TIME_WAIT does not skew the
// result). Reports conns/s of each and observed/unobserved; target >= 0.95.
// BENCH_VARIANT=ct observes with the conntrack source only; =blocked also
// holds its reader, which leaves only the kernel's cost of the events.
func BenchmarkObservedConnRate(b *testing.B) {
	nettest.RequireRoot(b)
	const perRound, rounds = 1000, 11
	setup := func(observe bool) (*nettest.Netns, *harness) {
		cli, srv := nettest.New(b), nettest.New(b)
		nettest.Connect(b, cli, srv, []netip.Prefix{pfx("198.18.1.1/24")}, []netip.Prefix{pfx("198.18.1.2/24")})
		ctTable(b, cli)
		ctTable(b, srv)
		var ln net.Listener
		srv.Do(b, func() error {
			var err error
			ln, err = net.Listen("tcp", "198.18.1.2:8080")
			return err
		})
		b.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		var h *harness
		if observe {
			cfg := Config{}
			var hook func()
			switch os.Getenv("BENCH_VARIANT") {
			case "ct":
				cfg.DisableDNS, cfg.DisableVerdictLog = true, true
			case "blocked":
				cfg.DisableDNS, cfg.DisableVerdictLog = true, true
				block := make(chan struct{})
				hook = func() { <-block }
				defer b.Cleanup(func() { close(block) }) // runs before the observer's cleanup
			}
			h = startObserver(b, cfg, nil, hook, cli, srv)
		}
		return cli, h
	}
	round := func(cli *nettest.Netns) float64 {
		var d time.Duration
		cli.Do(b, func() error {
			start := time.Now()
			for i := 0; i < perRound; i++ {
				c, err := net.DialTimeout("tcp", "198.18.1.2:8080", 2*time.Second)
				if err != nil {
					return err
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
			d = time.Since(start)
			return nil
		})
		return perRound / d.Seconds()
	}
	for i := 0; i < b.N; i++ {
		base, _ := setup(false)
		obs, h := setup(true)
		// Each round runs both variants back to back (alternating which goes
		// first); the ratio is the median of the per-round ratios, which
		// cancels most of the load that other processes put on the machine.
		var rb, ro, ratios []float64
		for r := 0; r < rounds; r++ {
			var x, y float64
			if r%2 == 0 {
				x = round(base)
				y = round(obs)
			} else {
				y = round(obs)
				x = round(base)
			}
			rb, ro, ratios = append(rb, x), append(ro, y), append(ratios, y/x)
		}
		slices.Sort(rb)
		slices.Sort(ro)
		slices.Sort(ratios)
		b.ReportMetric(rb[rounds/2], "unobserved-conns/s")
		b.ReportMetric(ro[rounds/2], "observed-conns/s")
		b.ReportMetric(ratios[rounds/2], "ratio")
		if os.Getenv("BENCH_VARIANT") == "blocked" {
			continue
		}
		waitFor(b, 10*time.Second, "all observed", func() bool {
			n := 0
			for _, f := range h.snapshot() {
				if f.Counts() && f.Direction == model.Egress && f.DstPort == 8080 {
					n++
				}
			}
			return n >= perRound*rounds
		})
	}
}

// BenchmarkCounterRead measures one read of the live connections'
// counters (counters.go: one IPCTNL_MSG_CT_GET per connection, in batches)
// for 1k, 10k and 100k live connections. Reports ms per read and µs per
// connection; the counter reader waits at least 20 reads' time between two.
// BENCH_QUICK leaves out 100k (creating the entries takes minutes).
func BenchmarkCounterRead(b *testing.B) {
	sizes := []int{1000, 10000, 100000}
	if os.Getenv("BENCH_QUICK") != "" {
		sizes = sizes[:2]
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			ns := nettest.New(b)
			if err := EnableAccounting(ns.Handle); err != nil {
				b.Fatal(err)
			}
			c, err := conntrack.Dial(&netlink.Config{NetNS: int(ns.Handle)})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			src, dst := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("198.18.1.2")
			for i := 0; i < n; i++ {
				if err := c.Create(conntrack.NewFlow(17, 0, src, dst, uint16(1024+i%60000), uint16(1+i/60000), 600, 0)); err != nil {
					b.Fatalf("create conntrack entry %d: %v", i, err)
				}
			}
			get, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns.Handle)})
			if err != nil {
				b.Fatal(err)
			}
			defer get.Close()
			s := &endpointState{o: &Observer{metrics: mustMetrics(b), log: slog.New(slog.DiscardHandler), handle: func(model.Flow) {}},
				ep: &model.Endpoint{Netns: ns.Name}, ns: ns.Handle, log: slog.New(slog.DiscardHandler), conns: newConnTable(), get: get, getBuf: make([]byte, 1<<16)}
			s.addr.fixed, s.addr.set = true, map[netip.Addr]bool{src: true}
			if _, err := dumpConntrack(ns.Handle, func(ev *ctEvent) { s.conns.add(ev.ID, &openConn{key: ev.tuple()}) }); err != nil {
				b.Fatal(err)
			}
			live := s.conns.liveConns(nil)
			if len(live) < n*99/100 { // a dump may miss an entry the table moved
				b.Fatalf("%d live connections, want %d", len(live), n)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.updateCounters(live); err != nil {
					b.Fatal(err)
				}
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(per.Microseconds())/1000, "ms/read")
			b.ReportMetric(float64(per.Nanoseconds())/1000/float64(len(live)), "µs/conn")
		})
	}
}

func mustMetrics(tb testing.TB) *Metrics {
	m, err := NewMetrics(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}
