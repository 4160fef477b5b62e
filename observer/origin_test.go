package observer

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/nanoseg/nanoseg/model"
)

// TestDecodeProtoInfo: the TCP state and flags, and the SCTP state, come
// out of CTA_PROTOINFO as the kernel nests them; a NEW event of a TCP
// connection picked up mid-stream, as captured on Linux 6.18.
func TestDecodeProtoInfo(t *testing.T) {
	tuple := func(typ uint16, s, d netip.Addr, proto uint8, sp, dp uint16) netfilter.Attribute {
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Nested: true, Children: []netfilter.Attribute{{Type: 1, Data: s.AsSlice()}, {Type: 2, Data: d.AsSlice()}}},
			{Type: 2, Nested: true, Children: []netfilter.Attribute{{Type: 1, Data: []byte{proto}},
				{Type: 2, Data: netfilter.Uint16Bytes(sp)}, {Type: 3, Data: netfilter.Uint16Bytes(dp)}}},
		}}
	}
	msg := func(proto uint8, info netfilter.Attribute) netlink.Message {
		m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, Family: netfilter.ProtoIPv4,
			Flags: netlink.Create | netlink.Excl}, []netfilter.Attribute{
			tuple(1, b4, a4, proto, 8080, 41000), tuple(2, a4, b4, proto, 41000, 8080),
			{Type: 12, Data: netfilter.Uint32Bytes(9)}, {Type: 3, Data: netfilter.Uint32Bytes(8)}, info})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	pickup := msg(protoTCP, netfilter.Attribute{Type: 4, Nested: true, Children: []netfilter.Attribute{{Type: 1, Nested: true, Children: []netfilter.Attribute{
		{Type: 1, Data: []byte{3}}, {Type: 2, Data: []byte{0}}, {Type: 3, Data: []byte{0}},
		{Type: 4, Data: []byte{0x0a, 0x00}}, {Type: 5, Data: []byte{0x0a, 0x00}}}}}})
	var ev ctEvent
	if err := decodeCTEvent(pickup, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != ctNew || ev.Status != 8 || ev.TCPState != 3 || !ev.HasTCPFlags || ev.TCPFlagsOrig != 0x0a || ev.TCPFlagsReply != 0x0a {
		t.Errorf("pickup decoded %+v", ev)
	}
	sctp := msg(protoSCTP, netfilter.Attribute{Type: 4, Nested: true, Children: []netfilter.Attribute{{Type: 3, Nested: true, Children: []netfilter.Attribute{
		{Type: 1, Data: []byte{sctpHeartbeatSent}}}}}})
	if err := decodeCTEvent(sctp, &ev); err != nil {
		t.Fatal(err)
	}
	if !ev.HasSCTPState || ev.SCTPState != sctpHeartbeatSent || ev.HasTCPFlags {
		t.Errorf("sctp decoded %+v", ev)
	}
	bad := msg(protoTCP, netfilter.Attribute{Type: 4, Data: []byte{0xff, 0xff, 1, 0, 7}})
	if err := decodeCTEvent(bad, &ev); err != nil || ev.HasTCPFlags {
		t.Errorf("malformed protoinfo: %v, %+v", err, ev)
	}
}

// fakeSockets serves the classifier's socket lookups from a list and
// counts them.
type fakeSockets struct {
	socks []sockInfo
	calls int
	err   error
}

func (f *fakeSockets) lookup(proto uint8, port uint16) ([]sockInfo, error) {
	f.calls++
	var out []sockInfo
	for _, s := range f.socks {
		if s.Local.Port() == port {
			out = append(out, s)
		}
	}
	return out, f.err
}

