//go:build linux

package observer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables/expr"

	"github.com/miekg/dns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
)

// Addresses of the two-namespace tests: client (shop/frontend) and server
// (shop/api).
var (
	cli4 = netip.MustParseAddr("198.18.1.1")
	srv4 = netip.MustParseAddr("198.18.1.2")
	cli6 = netip.MustParseAddr("2001:db8:1::1")
	srv6 = netip.MustParseAddr("2001:db8:1::2")
	ext4 = netip.MustParseAddr("198.19.0.10")
	ext6 = netip.MustParseAddr("2001:db8:19::10")
)

func shopInventory() Inventory {
	return InventoryFunc(func(a netip.Addr) (model.Identity, bool) {
		switch {
		case a == cli4 || a == cli6 || pfx("198.18.2.0/23").Contains(a) && a.As4()[3] == 1:
			return model.Identity{Namespace: "shop", Workload: "frontend"}, true
		case a == srv4 || a == srv6 || pfx("198.18.2.0/23").Contains(a) && a.As4()[3] == 2:
			return model.Identity{Namespace: "shop", Workload: "api"}, true
		}
		return model.Identity{}, false
	})
}

// pair returns a client and a server netns joined by a veth pair, both
// tracking connections.
func pair(t *testing.T, cliRules, srvRules []nftRule) (cli, srv *nettest.Netns) {
	t.Helper()
	nettest.RequireRoot(t)
	cli, srv = nettest.New(t), nettest.New(t)
	nettest.Connect(t, cli, srv, []netip.Prefix{pfx("198.18.1.1/24"), pfx("2001:db8:1::1/64")},
		[]netip.Prefix{pfx("198.18.1.2/24"), pfx("2001:db8:1::2/64")})
	ctTable(t, cli, cliRules...)
	ctTable(t, srv, srvRules...)
	return cli, srv
}

func TestKernelAccountingPerNetns(t *testing.T) {
	nettest.RequireRoot(t)
	host, err := os.ReadFile(SysctlAcct)
	if err != nil {
		t.Skipf("no conntrack sysctls: %v", err)
	}
	a, b := nettest.New(t), nettest.New(t)
	if err := EnableAccounting(a.Handle); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{SysctlAcct, SysctlTimestamp} {
		if v, err := ReadSysctl(a.Handle, p); err != nil || v != "1" {
			t.Errorf("%s in observed netns = %q, %v; want 1", p, v, err)
		}
		if v, err := ReadSysctl(b.Handle, p); err != nil || v != "0" {
			t.Errorf("%s in another netns = %q, %v; want the default 0", p, v, err)
		}
	}
	if after, _ := os.ReadFile(SysctlAcct); string(after) != string(host) {
		t.Errorf("host nf_conntrack_acct changed from %q to %q", host, after)
	}
}

