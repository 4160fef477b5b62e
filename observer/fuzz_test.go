package observer

import (
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
)

// The fuzz targets feed arbitrary bytes to the decoders that read what
// other parties control (logged packets, DNS answers). They must return an
// error or a value, never panic. The committed seed corpus is under
// testdata/fuzz/<target>/; run `go test -fuzz FuzzVerdictLog ./observer`.

// FuzzVerdictLog decodes data as the payload of an nfnetlink_log packet
// message (nfgenmsg and attributes), then its prefix and packet.
func FuzzVerdictLog(f *testing.F) {
	syn := tcpPacket(f, netip.AddrPortFrom(a4, 40000), netip.AddrPortFrom(b4, 8080), true, nil)
	for _, m := range []netlink.Message{
		nflogMessage(f, "nanoseg:deny:test-rule", hookLocalIn, syn),
		nflogMessage(f, "nanoseg:audit-deny:shop/api", hookLocalOut, udpPacket(f, netip.AddrPortFrom(a6, 1), netip.AddrPortFrom(x6, 53), []byte("q"))),
		nflogMessage(f, "nanoseg:bogus", 0, []byte{0x45}),
	} {
		f.Add(m.Data)
	}
	d := newVerdictDecoder()
	f.Fuzz(func(t *testing.T, data []byte) {
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(4<<8 | nfulnlMsgPacket)}, Data: data}
		fl, err := d.decode(m, "fuzz", func(netip.Addr) bool { return false })
		if err == nil && (fl.RuleID == "" || !fl.Src.IsValid()) {
			t.Fatalf("decoded without rule id or source: %+v", fl)
		}
	})
}

// FuzzDNS decodes data as a captured IP packet carrying a DNS response.
func FuzzDNS(f *testing.F) {
	resp := dnsResponse(f, "payments.example", "cdn.example", 60, x4, x6)
	f.Add(udpPacket(f, netip.AddrPortFrom(b4, 53), netip.AddrPortFrom(a4, 4000), resp))
	f.Add(udpPacket(f, netip.AddrPortFrom(x6, 53), netip.AddrPortFrom(a6, 4000), resp))
	f.Add(tcpPacket(f, netip.AddrPortFrom(b4, 53), netip.AddrPortFrom(a4, 4000), false, append([]byte{byte(len(resp) >> 8), byte(len(resp))}, resp...)))
	f.Add(udpPacket(f, netip.AddrPortFrom(b4, 53), netip.AddrPortFrom(a4, 4000), resp[:len(resp)/2]))
	d := newDNSDecoder()
	f.Fuzz(func(t *testing.T, data []byte) {
		answers, err := d.decode(data)
		if err != nil && answers != nil {
			t.Fatalf("answers with error: %v", err)
		}
		for _, a := range answers {
			if a.Name == "" || !a.Addr.IsValid() {
				t.Fatalf("bad answer %+v", a)
			}
		}
	})
}

// FuzzConntrackEvent decodes data as the payload of a ctnetlink event.
func FuzzConntrackEvent(f *testing.F) {
	f.Add(ctEventMessage(f, false, 1, a4, b4, 1, 2).Data)
	f.Add(ctEventMessage(f, true, 2, a6, x6, 3, 443).Data)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range []uint16{1 << 8, 1<<8 | 2} {
			var ev ctEvent
			m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Create}, Data: data}
			if err := decodeCTEvent(m, &ev); err == nil && (!ev.Src.IsValid() || !ev.Dst.IsValid()) {
				t.Fatalf("decoded without addresses: %+v", ev)
			}
		}
	})
}
