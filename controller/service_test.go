package controller_test

// Unit tests of the service over the in-memory store, the shop inventory
// and a fake node: no root, no kernel.

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

const dbPolicy = `apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  ingress:
    - id: from-web
      peers: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{protocol: TCP, port: 5432}]
`

type fixture struct {
	svc  *controller.Service
	mem  *store.Mem
	node *controllertest.Node
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	mem := store.NewMem()
	node := &controllertest.Node{}
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), node, nil)
	return fixture{svc: svc, mem: mem, node: node}
}

// apply stores dbPolicy (with spec.ingress port p) as a declared revision.
func (f fixture) apply(t *testing.T, port string) store.Revision {
	t.Helper()
	revs, err := f.svc.ApplyPolicies("db.yaml", []byte(strings.Replace(dbPolicy, "port: 5432", "port: "+port, 1)), "alice")
	if err != nil || len(revs) != 1 {
		t.Fatalf("apply: %v, %v", revs, err)
	}
	return revs[0]
}

func (f fixture) promote(t *testing.T, to model.Mode, rev int) controller.PromoteResult {
	t.Helper()
	res, err := f.svc.Promote(context.Background(), controller.PromoteRequest{Workload: "shop/db", To: to, Revision: rev, Reason: "test"}, "ops")
	if err != nil {
		t.Fatalf("promote shop/db to %s rev %d: %v", to, rev, err)
	}
	return res
}

func (f fixture) state(t *testing.T, w string) store.WorkloadState {
	t.Helper()
	st, err := f.mem.State(w)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func edge(src, dst string, port uint16, v model.VerdictCounts) model.Edge {
	t0 := time.Now().Add(-time.Minute)
	return model.Edge{Source: model.Peer{Namespace: "shop", Workload: src, Labels: map[string]string{"app": src}}, Destination: model.Peer{Namespace: "shop", Workload: dst, Labels: map[string]string{"app": dst}}, Protocol: model.ProtocolTCP, Port: port, Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0, Flows: 1, Verdicts: v}}
}

// recent returns an edge last seen 10 s ago with the given lifetime
// verdict counters.
func recent(src, dst string, port uint16, v model.VerdictCounts) model.Edge {
	e := edge(src, dst, port, v)
	e.LastSeen = time.Now().Add(-10 * time.Second)
	return e
}

// deny returns a verdict event of an attempt from src to dst:port at,
// logged by endpoint netns.
func deny(at time.Time, verdict model.Verdict, netns, src, dst string, srcPort, port uint16) model.VerdictEvent {
	return model.VerdictEvent{At: at, Endpoint: netns, Verdict: verdict, RuleID: "shop/" + netns, Source: "shop/" + src, SrcPort: srcPort,
		Destination: "shop/" + dst, Protocol: model.ProtocolTCP, Port: port}
}