// TestKernelThousandShortConnections: 1000 sequential TCP connections of
// about a millisecond each, observed at both ends, are all counted, once.
func TestKernelThousandShortConnections(t *testing.T) {
	cli, srv := pair(t, nil, nil)
	// Short TIME_WAIT in the client netns so that DESTROY (with counters) comes quickly.
	cli.Do(t, func() error {
		return os.WriteFile("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait", []byte("1"), 0o644)
	})
	h := startObserver(t, Config{}, shopInventory(), nil, cli, srv)
	echoServer(t, srv, "198.18.1.2:8080")
	start := time.Now()
	const n = 1000
	dialEcho(t, cli, "198.18.1.2:8080", n)
	t.Logf("%d connections in %v (%.2f ms each)", n, time.Since(start), float64(time.Since(start).Microseconds())/1000/n)
	waitFor(t, 10*time.Second, "1000 flows on the edge", func() bool {
		e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 8080)
		return e.Flows >= n
	})
	// Counters arrive within the counter interval.
	waitFor(t, 10*time.Second, "counters on the edge", func() bool {
		e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 8080)
		return e.BytesOut > 0 && e.BytesIn > 0
	})
	time.Sleep(200 * time.Millisecond)
	e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 8080)
	if e.Flows != n || e.Verdicts.Observed != n {
		t.Errorf("edge counts %d flows (%d observed), want exactly %d", e.Flows, e.Verdicts.Observed, n)
	}
	var ends int
	var egress, ingress int
	// Update and end records carry the growth since the previous update:
	// per connection they add up to its counters.
	type sum struct{ pktsOut, bytesIn uint64 }
	sums := map[uint32]sum{}
	// One snapshot for both loops: records keep arriving, and an end
	// record missing from the sums would look like one without counters.
	snap := h.snapshot()
	for _, f := range snap {
		if (f.Phase == model.PhaseUpdate || f.Phase == model.PhaseEnd) && f.Direction == model.Egress && f.DstPort == 8080 {
			s := sums[f.ConntrackID]
			s.pktsOut += f.PacketsOut
			s.bytesIn += f.BytesIn
			sums[f.ConntrackID] = s
		}
	}
	for _, f := range snap {
		if f.Phase == model.PhaseEnd && f.Direction == model.Egress && f.DstPort == 8080 {
			ends++
			if s := sums[f.ConntrackID]; s.pktsOut == 0 || s.bytesIn == 0 || f.End.Before(f.Start) {
				t.Errorf("connection ended without counters or times: %+v (counters %+v)", f, s)
				break
			}
		}
		if f.Phase == model.PhaseStart && f.DstPort == 8080 {
			if f.Direction == model.Egress && f.Endpoint == cli.Name {
				egress++
			}
			if f.Direction == model.Ingress && f.Endpoint == srv.Name {
				ingress++
			}
		}
	}
	if egress != n || ingress != n {
		t.Errorf("start records: %d egress at client, %d ingress at server; want %d each", egress, ingress, n)
	}
	t.Logf("edge %+v; %d end records so far", e, ends)
	if got := counterValue(h.metrics.Flows.WithLabelValues("conntrack")); got < 2*n {
		t.Errorf("flows_total{conntrack} = %v, want >= %d", got, 2*n)
	}
	for _, e := range h.agg.Edges() {
		if e.Source.String() == "shop/api" {
			t.Errorf("reply counted as a flow the other way: %+v", e)
		}
	}
}

// TestKernelUDPAndICMP: a UDP exchange and ICMP echoes (IPv4 and IPv6) are seen.
func TestKernelUDPAndICMP(t *testing.T) {
	cli, srv := pair(t, nil, nil)
	h := startObserver(t, Config{}, shopInventory(), nil, cli, srv)
	var pc net.PacketConn
	srv.Do(t, func() error {
		var err error
		pc, err = net.ListenPacket("udp", "198.18.1.2:5353")
		return err
	})
	defer pc.Close()
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	cli.Do(t, func() error {
		c, err := net.Dial("udp", "198.18.1.2:5353")
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 10)
		for i := 0; i < 3; i++ {
			if _, err := c.Write([]byte("hello")); err != nil {
				return err
			}
			if _, err := c.Read(buf); err != nil {
				return fmt.Errorf("udp reply: %w", err)
			}
		}
		if err := ping(ipv4.ICMPTypeEcho, "ip4:icmp", "198.18.1.2"); err != nil {
			return fmt.Errorf("ping4: %w", err)
		}
		return ping(ipv6.ICMPTypeEchoRequest, "ip6:ipv6-icmp", "2001:db8:1::2")
	})
	waitFor(t, 5*time.Second, "udp and icmp edges", func() bool {
		u, ok1 := h.edge("shop/frontend", "shop/api", model.ProtocolUDP, 5353)
		i4, ok2 := h.edge("shop/frontend", "shop/api", model.ProtocolICMP, 0)
		i6, ok3 := h.edge("shop/frontend", "shop/api", model.ProtocolICMPv6, 0)
		return ok1 && ok2 && ok3 && u.Flows == 1 && i4.Flows == 1 && i6.Flows == 1
	})
	for _, f := range h.snapshot() {
		if f.Protocol == model.ProtocolICMP && (f.ICMPType == nil || *f.ICMPType != 8) {
			t.Errorf("icmp record without echo type: %+v", f)
		}
	}
}

