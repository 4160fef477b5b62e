package controller

// Change notices: what a live view (the web UI's GET /v1/events) needs to
// know to fetch again. The service publishes a topic whenever it commits
// something that changes an answer of the API: a promotion or rollback
// (history, status), policies applied or deleted (policies, revisions,
// status), a proposal stored (revisions), an exported bundle (evidence);
// the observation sink wrapped by Changes.Sink publishes committed edges
// and verdict events; the agent publishes inventory changes. Subscribers get a wake-up, never the data: each
// takes the topics gathered since it last took them, so a slow reader
// coalesces any number of changes into one and a publisher never blocks.

import (
	"slices"
	"sync"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// Topics of change notices: each names the routes whose answers changed.
const (
	TopicEdges     = "edges"     // GET /v1/edges, /v1/coverage, /v1/edges/detail
	TopicVerdicts  = "verdicts"  // GET /v1/verdicts, the denied counts of /v1/status
	TopicStatus    = "status"    // GET /v1/status, /v1/workloads/detail, /v1/matrix
	TopicHistory   = "history"   // GET /v1/history
	TopicRevisions = "revisions" // GET /v1/revisions, /v1/diff
	TopicPolicies  = "policies"  // GET /v1/networkpolicies, /v1/world, /v1/explain
	TopicEvidence  = "evidence"  // GET /v1/evidence/last
	TopicInventory = "inventory" // GET /v1/inventory, /v1/world, /v1/containers: endpoints appeared, left or changed; a container runtime lost or back
)

// Changes is the service's change feed. Safe for concurrent use; the zero
// value is not: use NewChanges.
type Changes struct {
	mu   sync.Mutex
	seq  uint64
	subs map[*Subscription]struct{}
}

// NewChanges returns an empty feed (sequence 0).
func NewChanges() *Changes {
	return &Changes{subs: map[*Subscription]struct{}{}}
}

// Subscription is one subscriber's view of a feed.
type Subscription struct {
	// C receives a value when topics are waiting to be taken (at most one
	// value is buffered: wake-ups coalesce).
	C      chan struct{}
	mu     sync.Mutex
	seq    uint64
	topics map[string]bool
}

// Publish records a change of topics: the sequence grows by one and every
// subscriber is woken. It never blocks.
func (c *Changes) Publish(topics ...string) {
	if c == nil || len(topics) == 0 {
		return
	}
	c.mu.Lock()
	c.seq++
	seq := c.seq
	subs := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		for _, t := range topics {
			s.topics[t] = true
		}
		s.seq = seq
		s.mu.Unlock()
		select {
		case s.C <- struct{}{}:
		default:
		}
	}
}

// Seq returns the number of changes published so far.
func (c *Changes) Seq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// Subscribe returns a new subscription; Unsubscribe ends it.
func (c *Changes) Subscribe() *Subscription {
	s := &Subscription{C: make(chan struct{}, 1), topics: map[string]bool{}}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s
}

// Unsubscribe ends s: it gets no more wake-ups.
func (c *Changes) Unsubscribe(s *Subscription) {
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
}

// Take returns the sequence of the latest change s saw and the topics
// published since the last Take, sorted, and forgets them; no topics when
// nothing changed.
func (s *Subscription) Take() (uint64, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.topics))
	for t := range s.topics {
		out = append(out, t)
	}
	clear(s.topics)
	slices.Sort(out)
	return s.seq, out
}

// Sink wraps an observation sink so that committed edges and verdict
// events are published (TopicEdges, TopicVerdicts; TopicStatus with the
// verdicts, whose counts status shows). Commits with nothing in them, and
// observation spans alone (written on every flush), publish nothing.
func (c *Changes) Sink(sink store.ObservationSink) store.ObservationSink {
	return &changeSink{ObservationSink: sink, c: c}
}

type changeSink struct {
	store.ObservationSink
	c *Changes
}

func (s *changeSink) MergeEdges(edges []model.Edge) error {
	err := s.ObservationSink.MergeEdges(edges)
	if err == nil && len(edges) > 0 {
		s.c.Publish(TopicEdges)
	}
	return err
}

func (s *changeSink) AddVerdicts(evs []model.VerdictEvent) error {
	err := s.ObservationSink.AddVerdicts(evs)
	if err == nil && len(evs) > 0 {
		s.c.Publish(TopicVerdicts, TopicStatus)
	}
	return err
}

// Changes returns the service's change feed (Config.Changes, or its own).
func (s *Service) Changes() *Changes { return s.changes }
