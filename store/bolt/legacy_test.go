package bolt

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nanoseg/nanoseg/model"
)

// TestStoreMergesIntoLegacyEdges opens a store whose edge was written
// before the one vocabulary (protocol "tcp", key with "tcp") and checks
// that a new edge merges into it and that it reads back as TCP.
func TestStoreMergesIntoLegacyEdges(t *testing.T) {
	s, _ := openTestStore(t)
	legacy := `{"source":{"namespace":"shop","workload":"api"},"destination":{"namespace":"shop","workload":"db"},"protocol":"tcp","port":5432,"firstSeen":"2026-11-30T06:00:00Z","lastSeen":"2026-11-30T06:00:01Z","flows":2,"verdicts":{"observed":2}}`
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEdges).Put([]byte("shop/api|shop/db|tcp|5432"), []byte(legacy))
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 30, 6, 1, 0, 0, time.UTC)
	e := model.Edge{Source: model.Peer{Namespace: "shop", Workload: "api"}, Destination: model.Peer{Namespace: "shop", Workload: "db"}, Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0, Flows: 3, Verdicts: model.VerdictCounts{Observed: 3}}}
	if err := s.MergeEdges([]model.Edge{e}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Edges(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Protocol != model.ProtocolTCP || got[0].Flows != 5 || got[0].Verdicts.Observed != 5 {
		t.Errorf("edges after merge: %+v", got)
	}
}
