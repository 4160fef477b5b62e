//go:build linux

package node

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// failingSink is a store.Mem whose writes fail while full is set, as a
// bbolt file on a full disk does.
type failingSink struct {
	*store.Mem
	full bool
}

var errFull = errors.New("write state.db: no space left on device")

func (s *failingSink) MergeEdges(edges []model.Edge) error {
	if s.full {
		return errFull
	}
	return s.Mem.MergeEdges(edges)
}

func (s *failingSink) RecordObserved(spans []model.ObservedSpan) error {
	if s.full {
		return errFull
	}
	return s.Mem.RecordObserved(spans)
}

func (s *failingSink) AddVerdicts(evs []model.VerdictEvent) error {
	if s.full {
		return errFull
	}
	return s.Mem.AddVerdicts(evs)
}

// TestFlushKeepsWhatItCouldNotCommit: a flush the store refuses (a full
// disk) keeps the edges and verdict events it took, so the next flush
// that succeeds commits them, each counted once. Without root: no
// endpoint is observed or programmed.
func TestFlushKeepsWhatItCouldNotCommit(t *testing.T) {
	sink := &failingSink{Mem: store.NewMem()}
	n, err := New(Config{FlushInterval: time.Hour, DriftInterval: time.Hour, OwnerDir: t.TempDir()}, inventory.NewIndex(nil, nil, nil), sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.20")
	at := time.Now().Add(-time.Second)
	flow := model.Flow{Start: at, Src: src, Dst: dst, SrcPort: 40000, DstPort: 5432, Protocol: model.ProtocolTCP,
		Direction: model.Egress, Phase: model.PhaseStart}
	n.agg.Add(flow)
	ev := model.VerdictEvent{At: at, Endpoint: "shop/intruder-0", Verdict: model.VerdictDeny, RuleID: "default-egress",
		Source: "198.18.0.10", Destination: "198.18.0.20", Protocol: model.ProtocolTCP, Port: 5432}
	n.mu.Lock()
	n.pending = append(n.pending, ev)
	n.mu.Unlock()

	sink.full = true
	if err := n.Flush(); !errors.Is(err, errFull) {
		t.Fatalf("Flush on a full store = %v, want %v", err, errFull)
	}
	// More traffic arrives while the store is full.
	n.agg.Add(flow)
	if err := n.Flush(); !errors.Is(err, errFull) {
		t.Fatalf("second Flush on a full store = %v, want %v", err, errFull)
	}

	sink.full = false
	if err := n.Flush(); err != nil {
		t.Fatalf("Flush after space came back: %v", err)
	}
	edges, _ := sink.Edges(time.Time{})
	if len(edges) != 1 || edges[0].Flows != 2 {
		t.Errorf("edges after the disk was full = %+v, want one edge with the 2 flows seen meanwhile", edges)
	}
	evs, _ := sink.Verdicts(time.Time{})
	if len(evs) != 1 || evs[0].Verdict != model.VerdictDeny {
		t.Errorf("verdict events after the disk was full = %+v, want the deny recorded while it was", evs)
	}
	// Nothing is committed twice.
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	if edges, _ := sink.Edges(time.Time{}); len(edges) != 1 || edges[0].Flows != 2 {
		t.Errorf("edges after one more flush = %+v, want the same single edge with 2 flows", edges)
	}
	if evs, _ := sink.Verdicts(time.Time{}); len(evs) != 1 {
		t.Errorf("verdict events after one more flush = %d, want 1", len(evs))
	}
}

// TestFlushRecordsObservedSpans: every flush moves a running observer's
// span forward to the flush; a stopped observer's span ends where it
// stopped, and survives a flush the store refused.
func TestFlushRecordsObservedSpans(t *testing.T) {
	sink := &failingSink{Mem: store.NewMem()}
	n, err := New(Config{FlushInterval: time.Hour, DriftInterval: time.Hour, OwnerDir: t.TempDir()}, inventory.NewIndex(nil, nil, nil), sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute).UTC()
	n.mu.Lock()
	n.spans = map[string]model.ObservedSpan{
		"db-0":  {Endpoint: "db-0", Workload: "shop/db", Start: start},
		"api-0": {Endpoint: "api-0", Workload: "shop/api", Start: start},
	}
	n.mu.Unlock()
	before := time.Now()
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	spans, _ := sink.Observed(time.Time{})
	if len(spans) != 2 || spans[0].End.Before(before) || !spans[0].Start.Equal(start) {
		t.Fatalf("spans after a flush = %+v", spans)
	}
	stop := time.Now()
	n.mu.Lock()
	n.endSpanLocked("api-0", stop)
	n.mu.Unlock()
	sink.full = true
	if err := n.Flush(); err == nil {
		t.Fatal("flush on a full store succeeded")
	}
	sink.full = false
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	spans, _ = sink.Observed(time.Time{})
	if len(spans) != 2 || spans[0].Endpoint != "api-0" || !spans[0].End.Equal(stop.UTC()) || !spans[1].End.After(stop) {
		t.Errorf("spans after api-0 stopped = %+v", spans)
	}
}
