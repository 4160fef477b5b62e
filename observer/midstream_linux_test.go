//go:build linux

package observer

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
)

// midStream is traffic that began before its namespaces tracked
// connections: a TCP connection frontend -> api:8080 and a UDP request
// frontend -> api:5353 from a connected socket whose reply is still to come.
// A UDP request to api:5354 whose client socket is already closed when the
// reply comes leaves the client's side nothing to tell the direction by.
type midStream struct {
	tcpCli, tcpSrv    net.Conn
	udpCli            net.Conn
	udpSrv, udpGone   net.PacketConn
	udpFrom, goneFrom net.Addr
	goneClientPort    uint16
}

// openMidStream opens the connections in cli and srv (no conntrack rules
// there yet) and exchanges a first round of data.
func openMidStream(t *testing.T, cli, srv *nettest.Netns) *midStream {
	t.Helper()
	m := &midStream{}
	var ln net.Listener
	srv.Do(t, func() error {
		var err error
		if ln, err = net.Listen("tcp", "198.18.1.2:8080"); err != nil {
			return err
		}
		if m.udpSrv, err = net.ListenPacket("udp", "198.18.1.2:5353"); err != nil {
			return err
		}
		m.udpGone, err = net.ListenPacket("udp", "198.18.1.2:5354")
		return err
	})
	t.Cleanup(func() { ln.Close(); m.udpSrv.Close(); m.udpGone.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	buf := make([]byte, 64)
	cli.Do(t, func() error {
		var err error
		if m.tcpCli, err = net.DialTimeout("tcp", "198.18.1.2:8080", 2*time.Second); err != nil {
			return err
		}
		if m.udpCli, err = net.Dial("udp", "198.18.1.2:5353"); err != nil {
			return err
		}
		gone, err := net.Dial("udp", "198.18.1.2:5354")
		if err != nil {
			return err
		}
		m.goneClientPort = uint16(gone.LocalAddr().(*net.UDPAddr).Port)
		if _, err := gone.Write([]byte("q")); err != nil {
			return err
		}
		return gone.Close()
	})
	m.tcpSrv = <-accepted
	if m.tcpSrv == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { m.tcpCli.Close(); m.tcpSrv.Close(); m.udpCli.Close() })
	for _, c := range []net.Conn{m.tcpCli, m.tcpSrv} {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	}
	if _, err := m.tcpCli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.tcpSrv.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := m.udpCli.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	_ = m.udpSrv.SetDeadline(time.Now().Add(5 * time.Second))
	_ = m.udpGone.SetDeadline(time.Now().Add(5 * time.Second))
	var err error
	if _, m.udpFrom, err = m.udpSrv.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	if _, m.goneFrom, err = m.udpGone.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	return m
}

// serverFirst sends the next packets from the server side, as a server
// answering or pushing would, then lets the clients answer.
func (m *midStream) serverFirst(t *testing.T) {
	t.Helper()
	buf := make([]byte, 64)
	if _, err := m.tcpSrv.Write([]byte("from server")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.tcpCli.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := m.udpSrv.WriteTo([]byte("answer"), m.udpFrom); err != nil {
		t.Fatal(err)
	}
	if _, err := m.udpGone.WriteTo([]byte("late"), m.goneFrom); err != nil {
		t.Fatal(err)
	}
	_ = m.udpCli.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := m.udpCli.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := m.tcpCli.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.tcpSrv.Read(buf); err != nil {
		t.Fatal(err)
	}
}

// checkMidStream checks the records and edges of the mid-stream traffic:
// every record of a known direction has the client as Src and the service
// port as DstPort; the UDP exchange whose client socket was gone is marked
// unknown at the client; no edge runs from api back to frontend.
func checkMidStream(t *testing.T, h *harness, cli, srv *nettest.Netns, m *midStream) {
	t.Helper()
	// Wait for what a correct observer reports, then check everything
	// (a wrong one reports something else: the checks below say what).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		e1, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 8080)
		e2, _ := h.edge("shop/frontend", "shop/api", model.ProtocolUDP, 5353)
		unknown := false
		for _, f := range h.snapshot() {
			unknown = unknown || f.Endpoint == cli.Name && f.DirectionUnknown
		}
		if e1.Flows == 1 && e2.Flows == 1 && unknown {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	seen := map[string]int{}
	for _, f := range h.snapshot() {
		if f.Source != model.SourceConntrack || !f.Counts() {
			continue
		}
		ports := map[uint16]bool{f.SrcPort: true, f.DstPort: true}
		if !ports[8080] && !ports[5353] && !ports[5354] {
			continue
		}
		if f.DirectionUnknown {
			if f.Endpoint != cli.Name || f.Protocol != model.ProtocolUDP || !ports[5354] || !ports[m.goneClientPort] {
				t.Errorf("direction unknown, want it known: %v", &f)
			}
			seen["unknown"]++
			continue
		}
		if f.Src != cli4 || f.Dst != srv4 || (f.DstPort != 8080 && f.DstPort != 5353 && f.DstPort != 5354) {
			t.Errorf("record backwards: %v", &f)
		}
		wantDir := model.Egress
		if f.Endpoint == srv.Name {
			wantDir = model.Ingress
		}
		if f.Direction != wantDir {
			t.Errorf("record direction %s, want %s: %v", f.Direction, wantDir, &f)
		}
		seen[f.Endpoint+" "+string(f.Protocol)]++
	}
	for _, k := range []string{cli.Name + " TCP", srv.Name + " TCP", cli.Name + " UDP", srv.Name + " UDP", "unknown"} {
		want := 1
		if k == srv.Name+" UDP" {
			want = 2 // 5353 and 5354: the server knows both
		}
		if seen[k] != want {
			t.Errorf("%d counted records %q, want %d (seen %v)", seen[k], k, want, seen)
		}
	}
	for _, want := range []struct {
		proto model.Protocol
		port  uint16
	}{{model.ProtocolTCP, 8080}, {model.ProtocolUDP, 5353}} {
		if e, _ := h.edge("shop/frontend", "shop/api", want.proto, want.port); e.Flows != 1 {
			t.Errorf("edge shop/frontend -> shop/api %s/%d has %d flows, want 1", want.proto, want.port, e.Flows)
		}
	}
	for _, e := range h.agg.Edges() {
		if e.Source.String() == "shop/api" {
			t.Errorf("reversed edge %s -> %s %s/%d", e.Source, e.Destination, e.Protocol, e.Port)
		}
	}
	if got := counterValue(h.metrics.DirectionUnknown.WithLabelValues("UDP", "conntrack")); got != 1 {
		t.Errorf("direction_unknown_total{protocol=UDP,source=conntrack} = %v, want 1", got)
	}
	if got := counterValue(h.metrics.DirectionCorrected.WithLabelValues("TCP", "conntrack")) + counterValue(h.metrics.DirectionCorrected.WithLabelValues("UDP", "conntrack")); got < 3 {
		t.Errorf("direction_corrected_total = %v, want >= 3 (TCP at both ends, UDP at the server)", got)
	}
}

// TestKernelMidStreamEvents: the namespaces begin tracking connections
// (a ct-using table is installed) while the observer is attached, and the
// server sends first: conntrack's original tuple of the new entries is the
// reply direction. The records and edges still run from the client to the
// service port, or are marked unknown and kept out.
func TestKernelMidStreamEvents(t *testing.T) {
	nettest.RequireRoot(t)
	cli, srv := nettest.New(t), nettest.New(t)
	nettest.Connect(t, cli, srv, []netip.Prefix{pfx("198.18.1.1/24")}, []netip.Prefix{pfx("198.18.1.2/24")})
	m := openMidStream(t, cli, srv)
	h := startObserver(t, Config{DisableVerdictLog: true, DisableDNS: true}, shopInventory(), nil, cli, srv)
	ctTable(t, cli)
	ctTable(t, srv)
	m.serverFirst(t)
	checkMidStream(t, h, cli, srv, m)
}

// TestKernelMidStreamDump: the same entries exist before the observer
// starts (an agent restarted after its table was installed); the
// observer reads them from a conntrack dump at attach, with the same
// result.
func TestKernelMidStreamDump(t *testing.T) {
	nettest.RequireRoot(t)
	cli, srv := nettest.New(t), nettest.New(t)
	nettest.Connect(t, cli, srv, []netip.Prefix{pfx("198.18.1.1/24")}, []netip.Prefix{pfx("198.18.1.2/24")})
	m := openMidStream(t, cli, srv)
	ctTable(t, cli)
	ctTable(t, srv)
	m.serverFirst(t)
	h := startObserver(t, Config{DisableVerdictLog: true, DisableDNS: true}, shopInventory(), nil, cli, srv)
	checkMidStream(t, h, cli, srv, m)
}
