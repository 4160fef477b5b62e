package observer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"

	"github.com/nanoseg/nanoseg/model"
)

// ctEvent is the part of a conntrack event, or of an entry of a table
// dump, that the observer uses, decoded without allocating
// (decodeCTEvent) from the ctnetlink message.
type ctEvent struct {
	Type             ctEventType
	ID               uint32
	Proto            uint8
	Src, Dst         netip.Addr // original tuple
	SrcPort, DstPort uint16
	ICMP             bool
	ICMPType         uint8
	ICMPCode         uint8
	ICMPID           uint16
	PacketsOrig      uint64
	BytesOrig        uint64
	PacketsReply     uint64
	BytesReply       uint64
	Start, Stop      time.Time
	Status           uint32 // CTA_STATUS (IPS_* bits)
	// TCP: CTA_PROTOINFO_TCP state and the flags of each direction
	// (IP_CT_TCP_FLAG_*); NEW events and dumps carry the flags, DESTROY
	// events the state only.
	TCPState      uint8
	HasTCPFlags   bool
	TCPFlagsOrig  uint8
	TCPFlagsReply uint8
	// SCTP: CTA_PROTOINFO_SCTP_STATE.
	HasSCTPState bool
	SCTPState    uint8
}

type ctEventType uint8

const (
	ctOther ctEventType = iota
	ctNew
	ctUpdate
	ctDestroy
)

// ctnetlink attribute types, from include/uapi/linux/netfilter/nfnetlink_conntrack.h.
const (
	ctaTupleOrig     = 1
	ctaStatus        = 3
	ctaProtoInfo     = 4
	ctaCountersOrig  = 9
	ctaCountersReply = 10
	ctaID            = 12
	ctaTimestamp     = 20

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3
	ctaProtoICMPID  = 4
	ctaProtoICMPTyp = 5
	ctaProtoICMPCod = 6
	ctaProtoICMP6ID = 7
	ctaProtoICMP6Ty = 8
	ctaProtoICMP6Co = 9

	ctaCountersPackets = 1
	ctaCountersBytes   = 2

	ctaTimestampStart = 1
	ctaTimestampStop  = 2

	ctaProtoInfoTCP           = 1
	ctaProtoInfoSCTP          = 3
	ctaProtoInfoTCPState      = 1
	ctaProtoInfoTCPFlagsOrig  = 4 // struct nf_ct_tcp_flags {u8 flags; u8 mask}
	ctaProtoInfoTCPFlagsReply = 5
	ctaProtoInfoSCTPState     = 1

	afInet     = 2      // AF_INET (Linux)
	afInet6    = 10     // AF_INET6 (Linux)
	nlaFNested = 0x8000 // NLA_F_NESTED

	nfnlSubsysCTNetlink = 1
	ipctnlMsgCtNew      = 0
	ipctnlMsgCtGet      = 1
	ipctnlMsgCtDelete   = 2
)

// nlAttrs walks the netlink attributes in b: each call of next returns the
// type (flags masked) and payload of one attribute; ok is false at the end
// or on a malformed attribute (err set).
type nlAttrs struct {
	b   []byte
	err bool
}

func (a *nlAttrs) next() (typ uint16, data []byte, ok bool) {
	if len(a.b) < 4 {
		if len(a.b) != 0 {
			a.err = true
		}
		return 0, nil, false
	}
	l := int(binary.NativeEndian.Uint16(a.b))
	typ = binary.NativeEndian.Uint16(a.b[2:]) & 0x3fff // drop NLA_F_NESTED, NLA_F_NET_BYTEORDER
	if l < 4 || l > len(a.b) {
		a.err = true
		return 0, nil, false
	}
	data = a.b[4:l]
	adv := (l + 3) &^ 3
	if adv > len(a.b) {
		adv = len(a.b)
	}
	a.b = a.b[adv:]
	return typ, data, true
}

