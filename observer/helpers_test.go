package observer

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/ti-mo/netfilter"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
)

// Test packet builders (gopacket serialization).

func ipPacket(t testing.TB, src, dst netip.Addr, l4 gopacket.SerializableLayer, nw gopacket.NetworkLayer, payload []byte) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	ls := []gopacket.SerializableLayer{nw.(gopacket.SerializableLayer), l4}
	if payload != nil {
		ls = append(ls, gopacket.Payload(payload))
	}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

func netLayer(src, dst netip.Addr, proto layers.IPProtocol) gopacket.NetworkLayer {
	if src.Is4() {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	}
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
}

func udpPacket(t testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	nw := netLayer(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	_ = u.SetNetworkLayerForChecksum(nw)
	return ipPacket(t, src.Addr(), dst.Addr(), u, nw, payload)
}

func tcpPacket(t testing.TB, src, dst netip.AddrPort, syn bool, payload []byte) []byte {
	nw := netLayer(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
	tc := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), SYN: syn, ACK: !syn, Window: 1000, Seq: 1}
	_ = tc.SetNetworkLayerForChecksum(nw)
	return ipPacket(t, src.Addr(), dst.Addr(), tc, nw, payload)
}

// dnsResponse builds a DNS response to name with one A/AAAA answer per
// address (behind a CNAME when cname is set).
func dnsResponse(t testing.TB, name, cname string, ttl uint32, addrs ...netip.Addr) []byte {
	t.Helper()
	d := &layers.DNS{ID: 7, QR: true, RD: true, RA: true,
		Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
	owner := name
	if cname != "" {
		d.Answers = append(d.Answers, layers.DNSResourceRecord{Name: []byte(name), Type: layers.DNSTypeCNAME, Class: layers.DNSClassIN, TTL: ttl, CNAME: []byte(cname)})
		owner = cname
	}
	for _, a := range addrs {
		typ := layers.DNSTypeA
		if a.Is6() {
			typ = layers.DNSTypeAAAA
		}
		d.Answers = append(d.Answers, layers.DNSResourceRecord{Name: []byte(owner), Type: typ, Class: layers.DNSClassIN, TTL: ttl, IP: net.IP(a.AsSlice())})
	}
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatalf("serialize DNS: %v", err)
	}
	return buf.Bytes()
}

// nflogMessage builds an nfnetlink_log packet message as the kernel sends it.
func nflogMessage(t testing.TB, prefix string, hook uint8, payload []byte) netlink.Message {
	t.Helper()
	hdr := []byte{0x08, 0x00, hook, 0}
	ts := make([]byte, 16)
	binary.BigEndian.PutUint64(ts, 1764481700)
	binary.BigEndian.PutUint64(ts[8:], 250000)
	attrs := []netfilter.Attribute{
		{Type: nfulaPacketHdr, Data: hdr},
		{Type: nfulaTimestamp, Data: ts},
		{Type: nfulaPrefix, Data: append([]byte(prefix), 0)},
		{Type: nfulaPayload, Data: payload},
	}
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysULOG, MessageType: nfulnlMsgPacket, Family: netfilter.ProtoIPv4, ResourceID: verdictlog.Group}, attrs)
	if err != nil {
		t.Fatalf("marshal nflog: %v", err)
	}
	return m
}

var (
	a4 = netip.MustParseAddr("198.18.0.10")
	b4 = netip.MustParseAddr("198.18.0.20")
	x4 = netip.MustParseAddr("198.19.0.10")
	a6 = netip.MustParseAddr("2001:db8:18::10")
	x6 = netip.MustParseAddr("2001:db8:19::10")
)

// counterValue reads a counter's current value.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