func TestOrigin(t *testing.T) {
	ap := func(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }
	any4 := netip.IPv4Unspecified()
	any6 := netip.IPv6Unspecified()
	none := netip.AddrPort{}
	liberal := func(ev ctEvent) ctEvent {
		ev.HasTCPFlags, ev.TCPFlagsOrig, ev.TCPFlagsReply, ev.TCPState = true, 0x0a, 0x0a, 3
		return ev
	}
	syn := func(ev ctEvent) ctEvent {
		ev.HasTCPFlags, ev.TCPFlagsOrig, ev.TCPState = true, 0x03, 1
		return ev
	}
	ct := func(typ ctEventType, proto uint8, src netip.Addr, sp uint16, dst netip.Addr, dp uint16) ctEvent {
		return ctEvent{Type: typ, Proto: proto, Src: src, SrcPort: sp, Dst: dst, DstPort: dp}
	}
	// The endpoint holds b4 (a server on 8080/TCP and 53/UDP) in the
	// server cases, a4 (a client) in the client cases.
	for _, tc := range []struct {
		name      string
		local     netip.Addr
		ev        ctEvent
		socks     []sockInfo
		sockErr   error
		want      origin
		wantCalls int // socket lookups; -1: any
	}{
		{"tcp opened by SYN", b4, syn(ct(ctNew, protoTCP, a4, 41000, b4, 8080)), nil, nil, originOpener, 0},
		{"tcp pickup at server, reply first", b4, liberal(ct(ctNew, protoTCP, b4, 8080, a4, 41000)),
			[]sockInfo{{tcpListen, ap(any4, 8080), none}, {tcpEstablished, ap(b4, 8080), ap(a4, 41000)}}, nil, originReply, -1},
		{"tcp pickup at server, request first", b4, liberal(ct(ctNew, protoTCP, a4, 41000, b4, 8080)),
			[]sockInfo{{tcpListen, ap(any6, 8080), none}}, nil, originOpener, -1},
		{"tcp pickup at client, reply first", a4, liberal(ct(ctNew, protoTCP, b4, 8080, a4, 41000)),
			[]sockInfo{{tcpEstablished, ap(a4, 41000), ap(b4, 8080)}}, nil, originReply, -1},
		{"tcp pickup at client, request first", a4, liberal(ct(ctNew, protoTCP, a4, 41000, b4, 8080)),
			[]sockInfo{{tcpEstablished, ap(a4, 41000), ap(b4, 8080)}}, nil, originOpener, -1},
		{"tcp pickup, accepted socket on a fixed port without its listener", b4, liberal(ct(ctNew, protoTCP, b4, 8080, a4, 41000)),
			[]sockInfo{{tcpEstablished, ap(b4, 8080), ap(a4, 41000)}}, nil, originUnknown, -1},
		{"tcp pickup, no sockets", a4, liberal(ct(ctNew, protoTCP, b4, 8080, a4, 41000)), nil, nil, originUnknown, -1},
		{"tcp pickup, lookup fails", a4, liberal(ct(ctNew, protoTCP, b4, 8080, a4, 41000)), nil, errors.New("boom"), originUnknown, -1},
		{"tcp destroy without flags, no sockets", a4, ct(ctDestroy, protoTCP, a4, 41000, b4, 8080), nil, nil, originOpener, -1},
		{"udp request shape", a4, ct(ctNew, protoUDP, a4, 41000, b4, 53), nil, nil, originOpener, 0},
		{"udp reply shape at server", b4, ct(ctNew, protoUDP, b4, 53, a4, 41000),
			[]sockInfo{{tcpClose, ap(any4, 53), ap(any4, 0)}}, nil, originReply, -1},
		{"udp reply shape at connected client", a4, ct(ctNew, protoUDP, b4, 53, a4, 41000),
			[]sockInfo{{tcpEstablished, ap(a4, 41000), ap(b4, 53)}}, nil, originReply, -1},
		{"udp reply shape at unconnected client", a4, ct(ctNew, protoUDP, b4, 53, a4, 41000),
			[]sockInfo{{tcpClose, ap(any4, 41000), ap(any4, 0)}}, nil, originUnknown, -1},
		{"udp reply shape, socket gone", a4, ct(ctNew, protoUDP, b4, 53, a4, 41000), nil, nil, originUnknown, -1},
		{"udp both fixed, peers listening", b4, ct(ctNew, protoUDP, b4, 8301, a4, 8301),
			[]sockInfo{{tcpClose, ap(any4, 8301), ap(any4, 0)}}, nil, originOpener, -1},
		{"udp both ephemeral, connected client got the reply first", a4, ct(ctNew, protoUDP, b4, 40000, a4, 41000),
			[]sockInfo{{tcpEstablished, ap(a4, 41000), ap(b4, 40000)}}, nil, originReply, -1},
		{"icmp", a4, ctEvent{Type: ctNew, Proto: protoICMP, Src: a4, Dst: b4, ICMP: true, ICMPType: 8}, nil, nil, originOpener, 0},
		{"sctp INIT", b4, ctEvent{Type: ctNew, Proto: protoSCTP, Src: a4, SrcPort: 5000, Dst: b4, DstPort: 38412, HasSCTPState: true, SCTPState: sctpCookieWait}, nil, nil, originOpener, 0},
		{"sctp HEARTBEAT", b4, ctEvent{Type: ctNew, Proto: protoSCTP, Src: b4, SrcPort: 38412, Dst: a4, DstPort: 5000, HasSCTPState: true, SCTPState: sctpHeartbeatSent}, nil, nil, originUnknown, 0},
		{"sctp established in a dump", b4, ctEvent{Type: ctUpdate, Proto: protoSCTP, Src: a4, SrcPort: 5000, Dst: b4, DstPort: 38412, HasSCTPState: true, SCTPState: 4}, nil, nil, originOpener, 0},
	} {
		fs := &fakeSockets{socks: tc.socks, err: tc.sockErr}
		local := tc.local
		c := classifier{isLocal: func(a netip.Addr) bool { return a == local }, eph: defaultEphemeral, sockets: fs.lookup}
		ev := tc.ev
		if got := c.origin(&ev); got != tc.want {
			t.Errorf("%s: origin %s, want %s", tc.name, got, tc.want)
		}
		if tc.wantCalls >= 0 && fs.calls != tc.wantCalls {
			t.Errorf("%s: %d socket lookups, want %d", tc.name, fs.calls, tc.wantCalls)
		}
	}
}

func TestOrient(t *testing.T) {
	isLocal := func(a netip.Addr) bool { return a == a4 }
	f := model.Flow{Direction: model.Ingress, Protocol: model.ProtocolTCP, Src: b4, SrcPort: 8080, Dst: a4, DstPort: 41000,
		PacketsOut: 1, BytesOut: 10, PacketsIn: 2, BytesIn: 20}
	g := f
	orient(&g, originReply, isLocal)
	if g.Src != a4 || g.SrcPort != 41000 || g.Dst != b4 || g.DstPort != 8080 || g.Direction != model.Egress ||
		g.PacketsOut != 2 || g.BytesOut != 20 || g.PacketsIn != 1 || g.BytesIn != 10 || g.DirectionUnknown {
		t.Errorf("turned around: %+v", g)
	}
	g = f
	orient(&g, originUnknown, isLocal)
	if g.Src != b4 || !g.DirectionUnknown {
		t.Errorf("unknown: %+v", g)
	}
	g = f
	orient(&g, originOpener, isLocal)
	if g != f {
		t.Errorf("opener changed the record: %+v", g)
	}
}
