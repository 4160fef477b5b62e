package controller

import (
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

// TestCountDeniedOncePerAttempt: an attempt logged by both ends' rule sets
// counts once and names both; other workloads' events are left out.
func TestCountDeniedOncePerAttempt(t *testing.T) {
	evs := []model.VerdictEvent{
		{Verdict: "audit-deny", Source: "shop/intruder", SrcPort: 40000, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432, RuleID: "shop/db-0"},
		{Verdict: "audit-deny", Source: "shop/intruder", SrcPort: 40000, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432, RuleID: "shop/intruder-0"},
		{Verdict: "audit-deny", Source: "shop/intruder", SrcPort: 40001, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432, RuleID: "shop/db-0"},
		{Verdict: "deny", Source: "shop/web", SrcPort: 40002, Destination: "shop/api", Protocol: model.ProtocolTCP, Port: 80, RuleID: "x"},
	}
	got := countDenied(evs, "shop/db")
	if len(got) != 1 || got[0].Count != 2 || got[0].RuleID != "shop/db-0,shop/intruder-0" {
		t.Fatalf("countDenied = %+v; want one group of 2 attempts logged by both rule sets", got)
	}
	// The ends in different modes: the client audits, the server enforces.
	mixed := []model.VerdictEvent{
		{Verdict: "audit-deny", Source: "shop/intruder", SrcPort: 40010, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432, RuleID: "shop/intruder-0"},
		{Verdict: "deny", Source: "shop/intruder", SrcPort: 40010, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432, RuleID: "shop/db-0"},
	}
	got = countDenied(mixed, "shop/db")
	if len(got) != 1 || got[0].Verdict != "deny" || got[0].Count != 1 {
		t.Fatalf("mixed modes: countDenied = %+v; want one deny", got)
	}
}
