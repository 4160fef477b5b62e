package controller_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
)

// TestChange: enforcing db's policy (ingress from web on 5432) closes the
// intruder's path to db and opens nothing; audit closes nothing (it lets
// the path through); going back from enforce to observe opens it again.
func TestChange(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	got, err := f.svc.Change(controller.ChangeTarget{Workload: "shop/db", Mode: model.ModeEnforce})
	if err != nil {
		t.Fatal(err)
	}
	want := controller.Change{Opened: []string{}, Closed: []string{"shop/intruder -> shop/db TCP/5432"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("enforce: change (-want +got):\n%s", d)
	}
	if got, err = f.svc.Change(controller.ChangeTarget{Workload: "shop/db", Mode: model.ModeAudit, Revision: 1}); err != nil || len(got.Closed)+len(got.Opened) != 0 {
		t.Errorf("audit: change %+v, %v; want none", got, err)
	}
	f.promote(t, model.ModeEnforce, 1)
	got, err = f.svc.Change(controller.ChangeTarget{Workload: "shop/db", Mode: model.ModeObserve, Revision: 1})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(controller.Change{Opened: []string{"shop/intruder -> shop/db TCP/5432"}, Closed: []string{}}, got); d != "" {
		t.Errorf("back to observe: change (-want +got):\n%s", d)
	}
	for _, bad := range []controller.ChangeTarget{{Workload: "shop/nope", Mode: model.ModeAudit}, {Workload: "shop/db", Mode: "loud"},
		{Workload: "shop/db", Mode: model.ModeAudit, Revision: 9}, {Workload: "shop/web", Mode: model.ModeAudit}} {
		if _, err := f.svc.Change(bad); !errors.Is(err, controller.ErrInvalid) {
			t.Errorf("Change(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestAdoptProposal: a proposal with the latest revision's rules is not
// stored again; another becomes the next proposed revision with its window.
func TestAdoptProposal(t *testing.T) {
	f := newFixture(t)
	r1 := f.apply(t, "5432")
	same := r1.Policy.DeepCopy()
	rev, added, err := f.svc.AdoptProposal("shop/db", same, time.Hour, time.Now(), "controller")
	if err != nil || added || rev.Number != 1 {
		t.Fatalf("same rules: %d, added %v, %v; want revision 1 not added", rev.Number, added, err)
	}
	other := r1.Policy.DeepCopy()
	other.Spec.Ingress[0].Ports[0].Port.IntVal = 5433
	rev, added, err = f.svc.AdoptProposal("shop/db", other, time.Hour, time.Now(), "controller")
	if err != nil || !added || rev.Number != 2 || rev.Window != time.Hour || rev.Origin != "proposed" {
		t.Fatalf("new rules: %+v, added %v, %v", rev, added, err)
	}
}

// TestRollbackTarget: undoing db's first promotion leaves it without a
// policy, which reopens the intruder's path.
func TestRollbackTarget(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	if _, err := f.svc.RollbackTarget("shop/db", 0); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("nothing to roll back: %v, want ErrInvalid", err)
	}
	f.promote(t, model.ModeEnforce, 1)
	tg, err := f.svc.RollbackTarget("shop/db", 0)
	if err != nil || !tg.NoPolicy {
		t.Fatalf("target %+v, %v; want no policy", tg, err)
	}
	ch, err := f.svc.Change(tg)
	if err != nil || len(ch.Opened) != 1 || len(ch.Closed) != 0 {
		t.Errorf("change %+v, %v; want the intruder's path opened", ch, err)
	}
}
