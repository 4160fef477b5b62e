package v1alpha1

import (
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/model"
)

// EdgeFrom returns edge e as a proposal lists it: peers without their
// labels, counters as int64 (saturating), times at whole seconds; leftOut
// is why the proposal does not allow it ("" when it does).
func EdgeFrom(e model.Edge, leftOut string) ObservedEdge {
	return ObservedEdge{
		Source:      peerFrom(e.Source),
		Destination: peerFrom(e.Destination),
		Protocol:    e.Protocol,
		Port:        int32(e.Port),
		FirstSeen:   metav1.NewTime(e.FirstSeen),
		LastSeen:    metav1.NewTime(e.LastSeen),
		Flows:       clamp(e.Flows),
		Failed:      clamp(e.Failed),
		BytesOut:    clamp(e.BytesOut),
		BytesIn:     clamp(e.BytesIn),
		Verdicts: EdgeVerdicts{
			Observed:    clamp(e.Verdicts.Observed),
			Allowed:     clamp(e.Verdicts.Allowed),
			AuditDenied: clamp(e.Verdicts.AuditDenied),
			Denied:      clamp(e.Verdicts.Denied),
		},
		LeftOut: leftOut,
	}
}

// Model returns the edge as model.Edge (peers without labels), or an error
// naming the field when an address or counter does not parse.
func (e ObservedEdge) Model() (model.Edge, error) {
	src, err := e.Source.model("source")
	if err != nil {
		return model.Edge{}, err
	}
	dst, err := e.Destination.model("destination")
	if err != nil {
		return model.Edge{}, err
	}
	if e.Port < 0 || e.Port > 65535 {
		return model.Edge{}, fmt.Errorf("port: %d is not in 0-65535", e.Port)
	}
	for _, c := range []struct {
		field string
		v     int64
	}{{"flows", e.Flows}, {"failed", e.Failed}, {"bytesOut", e.BytesOut}, {"bytesIn", e.BytesIn},
		{"verdicts.observed", e.Verdicts.Observed}, {"verdicts.allowed", e.Verdicts.Allowed},
		{"verdicts.auditDenied", e.Verdicts.AuditDenied}, {"verdicts.denied", e.Verdicts.Denied}} {
		if c.v < 0 {
			return model.Edge{}, fmt.Errorf("%s: %d is negative", c.field, c.v)
		}
	}
	return model.Edge{
		Source: src, Destination: dst, Protocol: e.Protocol, Port: uint16(e.Port),
		Traffic: model.Traffic{
			FirstSeen: e.FirstSeen.Time, LastSeen: e.LastSeen.Time,
			Flows: uint64(e.Flows), Failed: uint64(e.Failed),
			BytesOut: uint64(e.BytesOut), BytesIn: uint64(e.BytesIn),
			Verdicts: model.VerdictCounts{
				Observed: uint64(e.Verdicts.Observed), Allowed: uint64(e.Verdicts.Allowed),
				AuditDenied: uint64(e.Verdicts.AuditDenied), Denied: uint64(e.Verdicts.Denied),
			},
		},
	}, nil
}

func peerFrom(p model.Peer) ObservedPeer {
	out := ObservedPeer{Namespace: p.Namespace, Workload: p.Workload, External: p.External, Name: p.Name}
	if p.Addr.IsValid() {
		out.Address = p.Addr.String()
	}
	return out
}

func (p ObservedPeer) model(field string) (model.Peer, error) {
	out := model.Peer{Namespace: p.Namespace, Workload: p.Workload, External: p.External, Name: p.Name}
	if p.Address != "" {
		a, err := netip.ParseAddr(p.Address)
		if err != nil {
			return model.Peer{}, fmt.Errorf("%s.address: %q is no IP address", field, p.Address)
		}
		out.Addr = a
	}
	return out, nil
}

func clamp(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}

// RecordFrom returns promotion event p as a promotion's status records it.
// p.At must already be at whole seconds (RecordTime) for the hash to verify
// after the round trip through the API.
func RecordFrom(p model.Promotion) PromotionRecord {
	return PromotionRecord{
		Seq: int64(p.Seq), At: metav1.NewTime(p.At), Who: p.Who, Workload: p.Workload, Action: p.Action,
		FromMode: p.FromMode, ToMode: p.ToMode, FromRevision: int32(p.FromRevision), ToRevision: int32(p.ToRevision),
		Reason: p.Reason, Undoes: int64(p.Undoes), Forced: p.Forced, PrevHash: p.PrevHash, Hash: p.Hash,
	}
}

// Model returns the record as the model.Promotion its hash was computed
// over (At in UTC, as model.Promotion's JSON carried it).
func (r PromotionRecord) Model() model.Promotion {
	return model.Promotion{
		Seq: uint64(r.Seq), At: r.At.UTC(), Who: r.Who, Workload: r.Workload, Action: r.Action,
		FromMode: r.FromMode, ToMode: r.ToMode, FromRevision: int(r.FromRevision), ToRevision: int(r.ToRevision),
		Reason: r.Reason, Undoes: uint64(r.Undoes), Forced: r.Forced, PrevHash: r.PrevHash, Hash: r.Hash,
	}
}

// RecordTime returns t as a promotion record keeps it: UTC, whole seconds
// (the precision of metav1.Time in the API).
func RecordTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }
