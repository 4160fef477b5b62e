package model

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// FlowSource says which kernel mechanism produced a flow record.
type FlowSource string

// Sources of flow records.
const (
	// SourceConntrack: a conntrack event (NEW or DESTROY) of the endpoint's
	// netns, or an entry of a conntrack dump after an overflow (Resynced).
	SourceConntrack FlowSource = "conntrack"
	// SourceVerdictLog: one packet of the dataplane's NFLOG group.
	SourceVerdictLog FlowSource = "verdict-log"
)

// Phase says which part of a connection's life a flow record describes.
type Phase string

// Phases of a flow record. A connection yields one PhaseStart and one
// PhaseEnd record from conntrack, and between them PhaseUpdate records
// while its packet and byte counters grow; when the start was lost
// (overflow) or the source sees only one moment (the verdict log), it
// yields one PhaseComplete record. A flow is counted at PhaseStart or
// PhaseComplete, never at PhaseUpdate or PhaseEnd.
const (
	PhaseStart    Phase = "start"
	PhaseUpdate   Phase = "update"
	PhaseEnd      Phase = "end"
	PhaseComplete Phase = "complete"
)

// Flow is one connection (or one logged connection attempt) as seen from
// one endpoint netns (docs/architecture.md "Words").
//
// JSON form (stable; new fields are only ever added, with omitempty):
//
//	{"phase":"end","source":"conntrack","endpoint":"nanoseg-lab-shop-shop-api-0",
//	 "direction":"Egress","protocol":"TCP","src":"198.18.0.10","srcPort":41234,
//	 "dst":"198.19.0.10","dstPort":443,"start":"2026-11-30T05:48:20.1Z",
//	 "end":"2026-11-30T05:48:20.2Z","packetsOut":6,"bytesOut":420,
//	 "packetsIn":4,"bytesIn":1337,"verdict":"observed","remoteName":"payments.example",
//	 "conntrackId":1234}
//
// Src/SrcPort are always the side that opened the connection, whatever the
// direction: conntrack's original tuple when conntrack saw the connection
// open, the tuple turned around when conntrack picked it up in mid-flight
// and the observer established the opener; a record marked
// DirectionUnknown is the exception. "Out" counters count packets from Src
// to Dst, "In" counters the replies. Times are RFC 3339 with nanoseconds,
// UTC; End is absent while the connection lives (start and update records). Ports are 0 for protocols
// without ports; ICMP flows carry ICMPType/ICMPCode instead.
type Flow struct {
	Phase     Phase      `json:"phase"`
	Source    FlowSource `json:"source"`
	Endpoint  string     `json:"endpoint"` // netns name of the observing endpoint
	Direction Direction  `json:"direction"`
	Protocol  Protocol   `json:"protocol"`
	Src       netip.Addr `json:"src"`
	SrcPort   uint16     `json:"srcPort,omitempty"`
	Dst       netip.Addr `json:"dst"`
	DstPort   uint16     `json:"dstPort,omitempty"`
	ICMPType  *uint8     `json:"icmpType,omitempty"`
	ICMPCode  *uint8     `json:"icmpCode,omitempty"`
	Start     time.Time  `json:"start"`
	End       time.Time  `json:"end,omitzero"`
	// Counters need conntrack accounting (the observer turns it on per
	// netns). On PhaseUpdate and PhaseEnd records they are what the
	// connection carried since its previous PhaseUpdate record (since it
	// began when there was none), so the sum over a connection's update and
	// end records is its total and an aggregate adds them as they come.
	// On a resynced PhaseStart record they are the totals at the dump, for
	// reading, not for adding.
	PacketsOut uint64 `json:"packetsOut,omitempty"`
	BytesOut   uint64 `json:"bytesOut,omitempty"`
	PacketsIn  uint64 `json:"packetsIn,omitempty"`
	BytesIn    uint64 `json:"bytesIn,omitempty"`
	// Verdict is VerdictObserved for conntrack records; the verdict-log
	// prefix's verdict otherwise.
	Verdict Verdict `json:"verdict"`
	// RuleID is the rule id from the verdict-log prefix; empty for
	// conntrack records.
	RuleID string `json:"ruleId,omitempty"`
	// RemoteName is the DNS name the endpoint asked for that answered with
	// the remote address (Dst for egress, Src for ingress), where seen.
	RemoteName string `json:"remoteName,omitempty"`
	// ConntrackID is the kernel's id of the conntrack entry (CTA_ID),
	// unique within the netns while the entry lives.
	ConntrackID uint32 `json:"conntrackId,omitempty"`
	// Resynced marks records recovered from a conntrack dump after the
	// event socket overflowed (ENOBUFS).
	Resynced bool `json:"resynced,omitempty"`
	// DirectionUnknown marks a conntrack or verdict-log record whose
	// opening side the observer could not establish: the kernel began
	// tracking the connection in mid-flight (a TCP connection picked up
	// mid-stream, a UDP entry created by what looks like a reply, the
	// packet that created it for a verdict-log record) and neither the
	// endpoint's sockets nor the ports tell who opened it. Src/Dst are then
	// conntrack's original tuple, which may be the reply direction, and
	// Direction follows it; such records must be kept out of edges.
	DirectionUnknown bool `json:"directionUnknown,omitempty"`
	// Failed says why the connection never succeeded, on the conntrack
	// record of its end (PhaseEnd, PhaseComplete) when it did not:
	// FailureReset or FailureUnanswered; empty otherwise.
	Failed Failure `json:"failed,omitempty"`
}

