//go:build linux

package kube

// A stand-in for the transport's Graph (another branch), small enough to
// test the controller against a real API server before it lands.

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// fakeGraph is an observation graph the test fills.
type fakeGraph struct {
	mu      sync.Mutex
	edges   []model.Edge
	spans   []model.ObservedSpan
	reports []NodeReport
}

func (g *fakeGraph) set(edges []model.Edge, spans []model.ObservedSpan, reports []NodeReport) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.edges, g.spans, g.reports = edges, spans, reports
}

func (g *fakeGraph) Edges(since time.Time) ([]model.Edge, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []model.Edge
	for _, e := range g.edges {
		if since.IsZero() || !e.LastSeen.Before(since) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b model.Edge) int { return strings.Compare(string(store.EdgeKey(a)), string(store.EdgeKey(b))) })
	return out, nil
}

func (g *fakeGraph) Verdicts(time.Time) ([]model.VerdictEvent, error) { return nil, nil }

func (g *fakeGraph) Observed(since time.Time) ([]model.ObservedSpan, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []model.ObservedSpan{}
	for _, sp := range g.spans {
		if since.IsZero() || !sp.End.Before(since) {
			out = append(out, sp)
		}
	}
	store.SortSpans(out)
	return out, nil
}

func (g *fakeGraph) Reports() []NodeReport {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.reports)
}
