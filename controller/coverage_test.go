package controller_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
)

var t0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

func span(ep, w string, start, end time.Duration) model.ObservedSpan {
	return model.ObservedSpan{Endpoint: ep, Workload: w, Start: t0.Add(start), End: t0.Add(end)}
}

func tcpEdge(src, dst string, port uint16, first, last time.Duration, flows, failed uint64) model.Edge {
	e := edge(src, dst, port, model.VerdictCounts{Observed: flows})
	e.FirstSeen, e.LastSeen, e.Flows, e.Failed = t0.Add(first), t0.Add(last), flows, failed
	return e
}

func TestComputeCoverage(t *testing.T) {
	spans := []model.ObservedSpan{
		// db: two replicas overlapping, then a restart after a gap.
		span("db-0", "shop/db", 0, 10*time.Minute),
		span("db-1", "shop/db", 5*time.Minute, 20*time.Minute),
		span("db-0", "shop/db", 30*time.Minute, 40*time.Minute),
		span("web-0", "shop/web", 0, 40*time.Minute),
		span("intruder-0", "shop/intruder", 0, 40*time.Minute),
	}
	edges := []model.Edge{
		tcpEdge("web", "db", 5432, time.Minute, 35*time.Minute, 10, 0),
		tcpEdge("api", "db", 5432, 32*time.Minute, 33*time.Minute, 2, 0),
		tcpEdge("web", "db", 9999, 3*time.Minute, 4*time.Minute, 3, 3),
		tcpEdge("intruder", "web", 80, 2*time.Minute, 2*time.Minute, 1, 1),
	}
	// Everything: each window starts at the workload's first observation.
	got := controller.ComputeCoverage([]string{"shop/db", "shop/web", "shop/intruder", "shop/ghost"}, spans, edges, 0, time.Time{}, t0.Add(40*time.Minute))
	db := got[0]
	if db.Observed() != 30*time.Minute || db.Endpoints != 2 || !db.From.Equal(t0) || !db.FirstObserved.Equal(t0) {
		t.Errorf("db observed %v from %v with %d endpoints, want 30m (0-20m and 30-40m) from t0 with 2", db.Observed(), db.From, db.Endpoints)
	}
	if db.Flows != 15 || db.Failed != 3 || db.Peers != 2 || db.Silent || !db.LastNew.Equal(t0.Add(32*time.Minute)) {
		t.Errorf("db coverage %+v", db)
	}
	if len(db.Ports) != 2 || db.Ports[0].Port != 5432 || db.Ports[0].Peers != 2 || db.Ports[0].Flows != 12 || !db.Ports[0].LastNew.Equal(t0.Add(32*time.Minute)) ||
		db.Ports[1].Port != 9999 || db.Ports[1].Failed != 3 {
		t.Errorf("db ports %+v", db.Ports)
	}
	if web := got[1]; web.Ports[0].Port != 80 || web.Peers != 2 || web.Silent {
		t.Errorf("web coverage %+v", web)
	}
	// The intruder only failed: silent.
	if in := got[2]; !in.Silent || in.Flows != 1 || !strings.Contains(in.Summary(), "silent") {
		t.Errorf("intruder coverage %+v (%s)", in, in.Summary())
	}
	if g := got[3]; g.Observed() != 0 || !g.Silent || !g.From.IsZero() {
		t.Errorf("ghost coverage %+v", g)
	}
	// A 15-minute window ending at 40m: db observed 30-40m only; edges
	// last seen before it, or first seen after its end, do not count.
	got = controller.ComputeCoverage([]string{"shop/db"}, spans, edges, 15*time.Minute, t0.Add(25*time.Minute), t0.Add(40*time.Minute))
	if db := got[0]; db.Observed() != 10*time.Minute || db.Window() != 15*time.Minute || db.Flows != 12 || db.Endpoints != 1 {
		t.Errorf("db in the last 15m: %+v", db)
	}
	got = controller.ComputeCoverage([]string{"shop/db"}, spans, edges, 0, time.Time{}, t0.Add(31*time.Minute))
	if db := got[0]; db.Flows != 13 || db.Peers != 1 {
		t.Errorf("db up to 31m counts an edge first seen after: %+v", db)
	}
}