// decodeCTEvent decodes one ctnetlink event message, or one entry of a
// table dump (Type ctUpdate: IPCTNL_MSG_CT_NEW without NLM_F_CREATE). It
// fails with ErrMalformedPacket on a truncated or inconsistent message and
// never panics; messages of other subsystems give Type ctOther. A
// malformed CTA_PROTOINFO is ignored (the fields stay unset).
func decodeCTEvent(m netlink.Message, ev *ctEvent) error {
	*ev = ctEvent{}
	t := uint16(m.Header.Type)
	if t>>8 != nfnlSubsysCTNetlink {
		return nil
	}
	switch t & 0xff {
	case ipctnlMsgCtNew:
		ev.Type = ctUpdate
		if m.Header.Flags&(netlink.Create|netlink.Excl) != 0 {
			ev.Type = ctNew
		}
	case ipctnlMsgCtDelete:
		ev.Type = ctDestroy
	default:
		return nil
	}
	if len(m.Data) < 4 {
		return fmt.Errorf("decode conntrack event: %d bytes: %w", len(m.Data), ErrMalformedPacket)
	}
	top := nlAttrs{b: m.Data[4:]}
	haveTuple := false
	for typ, data, ok := top.next(); ok; typ, data, ok = top.next() {
		switch typ {
		case ctaTupleOrig:
			if err := ev.decodeTuple(data); err != nil {
				return err
			}
			haveTuple = true
		case ctaID:
			if len(data) >= 4 {
				ev.ID = binary.BigEndian.Uint32(data)
			}
		case ctaStatus:
			if len(data) >= 4 {
				ev.Status = binary.BigEndian.Uint32(data)
			}
		case ctaProtoInfo:
			ev.decodeProtoInfo(data)
		case ctaCountersOrig:
			ev.PacketsOrig, ev.BytesOrig = decodeCounters(data)
		case ctaCountersReply:
			ev.PacketsReply, ev.BytesReply = decodeCounters(data)
		case ctaTimestamp:
			ts := nlAttrs{b: data}
			for typ, d, ok := ts.next(); ok; typ, d, ok = ts.next() {
				if len(d) < 8 {
					continue
				}
				ns := binary.BigEndian.Uint64(d)
				if ns == 0 || ns > 1<<62 {
					continue
				}
				switch typ {
				case ctaTimestampStart:
					ev.Start = time.Unix(0, int64(ns))
				case ctaTimestampStop:
					ev.Stop = time.Unix(0, int64(ns))
				}
			}
		}
	}
	if top.err {
		return fmt.Errorf("decode conntrack event: bad attribute: %w", ErrMalformedPacket)
	}
	if !haveTuple || !ev.Src.IsValid() || !ev.Dst.IsValid() {
		return fmt.Errorf("decode conntrack event: no original tuple: %w", ErrMalformedPacket)
	}
	return nil
}

func (ev *ctEvent) decodeTuple(b []byte) error {
	tu := nlAttrs{b: b}
	for typ, data, ok := tu.next(); ok; typ, data, ok = tu.next() {
		switch typ {
		case ctaTupleIP:
			ip := nlAttrs{b: data}
			for typ, d, ok := ip.next(); ok; typ, d, ok = ip.next() {
				var a netip.Addr
				switch {
				case (typ == ctaIPv4Src || typ == ctaIPv4Dst) && len(d) == 4:
					a = netip.AddrFrom4([4]byte(d))
				case (typ == ctaIPv6Src || typ == ctaIPv6Dst) && len(d) == 16:
					a = netip.AddrFrom16([16]byte(d)).Unmap()
				default:
					continue
				}
				if typ == ctaIPv4Src || typ == ctaIPv6Src {
					ev.Src = a
				} else {
					ev.Dst = a
				}
			}
			if ip.err {
				return fmt.Errorf("decode conntrack tuple: bad address: %w", ErrMalformedPacket)
			}
		case ctaTupleProto:
			p := nlAttrs{b: data}
			for typ, d, ok := p.next(); ok; typ, d, ok = p.next() {
				switch {
				case typ == ctaProtoNum && len(d) >= 1:
					ev.Proto = d[0]
				case typ == ctaProtoSrcPort && len(d) >= 2:
					ev.SrcPort = binary.BigEndian.Uint16(d)
				case typ == ctaProtoDstPort && len(d) >= 2:
					ev.DstPort = binary.BigEndian.Uint16(d)
				case (typ == ctaProtoICMPTyp || typ == ctaProtoICMP6Ty) && len(d) >= 1:
					ev.ICMP, ev.ICMPType = true, d[0]
				case (typ == ctaProtoICMPCod || typ == ctaProtoICMP6Co) && len(d) >= 1:
					ev.ICMP, ev.ICMPCode = true, d[0]
				case (typ == ctaProtoICMPID || typ == ctaProtoICMP6ID) && len(d) >= 2:
					ev.ICMP, ev.ICMPID = true, binary.BigEndian.Uint16(d)
				}
			}
			if p.err {
				return fmt.Errorf("decode conntrack tuple: bad protocol: %w", ErrMalformedPacket)
			}
		}
	}
	if tu.err {
		return fmt.Errorf("decode conntrack tuple: %w", ErrMalformedPacket)
	}
	return nil
}

