package observer

import (
	"net/netip"
	"time"

	"github.com/ti-mo/conntrack"
)

// fromConntrack turns a conntrack entry of endpoint into a flow record.
// The original tuple is the side that opened the connection; the endpoint's
// own addresses (isLocal) give the direction: egress when it is the
// original source, ingress otherwise.
func fromConntrack(ct *conntrack.Flow, phase Phase, endpoint string, isLocal func(netip.Addr) bool, now time.Time) Flow {
	o := ct.TupleOrig
	f := Flow{Phase: phase, Source: SourceConntrack, Endpoint: endpoint,
		Protocol: ProtocolName(o.Proto.Protocol),
		Src:      o.IP.SourceAddress.Unmap(), Dst: o.IP.DestinationAddress.Unmap(),
		Verdict: VerdictObserved, ConntrackID: ct.ID}
	if o.Proto.ICMPv4 || o.Proto.ICMPv6 || o.Proto.Protocol == 1 || o.Proto.Protocol == 58 {
		t, c := o.Proto.ICMPType, o.Proto.ICMPCode
		f.ICMPType, f.ICMPCode = &t, &c
	} else {
		f.SrcPort, f.DstPort = o.Proto.SourcePort, o.Proto.DestinationPort
	}
	f.Direction = Ingress
	if isLocal == nil || isLocal(f.Src) || !isLocal(f.Dst) {
		f.Direction = Egress
	}
	f.Start = ct.Timestamp.Start
	if phase != PhaseStart {
		f.End = ct.Timestamp.Stop
		if f.End.IsZero() {
			f.End = now
		}
		f.PacketsOut, f.BytesOut = ct.CountersOrig.Packets, ct.CountersOrig.Bytes
		f.PacketsIn, f.BytesIn = ct.CountersReply.Packets, ct.CountersReply.Bytes
	}
	if f.Start.IsZero() || f.Start.After(now) {
		f.Start = now
		if !f.End.IsZero() && f.End.Before(f.Start) {
			f.Start = f.End
		}
	}
	return f
}