func TestProposeStoresNewRevisionsAndLeavesDeniedOut(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432") // db: ingress from web only
	f.promote(t, model.ModeAudit, 1)
	audited := time.Now()
	if err := f.mem.MergeEdges([]model.Edge{
		recent("web", "db", 5432, model.VerdictCounts{Observed: 3}),
		recent("intruder", "db", 5432, model.VerdictCounts{Observed: 1, AuditDenied: 1}),
	}); err != nil {
		t.Fatal(err)
	}
	// One attempt, logged at both ends.
	if err := f.mem.AddVerdicts([]model.VerdictEvent{
		deny(audited, "audit-deny", "db-0", "intruder", "db", 40000, 5432),
		deny(audited, "audit-deny", "intruder-0", "intruder", "db", 40000, 5432),
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := f.svc.Propose(0, false, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if f.node.Flushes() == 0 {
		t.Error("Propose did not flush the node's pending observations first")
	}
	want := "shop/intruder -> shop/db TCP/5432: 1 audit-denied in the window, the last at " + audited.UTC().Format(time.RFC3339) +
		" by shop/db revision 1 (audit); the policies in force still audit-deny it"
	if len(rep.Excluded) != 1 || rep.Excluded[0] != want {
		t.Errorf("excluded = %q, want [%q]", rep.Excluded, want)
	}
	byW := map[string]controller.ProposeResult{}
	for _, p := range rep.Proposals {
		byW[p.Workload] = p
	}
	db, ok := byW["shop/db"]
	if !ok || !db.New || db.Revision.Number != 2 || db.Revision.Origin != store.OriginProposed || db.Revision.CreatedBy != "alice" {
		t.Fatalf("shop/db proposal = %+v (all: %+v)", db, rep.Proposals)
	}
	if got := len(db.Revision.Policy.Spec.Ingress); got != 1 {
		t.Errorf("shop/db proposal has %d ingress rules, want 1 (from web only)", got)
	}
	if len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0], "shop/intruder") {
		t.Errorf("skipped = %q, want shop/intruder named (its only edge was left out)", rep.Skipped)
	}
	// Same edges again: nothing new is stored.
	rep, err = f.svc.Propose(0, false, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Proposals {
		if p.New {
			t.Errorf("second proposal stored a copy: %+v", p)
		}
	}
	if revs, _ := f.mem.Revisions("shop/db"); len(revs) != 2 {
		t.Errorf("shop/db has %d revisions after proposing twice, want 2", len(revs))
	}
	// With the denied edge included, db's proposal changes.
	rep, err = f.svc.Propose(0, true, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Excluded) != 0 {
		t.Errorf("includeDenied still excluded %q", rep.Excluded)
	}
	if revs, _ := f.mem.Revisions("shop/db"); len(revs) != 3 {
		t.Errorf("shop/db has %d revisions after including the denied edge, want 3", len(revs))
	}
}

// TestProposeCountsOnlyDenialsInWindowThatStillHold: denials older than
// the window, or under a policy no longer in force, leave nothing out, and
// no workload vanishes from the proposal (issue 11, item 2: after a
// rollback, `propose --window 1m` left out edges for denials of a revision
// no longer in force, and whole workloads' rules with them).
func TestProposeCountsOnlyDenialsInWindowThatStillHold(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.apply(t, "5432") // db: ingress from web only
	f.promote(t, model.ModeEnforce, 1)
	// Under enforce, 90 s ago: intruder -> db and web -> db 80 (a port
	// revision 1 does not allow) were denied.
	old := time.Now().Add(-90 * time.Second)
	if err := f.mem.AddVerdicts([]model.VerdictEvent{
		deny(old, "deny", "db-0", "intruder", "db", 40000, 5432),
		deny(old.Add(time.Second), "deny", "db-0", "intruder", "db", 40001, 5432),
		deny(old, "deny", "db-0", "web", "db", 40002, 5433),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Rollback(ctx, controller.RollbackRequest{Workload: "shop/db"}, "ops"); err != nil {
		t.Fatal(err)
	}
	// The edges' lifetime counters carry the old denials; all were seen
	// again within the last minute.
	if err := f.mem.MergeEdges([]model.Edge{
		recent("web", "db", 5432, model.VerdictCounts{Observed: 700}),
		recent("web", "db", 5433, model.VerdictCounts{Observed: 3, Denied: 1}),
		recent("intruder", "db", 5432, model.VerdictCounts{Observed: 5, Denied: 2}),
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := f.svc.Propose(time.Minute, false, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Excluded) != 0 {
		t.Errorf("excluded %q for denials older than the window under a revision rolled back", rep.Excluded)
	}
	byW := map[string]controller.ProposeResult{}
	for _, p := range rep.Proposals {
		byW[p.Workload] = p
	}
	for w, rules := range map[string]int{"shop/db": 2, "shop/web": 1, "shop/intruder": 1} {
		p, ok := byW[w]
		if !ok {
			t.Errorf("%s missing from the proposal: %+v", w, rep.Proposals)
			continue
		}
		if n := len(p.Revision.Policy.Spec.Ingress) + len(p.Revision.Policy.Spec.Egress); n != rules {
			t.Errorf("%s proposal has %d rules, want %d", w, n, rules)
		}
	}

	// Denied inside the window under the policy in force: left out,
	// naming the revision and when. A denial in the window of an edge the
	// policy in force allows leaves nothing out.
	f.promote(t, model.ModeEnforce, 1)
	now := time.Now()
	if err := f.mem.AddVerdicts([]model.VerdictEvent{
		deny(now, "deny", "db-0", "intruder", "db", 41000, 5432),
		deny(now, "deny", "intruder-0", "intruder", "db", 41000, 5432),
		deny(now, "deny", "db-0", "web", "db", 41001, 5432),
	}); err != nil {
		t.Fatal(err)
	}
	rep, err = f.svc.Propose(time.Minute, false, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := "shop/intruder -> shop/db TCP/5432: 1 denied in the window, the last at " + now.UTC().Format(time.RFC3339) +
		" by shop/db revision 1 (enforce); the policies in force still deny it"
	if len(rep.Excluded) != 1 || rep.Excluded[0] != want {
		t.Errorf("excluded = %q, want [%q]", rep.Excluded, want)
	}
	for _, p := range rep.Proposals {
		if p.Workload == "shop/web" && len(p.Revision.Policy.Spec.Egress) != 1 {
			t.Errorf("shop/web proposal lost its egress to db: %+v", p.Revision.Policy.Spec)
		}
	}
}

func TestApplyPoliciesValidatesAllBeforeStoring(t *testing.T) {
	f := newFixture(t)
	r := f.apply(t, "5432")
	if r.Number != 1 || r.Workload != "shop/db" || r.Origin != store.OriginDeclared {
		t.Fatalf("revision = %+v", r)
	}
	if d := r.Policy.Spec.Ingress[0].Provenance.Declared; d == nil || d.By != "alice" {
		t.Errorf("declared rule provenance = %+v, want by alice", r.Policy.Spec.Ingress[0].Provenance)
	}
	if again := f.apply(t, "5432"); again.Number != 1 {
		t.Errorf("the same rules again stored revision %d, want 1 returned", again.Number)
	}
	nobody := strings.Replace(dbPolicy, "{app: db}}\n  ingress", "{app: nobody}}\n  ingress", 1)
	nobody = strings.Replace(nobody, "name: db,", "name: nobody,", 1)
	_, err := f.svc.ApplyPolicies("two.yaml", []byte(strings.Replace(dbPolicy, "5432", "5433", 1)+"---\n"+nobody), "alice")
	if !errors.Is(err, controller.ErrInvalid) || !strings.Contains(err.Error(), "selects no workload") {
		t.Fatalf("a document with one selector matching nothing: %v, want ErrInvalid naming it", err)
	}
	if revs, _ := f.mem.Revisions("shop/db"); len(revs) != 1 {
		t.Errorf("a refused document stored something: shop/db has %d revisions", len(revs))
	}
	if _, err := f.svc.ApplyPolicies("empty.yaml", []byte("{}\n"), "alice"); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("a document without policies: %v, want ErrInvalid", err)
	}
}

func TestPromoteRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for name, req := range map[string]controller.PromoteRequest{
		"unknown mode":      {Workload: "shop/db", To: "block", Reason: "r"},
		"no reason":         {Workload: "shop/db", To: model.ModeAudit, Reason: "  "},
		"negative revision": {Workload: "shop/db", To: model.ModeAudit, Revision: -1, Reason: "r"},
		"unknown workload":  {Workload: "shop/cache", To: model.ModeAudit, Reason: "r"},
		"no revision yet":   {Workload: "shop/db", To: model.ModeAudit, Reason: "r"},
	} {
		if _, err := f.svc.Promote(ctx, req, "ops"); !errors.Is(err, controller.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	f.apply(t, "5432")
	if _, err := f.svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeAudit, Revision: 7, Reason: "r"}, "ops"); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("missing revision 7: %v, want ErrInvalid", err)
	}
	if h, _ := f.mem.History(""); len(h) != 0 {
		t.Errorf("refused promotions recorded %d events", len(h))
	}
	if n := len(f.node.Enforced()); n != 0 {
		t.Errorf("refused promotions reached the node %d times", n)
	}
}

func TestPromoteRecordsAndConverges(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	r2 := f.apply(t, "5433")
	res := f.promote(t, model.ModeAudit, 1)
	p := res.Promotion
	if !res.Converged || p.Seq != 1 || p.Who != "ops" || p.FromMode != model.ModeObserve || p.ToMode != model.ModeAudit || p.ToRevision != 1 {
		t.Fatalf("promotion = %+v", res)
	}
	if m := f.node.Mode("shop", "db"); m != model.ModeAudit {
		t.Errorf("node enforces shop/db in %q, want audit", m)
	}
	// Revision 0: the latest.
	res = f.promote(t, model.ModeEnforce, 0)
	if res.Promotion.ToRevision != r2.Number || res.Promotion.FromRevision != 1 {
		t.Errorf("promotion to the latest = %+v, want revision %d from 1", res.Promotion, r2.Number)
	}
	if st := f.state(t, "shop/db"); st.Mode != model.ModeEnforce || st.Revision != 2 || st.Seq != 2 {
		t.Errorf("state = %+v", st)
	}
	// One endpoint fails to apply: recorded, not converged, the endpoint named.
	f.node.Errs = map[string]error{"db-0": errors.New("netlink: boom")}
	res = f.promote(t, model.ModeAudit, 0)
	if res.Converged || res.Errors["db-0"] != "netlink: boom" || res.Promotion.Seq != 3 {
		t.Errorf("promotion with a failing endpoint = %+v", res)
	}
	// An endpoint of another workload failing does not matter to shop/db.
	f.node.Errs = map[string]error{"web-0": errors.New("boom")}
	if res = f.promote(t, model.ModeEnforce, 0); !res.Converged {
		t.Errorf("web-0's error made shop/db not converged: %+v", res)
	}
}

func TestPromoteTimesOutWithoutConverging(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	f.node.Block = make(chan struct{}) // never converges
	res := f.promote(t, model.ModeEnforce, 0)
	if res.Converged || res.Promotion.Seq != 1 {
		t.Errorf("promotion without convergence = %+v, want recorded and not converged", res)
	}
	if st := f.state(t, "shop/db"); st.Mode != model.ModeEnforce {
		t.Errorf("state = %+v, want the promotion recorded anyway", st)
	}
}

// TestPromoteAll promotes every workload with a revision, as `nanoseg
// promote --all` does through the API: one recorded event each.
func TestPromoteAll(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	web := strings.NewReplacer("name: db", "name: web", "{app: db}", "{app: web}", "{app: web}}]", "{app: intruder}}]").Replace(dbPolicy)
	if _, err := f.svc.ApplyPolicies("web.yaml", []byte(web), "alice"); err != nil {
		t.Fatal(err)
	}
	revs, err := f.svc.Revisions("")
	if err != nil || len(revs) != 2 {
		t.Fatalf("revisions = %+v, %v", revs, err)
	}
	for _, r := range revs {
		res, err := f.svc.Promote(context.Background(), controller.PromoteRequest{Workload: r.Workload, To: model.ModeEnforce, Reason: "all"}, "ops")
		if err != nil || !res.Converged {
			t.Fatalf("promote %s: %+v, %v", r.Workload, res, err)
		}
	}
	for _, w := range []string{"shop/db", "shop/web"} {
		if st := f.state(t, w); st.Mode != model.ModeEnforce || st.Revision != 1 {
			t.Errorf("%s state = %+v", w, st)
		}
	}
	if m := f.node.Mode("shop", "web"); m != model.ModeEnforce {
		t.Errorf("node enforces shop/web in %q", m)
	}
	if h, _ := f.svc.History(""); len(h) != 2 {
		t.Errorf("history has %d events, want 2", len(h))
	}
}

func TestRollback(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rollback := func(to int) controller.PromoteResult {
		t.Helper()
		res, err := f.svc.Rollback(ctx, controller.RollbackRequest{Workload: "shop/db", ToRevision: to}, "ops")
		if err != nil {
			t.Fatalf("rollback to %d: %v", to, err)
		}
		return res
	}
	if _, err := f.svc.Rollback(ctx, controller.RollbackRequest{Workload: "shop/db"}, "ops"); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("rollback without promotions: %v, want ErrInvalid", err)
	}
	if _, err := f.svc.Rollback(ctx, controller.RollbackRequest{Workload: "shop/nope"}, "ops"); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("rollback of an unknown workload: %v, want ErrInvalid", err)
	}
	f.apply(t, "5432")
	f.apply(t, "5433")
	f.promote(t, model.ModeAudit, 1)   // 1: observe@0 -> audit@1
	f.promote(t, model.ModeEnforce, 2) // 2: audit@1 -> enforce@2

	// Plain rollback undoes the latest change in effect.
	res := rollback(0)
	p := res.Promotion
	if p.Action != model.ActionRollback || p.Undoes != 2 || p.ToMode != model.ModeAudit || p.ToRevision != 1 || p.Reason != "rollback" {
		t.Fatalf("first rollback = %+v", p)
	}
	if m := f.node.Mode("shop", "db"); m != model.ModeAudit {
		t.Errorf("node enforces shop/db in %q after rollback, want audit", m)
	}
	// Again: walks further back, to before promotion 1.
	if p = rollback(0).Promotion; p.Undoes != 1 || p.ToMode != model.ModeObserve || p.ToRevision != 0 {
		t.Fatalf("second rollback = %+v", p)
	}
	if st := f.state(t, "shop/db"); st.Mode != model.ModeObserve || st.Revision != 0 {
		t.Errorf("state after two rollbacks = %+v", st)
	}
	if len(f.node.Enforced()[len(f.node.Enforced())-1].NanoSegments) != 0 {
		t.Error("node still enforces a policy for shop/db at revision 0")
	}
	if _, err := f.svc.Rollback(ctx, controller.RollbackRequest{Workload: "shop/db"}, "ops"); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("rollback with nothing left to undo: %v, want ErrInvalid", err)
	}
	// --to-revision keeps the mode.
	f.promote(t, model.ModeEnforce, 2)
	if p = rollback(1).Promotion; p.ToMode != model.ModeEnforce || p.ToRevision != 1 || p.Undoes != 0 || p.FromRevision != 2 {
		t.Errorf("rollback to revision 1 = %+v", p)
	}
	// ... and is itself a change a plain rollback undoes.
	if p = rollback(0).Promotion; p.ToRevision != 2 || p.ToMode != model.ModeEnforce {
		t.Errorf("undo of the rollback to revision 1 = %+v, want back to revision 2", p)
	}
	if _, err := f.svc.Rollback(ctx, controller.RollbackRequest{Workload: "shop/db", ToRevision: 9}, "ops"); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("rollback to a missing revision: %v, want ErrInvalid", err)
	}
	if err := store.VerifyChain(f.mem); err != nil {
		t.Errorf("history after rollbacks: %v", err)
	}
}