// ctTuple is a conntrack entry's original tuple: what the kernel needs to
// find the entry again (IPCTNL_MSG_CT_GET).
type ctTuple struct {
	src, dst           netip.Addr
	sport, dport       uint16
	proto              uint8
	icmp               bool
	icmpType, icmpCode uint8
	icmpID             uint16
}

func (ev *ctEvent) tuple() ctTuple {
	return ctTuple{src: ev.Src, dst: ev.Dst, sport: ev.SrcPort, dport: ev.DstPort, proto: ev.Proto,
		icmp: ev.ICMP || ev.Proto == protoICMP || ev.Proto == protoICMPv6, icmpType: ev.ICMPType, icmpCode: ev.ICMPCode, icmpID: ev.ICMPID}
}

// gettable reports whether the kernel can find t by its tuple: protocols
// with ports, and ICMP echo-like entries; not the generic tracker's.
func (t ctTuple) gettable() bool {
	switch t.proto {
	case protoTCP, protoUDP, protoSCTP, protoUDPLite, 33: // 33: DCCP
		return true
	case protoICMP, protoICMPv6:
		return t.icmp
	}
	return false
}

// appendGetRequest appends the payload of an IPCTNL_MSG_CT_GET request for
// the entry with original tuple t to b: nfgenmsg and CTA_TUPLE_ORIG, as
// ctnetlink_parse_tuple() reads it.
func appendGetRequest(b []byte, t ctTuple) []byte {
	family := byte(afInet)
	if !t.src.Is4() {
		family = afInet6
	}
	b = append(b, family, 0, 0, 0) // nfgenmsg: family, version, res_id
	orig := len(b)
	b = appendAttr(b, ctaTupleOrig|nlaFNested, nil)
	ip := len(b)
	b = appendAttr(b, ctaTupleIP|nlaFNested, nil)
	if family == afInet {
		s4, d4 := t.src.As4(), t.dst.As4()
		b = appendAttr(b, ctaIPv4Src, s4[:])
		b = appendAttr(b, ctaIPv4Dst, d4[:])
	} else {
		s16, d16 := t.src.As16(), t.dst.As16()
		b = appendAttr(b, ctaIPv6Src, s16[:])
		b = appendAttr(b, ctaIPv6Dst, d16[:])
	}
	endAttr(b, ip)
	pr := len(b)
	b = appendAttr(b, ctaTupleProto|nlaFNested, nil)
	b = appendAttr(b, ctaProtoNum, []byte{t.proto})
	be16 := func(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }
	switch {
	case t.proto == protoICMP:
		b = appendAttr(b, ctaProtoICMPID, be16(t.icmpID))
		b = appendAttr(b, ctaProtoICMPTyp, []byte{t.icmpType})
		b = appendAttr(b, ctaProtoICMPCod, []byte{t.icmpCode})
	case t.proto == protoICMPv6:
		b = appendAttr(b, ctaProtoICMP6ID, be16(t.icmpID))
		b = appendAttr(b, ctaProtoICMP6Ty, []byte{t.icmpType})
		b = appendAttr(b, ctaProtoICMP6Co, []byte{t.icmpCode})
	default:
		b = appendAttr(b, ctaProtoSrcPort, be16(t.sport))
		b = appendAttr(b, ctaProtoDstPort, be16(t.dport))
	}
	endAttr(b, pr)
	endAttr(b, orig)
	return b
}

// appendAttr appends a netlink attribute (header, data, padding to 4
// bytes). With nil data it opens a nested attribute for endAttr to close.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// endAttr sets the length of the nested attribute that starts at at.
func endAttr(b []byte, at int) {
	binary.NativeEndian.PutUint16(b[at:], uint16(len(b)-at))
}

// decodeProtoInfo reads the TCP state and flags, or the SCTP state, of a
// CTA_PROTOINFO attribute.
func (ev *ctEvent) decodeProtoInfo(b []byte) {
	pi := nlAttrs{b: b}
	for typ, data, ok := pi.next(); ok; typ, data, ok = pi.next() {
		in := nlAttrs{b: data}
		for t, d, ok := in.next(); ok; t, d, ok = in.next() {
			if len(d) < 1 {
				continue
			}
			switch {
			case typ == ctaProtoInfoTCP && t == ctaProtoInfoTCPState:
				ev.TCPState = d[0]
			case typ == ctaProtoInfoTCP && t == ctaProtoInfoTCPFlagsOrig:
				ev.TCPFlagsOrig, ev.HasTCPFlags = d[0], true
			case typ == ctaProtoInfoTCP && t == ctaProtoInfoTCPFlagsReply:
				ev.TCPFlagsReply, ev.HasTCPFlags = d[0], true
			case typ == ctaProtoInfoSCTP && t == ctaProtoInfoSCTPState:
				ev.SCTPState, ev.HasSCTPState = d[0], true
			}
		}
	}
}

