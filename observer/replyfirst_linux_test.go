//go:build linux

package observer

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// Addresses of the reply-first test (198.18.53.0/24: no other test uses it).
var (
	promAddr = netip.MustParseAddr("198.18.53.1")
	dnsAddr  = netip.MustParseAddr("198.18.53.2")
)

// loggedNew is the observe mode's default rule of the dataplane, `ct state
// new log group 18 prefix PREFIX`, in the input or output chain.
func loggedNew(output bool, prefix string) nftRule {
	return nftRule{output: output, exprs: append(ctStateNew(),
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: verdictlog.Group, Data: []byte(prefix)})}
}

// TestKernelDNSReplyFirst reproduces the lab's edge kube-system/dns ->
// monitoring/prometheus UDP/<ephemeral>: DNS queries leave the client
// before the namespaces track connections (the agent installs its table
// between a query and its answer), so each answer is the first packet
// conntrack sees; its entry's original tuple and its verdict-log record
// (the observe mode logs every packet of state new) run from dns:53 to the
// client's ephemeral port. One client socket is still open when the answer
// comes, the other timed out and is gone (nothing tells the opener there).
// No record of a known direction may run from port 53 and no edge may leave
// the DNS server: the answers are learned as the client's queries or not
// at all.
func TestKernelDNSReplyFirst(t *testing.T) {
	nettest.RequireRoot(t)
	cli, srv := nettest.New(t), nettest.New(t)
	nettest.Connect(t, cli, srv, []netip.Prefix{pfx("198.18.53.1/24")}, []netip.Prefix{pfx("198.18.53.2/24")})
	var server net.PacketConn
	srv.Do(t, func() (err error) { server, err = net.ListenPacket("udp", ":53"); return err })
	t.Cleanup(func() { server.Close() })
	var open, gone net.Conn
	cli.Do(t, func() (err error) {
		if open, err = net.Dial("udp", "198.18.53.2:53"); err != nil {
			return err
		}
		gone, err = net.Dial("udp", "198.18.53.2:53")
		return err
	})
	t.Cleanup(func() { open.Close() })
	buf := make([]byte, 64)
	_ = server.SetDeadline(time.Now().Add(5 * time.Second))
	var from [2]net.Addr
	for i, c := range []net.Conn{open, gone} {
		if _, err := c.Write([]byte("query")); err != nil {
			t.Fatal(err)
		}
		var err error
		if _, from[i], err = server.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	gone.Close() // the resolver gave up
	inv := InventoryFunc(func(a netip.Addr) (model.Identity, bool) {
		switch a {
		case promAddr:
			return model.Identity{Namespace: "monitoring", Workload: "prometheus"}, true
		case dnsAddr:
			return model.Identity{Namespace: "kube-system", Workload: "dns"}, true
		}
		return model.Identity{}, false
	})
	h := startObserver(t, Config{DisableDNS: true}, inv, nil, cli, srv)
	for _, ns := range []*nettest.Netns{cli, srv} {
		ctTable(t, ns, loggedNew(false, "nanoseg:observe:"+ns.Name), loggedNew(true, "nanoseg:observe:"+ns.Name))
	}
	for _, a := range from {
		if _, err := server.WriteTo([]byte("answer"), a); err != nil {
			t.Fatal(err)
		}
	}
	_ = open.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := open.Read(buf); err != nil {
		t.Fatal(err)
	}
	// Both answers leave the server and reach the client: four conntrack
	// entries and four logged packets.
	waitFor(t, 5*time.Second, "the answers' conntrack and verdict-log records", func() bool {
		n := map[model.FlowSource]int{}
		for _, f := range h.snapshot() {
			if f.Phase == model.PhaseStart || f.Phase == model.PhaseComplete {
				n[f.Source]++
			}
		}
		return n[model.SourceConntrack] >= 4 && n[model.SourceVerdictLog] >= 4
	})
	time.Sleep(200 * time.Millisecond)
	// Per source, the answer at the server and the one to the open socket
	// at the client are turned around; the one to the closed socket at the
	// client is marked unknown.
	unknown := map[model.FlowSource]int{}
	for _, f := range h.snapshot() {
		if f.DirectionUnknown {
			if f.Endpoint != cli.Name {
				t.Errorf("%s record at the server marked unknown (its listener tells): %v", f.Source, &f)
			}
			unknown[f.Source]++
			continue
		}
		if f.Src != promAddr || f.Dst != dnsAddr || f.DstPort != 53 {
			t.Errorf("%s record runs from the answer: %v", f.Source, &f)
		}
	}
	for _, src := range []model.FlowSource{model.SourceConntrack, model.SourceVerdictLog} {
		if unknown[src] != 1 {
			t.Errorf("%d %s records marked unknown, want 1 (the answer to the closed socket, at the client)", unknown[src], src)
		}
		// The metrics count what the records say, per source: three
		// answers turned around (two at the server, one at the client),
		// one unknown.
		if got := counterValue(h.metrics.DirectionUnknown.WithLabelValues("UDP", string(src))); got != 1 {
			t.Errorf("direction_unknown_total{protocol=UDP,source=%s} = %v, want 1", src, got)
		}
		if got := counterValue(h.metrics.DirectionCorrected.WithLabelValues("UDP", string(src))); got != 3 {
			t.Errorf("direction_corrected_total{protocol=UDP,source=%s} = %v, want 3", src, got)
		}
	}
	if e, ok := h.edge("monitoring/prometheus", "kube-system/dns", model.ProtocolUDP, 53); !ok || e.Flows != 1 {
		t.Errorf("edge monitoring/prometheus -> kube-system/dns UDP/53: %+v (found %v), want 1 flow (the open socket's query)", e, ok)
	}
	for _, e := range h.agg.Edges() {
		if e.Source.String() == "kube-system/dns" {
			t.Errorf("wrong edge %s -> %s %s/%d (an answer learned as a connection)", e.Source, e.Destination, e.Protocol, e.Port)
		}
	}
}
