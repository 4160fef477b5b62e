package controller

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

func openTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestStoreMergesEdges(t *testing.T) {
	s, path := openTestStore(t)
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	e := model.Edge{
		Source:      model.Peer{Namespace: "shop", Workload: "api"},
		Destination: model.Peer{Namespace: "shop", Workload: "db"},
		Protocol:    model.ProtocolTCP, Port: 5432, FirstSeen: t0, LastSeen: t0.Add(time.Second), Flows: 2, BytesOut: 100,
		Verdicts: model.VerdictCounts{Observed: 2},
	}
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
	s.Close()
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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

func TestStorePromotionsAreChainedAndChecked(t *testing.T) {
	s, path := openTestStore(t)
	pol := &v1alpha1.NanoSegment{}
	r1, err := s.AddRevision(Revision{Workload: "shop/db", Origin: OriginProposed, Policy: pol})
	if err != nil || r1.Number != 1 {
		t.Fatalf("first revision: %+v, %v", r1, err)
	}
	r2, _ := s.AddRevision(Revision{Workload: "shop/db", Origin: OriginDeclared, Policy: pol})
	if r2.Number != 2 {
		t.Fatalf("second revision number %d", r2.Number)
	}
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	p1, err := s.Record(Promotion{At: at, Who: "ops", Workload: "shop/db", Action: ActionPromote, ToMode: model.ModeAudit, ToRevision: 1, Reason: "try"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p1.FromMode != model.ModeObserve || p1.FromRevision != 0 || p1.Seq != 1 {
		t.Errorf("first promotion = %+v", p1)
	}
	stale := WorkloadState{Mode: model.ModeObserve}
	if _, err := s.Record(Promotion{Workload: "shop/db", Action: ActionPromote, ToMode: model.ModeEnforce, ToRevision: 1}, &stale); !errors.Is(err, ErrConflict) {
		t.Errorf("promotion from a stale state: %v, want ErrConflict", err)
	}
	if _, err := s.Record(Promotion{Workload: "shop/db", Action: ActionPromote, ToMode: model.ModeEnforce, ToRevision: 9}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("promotion to a missing revision: %v, want ErrNotFound", err)
	}
	if _, err := s.Record(Promotion{At: at, Workload: "shop/db", Action: ActionPromote, ToMode: model.ModeEnforce, ToRevision: 2}, nil); err != nil {
		t.Fatal(err)
	}
	st, _ := s.State("shop/db")
	if st.Mode != model.ModeEnforce || st.Revision != 2 || st.Seq != 2 {
		t.Errorf("state = %+v", st)
	}
	if err := s.VerifyChain(); err != nil {
		t.Fatalf("fresh chain: %v", err)
	}
	// Edit event 1 behind the store's back: the chain must break there.
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPromotions)
		var p Promotion
		_ = json.Unmarshal(b.Get(u64(1)), &p)
		p.Reason = "edited"
		raw, _ := json.Marshal(p)
		return b.Put(u64(1), raw)
	})
	db.Close()
	s, _ = OpenStore(path)
	defer s.Close()
	err = s.VerifyChain()
	if !errors.Is(err, ErrChainBroken) || err.Error() == "" {
		t.Fatalf("edited chain verifies: %v", err)
	}
	hist, _ := s.History("shop/db")
	hist = hist[1:]
	if err := VerifyPromotions(hist); !errors.Is(err, ErrChainBroken) {
		t.Errorf("history with a gap verifies: %v", err)
	}
}