func decodeCounters(b []byte) (packets, bytes uint64) {
	c := nlAttrs{b: b}
	for typ, d, ok := c.next(); ok; typ, d, ok = c.next() {
		var v uint64
		switch len(d) {
		case 8:
			v = binary.BigEndian.Uint64(d)
		case 4:
			v = uint64(binary.BigEndian.Uint32(d))
		default:
			continue
		}
		switch typ {
		case ctaCountersPackets, 3: // CTA_COUNTERS32_PACKETS
			packets = v
		case ctaCountersBytes, 4: // CTA_COUNTERS32_BYTES
			bytes = v
		}
	}
	return packets, bytes
}

// flowRecord turns a conntrack event of endpoint into a flow record from
// its original tuple; the endpoint's own addresses (isLocal) give the
// direction: egress when it is the original source, ingress otherwise.
// Counters (the totals) are set except at model.PhaseStart, End at
// model.PhaseEnd and model.PhaseComplete. Whether the original tuple is
// the opener's is for orient to apply.
func (ev *ctEvent) flowRecord(phase model.Phase, endpoint string, isLocal func(netip.Addr) bool, now time.Time) model.Flow {
	f := model.Flow{Phase: phase, Source: model.SourceConntrack, Endpoint: endpoint, Protocol: model.ProtocolFromNumber(ev.Proto),
		Src: ev.Src, Dst: ev.Dst, Verdict: model.VerdictObserved, ConntrackID: ev.ID}
	if ev.ICMP || ev.Proto == 1 || ev.Proto == 58 {
		t, c := ev.ICMPType, ev.ICMPCode
		f.ICMPType, f.ICMPCode = &t, &c
	} else {
		f.SrcPort, f.DstPort = ev.SrcPort, ev.DstPort
	}
	f.Direction = direction(f.Src, f.Dst, isLocal)
	f.Start = ev.Start
	if phase == model.PhaseEnd || phase == model.PhaseComplete {
		f.End = ev.Stop
		if f.End.IsZero() {
			f.End = now
		}
	}
	if phase != model.PhaseStart {
		ev.counters().set(&f)
	}
	if f.Start.IsZero() || f.Start.After(now) {
		f.Start = now
		if !f.End.IsZero() && f.End.Before(f.Start) {
			f.Start = f.End
		}
	}
	return f
}

// Conntrack status bits (include/uapi/linux/netfilter/nf_conntrack_common.h).
const (
	ipsSeenReply = 1 << 1 // IPS_SEEN_REPLY: a packet went the reply way
	ipsAssured   = 1 << 2 // IPS_ASSURED: TCP/SCTP: the connection was established
)

// failure classifies a connection that ended (a DESTROY event, or an
// entry read at its end) whose original tuple runs from its opener:
// model.FailureUnanswered when nothing ever came back (no reply packet
// counted and IPS_SEEN_REPLY clear: a SYN or a UDP/ICMP request timed
// out, or was answered only by an ICMP error, which conntrack counts as
// related, not as a reply); for TCP and SCTP, model.FailureReset when
// something came back but the connection was never established
// (IPS_ASSURED clear: a reset answering the SYN, "connection refused").
// The kernel kills a TCP entry whose only reply is a reset before it sets
// IPS_SEEN_REPLY, so the reply counter (accounting, which the observer
// turns on) is read as well. UDP and ICMP are never "reset": any reply
// is success. "" otherwise.
func (ev *ctEvent) failure() model.Failure {
	replied := ev.Status&ipsSeenReply != 0 || ev.PacketsReply > 0
	switch ev.Proto {
	case 6, 132: // TCP, SCTP
		switch {
		case ev.Status&ipsAssured != 0:
			return ""
		case replied:
			return model.FailureReset
		}
		return model.FailureUnanswered
	case 17, 136, 1, 58: // UDP, UDP-Lite, ICMP, ICMPv6
		if replied {
			return ""
		}
		return model.FailureUnanswered
	}
	return ""
}
