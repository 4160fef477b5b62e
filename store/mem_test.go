package store_test

import (
	"errors"
	"testing"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
	"github.com/nanoseg/nanoseg/store/storetest"
)

func TestMemContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return store.NewMem() }, nil)
}

func TestMemChainBreaksOnTamper(t *testing.T) {
	m := store.NewMem()
	if _, err := m.AddRevision(store.Revision{Workload: "shop/db", Policy: &v1alpha1.NanoSegment{}}); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []model.Mode{model.ModeAudit, model.ModeEnforce} {
		if _, err := m.Record(model.Promotion{Workload: "shop/db", Action: model.ActionPromote, ToMode: mode, ToRevision: 1, Reason: "r"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.VerifyChain(m); err != nil {
		t.Fatal(err)
	}
	m.TamperHistory(1, func(p *model.Promotion) { p.Who = "mallory" })
	if err := store.VerifyChain(m); !errors.Is(err, model.ErrChainBroken) {
		t.Errorf("tampered chain: %v, want model.ErrChainBroken", err)
	}
}
