package nodeagent

import (
	"bytes"
	"slices"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
	"github.com/nanoseg/nanoseg/transport"
)

// MemSink keeps the node's observations in memory, bounded: at most
// MaxEdges edges (merged by store.EdgeKey; beyond, the edges seen least
// recently go first) and the MaxVerdicts latest verdict events. It
// implements store.ObservationSink and store.ObservationReader; safe for
// concurrent use. What it drops is counted (Dropped).
//
// It is also the transport.Source of the node agent's sender: it
// remembers which edges and spans changed and which verdict events were
// logged since the controller last acknowledged a batch (Take, Ack,
// Resync), within the same bounds.
type MemSink struct {
	MaxEdges    int
	MaxVerdicts int

	mu           sync.Mutex
	edges        map[string]model.Edge
	spans        map[string]model.ObservedSpan // by SpanKey, at most MaxEdges
	verdicts     []model.VerdictEvent          // ring, oldest at next when full
	next         int
	droppedEdges uint64
	droppedVerd  uint64

	// What the controller has not acknowledged (transport.Source): the
	// keys changed since, with the generation of their last change, and
	// the count of verdict events ever added and acknowledged.
	gen        uint64
	dirtyEdges map[string]uint64
	dirtySpans map[string]uint64
	vTotal     uint64
	vAcked     uint64
}

var (
	_ store.ObservationSink   = (*MemSink)(nil)
	_ store.ObservationReader = (*MemSink)(nil)
	_ transport.Source        = (*MemSink)(nil)
)

// NewMemSink returns a sink keeping at most maxEdges edges and maxVerdicts
// verdict events (values below 1 read as 1).
func NewMemSink(maxEdges, maxVerdicts int) *MemSink {
	return &MemSink{MaxEdges: max(1, maxEdges), MaxVerdicts: max(1, maxVerdicts), edges: map[string]model.Edge{}, spans: map[string]model.ObservedSpan{},
		dirtyEdges: map[string]uint64{}, dirtySpans: map[string]uint64{}}
}

// RecordObserved implements store.ObservationSink: spans merge by key
// (store.MergeSpan); beyond MaxEdges spans, those that ended first go.
func (s *MemSink) RecordObserved(spans []model.ObservedSpan) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range spans {
		k := sp.SpanKey()
		if old, ok := s.spans[k]; ok {
			sp = store.MergeSpan(old, sp)
		}
		s.spans[k] = sp
		s.dirtySpans[k] = s.gen
	}
	if over := len(s.spans) - s.MaxEdges; over > 0 {
		all := make([]model.ObservedSpan, 0, len(s.spans))
		for _, sp := range s.spans {
			all = append(all, sp)
		}
		slices.SortFunc(all, func(a, b model.ObservedSpan) int { return a.End.Compare(b.End) })
		for _, sp := range all[:over] {
			delete(s.spans, sp.SpanKey())
			delete(s.dirtySpans, sp.SpanKey())
		}
	}
	return nil
}

// Observed implements store.ObservationReader.
func (s *MemSink) Observed(since time.Time) ([]model.ObservedSpan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []model.ObservedSpan{}
	for _, sp := range s.spans {
		if since.IsZero() || !sp.End.Before(since) {
			out = append(out, sp)
		}
	}
	store.SortSpans(out)
	return out, nil
}

// MergeEdges implements store.ObservationSink.
func (s *MemSink) MergeEdges(edges []model.Edge) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range edges {
		k := string(store.EdgeKey(e))
		if old, ok := s.edges[k]; ok {
			e = store.MergeEdge(old, e)
		}
		s.edges[k] = e
		s.dirtyEdges[k] = s.gen
	}
	if over := len(s.edges) - s.MaxEdges; over > 0 {
		// Evict a tenth more than needed, so a full sink does not sort on
		// every flush.
		over = min(len(s.edges), over+s.MaxEdges/10)
		type aged struct {
			key  string
			seen time.Time
		}
		all := make([]aged, 0, len(s.edges))
		for k, e := range s.edges {
			all = append(all, aged{k, e.LastSeen})
		}
		slices.SortFunc(all, func(a, b aged) int { return a.seen.Compare(b.seen) })
		for _, a := range all[:over] {
			delete(s.edges, a.key)
			delete(s.dirtyEdges, a.key)
		}
		s.droppedEdges += uint64(over)
	}
	return nil
}