func TestGateReasons(t *testing.T) {
	c := model.Coverage{Workload: "shop/db", ObservedSeconds: 35, Flows: 3}
	if r := controller.GateReasons(c, 24*time.Hour, time.Hour); len(r) != 2 || !strings.Contains(r[0], "observed for 35s, less than the 1h required") ||
		!strings.Contains(r[1], "asked for a 24h window") {
		t.Errorf("reasons %q", r)
	}
	// A window shorter than the minimum can never pass: the reason says so.
	c10 := model.Coverage{Workload: "shop/db", ObservedSeconds: 600, Flows: 3}
	if r := controller.GateReasons(c10, 10*time.Minute, time.Hour); len(r) != 1 || !strings.Contains(r[0], "which its 10m window (--window) can never hold") {
		t.Errorf("reasons %q for a 10m window fully observed under a 1h minimum", r)
	}
	if r := controller.GateReasons(c, 24*time.Hour, time.Hour); strings.Contains(r[0], "never hold") {
		t.Errorf("reasons %q: a 24h window can hold 1h", r)
	}
	c.ObservedSeconds = (24*time.Hour - 5*time.Minute).Seconds() // within the slack of a day
	if r := controller.GateReasons(c, 24*time.Hour, time.Hour); len(r) != 0 {
		t.Errorf("reasons %q for a window observed but for its last minutes", r)
	}
	c.Silent = true
	if r := controller.GateReasons(c, 0, -1); len(r) != 1 || !strings.Contains(r[0], "no observed traffic") {
		t.Errorf("reasons %q for a silent workload", r)
	}
}

// proposeFixture: web -> db observed for 2 minutes, a scan of db's
// closed port 9999 by web, the intruder silent.
func proposeFixture(t *testing.T, observed time.Duration) fixture {
	f := newFixture(t)
	now := time.Now().UTC()
	var spans []model.ObservedSpan
	for _, ep := range []struct{ ep, w string }{{"web-0", "shop/web"}, {"web-1", "shop/web"}, {"db-0", "shop/db"}, {"intruder-0", "shop/intruder"}} {
		spans = append(spans, model.ObservedSpan{Endpoint: ep.ep, Workload: ep.w, Start: now.Add(-observed), End: now})
	}
	if err := f.mem.RecordObserved(spans); err != nil {
		t.Fatal(err)
	}
	ok := edge("web", "db", 5432, model.VerdictCounts{Observed: 4})
	ok.Flows = 4
	scan := edge("web", "db", 9999, model.VerdictCounts{Observed: 3})
	scan.Flows, scan.Failed, scan.Reset = 3, 3, 3
	half := edge("web", "db", 6000, model.VerdictCounts{Observed: 2})
	half.Flows, half.Failed, half.Reset = 2, 1, 1
	if err := f.mem.MergeEdges([]model.Edge{ok, scan, half}); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestProposeLeavesOutFailedAndReportsCoverage(t *testing.T) {
	f := proposeFixture(t, 2*time.Minute)
	rep, err := f.svc.Propose(time.Hour, false, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failed) != 1 || !strings.Contains(rep.Failed[0], "shop/web -> shop/db TCP/9999: 3 connections in the window, all failed (3 refused (reset))") {
		t.Errorf("failed lines %q", rep.Failed)
	}
	var db *controller.ProposeResult
	for i := range rep.Proposals {
		if rep.Proposals[i].Workload == "shop/db" {
			db = &rep.Proposals[i]
		}
	}
	if db == nil {
		t.Fatalf("no proposal for shop/db: %+v", rep)
	}
	var ports []string
	for _, r := range db.Revision.Policy.Spec.Ingress {
		for _, p := range r.Ports {
			if p.Port != nil {
				ports = append(ports, p.Port.String())
			}
		}
	}
	if s := strings.Join(ports, ","); strings.Contains(s, "9999") || !strings.Contains(s, "5432") || !strings.Contains(s, "6000") {
		t.Errorf("proposal ports %s: want 5432 and 6000 (one success), never 9999 (only refused)", s)
	}
	if db.Revision.Window != time.Hour {
		t.Errorf("revision window %v, want the 1h asked", db.Revision.Window)
	}
	if rep.WindowSeconds != 3600 || len(rep.Coverage) != 3 {
		t.Fatalf("coverage %+v", rep.Coverage)
	}
	for _, c := range rep.Coverage {
		if c.Observed() < 119*time.Second || c.Observed() > 121*time.Second {
			t.Errorf("%s observed %v, want 2m", c.Workload, c.Observed())
		}
	}
	if len(rep.Silent) != 1 || !strings.HasPrefix(rep.Silent[0], "shop/intruder: observed 2m of the 1h window asked, silent") {
		t.Errorf("silent %q", rep.Silent)
	}
}

func TestPromoteToEnforceIsGated(t *testing.T) {
	f := proposeFixture(t, 2*time.Minute)
	if _, err := f.svc.Propose(time.Hour, false, "ops"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Audit is never gated.
	if _, err := f.svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeAudit, Reason: "learn"}, "ops"); err != nil {
		t.Fatalf("audit: %v", err)
	}
	_, err := f.svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeEnforce, Reason: "go"}, "ops")
	var ce *controller.CoverageError
	if !errors.As(err, &ce) || !errors.Is(err, controller.ErrCoverage) {
		t.Fatalf("enforce after 2m of observation: %v, want a CoverageError", err)
	}
	msg := err.Error()
	for _, want := range []string{"shop/db", "observed for 2m, less than the 1h required", "asked for a 1h window (--window) but it was observed for only 2m of it",
		"shop/intruder, in its namespace, had no observed traffic", "--force"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal lacks %q:\n%s", want, msg)
		}
	}
	if st := f.state(t, "shop/db"); st.Mode != model.ModeAudit {
		t.Errorf("refused promotion changed the state: %+v", st)
	}
	// A lower threshold per request leaves the window and the silent peer.
	_, err = f.svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeEnforce, Reason: "go", MinObserved: time.Minute}, "ops")
	if !errors.As(err, &ce) || len(ce.Reasons) != 2 {
		t.Errorf("with --min-observed 1m: %v", err)
	}
	// Forced: promoted, the reasons recorded in the hash-chained event.
	res, err := f.svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeEnforce, Reason: "go", Force: true}, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Promotion.Forced) != 3 || len(res.Warnings) != 3 || res.Coverage == nil || res.Promotion.ToMode != model.ModeEnforce {
		t.Errorf("forced promotion %+v", res)
	}
	hist, _ := f.mem.History("shop/db")
	if last := hist[len(hist)-1]; len(last.Forced) != 3 || last.Hash != last.ChainHash() {
		t.Errorf("history event %+v", last)
	}
	// Already in enforce at that revision: unchanged, no gate.
	if res, err := f.svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeEnforce, Reason: "again"}, "ops"); err != nil || !res.Unchanged {
		t.Errorf("promote again: %+v, %v", res, err)
	}
}

