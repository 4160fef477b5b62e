//go:build linux

package controller

import (
	"testing"

	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// TestUndoTargetWalksBack: a plain rollback undoes the most recent change
// still in effect, rollbacks to a revision included, and repeated plain
// rollbacks walk further back.
func TestUndoTargetWalksBack(t *testing.T) {
	hist := []store.Promotion{
		{Seq: 1, Action: store.ActionPromote, FromMode: v1alpha1.ModeObserve, FromRevision: 0, ToMode: v1alpha1.ModeEnforce, ToRevision: 7},
		{Seq: 2, Action: store.ActionPromote, FromMode: v1alpha1.ModeEnforce, FromRevision: 7, ToMode: v1alpha1.ModeAudit, ToRevision: 7},
		{Seq: 3, Action: store.ActionRollback, FromMode: v1alpha1.ModeAudit, FromRevision: 7, ToMode: v1alpha1.ModeAudit, ToRevision: 1},
	}
	want := []struct {
		seq  uint64
		mode v1alpha1.Mode
		rev  int
	}{{3, v1alpha1.ModeAudit, 7}, {2, v1alpha1.ModeEnforce, 7}, {1, v1alpha1.ModeObserve, 0}}
	for i, w := range want {
		got := undoTarget(hist)
		if got == nil || got.Seq != w.seq || got.FromMode != w.mode || got.FromRevision != w.rev {
			t.Fatalf("rollback %d undoes %+v; want event %d back to %s@%d", i+1, got, w.seq, w.mode, w.rev)
		}
		hist = append(hist, store.Promotion{Seq: uint64(len(hist) + 1), Action: store.ActionRollback, Undoes: got.Seq,
			FromMode: got.ToMode, ToMode: got.FromMode, ToRevision: got.FromRevision})
	}
	if got := undoTarget(hist); got != nil {
		t.Errorf("nothing left to roll back, got %+v", got)
	}
}