// AddVerdicts implements store.ObservationSink.
func (s *MemSink) AddVerdicts(evs []model.VerdictEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		s.vTotal++
		if len(s.verdicts) < s.MaxVerdicts {
			s.verdicts = append(s.verdicts, ev)
			continue
		}
		s.verdicts[s.next] = ev
		s.next = (s.next + 1) % s.MaxVerdicts
		s.droppedVerd++
	}
	return nil
}

// Edges implements store.ObservationReader.
func (s *MemSink) Edges(since time.Time) ([]model.Edge, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []model.Edge
	for _, e := range s.edges {
		if since.IsZero() || !e.LastSeen.Before(since) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b model.Edge) int { return bytes.Compare(store.EdgeKey(a), store.EdgeKey(b)) })
	return out, nil
}

// Verdicts implements store.ObservationReader: the kept events at or
// after since, oldest first.
func (s *MemSink) Verdicts(since time.Time) ([]model.VerdictEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ordered := append(slices.Clone(s.verdicts[s.next:]), s.verdicts[:s.next]...)
	var out []model.VerdictEvent
	for _, ev := range ordered {
		if since.IsZero() || !ev.At.Before(since) {
			out = append(out, ev)
		}
	}
	return out, nil
}

// Dropped returns how many edges and verdict events the bounds dropped.
func (s *MemSink) Dropped() (edges, verdicts uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.droppedEdges, s.droppedVerd
}

// Take implements transport.Source: the current value of at most
// maxItems changed edges and spans and at most maxItems verdict events
// logged since the last Ack (those the ring overwrote before they were
// sent are counted in Dropped).
func (s *MemSink) Take(maxItems int) transport.Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	maxItems = max(1, maxItems)
	p := transport.Pending{Mark: s.gen}
	s.gen++ // later changes are newer than this batch
	for k := range s.dirtyEdges {
		if len(p.Edges) == maxItems {
			p.More = true
			break
		}
		p.Edges = append(p.Edges, s.edges[k])
	}
	for k := range s.dirtySpans {
		if len(p.Spans) == maxItems {
			p.More = true
			break
		}
		p.Spans = append(p.Spans, s.spans[k])
	}
	base := s.vTotal - uint64(len(s.verdicts)) // the number of the oldest event kept
	start := max(s.vAcked, base)
	n := min(uint64(maxItems), s.vTotal-start)
	if s.vTotal-start > n {
		p.More = true
	}
	ordered := s.verdicts
	if len(s.verdicts) == s.MaxVerdicts {
		ordered = append(slices.Clone(s.verdicts[s.next:]), s.verdicts[:s.next]...)
	}
	p.Verdicts = slices.Clone(ordered[start-base : start-base+n])
	p.VerdictsUpTo = start + n
	return p
}

// Ack implements transport.Source.
func (s *MemSink) Ack(p transport.Pending) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range p.Edges {
		k := string(store.EdgeKey(e))
		if g, ok := s.dirtyEdges[k]; ok && g <= p.Mark {
			delete(s.dirtyEdges, k)
		}
	}
	for _, sp := range p.Spans {
		k := sp.SpanKey()
		if g, ok := s.dirtySpans[k]; ok && g <= p.Mark {
			delete(s.dirtySpans, k)
		}
	}
	s.vAcked = max(s.vAcked, p.VerdictsUpTo)
}

// Resync implements transport.Source: every edge, span and kept verdict
// event is pending again.
func (s *MemSink) Resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.edges {
		s.dirtyEdges[k] = s.gen
	}
	for k := range s.spans {
		s.dirtySpans[k] = s.gen
	}
	s.vAcked = s.vTotal - uint64(len(s.verdicts))
}

// PendingCount returns how many edges and spans changed and how many
// verdict events were logged since the controller last acknowledged them.
func (s *MemSink) PendingCount() (edges, spans int, verdicts uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dirtyEdges), len(s.dirtySpans), s.vTotal - max(s.vAcked, s.vTotal-uint64(len(s.verdicts)))
}
