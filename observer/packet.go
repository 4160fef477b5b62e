package observer

import (
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// packetInfo is what the observer needs from one IP packet: the 5-tuple,
// the ICMP type and code, and the transport payload (for DNS).
type packetInfo struct {
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	TCPSYN, TCPACK   bool // TCP: the header's SYN and ACK flags
	HasICMP          bool
	ICMPType         uint8
	ICMPCode         uint8
	Payload          []byte // transport payload; aliases the input
}

// packetDecoder decodes IPv4 and IPv6 packets (starting at the IP header,
// as NFLOG payloads and SOCK_DGRAM packet sockets deliver them) with
// gopacket's DecodingLayerParser. It reuses its layers, so one decoder
// serves one goroutine.
type packetDecoder struct {
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	udp     layers.UDP
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	p4, p6  *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

func newPacketDecoder() *packetDecoder {
	d := &packetDecoder{}
	d.p4 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &d.ip4, &d.tcp, &d.udp, &d.icmp4)
	d.p6 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv6, &d.ip6, &d.tcp, &d.udp, &d.icmp6)
	for _, p := range []*gopacket.DecodingLayerParser{d.p4, d.p6} {
		p.IgnoreUnsupported = true // stop quietly at layers we do not need
	}
	d.decoded = make([]gopacket.LayerType, 0, 4)
	return d
}

// decode decodes the IP packet b. It fails with ErrMalformedPacket when b
// is not an IPv4 or IPv6 packet with a decodable header; a transport header
// that is missing (fragments, unknown protocols) leaves ports zero.
func (d *packetDecoder) decode(b []byte) (pi packetInfo, err error) {
	defer func() {
		if r := recover(); r != nil { // gopacket is fuzzed, but never trust it
			err = fmt.Errorf("decode packet: recovered %v: %w", r, ErrMalformedPacket)
		}
	}()
	if len(b) < 20 {
		return pi, fmt.Errorf("decode packet: %d bytes: %w", len(b), ErrMalformedPacket)
	}
	var p *gopacket.DecodingLayerParser
	switch b[0] >> 4 {
	case 4:
		p = d.p4
	case 6:
		p = d.p6
	default:
		return pi, fmt.Errorf("decode packet: IP version %d: %w", b[0]>>4, ErrMalformedPacket)
	}
	if err := p.DecodeLayers(b, &d.decoded); err != nil {
		return pi, fmt.Errorf("decode packet: %v: %w", err, ErrMalformedPacket)
	}
	ipDone := false
	for _, lt := range d.decoded {
		switch lt {
		case layers.LayerTypeIPv4:
			pi.Proto = uint8(d.ip4.Protocol)
			pi.Src, _ = netip.AddrFromSlice(d.ip4.SrcIP)
			pi.Dst, _ = netip.AddrFromSlice(d.ip4.DstIP)
			ipDone = true
		case layers.LayerTypeIPv6:
			pi.Proto = uint8(d.ip6.NextHeader)
			pi.Src, _ = netip.AddrFromSlice(d.ip6.SrcIP)
			pi.Dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
			ipDone = true
		case layers.LayerTypeTCP:
			pi.SrcPort, pi.DstPort = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
			pi.TCPSYN, pi.TCPACK = d.tcp.SYN, d.tcp.ACK
			pi.Payload = d.tcp.Payload
		case layers.LayerTypeUDP:
			pi.SrcPort, pi.DstPort = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
			pi.Payload = d.udp.Payload
		case layers.LayerTypeICMPv4:
			pi.HasICMP, pi.ICMPType, pi.ICMPCode = true, d.icmp4.TypeCode.Type(), d.icmp4.TypeCode.Code()
		case layers.LayerTypeICMPv6:
			pi.HasICMP, pi.ICMPType, pi.ICMPCode = true, d.icmp6.TypeCode.Type(), d.icmp6.TypeCode.Code()
		}
	}
	if !ipDone || !pi.Src.IsValid() || !pi.Dst.IsValid() {
		return pi, fmt.Errorf("decode packet: no IP header: %w", ErrMalformedPacket)
	}
	pi.Src, pi.Dst = pi.Src.Unmap(), pi.Dst.Unmap()
	return pi, nil
}