// TestHistoryChainInEvidence: the evidence bundle reports whether the
// promotion history verifies, and an edited event breaks it.
func TestHistoryChainInEvidence(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	f.promote(t, model.ModeAudit, 0)
	f.promote(t, model.ModeEnforce, 0)
	bundle := func() evidence.Bundle {
		t.Helper()
		res, err := f.svc.Export(context.Background(), controller.ExportRequest{NoProbes: true, NoPDF: true}, "auditor")
		if err != nil {
			t.Fatal(err)
		}
		var b evidence.Bundle
		if err := json.Unmarshal(res.Files["bundle.json"], &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := bundle()
	if c := b.Policies.Chain; !c.Verified || c.Events != 2 || c.Head == "" {
		t.Errorf("chain of a fresh history = %+v", c)
	}
	if len(b.Policies.Active) != 1 || b.Policies.Active[0].Mode != "enforce" || b.Policies.Active[0].PromotedBy != "ops" {
		t.Errorf("active = %+v", b.Policies.Active)
	}
	f.mem.TamperHistory(1, func(p *model.Promotion) { p.Who = "mallory" })
	if c := bundle().Policies.Chain; c.Verified || !strings.Contains(c.Error, "event 1 was altered") {
		t.Errorf("chain after an edit = %+v, want broken at event 1", c)
	}
}

func TestStatus(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	f.promote(t, model.ModeAudit, 0)
	f.node.Counters = map[string]map[string]evidence.Count{"db-0": {"shop/db/from-web": {Packets: 3, Bytes: 180}}}
	f.node.DefaultHits = map[string]map[model.Direction]evidence.Count{"web-0": {model.Ingress: {Packets: 2, Bytes: 120}, model.Egress: {}},
		"web-1": {model.Ingress: {Packets: 5, Bytes: 300}, model.Egress: {}}}
	f.node.Errs = map[string]error{"web-1": errors.New("apply failed")}
	now := time.Now()
	if err := f.mem.AddVerdicts([]model.VerdictEvent{
		{At: now, Verdict: "audit-deny", RuleID: "shop/db-0", Source: "shop/intruder", SrcPort: 40000, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432},
		{At: now, Verdict: "audit-deny", RuleID: "shop/db-0", Source: "shop/intruder", SrcPort: 40001, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432},
		{At: now.Add(-time.Hour), Verdict: "deny", Source: "shop/intruder", SrcPort: 1, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432},
	}); err != nil {
		t.Fatal(err)
	}
	sts, err := f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	byW := map[string]controller.WorkloadStatus{}
	for _, s := range sts {
		byW[s.Workload] = s
	}
	if len(sts) != 3 {
		t.Fatalf("status has %d workloads, want 3: %+v", len(sts), sts)
	}
	db := byW["shop/db"]
	if db.Mode != model.ModeAudit || db.Revision != 1 || len(db.Endpoints) != 1 || !db.Endpoints[0].InSync {
		t.Errorf("shop/db status = %+v", db)
	}
	if len(db.RuleHits) != 1 || db.RuleHits[0].Packets != 3 || db.RuleHits[0].Bytes != 180 {
		t.Errorf("shop/db rule hits = %+v", db.RuleHits)
	}
	// The deny an hour ago was before the promotion: not counted.
	if db.WouldDeny != 2 || db.Denied != 0 || len(db.Breaks) != 1 || db.Breaks[0].Count != 2 {
		t.Errorf("shop/db would-deny %d, denied %d, breaks %+v", db.WouldDeny, db.Denied, db.Breaks)
	}
	web := byW["shop/web"]
	if web.Mode != model.ModeObserve || len(web.Endpoints) != 2 || web.Endpoints[1].InSync || web.Endpoints[1].Error != "apply failed" {
		t.Errorf("shop/web status = %+v", web)
	}
	// Default verdict counters are summed over the endpoints, by direction.
	if d := web.DefaultHits; len(d) != 2 || d[0] != (controller.DefaultHit{Direction: model.Egress}) || d[1] != (controller.DefaultHit{Direction: model.Ingress, Packets: 7, Bytes: 420}) {
		t.Errorf("shop/web default hits = %+v", d)
	}
}

// TestStatusNamesUnmanagedEndpoints: an endpoint the node has never
// programmed because another agent owns its netns (issue 11, item 3)
// shows the node's reason in status, not a silent "not in sync".
func TestStatusNamesUnmanagedEndpoints(t *testing.T) {
	f := newFixture(t)
	refusal := "netns db-0: managed by another nanoseg agent: pid 42, socket /run/nanoseg/agent.sock"
	f.node.Errs = map[string]error{"db-0": errors.New(refusal)}
	sts, err := f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		if s.Workload != "shop/db" {
			continue
		}
		if len(s.Endpoints) != 1 || s.Endpoints[0].Error != refusal || s.Endpoints[0].InSync {
			t.Errorf("shop/db endpoints = %+v, want the refusal as the error", s.Endpoints)
		}
		return
	}
	t.Fatalf("no shop/db in status %+v", sts)
}

// TestStatusShowsAdoptedTables (issue 11, item 4): an endpoint whose
// table the node adopted (found in enforce, unknown to the store) shows
// the adopted mode, while the workload's state is the store's.
func TestStatusShowsAdoptedTables(t *testing.T) {
	f := newFixture(t)
	f.node.Adopted = map[string]string{"db-0": "enforce"}
	sts, err := f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		for _, e := range s.Endpoints {
			want := ""
			if e.Netns == "db-0" {
				want = "enforce"
			}
			if e.Adopted != want {
				t.Errorf("%s endpoint %s adopted %q, want %q", s.Workload, e.Netns, e.Adopted, want)
			}
		}
	}
}