// ping sends ICMP echo requests to dst, one every 300ms (a fresh link may
// drop the first while neighbour discovery runs), until a reply comes or 3s
// pass.
func ping(typ icmp.Type, network, dst string) error {
	c, err := icmp.ListenPacket(network, "")
	if err != nil {
		return err
	}
	defer c.Close()
	proto := 1
	if typ == ipv6.ICMPTypeEchoRequest {
		proto = 58
	}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(3 * time.Second)
	for seq := 1; time.Now().Before(deadline); seq++ {
		msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: 0x4242, Seq: seq, Data: []byte("nanoseg")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(b, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err == nil && (m.Type == ipv4.ICMPTypeEchoReply || m.Type == ipv6.ICMPTypeEchoReply) {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %s", dst)
}

// TestKernelDNSNamesExternalPeer: the client asks the lab's DNS server for
// payments.example and connects to the answer; the edge names the external
// peer payments.example, for IPv4 and IPv6 alike.
func TestKernelDNSNamesExternalPeer(t *testing.T) {
	cli, srv := pair(t, nil, nil)
	// The "external" service lives in the server netns under 198.19.0.10 and
	// 2001:db8:19::10; the client routes there over its link.
	srvNl := srv.Netlink(t)
	eth0, err := srvNl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{pfx("198.19.0.10/32"), pfx("2001:db8:19::10/128")} {
		if err := srvNl.AddrAdd(eth0, nettest.Addr(p)); err != nil {
			t.Fatal(err)
		}
	}
	routeVia(t, cli, "eth0", pfx("198.19.0.0/16"))
	routeVia(t, cli, "eth0", pfx("2001:db8:19::/48"))
	h := startObserver(t, Config{}, shopInventory(), nil, cli, srv)

	var pc net.PacketConn
	srv.Do(t, func() error {
		var err error
		pc, err = net.ListenPacket("udp", "198.18.1.2:53")
		return err
	})
	server := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			switch qq.Qtype {
			case dns.TypeA:
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IP(ext4.AsSlice())})
			case dns.TypeAAAA:
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 300}, AAAA: net.IP(ext6.AsSlice())})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = server.ActivateAndServe() }()
	defer server.Shutdown()
	echoServer(t, srv, "[::]:443")

	var answers []netip.Addr
	cli.Do(t, func() error {
		c, err := net.Dial("udp", "198.18.1.2:53")
		if err != nil {
			return err
		}
		defer c.Close()
		dc := &dns.Conn{Conn: c}
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			q := new(dns.Msg)
			q.SetQuestion("Payments.Example.", qt)
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			r, _, err := new(dns.Client).ExchangeWithConn(q, dc)
			if err != nil {
				return fmt.Errorf("dns query: %w", err)
			}
			for _, rr := range r.Answer {
				switch v := rr.(type) {
				case *dns.A:
					a, _ := netip.AddrFromSlice(v.A)
					answers = append(answers, a.Unmap())
				case *dns.AAAA:
					a, _ := netip.AddrFromSlice(v.AAAA)
					answers = append(answers, a)
				}
			}
		}
		return nil
	})
	if len(answers) != 2 {
		t.Fatalf("answers %v", answers)
	}
	waitFor(t, 3*time.Second, "DNS answers learnt", func() bool {
		_, ok4 := h.obs.Names().Lookup(ext4, time.Now())
		_, ok6 := h.obs.Names().Lookup(ext6, time.Now())
		return ok4 && ok6
	})
	dialEcho(t, cli, "198.19.0.10:443", 2)
	dialEcho(t, cli, "[2001:db8:19::10]:443", 1)
	waitFor(t, 5*time.Second, "edge to payments.example", func() bool {
		e, ok := h.edge("shop/frontend", "payments.example", model.ProtocolTCP, 443)
		return ok && e.Flows == 3
	})
	if _, ok := h.edge("shop/frontend", "shop/api", model.ProtocolUDP, 53); !ok {
		t.Errorf("no DNS edge frontend -> api udp/53: %+v", h.agg.Edges())
	}
	for _, f := range h.snapshot() {
		if f.DstPort == 443 && f.Direction == model.Egress && f.RemoteName != "payments.example" {
			t.Errorf("flow to %v not named: %+v", f.Dst, f)
		}
	}
	if got := counterValue(h.metrics.DNSAnswers); got < 2 {
		t.Errorf("dns_answers_total = %v", got)
	}
}

