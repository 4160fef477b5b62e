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
	c := Config{NodeName: "a b", Listen: "nohost", FlushInterval: -1, MaxEdges: -1}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"node.nodeName", "node.listen", "node.flushInterval", "node.maxEdges"} {
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
