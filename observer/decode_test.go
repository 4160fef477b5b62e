package observer

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/net/bpf"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

func TestDecodeVerdictLog(t *testing.T) {
	d := newVerdictDecoder()
	syn := tcpPacket(t, netip.AddrPortFrom(a4, 40000), netip.AddrPortFrom(b4, 8080), true, nil)
	f, err := d.decode(nflogMessage(t, "nanoseg:deny:test-rule", hookLocalOut, syn), "ep", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Verdict != model.VerdictDeny || f.RuleID != "test-rule" || f.Direction != model.Egress || f.Protocol != model.ProtocolTCP ||
		f.Src != a4 || f.Dst != b4 || f.SrcPort != 40000 || f.DstPort != 8080 || f.Phase != model.PhaseComplete || f.Source != model.SourceVerdictLog {
		t.Errorf("decoded %+v", f)
	}
	if f.Start.Unix() != 1764481700 {
		t.Errorf("start %v", f.Start)
	}
	f, err = d.decode(nflogMessage(t, "nanoseg:audit-deny:r2", hookLocalIn, udpPacket(t, netip.AddrPortFrom(x6, 5000), netip.AddrPortFrom(a6, 53), []byte("x"))), "ep", nil)
	if err != nil || f.Direction != model.Ingress || f.Protocol != model.ProtocolUDP || f.Verdict != model.VerdictAuditDeny {
		t.Errorf("decoded %+v, %v", f, err)
	}
	if _, err := d.decode(nflogMessage(t, "someone-else", hookLocalIn, syn), "ep", nil); !errors.Is(err, verdictlog.ErrNotNanoseg) {
		t.Errorf("foreign prefix: %v", err)
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0, 0, 18, 8, 0}, syn} {
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(4 << 8)}, Data: bad}
		if _, err := d.decode(m, "ep", nil); !errors.Is(err, ErrMalformedPacket) {
			t.Errorf("decode(%x): %v, want ErrMalformedPacket", bad, err)
		}
	}
}

func TestDecodeDNS(t *testing.T) {
	d := newDNSDecoder()
	resp := dnsResponse(t, "Payments.Example.", "edge.cdn.example", 300, x4, x6)
	for _, pkt := range [][]byte{
		udpPacket(t, netip.AddrPortFrom(b4, 53), netip.AddrPortFrom(a4, 33333), resp),
		tcpPacket(t, netip.AddrPortFrom(b4, 53), netip.AddrPortFrom(a4, 33333), false, append([]byte{byte(len(resp) >> 8), byte(len(resp))}, resp...)),
	} {
		got, err := d.decode(pkt)
		if err != nil {
			t.Fatal(err)
		}
		want := []DNSAnswer{{"payments.example", x4, 300 * time.Second}, {"payments.example", x6, 300 * time.Second}}
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("answers %v, want %v", got, want)
		}
	}
	// A query (to port 53) gives nothing.
	if got, err := d.decode(udpPacket(t, netip.AddrPortFrom(a4, 33333), netip.AddrPortFrom(b4, 53), resp)); err != nil || got != nil {
		t.Errorf("query: %v %v", got, err)
	}
	if _, err := d.decode(udpPacket(t, netip.AddrPortFrom(b4, 53), netip.AddrPortFrom(a4, 3), []byte{1, 2, 3})); !errors.Is(err, ErrMalformedDNS) {
		t.Errorf("garbage: %v", err)
	}
	if _, err := d.decode([]byte{0x45, 0}); !errors.Is(err, ErrMalformedPacket) {
		t.Errorf("short: %v", err)
	}
}

func TestNamesTTL(t *testing.T) {
	n := NewNames(2)
	now := time.Unix(1000, 0)
	n.Put(DNSAnswer{"a.example", x4, 300 * time.Second}, now)
	if name, ok := n.Lookup(x4, now.Add(299*time.Second)); !ok || name != "a.example" {
		t.Errorf("lookup = %q %v", name, ok)
	}
	if _, ok := n.Lookup(x4, now.Add(301*time.Second)); ok {
		t.Error("expired answer still named")
	}
	n.Put(DNSAnswer{"b.example", x6, 0}, now)
	if _, ok := n.Lookup(x6, now.Add(MinNameTTL-time.Second)); !ok {
		t.Error("zero TTL answer forgotten before MinNameTTL")
	}
	n.Put(DNSAnswer{"c.example", a4, 10}, now)
	if n.Len() > 2 {
		t.Errorf("len %d > max 2", n.Len())
	}
}

func TestDNSFilter(t *testing.T) {
	vm, err := bpf.NewVM(dnsFilter)
	if err != nil {
		t.Fatal(err)
	}
	resp := dnsResponse(t, "x.example", "", 1, x4)
	for _, tc := range []struct {
		name string
		pkt  []byte
		keep bool
	}{
		{"udp4 from 53", udpPacket(t, netip.AddrPortFrom(b4, 53), netip.AddrPortFrom(a4, 4000), resp), true},
		{"tcp4 from 53", tcpPacket(t, netip.AddrPortFrom(b4, 53), netip.AddrPortFrom(a4, 4000), false, resp), true},
		{"udp6 from 53", udpPacket(t, netip.AddrPortFrom(x6, 53), netip.AddrPortFrom(a6, 4000), resp), true},
		{"tcp6 from 53", tcpPacket(t, netip.AddrPortFrom(x6, 53), netip.AddrPortFrom(a6, 4000), false, resp), true},
		{"udp4 to 53", udpPacket(t, netip.AddrPortFrom(a4, 4000), netip.AddrPortFrom(b4, 53), resp), false},
		{"udp6 to 53", udpPacket(t, netip.AddrPortFrom(a6, 4000), netip.AddrPortFrom(x6, 53), resp), false},
		{"tcp4 other", tcpPacket(t, netip.AddrPortFrom(b4, 80), netip.AddrPortFrom(a4, 53), true, nil), false},
	} {
		n, err := vm.Run(tc.pkt)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if (n > 0) != tc.keep {
			t.Errorf("%s: filter returned %d, keep=%v", tc.name, n, tc.keep)
		}
	}
}
