package bolt

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
	"github.com/nanoseg/nanoseg/store/storetest"
)

func openTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestStoreContract(t *testing.T) {
	paths := map[store.Store]string{}
	storetest.Run(t, func(t *testing.T) store.Store {
		s, path := openTestStore(t)
		paths[s] = path
		return s
	}, func(t *testing.T, s store.Store) store.Store {
		path := paths[s]
		s.(*Store).Close()
		s2, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s2.Close() })
		paths[s2] = path // a test may reopen more than once
		return s2
	})
}

// TestStoreChainBreaksOnEdit edits an event in the file behind the
// store's back: the chain must break there.
func TestStoreChainBreaksOnEdit(t *testing.T) {
	s, path := openTestStore(t)
	if _, err := s.AddRevision(store.Revision{Workload: "shop/db", Origin: store.OriginProposed, Policy: &v1alpha1.NanoSegment{}}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	for _, m := range []model.Mode{model.ModeAudit, model.ModeEnforce} {
		if _, err := s.Record(model.Promotion{At: at, Who: "ops", Workload: "shop/db", Action: model.ActionPromote, ToMode: m, ToRevision: 1, Reason: "try"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.VerifyChain(s); err != nil {
		t.Fatalf("fresh chain: %v", err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPromotions)
		var p model.Promotion
		_ = json.Unmarshal(b.Get(u64(1)), &p)
		p.Reason = "edited"
		raw, _ := json.Marshal(p)
		return b.Put(u64(1), raw)
	})
	db.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = store.VerifyChain(s)
	if !errors.Is(err, model.ErrChainBroken) || err.Error() == "" {
		t.Fatalf("edited chain verifies: %v", err)
	}
}