// TestKernelDeniedByRule: connections dropped by NFLOG-logging rules are
// reported with the rule id, at the server's ingress and at the client's
// egress, and counted once.
func TestKernelDeniedByRule(t *testing.T) {
	cli, srv := pair(t,
		[]nftRule{denyLogged(true, 9998, "nanoseg:deny:egress-rule")},
		[]nftRule{denyLogged(false, 9999, "nanoseg:deny:test-rule"), denyLogged(false, 9997, "someone-else"),
			logged(false, 9996, "nanoseg:audit-deny:audit-rule", expr.VerdictAccept)})
	h := startObserver(t, Config{}, shopInventory(), nil, cli, srv)
	echoServer(t, srv, "198.18.1.2:9996")
	dialEcho(t, cli, "198.18.1.2:9996", 1)
	cli.Do(t, func() error {
		for _, port := range []int{9999, 9998, 9997} {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("198.18.1.2:%d", port), 1500*time.Millisecond)
			if err == nil {
				c.Close()
				return fmt.Errorf("port %d: connection not dropped", port)
			}
		}
		return nil
	})
	waitFor(t, 5*time.Second, "denied edges", func() bool {
		e1, ok1 := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 9999)
		e2, ok2 := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 9998)
		return ok1 && ok2 && e1.Verdicts.Denied == 1 && e2.Verdicts.Denied == 1
	})
	var got []model.Flow
	for _, f := range h.snapshot() {
		if f.Source == model.SourceVerdictLog {
			got = append(got, f)
		}
	}
	waitFor(t, 2*time.Second, "audit-denied edge", func() bool {
		e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 9996)
		return e.Verdicts.AuditDenied == 1 && e.Flows == 1
	})
	if e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 9996); e.Flows != 1 || e.Verdicts.Observed != 1 {
		t.Errorf("audit-denied connection counted %d times: %+v", e.Flows, e)
	}
	got = got[:0]
	for _, f := range h.snapshot() {
		if f.Source == model.SourceVerdictLog && f.DstPort != 9996 {
			got = append(got, f)
		}
	}
	if len(got) != 2 {
		t.Fatalf("verdict records %+v, want 2 (retransmissions and foreign prefixes dropped)", got)
	}
	for _, f := range got {
		switch f.DstPort {
		case 9999:
			if f.RuleID != "test-rule" || f.Verdict != model.VerdictDeny || f.Direction != model.Ingress || f.Endpoint != srv.Name {
				t.Errorf("ingress deny %+v", f)
			}
		case 9998:
			if f.RuleID != "egress-rule" || f.Verdict != model.VerdictDeny || f.Direction != model.Egress || f.Endpoint != cli.Name {
				t.Errorf("egress deny %+v", f)
			}
		}
	}
	e1, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 9999)
	e2, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 9998)
	if e1.Flows != 1 || e2.Flows != 1 {
		t.Errorf("denied attempts counted %d and %d times, want 1 each (edges %+v, %+v)", e1.Flows, e2.Flows, e1, e2)
	}
}

