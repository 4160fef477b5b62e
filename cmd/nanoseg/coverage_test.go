package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/model"
)

// The CLI's side of coverage: propose prints the coverage report, the
// failed edges it left out and the silent workloads; promote to enforce
// prints the gate's refusal (every reason) and, forced, the warnings;
// diff and status show coverage.
func TestCoverageCommands(t *testing.T) {
	mem, _, ts := testAgent(t, &controllertest.Node{})
	now := time.Now().UTC()
	var spans []model.ObservedSpan
	for _, ep := range []struct{ ep, w string }{{"web-0", "shop/web"}, {"db-0", "shop/db"}, {"intruder-0", "shop/intruder"}} {
		spans = append(spans, model.ObservedSpan{Endpoint: ep.ep, Workload: ep.w, Start: now.Add(-2 * time.Minute), End: now})
	}
	peer := func(w string) model.Peer {
		return model.Peer{Namespace: "shop", Workload: w, Labels: map[string]string{"app": w}}
	}
	ok := model.Edge{Source: peer("web"), Destination: peer("db"), Protocol: model.ProtocolTCP, Port: 5432,
		Traffic: model.Traffic{FirstSeen: now.Add(-time.Minute), LastSeen: now, Flows: 4, Verdicts: model.VerdictCounts{Observed: 4}}}
	scan := ok
	scan.Port, scan.Flows, scan.Failed, scan.Reset = 9999, 3, 3, 3
	if err := mem.RecordObserved(spans); err != nil {
		t.Fatal(err)
	}
	if err := mem.MergeEdges([]model.Edge{ok, scan}); err != nil {
		t.Fatal(err)
	}

	out, err := runAgainst(t, ts.URL, "policy", "propose", "--window", "1h")
	if err != nil {
		t.Fatalf("propose: %v\n%s", err, out)
	}
	for _, want := range []string{
		"left out, because every connection failed (never learned as allows):",
		"shop/web -> shop/db TCP/9999: 3 connections in the window, all failed (3 refused (reset))",
		"coverage (of the 1h window asked):", "5432/TCP(1),9999/TCP(1)", "2m of 1h",
		"silent in the window", "shop/intruder: observed 2m of the 1h window asked, silent",
		"allow them only through widened rules", "promote to enforce of their namespace refuses",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("propose output lacks %q:\n%s", want, out)
		}
	}

	out, err = runAgainst(t, ts.URL, "promote", "shop/db", "--to", "enforce", "--reason", "go")
	if err == nil || !strings.Contains(err.Error(), "coverage too thin to enforce: shop/db: observed for 2m, less than the 1h required") ||
		!strings.Contains(err.Error(), "shop/intruder, in its namespace, had no observed traffic") {
		t.Errorf("promote to enforce: %v\n%s", err, out)
	}
	// --min-observed 0 is no minimum, as agent.minObserved 0 is: the
	// other reasons remain.
	out, err = runAgainst(t, ts.URL, "promote", "shop/db", "--to", "enforce", "--min-observed", "0", "--reason", "go")
	if err == nil || strings.Contains(err.Error(), "required (--min-observed)") || !strings.Contains(err.Error(), "shop/intruder, in its namespace, had no observed traffic") {
		t.Errorf("promote to enforce --min-observed 0: %v\n%s", err, out)
	}
	out, err = runAgainst(t, ts.URL, "promote", "shop/db", "--to", "enforce", "--min-observed", "1m", "--force", "--reason", "go")
	if err != nil || strings.Count(out, "warning: forced (recorded in the history):") != 2 || !strings.Contains(out, "coverage of its proposal: observed 2m of the 1h window asked") {
		t.Errorf("forced promote (the minimum lowered to 1m): %v\n%s", err, out)
	}

	out, err = runAgainst(t, ts.URL, "policy", "diff")
	if err != nil || !strings.Contains(out, "coverage (of everything observed):") {
		t.Errorf("diff: %v\n%s", err, out)
	}
	out, err = runAgainst(t, ts.URL, "status")
	if err != nil || !strings.Contains(out, "OBSERVED") || !strings.Contains(out, "shop/intruder: silent") {
		t.Errorf("status: %v\n%s", err, out)
	}
}