func TestPromoteWellObservedAndDeclared(t *testing.T) {
	f := proposeFixture(t, 3*time.Hour)
	// The intruder talks too now.
	in := edge("intruder", "web", 80, model.VerdictCounts{Observed: 1})
	if err := f.mem.MergeEdges([]model.Edge{in}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Propose(time.Hour, false, "ops"); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Promote(context.Background(), controller.PromoteRequest{Workload: "shop/db", To: model.ModeEnforce, Reason: "go"}, "ops")
	if err != nil || len(res.Promotion.Forced) != 0 || res.Coverage == nil || res.Coverage.Observed() < 59*time.Minute {
		t.Fatalf("well-observed promotion: %+v, %v", res, err)
	}
	// A declared revision is the operator's own: not gated.
	g := newFixture(t)
	g.apply(t, "5432")
	if res := g.promote(t, model.ModeEnforce, 0); res.Coverage != nil || len(res.Promotion.Forced) != 0 {
		t.Errorf("declared revision gated: %+v", res)
	}
}

// Attempts the dataplane denied are no traffic either: a workload whose
// every attempt was denied is silent.
func TestCoverageDeniedIsSilent(t *testing.T) {
	e := tcpEdge("intruder", "db", 5432, 0, time.Minute, 2, 0)
	e.Verdicts = model.VerdictCounts{Denied: 2}
	got := controller.ComputeCoverage([]string{"shop/intruder", "shop/db"}, []model.ObservedSpan{span("intruder-0", "shop/intruder", 0, time.Hour)},
		[]model.Edge{e, tcpEdge("web", "db", 5432, 0, time.Minute, 1, 0)}, 0, time.Time{}, t0.Add(time.Hour))
	if !got[0].Silent || got[0].Flows != 2 || got[1].Silent {
		t.Errorf("coverage %+v", got)
	}
}