// TestKernelReplicasCollapse: two replicas of frontend, each in its own
// netns, talking to api become one edge.
func TestKernelReplicasCollapse(t *testing.T) {
	nettest.RequireRoot(t)
	r0, r1, srv := nettest.New(t), nettest.New(t), nettest.New(t)
	link(t, r0, srv, "eth0", "r0", []netip.Prefix{pfx("198.18.2.1/24")}, []netip.Prefix{pfx("198.18.2.2/24")})
	link(t, r1, srv, "eth0", "r1", []netip.Prefix{pfx("198.18.3.1/24")}, []netip.Prefix{pfx("198.18.3.2/24")})
	for _, ns := range []*nettest.Netns{r0, r1, srv} {
		ctTable(t, ns)
	}
	h := startObserver(t, Config{}, shopInventory(), nil, r0, r1, srv)
	echoServer(t, srv, "0.0.0.0:8080")
	dialEcho(t, r0, "198.18.2.2:8080", 5)
	dialEcho(t, r1, "198.18.3.2:8080", 7)
	waitFor(t, 5*time.Second, "one edge with 12 flows", func() bool {
		e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 8080)
		return e.Flows == 12
	})
	if n := h.agg.Len(); n != 1 {
		t.Errorf("%d edges, want 1: %+v", n, h.agg.Edges())
	}
}

// TestKernelOverflowResync: the conntrack event socket overflows while its
// reader is held; the observer counts the loss, dumps the table, and every
// connection, including a long-lived one opened during the overflow, is
// counted exactly once.
func TestKernelOverflowResync(t *testing.T) {
	cli, srv := pair(t, nil, nil)
	gate := make(chan struct{})
	held := make(chan struct{}, 1)
	hook := func() {
		select {
		case held <- struct{}{}:
		default:
		}
		<-gate
	}
	h := startObserver(t, Config{ConntrackReadBuffer: 4096, DisableVerdictLog: true, DisableDNS: true}, shopInventory(), hook, cli)
	<-held
	echoServer(t, srv, "198.18.1.2:8080")
	const n = 300
	dialEcho(t, cli, "198.18.1.2:8080", n)
	// A long-lived connection that starts while the socket is overflowing.
	var long net.Conn
	cli.Do(t, func() error {
		var err error
		long, err = net.Dial("tcp", "198.18.1.2:8080")
		return err
	})
	defer long.Close()
	close(gate)
	waitFor(t, 10*time.Second, "resync", func() bool {
		return counterValue(h.metrics.Resyncs) >= 1
	})
	// A readiness wait, not a speed target: under a full test run's load
	// the dump and the events behind it took longer than 5 s once.
	deadline := time.Now().Add(20 * time.Second)
	for {
		e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 8080)
		if e.Flows >= n+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections counted after 20 s, want %d", e.Flows, n+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 8080)
	if e.Flows != n+1 {
		t.Errorf("edge flows %d, want exactly %d", e.Flows, n+1)
	}
	if got := counterValue(h.metrics.EventsLost.WithLabelValues("conntrack")); got < 1 {
		t.Errorf("events_lost_total = %v, want >= 1", got)
	}
	lp := netip.MustParseAddrPort(long.LocalAddr().String())
	found := false
	resynced := 0
	for _, f := range h.snapshot() {
		if f.SrcPort == lp.Port() && f.Counts() {
			found = true
		}
		if f.Resynced {
			resynced++
		}
	}
	if !found {
		t.Errorf("long-lived connection from port %d not reported", lp.Port())
	}
	t.Logf("lost=%v resyncs=%v resynced records=%d", counterValue(h.metrics.EventsLost.WithLabelValues("conntrack")),
		counterValue(h.metrics.Resyncs), resynced)
}

// TestKernelRunErrors: a missing netns fails Run with the endpoint named;
// a second Run is refused.
func TestKernelRunErrors(t *testing.T) {
	nettest.RequireRoot(t)
	o, err := New(Config{}, []model.Endpoint{{Netns: "gone", Path: "/run/netns/nanoseg-test-does-not-exist"}}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "observe gone") {
		t.Errorf("Run on a missing netns: %v", err)
	}
	if err := o.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
}