// TestEnforceNamesDecidedWorkloads (issue 11, item 4): the node is told
// which workloads the store has decided about, also one whose first
// promotion was rolled back (observe, revision 0: no policy in force), so
// that it weakens their tables as recorded and adopts only the others.
func TestEnforceNamesDecidedWorkloads(t *testing.T) {
	f := newFixture(t)
	if err := f.svc.Enforce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := f.node.Decided(); len(d) != 0 {
		t.Errorf("decided with an empty store: %v", d)
	}
	f.apply(t, "5432")
	f.promote(t, model.ModeEnforce, 0)
	if _, err := f.svc.Rollback(context.Background(), controller.RollbackRequest{Workload: "shop/db", Reason: "undo"}, "ops"); err != nil {
		t.Fatal(err)
	}
	enf := f.node.Enforced()
	if last := enf[len(enf)-1]; len(last.NanoSegments) != 0 {
		t.Errorf("policies in force after the rollback: %d, want none", len(last.NanoSegments))
	}
	if d := f.node.Decided(); len(d) != 1 || d[0] != "shop/db" {
		t.Errorf("decided after the rollback: %v, want [shop/db]", d)
	}
}

func TestExplain(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	explain := func(from, to, port string) model.Verdict {
		t.Helper()
		v, err := f.svc.Explain(from, to, port)
		if err != nil {
			t.Fatalf("explain %s -> %s %s: %v", from, to, port, err)
		}
		return v.Action
	}
	// Revision 1 exists but nothing is promoted: everything is allowed.
	if a := explain("shop/intruder", "shop/db", "5432/TCP"); a != model.VerdictAllow {
		t.Errorf("before promotion: intruder -> db = %s, want allow", a)
	}
	f.promote(t, model.ModeEnforce, 0)
	if a := explain("shop/web", "shop/db", "5432/tcp"); a != model.VerdictAllow {
		t.Errorf("web -> db = %s, want allow", a)
	}
	if a := explain("shop/intruder", "shop/db", "5432/TCP"); a != model.VerdictDeny {
		t.Errorf("intruder -> db = %s, want deny", a)
	}
	if a := explain("198.18.0.4", "shop/db-0", "5432/TCP"); a != model.VerdictDeny {
		t.Errorf("intruder's address -> db's endpoint = %s, want deny", a)
	}
	if a := explain("shop/web", "shop/db", "5433/TCP"); a != model.VerdictDeny {
		t.Errorf("web -> db on another port = %s, want deny", a)
	}
	for _, bad := range [][3]string{{"shop/web", "shop/db", "5432"}, {"shop/web", "shop/db", "5432/GRE"}, {"shop/web", "shop/db", "99999/TCP"}, {"nowhere", "shop/db", "5432/TCP"},
		// A workload or endpoint the inventory does not have is an error,
		// not a verdict.
		{"shop/nothere", "shop/db", "5432/TCP"}, {"shop/web", "shop/db-9", "5432/TCP"}, {"other/web", "shop/db", "5432/TCP"}} {
		if _, err := f.svc.Explain(bad[0], bad[1], bad[2]); !errors.Is(err, controller.ErrInvalid) {
			t.Errorf("explain %q: %v, want ErrInvalid", bad, err)
		}
	}
}

