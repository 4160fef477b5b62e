package kube

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// TestStatusVerdicts: verdict events aggregate per kind of attempt and
// logging endpoint, with counts and first and last times; a status's
// earlier entries survive a graph that lost them (a new leader), counts
// never go down, entries older than the window go, and the newest come
// first within the bound.
func TestStatusVerdicts(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	ev := func(at time.Duration, ep string, v model.Verdict, port uint16) model.VerdictEvent {
		return model.VerdictEvent{At: t0.Add(at), Endpoint: ep, Verdict: v, RuleID: "r1", Source: "shop/intruder", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: port}
	}
	aggs := aggregateVerdicts([]model.VerdictEvent{
		ev(0, "shop_db-0", model.VerdictDeny, 5432), ev(2*time.Second, "shop_db-0", model.VerdictDeny, 5432),
		ev(time.Second, "shop_db-0", model.VerdictDeny, 22), ev(3*time.Second, "shop_web-0", model.VerdictAuditDeny, 80),
	}, nil)
	got := mergeVerdicts(nil, []string{"shop_db-0"}, aggs, t0.Add(-time.Hour))
	if len(got) != 2 || got[0].Port != 5432 || got[0].Count != 2 || !got[0].FirstSeen.Time.Equal(t0) || !got[0].LastSeen.Time.Equal(t0.Add(2*time.Second)) ||
		got[1].Port != 22 || got[1].Count != 1 {
		t.Fatalf("aggregated: %+v", got)
	}
	// A new leader's graph holds one new event of 5432 only.
	prev := append(got, v1alpha1.VerdictCount{Verdict: "deny", Source: "old", Destination: "shop/db", Protocol: "TCP", Port: 1, Endpoint: "shop_db-0", Count: 9,
		FirstSeen: metav1.NewTime(t0.Add(-2 * time.Hour)), LastSeen: metav1.NewTime(t0.Add(-2 * time.Hour))})
	aggs = aggregateVerdicts([]model.VerdictEvent{ev(time.Minute, "shop_db-0", model.VerdictDeny, 5432)}, map[string][]string{"r1": {"NanoSegment shop/db"}})
	got = mergeVerdicts(prev, []string{"shop_db-0"}, aggs, t0.Add(-time.Hour))
	if len(got) != 2 || got[0].Port != 5432 || got[0].Count != 2 || !got[0].FirstSeen.Time.Equal(t0) || !got[0].LastSeen.Time.Equal(t0.Add(time.Minute)) ||
		len(got[0].DecidedBy) != 1 || got[0].DecidedBy[0] != "NanoSegment shop/db" {
		t.Errorf("merged: %+v", got)
	}
	// Bounded, newest first.
	var many []model.VerdictEvent
	for i := range v1alpha1.MaxStatusVerdicts + 10 {
		many = append(many, ev(time.Duration(i)*time.Second, "shop_db-0", model.VerdictDeny, uint16(1000+i)))
	}
	got = mergeVerdicts(nil, []string{"shop_db-0"}, aggregateVerdicts(many, nil), t0.Add(-time.Hour))
	if len(got) != v1alpha1.MaxStatusVerdicts || got[0].Port != int32(1000+v1alpha1.MaxStatusVerdicts+9) {
		t.Errorf("bounded: %d entries, first port %d", len(got), got[0].Port)
	}
}

// TestStatusCounters: an endpoint's kernel counters add up per node and
// rule id, and a change of counters alone is told apart from any other.
func TestStatusCounters(t *testing.T) {
	ns := &v1alpha1.NodeSync{Node: "node-a"}
	for range 2 {
		addCounters(ns, EndpointReport{Counters: map[string]evidence.Count{"r1": {Packets: 2, Bytes: 120}, "r2": {Packets: 1, Bytes: 60}},
			Defaults: map[model.Direction]evidence.Count{model.Ingress: {Packets: 3, Bytes: 180}}})
	}
	ns.RuleHits = busiest(ns.RuleHits, 1)
	if len(ns.RuleHits) != 1 || ns.RuleHits[0] != (v1alpha1.RuleHits{RuleID: "r1", Packets: 4, Bytes: 240}) ||
		len(ns.DefaultHits) != 1 || ns.DefaultHits[0] != (v1alpha1.DefaultHits{Direction: "Ingress", Packets: 6, Bytes: 360}) {
		t.Errorf("node counters: %+v", ns)
	}
	a := v1alpha1.NanoSegmentStatus{InSync: 1, Nodes: []v1alpha1.NodeSync{*ns}}
	b := *a.DeepCopy()
	b.Nodes[0].RuleHits[0].Packets++
	if !sameJSON(withoutCounters(a), withoutCounters(b)) || sameJSON(a, b) {
		t.Error("a change of counters alone not told apart")
	}
	b.InSync = 0
	if sameJSON(withoutCounters(a), withoutCounters(b)) {
		t.Error("a change of in-sync taken for counters")
	}
}
