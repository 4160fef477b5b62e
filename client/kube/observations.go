package kube

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// observations is the store.ObservationReader over the proposals of a
// snapshot (see the package doc for what it can and cannot tell).
type observations struct {
	edges    []model.Edge // sorted by store.EdgeKey
	spans    []model.ObservedSpan
	verdicts []model.VerdictEvent // oldest (last seen) first
}

var _ store.ObservationReader = (*observations)(nil)

// newObservations collects the observed proposals' edges (every
// namespace's when the user may read them, whatever the scope) (an edge kept by two
// proposals, its source's and its destination's, once: the copy last seen,
// then the one with more flows) and synthesises their coverage spans.
func newObservations(s *snapshot) (*observations, error) {
	byKey := map[string]model.Edge{}
	o := &observations{}
	prs := s.observed
	if prs == nil {
		prs = s.proposals
	}
	for _, pr := range prs {
		for i, oe := range pr.Spec.Edges {
			e, err := oe.Model()
			if err != nil {
				return nil, fmt.Errorf("nanosegmentproposal %s/%s: spec.edges[%d].%w", pr.Namespace, pr.Name, i, err)
			}
			k := string(store.EdgeKey(e))
			if old, ok := byKey[k]; ok && (old.LastSeen.After(e.LastSeen) || (old.LastSeen.Equal(e.LastSeen) && old.Flows >= e.Flows)) {
				continue
			}
			byKey[k] = e
		}
		c := pr.Status.Coverage
		if c == nil || c.Observed.Duration <= 0 {
			continue
		}
		n := max(int(c.Endpoints), 1)
		for i := range n {
			o.spans = append(o.spans, model.ObservedSpan{Workload: key(pr.Namespace, pr.Spec.Workload),
				Endpoint: fmt.Sprintf("%s_%s-proposal-%d", pr.Namespace, pr.Spec.Workload, i), Start: s.at.Add(-c.Observed.Duration), End: s.at})
		}
	}
	for _, e := range byKey {
		o.edges = append(o.edges, e)
	}
	o.verdicts = segmentVerdicts(s.segments)
	sort.Slice(o.edges, func(i, j int) bool { return bytes.Compare(store.EdgeKey(o.edges[i]), store.EdgeKey(o.edges[j])) < 0 })
	store.SortSpans(o.spans)
	return o, nil
}

// labelPeers gives every workload peer of the edges that has no labels
// the identity labels (model.IdentityLabels) of its workload's first
// endpoint in eps. The proposals' spec.edges name workloads only, while
// policy diff and explain evaluate selectors on the edges' own labels
// (policies.Diff builds its world from them), as the standalone agent's
// edges carry them; without this, no proposal rule matched any edge and
// diff reported nothing to add. A workload not in eps (gone, or outside
// the namespace read) keeps none.
func (o *observations) labelPeers(eps []model.Endpoint) {
	ids := map[string]map[string]string{}
	for _, e := range eps {
		if _, ok := ids[e.Key()]; !ok {
			ids[e.Key()] = e.Identity().Labels
		}
	}
	for i := range o.edges {
		for _, p := range []*model.Peer{&o.edges[i].Source, &o.edges[i].Destination} {
			if !p.External && len(p.Labels) == 0 {
				p.Labels = ids[p.String()]
			}
		}
	}
}

func (o *observations) Edges(since time.Time) ([]model.Edge, error) {
	var out []model.Edge
	for _, e := range o.edges {
		if since.IsZero() || !e.LastSeen.Before(since) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Verdicts returns the NanoSegments' aggregated verdicts (status.verdicts)
// last seen at or after since (all for the zero time), as events with
// Count and FirstAt, oldest first (by last seen).
func (o *observations) Verdicts(since time.Time) ([]model.VerdictEvent, error) {
	var out []model.VerdictEvent
	for _, e := range o.verdicts {
		if since.IsZero() || !e.At.Before(since) {
			out = append(out, e)
		}
	}
	return out, nil
}

// segmentVerdicts turns the NanoSegments' status.verdicts into events,
// sorted by last seen, then as the status listed them.
func segmentVerdicts(segs map[string]v1alpha1.NanoSegment) []model.VerdictEvent {
	var out []model.VerdictEvent
	for _, k := range slices.Sorted(maps.Keys(segs)) {
		for _, v := range segs[k].Status.Verdicts {
			out = append(out, model.VerdictEvent{At: v.LastSeen.UTC(), FirstAt: v.FirstSeen.UTC(), Count: int(v.Count), Endpoint: v.Endpoint,
				Verdict: model.Verdict(v.Verdict), RuleID: v.RuleID, Source: v.Source, Destination: v.Destination,
				Protocol: model.Protocol(v.Protocol), Port: uint16(v.Port)})
		}
	}
	slices.SortStableFunc(out, func(a, b model.VerdictEvent) int { return a.At.Compare(b.At) })
	return out
}

func (o *observations) Observed(since time.Time) ([]model.ObservedSpan, error) {
	var out []model.ObservedSpan
	for _, sp := range o.spans {
		if since.IsZero() || !sp.End.Before(since) {
			out = append(out, sp)
		}
	}
	return out, nil
}