func TestVerifyComparesProbesWithPolicy(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	f.promote(t, model.ModeEnforce, 0)
	// A dataplane that lets everything through: every denied path is a
	// mismatch, every allowed one a match.
	f.node.Reach = func(_ model.Endpoint, _ string, _ netip.AddrPort) bool { return true }
	run, err := f.svc.Verify(context.Background(), controller.VerifyRequest{Scope: "shop/db"})
	if err != nil {
		t.Fatal(err)
	}
	if run.Probed == 0 || run.ExpectedDenied == 0 || run.ExpectedAllowed == 0 {
		t.Fatalf("probe run = %+v, want allowed and denied paths", run)
	}
	if run.Mismatches != run.ExpectedDenied {
		t.Errorf("mismatches = %d, want the %d denied paths", run.Mismatches, run.ExpectedDenied)
	}
	for _, r := range run.Results {
		if r.Destination == "shop/db" && r.Source == "shop/web" && !r.ExpectReach {
			t.Errorf("web -> db predicted denied: %+v", r)
		}
	}
	if _, err := f.svc.Verify(context.Background(), controller.VerifyRequest{Scope: "billing"}); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("unknown scope: %v, want ErrInvalid", err)
	}
}

// TestNegativeRevisionsRefused: a negative revision is refused everywhere
// with the field named, and records nothing (issue 11, item 7): it used to
// mean "undo the last promotion" in a rollback.
func TestNegativeRevisionsRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.apply(t, "5432")
	f.promote(t, model.ModeAudit, 1)
	_, err := f.svc.Rollback(ctx, controller.RollbackRequest{Workload: "shop/db", ToRevision: -1}, "ops")
	if !errors.Is(err, controller.ErrInvalid) || !strings.Contains(err.Error(), "toRevision: -1 is negative") {
		t.Errorf("rollback to revision -1: %v, want ErrInvalid naming toRevision", err)
	}
	_, err = f.svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeEnforce, Revision: -3, Reason: "r"}, "ops")
	if !errors.Is(err, controller.ErrInvalid) || !strings.Contains(err.Error(), "revision: -3 is negative") {
		t.Errorf("promote to revision -3: %v, want ErrInvalid naming revision", err)
	}
	if _, err := f.svc.Revision("shop/db", -1); !errors.Is(err, controller.ErrInvalid) || !strings.Contains(err.Error(), "revision: -1 is negative") {
		t.Errorf("revision -1: %v, want ErrInvalid naming revision", err)
	}
	if h, _ := f.mem.History(""); len(h) != 1 {
		t.Errorf("history has %d events after refused requests, want 1", len(h))
	}
	if st := f.state(t, "shop/db"); st.Mode != model.ModeAudit || st.Revision != 1 {
		t.Errorf("state after refused requests = %+v, want audit at revision 1", st)
	}
}