// Remote returns the address of the side that is not the observing
// endpoint: Dst for egress, Src for ingress.
func (f *Flow) Remote() netip.Addr {
	if f.Direction == Ingress {
		return f.Src
	}
	return f.Dst
}

// Counts reports whether this record counts as one new flow: start and
// complete records do, update and end records do not (their start was
// counted).
func (f *Flow) Counts() bool { return f.Phase == PhaseStart || f.Phase == PhaseComplete }

// String renders f as one line for people, e.g.
// "start Egress TCP 198.18.0.10:41234 -> 198.19.0.10:443 (payments.example) observed [nanoseg-lab-shop-shop-api-0]".
func (f *Flow) String() string {
	s := fmt.Sprintf("%s %s %s %s -> %s", f.Phase, f.Direction, f.Protocol,
		hostPort(f.Src, f.SrcPort), hostPort(f.Dst, f.DstPort))
	if f.ICMPType != nil {
		s += fmt.Sprintf(" type=%d", *f.ICMPType)
		if f.ICMPCode != nil {
			s += fmt.Sprintf("/%d", *f.ICMPCode)
		}
	}
	if f.RemoteName != "" {
		s += " (" + f.RemoteName + ")"
	}
	s += " " + string(f.Verdict)
	if f.RuleID != "" {
		s += " rule=" + f.RuleID
	}
	if f.Phase != PhaseStart && (f.PacketsOut|f.PacketsIn) != 0 {
		s += fmt.Sprintf(" out=%dp/%dB in=%dp/%dB", f.PacketsOut, f.BytesOut, f.PacketsIn, f.BytesIn)
	}
	if !f.End.IsZero() && !f.Start.IsZero() {
		s += " dur=" + f.End.Sub(f.Start).String()
	}
	if f.Resynced {
		s += " resynced"
	}
	if f.DirectionUnknown {
		s += " direction-unknown"
	}
	if f.Failed != "" {
		s += " failed=" + string(f.Failed)
	}
	return s + " [" + f.Endpoint + "]"
}

// LogValue keeps per-flow debug logs short: the 5-tuple, phase and verdict.
func (f *Flow) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("phase", string(f.Phase)),
		slog.String("dir", string(f.Direction)),
		slog.String("proto", string(f.Protocol)),
		slog.String("src", hostPort(f.Src, f.SrcPort)),
		slog.String("dst", hostPort(f.Dst, f.DstPort)),
		slog.String("verdict", string(f.Verdict)),
	)
}

func hostPort(a netip.Addr, port uint16) string {
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}
