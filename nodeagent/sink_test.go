package nodeagent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// TestMemSinkBounds: edges merge by key and the least recently seen go
// first beyond MaxEdges; verdicts keep the latest MaxVerdicts, oldest
// first; what was dropped is counted.
func TestMemSinkBounds(t *testing.T) {
	s := NewMemSink(10, 3)
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	edge := func(i int, at time.Time) model.Edge {
		return model.Edge{Source: model.Peer{Namespace: "shop", Workload: "web"}, Destination: model.Peer{Namespace: "shop", Workload: fmt.Sprintf("db-%d", i)},
			Protocol: "TCP", Port: 5432, Traffic: model.Traffic{FirstSeen: at, LastSeen: at, Flows: 1}}
	}
	for i := range 10 {
		if err := s.MergeEdges([]model.Edge{edge(i, t0.Add(time.Duration(i)*time.Second))}); err != nil {
			t.Fatal(err)
		}
	}
	// db-0 seen again: most recent now, merged.
	_ = s.MergeEdges([]model.Edge{edge(0, t0.Add(time.Hour))})
	// One more edge: over the bound, the least recently seen (db-1, and a tenth more: one) go.
	_ = s.MergeEdges([]model.Edge{edge(10, t0.Add(2*time.Hour))})
	edges, _ := s.Edges(time.Time{})
	var names []string
	for _, e := range edges {
		names = append(names, e.Destination.Workload)
		if e.Destination.Workload == "db-0" && e.Flows != 2 {
			t.Errorf("db-0 has %d flows, want 2 (merged)", e.Flows)
		}
	}
	got := strings.Join(names, ",")
	if strings.Contains(got, "db-1,") || !strings.Contains(got, "db-0") || !strings.Contains(got, "db-10") || len(edges) > 10 {
		t.Errorf("edges kept: %s", got)
	}
	for i := range 5 {
		_ = s.AddVerdicts([]model.VerdictEvent{{At: t0.Add(time.Duration(i) * time.Second), RuleID: fmt.Sprint(i)}})
	}
	vs, _ := s.Verdicts(time.Time{})
	var ids []string
	for _, v := range vs {
		ids = append(ids, v.RuleID)
	}
	if strings.Join(ids, ",") != "2,3,4" {
		t.Errorf("verdicts kept: %v, want 2,3,4", ids)
	}
	if de, dv := s.Dropped(); de < 1 || dv != 2 {
		t.Errorf("dropped %d edges, %d verdicts; want ≥1 and 2", de, dv)
	}
}

// TestConfigValidate names every bad field at once.
func TestConfigValidate(t *testing.T) {
	c := Config{NodeName: "a b", Listen: "nohost", FlushInterval: -1, MaxEdges: -1, Controller: "http://x", ControllerCA: "configmap:x"}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"node.nodeName", "node.listen", "node.flushInterval", "node.maxEdges", "node.controller", "node.controllerCA"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Errorf("empty node name: %v", err)
	}
	ok := Config{NodeName: "node-a", Listen: ":9990"}
	ok.Defaults()
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestMemSinkPending: Take gives what changed since the last Ack, at
// most maxItems of each kind; a change after Take stays pending through
// the Ack; verdict events the ring overwrote before they were sent are
// not offered; Resync makes everything pending again.
func TestMemSinkPending(t *testing.T) {
	s := NewMemSink(100, 5)
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	edge := func(i int, flows uint64) model.Edge {
		return model.Edge{Source: model.Peer{Namespace: "shop", Workload: "web"}, Destination: model.Peer{Namespace: "shop", Workload: fmt.Sprintf("db-%d", i)},
			Protocol: "TCP", Port: 5432, Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0, Flows: flows}}
	}
	for i := range 3 {
		_ = s.MergeEdges([]model.Edge{edge(i, 1)})
	}
	_ = s.RecordObserved([]model.ObservedSpan{{Endpoint: "shop_web-0", Workload: "shop/web", Start: t0, End: t0.Add(time.Second)}})
	_ = s.AddVerdicts([]model.VerdictEvent{{RuleID: "v0"}, {RuleID: "v1"}})

	p := s.Take(2)
	if len(p.Edges) != 2 || len(p.Spans) != 1 || len(p.Verdicts) != 2 || !p.More {
		t.Fatalf("take 2: %d edges %d spans %d verdicts more %v", len(p.Edges), len(p.Spans), len(p.Verdicts), p.More)
	}
	// Changed after the Take: stays pending through the Ack.
	changed := p.Edges[0].Destination.Workload
	_ = s.MergeEdges([]model.Edge{{Source: p.Edges[0].Source, Destination: p.Edges[0].Destination, Protocol: "TCP", Port: 5432, Traffic: model.Traffic{Flows: 1}}})
	s.Ack(p)
	p = s.Take(10)
	var names []string
	for _, e := range p.Edges {
		names = append(names, e.Destination.Workload)
	}
	if len(p.Edges) != 2 || !strings.Contains(strings.Join(names, ","), changed) || len(p.Spans) != 0 || len(p.Verdicts) != 0 || p.More {
		t.Errorf("after the ack: edges %v spans %d verdicts %d more %v; want the one left and %s (changed after Take)", names, len(p.Spans), len(p.Verdicts), p.More, changed)
	}
	s.Ack(p)
	if e, sp, v := s.PendingCount(); e+sp != 0 || v != 0 {
		t.Errorf("pending %d %d %d after acking everything", e, sp, v)
	}
	// Eight verdict events into a ring of five: the three overwritten are
	// never offered (and counted dropped).
	for i := range 8 {
		_ = s.AddVerdicts([]model.VerdictEvent{{RuleID: fmt.Sprintf("w%d", i)}})
	}
	p = s.Take(10)
	var ids []string
	for _, v := range p.Verdicts {
		ids = append(ids, v.RuleID)
	}
	if strings.Join(ids, ",") != "w3,w4,w5,w6,w7" {
		t.Errorf("verdicts offered %v, want w3..w7", ids)
	}
	s.Ack(p)
	s.Resync()
	p = s.Take(10)
	if len(p.Edges) != 3 || len(p.Spans) != 1 || len(p.Verdicts) != 5 {
		t.Errorf("after Resync: %d edges %d spans %d verdicts, want everything held (3, 1, 5)", len(p.Edges), len(p.Spans), len(p.Verdicts))
	}
}