// TestNoOpPromotionsRecordNothing: promoting a workload to the mode and
// revision it already has, or rolling it back to the revision it is at,
// answers "unchanged" with the event that set the state, and records
// nothing: history, hash chain, evidence and the node stay as they were
// (issue 11, item 8).
func TestNoOpPromotionsRecordNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.apply(t, "5432")
	first := f.promote(t, model.ModeAudit, 1)
	enforced := len(f.node.Enforced())
	for name, do := range map[string]func() (controller.PromoteResult, error){
		"promote to the same revision": func() (controller.PromoteResult, error) {
			return f.svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeAudit, Revision: 1, Reason: "again"}, "ops")
		},
		"promote to the latest, which is in force": func() (controller.PromoteResult, error) {
			return f.svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeAudit, Reason: "again"}, "ops")
		},
		"rollback to the revision in force": func() (controller.PromoteResult, error) {
			return f.svc.Rollback(ctx, controller.RollbackRequest{Workload: "shop/db", ToRevision: 1}, "ops")
		},
	} {
		res, err := do()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !res.Unchanged || res.Promotion.Seq != first.Promotion.Seq || !res.Converged {
			t.Errorf("%s = %+v, want unchanged, converged, naming event %d", name, res, first.Promotion.Seq)
		}
	}
	if h, _ := f.mem.History(""); len(h) != 1 {
		t.Errorf("history has %d events after no-op requests, want 1", len(h))
	}
	if st := f.state(t, "shop/db"); st.Seq != 1 || !st.Since.Equal(first.Promotion.At) {
		t.Errorf("state = %+v, want still set by event 1", st)
	}
	if n := len(f.node.Enforced()); n != enforced {
		t.Errorf("no-op requests reached the node %d times", n-enforced)
	}
	res, err := f.svc.Export(ctx, controller.ExportRequest{NoProbes: true, NoPDF: true}, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	var b evidence.Bundle
	if err := json.Unmarshal(res.Files["bundle.json"], &b); err != nil {
		t.Fatal(err)
	}
	if c := b.Policies.Chain; !c.Verified || c.Events != 1 || len(b.Policies.History) != 1 {
		t.Errorf("evidence chain = %+v with %d events, want 1 verified event", c, len(b.Policies.History))
	}
	// A real change is still recorded.
	if res := f.promote(t, model.ModeEnforce, 1); res.Unchanged || res.Promotion.Seq != 2 {
		t.Errorf("promotion to enforce = %+v, want recorded as event 2", res)
	}
}

