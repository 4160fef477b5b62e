// Package storetest checks that an implementation of store.Store keeps the
// contract the controller relies on: edges merge, revisions number from 1,
// a promotion changes the state and appends a hash-chained event at once,
// and a stale or impossible promotion changes nothing.
package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// Run runs the contract tests on stores made by open (a fresh, empty store
// per call; reopen, when not nil, closes s and opens it again on the same
// data, so persistence is checked too).
func Run(t *testing.T, open func(t *testing.T) store.Store, reopen func(t *testing.T, s store.Store) store.Store) {
	if reopen == nil {
		reopen = func(_ *testing.T, s store.Store) store.Store { return s }
	}
	t.Run("MergesEdges", func(t *testing.T) { mergesEdges(t, open(t), reopen) })
	t.Run("PromotionsAreChainedAndChecked", func(t *testing.T) { promotionsChained(t, open(t), reopen) })
	t.Run("VerdictsSince", func(t *testing.T) { verdictsSince(t, open(t)) })
}

func mergesEdges(t *testing.T, s store.Store, reopen func(*testing.T, store.Store) store.Store) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	e := model.Edge{Source: model.Peer{Namespace: "shop", Workload: "api"}, Destination: model.Peer{Namespace: "shop", Workload: "db"}, Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0.Add(time.Second), Flows: 2, BytesOut: 100, Verdicts: model.VerdictCounts{Observed: 2}}}
	later := e
	later.FirstSeen, later.LastSeen, later.Flows, later.BytesOut = t0.Add(time.Minute), t0.Add(2*time.Minute), 3, 50
	later.Verdicts = model.VerdictCounts{Denied: 1}
	if err := s.MergeEdges([]model.Edge{e}); err != nil {
		t.Fatal(err)
	}
	if err := s.MergeEdges([]model.Edge{later}); err != nil {
		t.Fatal(err)
	}
	// Reopen: what was committed survives.
	s = reopen(t, s)
	got, err := s.Edges(time.Time{})
	if err != nil || len(got) != 1 {
		t.Fatalf("edges: %v, %v", got, err)
	}
	g := got[0]
	if g.Flows != 5 || g.BytesOut != 150 || !g.FirstSeen.Equal(t0) || !g.LastSeen.Equal(t0.Add(2*time.Minute)) || g.Verdicts.Denied != 1 || g.Verdicts.Observed != 2 {
		t.Errorf("merged edge = %+v", g)
	}
	if got, _ := s.Edges(t0.Add(3 * time.Minute)); len(got) != 0 {
		t.Errorf("window after last seen returned %d edges", len(got))
	}
}

func promotionsChained(t *testing.T, s store.Store, reopen func(*testing.T, store.Store) store.Store) {
	pol := &v1alpha1.NanoSegment{}
	r1, err := s.AddRevision(store.Revision{Workload: "shop/db", Origin: store.OriginProposed, Policy: pol})
	if err != nil || r1.Number != 1 {
		t.Fatalf("first revision: %+v, %v", r1, err)
	}
	r2, _ := s.AddRevision(store.Revision{Workload: "shop/db", Origin: store.OriginDeclared, Policy: pol})
	if r2.Number != 2 {
		t.Fatalf("second revision number %d", r2.Number)
	}
	if _, err := s.Revision("shop/db", 3); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing revision: %v, want ErrNotFound", err)
	}
	if _, err := s.LatestRevision("shop/web"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("latest revision of a workload without any: %v, want ErrNotFound", err)
	}
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	p1, err := s.Record(model.Promotion{At: at, Who: "ops", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeAudit, ToRevision: 1, Reason: "try"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p1.FromMode != model.ModeObserve || p1.FromRevision != 0 || p1.Seq != 1 || p1.PrevHash != "" || p1.Hash != p1.ChainHash() {
		t.Errorf("first promotion = %+v", p1)
	}
	stale := store.WorkloadState{Mode: model.ModeObserve}
	if _, err := s.Record(model.Promotion{Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 1}, &stale); !errors.Is(err, store.ErrConflict) {
		t.Errorf("promotion from a stale state: %v, want ErrConflict", err)
	}
	if _, err := s.Record(model.Promotion{Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 9}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("promotion to a missing revision: %v, want ErrNotFound", err)
	}
	if st, _ := s.State("shop/db"); st.Mode != model.ModeAudit || st.Revision != 1 || st.Seq != 1 {
		t.Errorf("refused promotions changed the state: %+v", st)
	}
	p2, err := s.Record(model.Promotion{At: at, Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p2.PrevHash != p1.Hash || p2.FromMode != model.ModeAudit || p2.FromRevision != 1 {
		t.Errorf("second promotion = %+v, want it linked to the first", p2)
	}
	s = reopen(t, s)
	st, _ := s.State("shop/db")
	if st.Mode != model.ModeEnforce || st.Revision != 2 || st.Seq != 2 {
		t.Errorf("state = %+v", st)
	}
	if sts, _ := s.States(); len(sts) != 1 || sts[0] != st {
		t.Errorf("states = %+v", sts)
	}
	if ws, _ := s.Workloads(); len(ws) != 1 || ws[0] != "shop/db" {
		t.Errorf("workloads = %v", ws)
	}
	if err := store.VerifyChain(s); err != nil {
		t.Fatalf("fresh chain: %v", err)
	}
	hist, _ := s.History("shop/db")
	if len(hist) != 2 {
		t.Fatalf("history has %d events, want 2", len(hist))
	}
	if err := model.VerifyPromotions(hist[1:]); !errors.Is(err, model.ErrChainBroken) {
		t.Errorf("history with a gap verifies: %v", err)
	}
	edited := append([]model.Promotion(nil), hist...)
	edited[0].Reason = "edited"
	if err := model.VerifyPromotions(edited); !errors.Is(err, model.ErrChainBroken) {
		t.Errorf("edited history verifies: %v", err)
	}
}

func verdictsSince(t *testing.T, s store.Store) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	evs := []model.VerdictEvent{
		{At: t0.Add(2 * time.Second), Verdict: "deny", Source: "shop/web", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432},
		{At: t0, Verdict: "audit-deny", Source: "shop/web", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432},
	}
	if err := s.AddVerdicts(evs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Verdicts(t0.Add(time.Second))
	if err != nil || len(got) != 1 || got[0].Verdict != "deny" {
		t.Fatalf("verdicts since t0+1s = %+v, %v", got, err)
	}
	if all, _ := s.Verdicts(time.Time{}); len(all) != 2 || !all[0].At.Equal(t0) {
		t.Errorf("all verdicts = %+v, want 2 oldest first", all)
	}
}