// TestKernelVerdictLogNoDecodeErrors: a burst of logged packets reaches the
// observer in NFLOG batches, each closed by an NLMSG_DONE message; normal
// traffic leaves nanoseg_observer_decode_errors_total{decoder="verdict-log"}
// at zero and every logged packet still becomes a record.
func TestKernelVerdictLogNoDecodeErrors(t *testing.T) {
	cli, srv := pair(t, nil, []nftRule{loggedEveryUDP(7777, "nanoseg:audit-deny:burst-rule")})
	h := startObserver(t, Config{DisableDNS: true}, shopInventory(), nil, srv)
	const n = 200
	cli.Do(t, func() error {
		for i := 0; i < n; i++ {
			// A new source port per packet: one connection attempt each, so
			// the observer's retransmission filter keeps every record.
			c, err := net.Dial("udp", "198.18.1.2:7777")
			if err != nil {
				return err
			}
			_, _ = c.Write([]byte("x"))
			c.Close()
		}
		return nil
	})
	waitFor(t, 5*time.Second, "verdict records of the burst", func() bool {
		e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolUDP, 7777)
		return e.Verdicts.AuditDenied >= n*9/10 // the first packets may wait for ARP
	})
	time.Sleep(200 * time.Millisecond)
	if got := counterValue(h.metrics.DecodeErrors.WithLabelValues("verdict-log")); got != 0 {
		t.Errorf("decode_errors_total{decoder=verdict-log} = %v after normal traffic, want 0", got)
	}
}

// captureHandler records every log record with the attributes its logger
// was scoped with (WithAttrs, WithGroup) and its own, as "group.key=value".
type captureHandler struct {
	mu     *sync.Mutex
	recs   *[][]string
	scoped []string
	group  string
}

func newCaptureHandler() *captureHandler {
	return &captureHandler{mu: &sync.Mutex{}, recs: &[][]string{}}
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	kv := append([]string{"msg=" + r.Message}, h.scoped...)
	r.Attrs(func(a slog.Attr) bool {
		kv = append(kv, h.group+a.Key+"="+a.Value.String())
		return true
	})
	h.mu.Lock()
	*h.recs = append(*h.recs, kv)
	h.mu.Unlock()
	return nil
}

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.scoped = slices.Clone(h.scoped)
	for _, a := range as {
		c.scoped = append(c.scoped, h.group+a.Key+"="+a.Value.String())
	}
	return &c
}

func (h *captureHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = h.group + name + "."
	return &c
}

func (h *captureHandler) records() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.recs)
}

// TestKernelLogKeysOnce: the observer's log lines, under a logger its
// caller scoped with component=agent, carry each key once: the observer
// names itself with its own key and does not repeat the caller's.
func TestKernelLogKeysOnce(t *testing.T) {
	cli, srv := pair(t, nil, nil)
	capture := newCaptureHandler()
	o, err := New(Config{}, []model.Endpoint{{Netns: srv.Name, Path: srv.Path()}}, nil, nil, nil,
		slog.New(capture).With("component", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	<-o.Ready()
	echoServer(t, srv, "198.18.1.2:8080")
	dialEcho(t, cli, "198.18.1.2:8080", 1)
	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	recs := capture.records()
	if len(recs) == 0 {
		t.Fatal("no log records")
	}
	for _, kv := range recs {
		seen := map[string]int{}
		for _, s := range kv {
			k, _, _ := strings.Cut(s, "=")
			seen[k]++
		}
		for k, n := range seen {
			if n > 1 {
				t.Errorf("key %q %d times in %v", k, n, kv)
			}
		}
		if !slices.Contains(kv, "component=agent") || !slices.Contains(kv, "part=observer") {
			t.Errorf("record not scoped as the caller's component and the observer part: %v", kv)
		}
	}
}