// Infer proposes without storing, says why each left-out edge is left out,
// and warns when the window is shorter than the minimum observation.
func TestInferStoresNothingAndNamesLeftOutEdges(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432") // db: ingress from web only
	f.promote(t, model.ModeAudit, 1)
	at := time.Now()
	refused := recent("web", "db", 9999, model.VerdictCounts{Observed: 2})
	refused.Flows, refused.Failed, refused.Reset = 2, 2, 2
	if err := f.mem.MergeEdges([]model.Edge{
		recent("web", "db", 5432, model.VerdictCounts{Observed: 3}),
		recent("intruder", "db", 5432, model.VerdictCounts{Observed: 1, AuditDenied: 1}),
		refused,
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.mem.AddVerdicts([]model.VerdictEvent{deny(at, "audit-deny", "db-0", "intruder", "db", 40000, 5432)}); err != nil {
		t.Fatal(err)
	}
	before, _ := f.mem.Revisions("shop/db")
	inf, err := f.svc.Infer(time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := f.mem.Revisions("shop/db"); len(after) != len(before) {
		t.Fatalf("Infer stored revisions: %d before, %d after", len(before), len(after))
	}
	if len(inf.Edges) != 3 {
		t.Fatalf("Infer edges = %d, want the 3 of the window", len(inf.Edges))
	}
	want := map[string]string{
		string(store.EdgeKey(recent("intruder", "db", 5432, model.VerdictCounts{}))): controller.LeftOutDenied,
		string(store.EdgeKey(refused)): controller.LeftOutFailed,
	}
	if !reflect.DeepEqual(inf.LeftOut, want) {
		t.Errorf("left out = %q, want %q", inf.LeftOut, want)
	}
	var db *v1alpha1.NanoSegment
	for _, p := range inf.Proposals {
		if p.Workload == "shop/db" {
			db = p.Policy
		}
	}
	if db == nil || len(db.Spec.Ingress) != 1 {
		t.Fatalf("shop/db proposal = %+v, want one ingress rule (from web)", db)
	}
	if len(inf.Report.Warnings) != 1 || !strings.Contains(inf.Report.Warnings[0], "shorter than the observation a promotion to enforce needs") {
		t.Errorf("warnings = %q, want the short-window warning", inf.Report.Warnings)
	}
}

// TestDiffOfOneWorkloadListsOnlyItsRules: `policy diff --workload W`
// lists as unused only the rules of the policies that apply to W's
// endpoints, never another workload's.
func TestDiffOfOneWorkloadListsOnlyItsRules(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	f.promote(t, model.ModeAudit, 0)
	rep, err := f.svc.Diff("shop/intruder", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unused) != 0 {
		t.Errorf("diff of shop/intruder lists unused rules of others: %v", rep.Unused)
	}
	rep, err = f.svc.Diff("shop/db", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unused) != 1 || rep.Unused[0].String() != "NanoSegment shop/db rule from-web" {
		t.Errorf("diff of shop/db: unused %v, want its rule from-web", rep.Unused)
	}
	rep, err = f.svc.Diff("", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unused) != 1 {
		t.Errorf("diff of every workload: unused %v, want db's rule", rep.Unused)
	}
}
