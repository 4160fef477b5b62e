package observer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// nfnetlink_log constants, from include/uapi/linux/netfilter/nfnetlink_log.h.
const (
	nfulnlMsgPacket = 0 // NFULNL_MSG_PACKET
	nfulnlMsgConfig = 1 // NFULNL_MSG_CONFIG

	nfulaPacketHdr = 1  // NFULA_PACKET_HDR: be16 hw_protocol, u8 hook, pad
	nfulaTimestamp = 3  // NFULA_TIMESTAMP: be64 sec, be64 usec
	nfulaPayload   = 9  // NFULA_PAYLOAD: the packet from its network header
	nfulaPrefix    = 10 // NFULA_PREFIX: NUL-terminated string

	nfulaCfgCmd     = 1 // NFULA_CFG_CMD: u8 command
	nfulaCfgMode    = 2 // NFULA_CFG_MODE: be32 copy_range, u8 copy_mode, pad
	nfulaCfgTimeout = 4 // NFULA_CFG_TIMEOUT: be32 flush timeout, 1/100 s
	nfulaCfgQThresh = 5 // NFULA_CFG_QTHRESH: be32 packets per batch
	nfulaCfgFlags   = 6 // NFULA_CFG_FLAGS: be16

	nfulnlCfgCmdBind   = 1 // NFULNL_CFG_CMD_BIND
	nfulnlCfgCmdUnbind = 2 // NFULNL_CFG_CMD_UNBIND
	nfulnlCopyPacket   = 2 // NFULNL_COPY_PACKET

	hookLocalIn  = 1 // NF_INET_LOCAL_IN
	hookLocalOut = 3 // NF_INET_LOCAL_OUT
)

// verdictLogRecord is one decoded NFLOG packet message.
type verdictLogRecord struct {
	Prefix  string
	Hook    uint8
	HasHook bool
	Time    time.Time // zero when the kernel sent no timestamp
	Payload []byte    // IP packet; aliases the message
}

// errNotPacket marks a message on the verdict-log socket that carries no
// logged packet: the netlink control messages (NLMSG_DONE closes every
// batch of more than one packet, acknowledgements, NLMSG_NOOP) and
// nfnetlink messages of other types or subsystems. Readers skip them; they
// are not decode errors.
var errNotPacket = errors.New("not a logged packet")

// nlmsgMinType is NLMSG_MIN_TYPE: types below it are netlink's own control
// messages (include/uapi/linux/netlink.h).
const nlmsgMinType = 0x10

// decodeVerdictLog decodes one nfnetlink_log packet message. Messages that
// are not NFULNL_MSG_PACKET fail with errNotPacket; a packet message that
// cannot be decoded fails with ErrMalformedPacket. It never panics.
func decodeVerdictLog(msg netlink.Message) (rec verdictLogRecord, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decode verdict log: recovered %v: %w", r, ErrMalformedPacket)
		}
	}()
	if msg.Header.Type < nlmsgMinType {
		return rec, fmt.Errorf("decode verdict log: netlink message type %d: %w", msg.Header.Type, errNotPacket)
	}
	if t := uint16(msg.Header.Type); netfilter.SubsystemID(t>>8) != netfilter.NFSubsysULOG || t&0xff != nfulnlMsgPacket {
		return rec, fmt.Errorf("decode verdict log: message %#x: %w", t, errNotPacket)
	}
	_, ad, err := netfilter.DecodeNetlink(msg)
	if err != nil {
		return rec, fmt.Errorf("decode verdict log header: %v: %w", err, ErrMalformedPacket)
	}
	for ad.Next() {
		switch ad.Type() {
		case nfulaPacketHdr:
			if b := ad.Bytes(); len(b) >= 3 {
				rec.Hook, rec.HasHook = b[2], true
			}
		case nfulaTimestamp:
			if b := ad.Bytes(); len(b) >= 16 {
				sec, usec := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
				if sec < 1<<40 && usec < 1e6 {
					rec.Time = time.Unix(int64(sec), int64(usec)*1000)
				}
			}
		case nfulaPayload:
			rec.Payload = ad.Bytes()
		case nfulaPrefix:
			b := ad.Bytes()
			for i, c := range b {
				if c == 0 {
					b = b[:i]
					break
				}
			}
			rec.Prefix = string(b)
		}
	}
	if err := ad.Err(); err != nil {
		return rec, fmt.Errorf("decode verdict log attributes: %v: %w", err, ErrMalformedPacket)
	}
	if len(rec.Payload) == 0 {
		return rec, fmt.Errorf("decode verdict log: no payload: %w", ErrMalformedPacket)
	}
	return rec, nil
}

// verdictDecoder turns NFLOG messages into flow records; one per goroutine.
type verdictDecoder struct {
	pkt  *packetDecoder
	last packetInfo // the packet of the last successful decode (Payload aliases the message)
}

// packetEvent is the conntrack NEW event a logged packet pi would have
// opened, for the classifier (origin.go): the packet's 5-tuple as the
// original tuple; a TCP packet other than a SYN without ACK is marked as a
// pickup (IP_CT_TCP_FLAG_BE_LIBERAL), as conntrack marks the entry such a
// packet creates.
func packetEvent(pi *packetInfo) ctEvent {
	ev := ctEvent{Type: ctNew, Proto: pi.Proto, Src: pi.Src, Dst: pi.Dst, SrcPort: pi.SrcPort, DstPort: pi.DstPort,
		ICMP: pi.HasICMP, ICMPType: pi.ICMPType, ICMPCode: pi.ICMPCode}
	if pi.Proto == protoTCP {
		ev.HasTCPFlags = true
		if !pi.TCPSYN || pi.TCPACK {
			ev.TCPFlagsOrig = ipCTTCPFlagBeLiberal
		}
	}
	return ev
}

func newVerdictDecoder() *verdictDecoder { return &verdictDecoder{pkt: newPacketDecoder()} }

// decode turns one NFLOG message into a model.PhaseComplete flow record of
// endpoint. isLocal tells the endpoint's own addresses, for packets logged
// outside the input and output hooks. verdictlog.ErrNotNanoseg marks someone else's
// log rule and errNotPacket a message without a packet; other errors are
// decode errors.
func (d *verdictDecoder) decode(msg netlink.Message, endpoint string, isLocal func(netip.Addr) bool) (model.Flow, error) {
	rec, err := decodeVerdictLog(msg)
	if err != nil {
		return model.Flow{}, err
	}
	v, id, err := verdictlog.Parse(rec.Prefix)
	if err != nil {
		return model.Flow{}, err
	}
	pi, err := d.pkt.decode(rec.Payload)
	if err != nil {
		return model.Flow{}, err
	}
	d.last = pi
	f := model.Flow{Phase: model.PhaseComplete, Source: model.SourceVerdictLog, Endpoint: endpoint,
		Protocol: model.ProtocolFromNumber(pi.Proto), Src: pi.Src, Dst: pi.Dst, SrcPort: pi.SrcPort, DstPort: pi.DstPort,
		Start: rec.Time, Verdict: v, RuleID: id, PacketsOut: 1, BytesOut: uint64(len(rec.Payload))}
	if pi.HasICMP {
		t, c := pi.ICMPType, pi.ICMPCode
		f.ICMPType, f.ICMPCode = &t, &c
	}
	switch {
	case rec.HasHook && rec.Hook == hookLocalOut:
		f.Direction = model.Egress
	case rec.HasHook && rec.Hook == hookLocalIn:
		f.Direction = model.Ingress
	case isLocal != nil && isLocal(pi.Src):
		f.Direction = model.Egress
	default:
		f.Direction = model.Ingress
	}
	return f, nil
}
