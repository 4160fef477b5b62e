//go:build linux

package controller

import (
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

// TestUndoTargetWalksBack: a plain rollback undoes the most recent change
// still in effect, rollbacks to a revision included, and repeated plain
// rollbacks walk further back.
func TestUndoTargetWalksBack(t *testing.T) {
	hist := []model.Promotion{
		{Seq: 1, Action: model.ActionPromote, FromMode: model.ModeObserve, FromRevision: 0, ToMode: model.ModeEnforce, ToRevision: 7},
		{Seq: 2, Action: model.ActionPromote, FromMode: model.ModeEnforce, FromRevision: 7, ToMode: model.ModeAudit, ToRevision: 7},
		{Seq: 3, Action: model.ActionRollback, FromMode: model.ModeAudit, FromRevision: 7, ToMode: model.ModeAudit, ToRevision: 1},
	}
	want := []struct {
		seq  uint64
		mode model.Mode
		rev  int
	}{{3, model.ModeAudit, 7}, {2, model.ModeEnforce, 7}, {1, model.ModeObserve, 0}}
	for i, w := range want {
		got := undoTarget(hist)
		if got == nil || got.Seq != w.seq || got.FromMode != w.mode || got.FromRevision != w.rev {
			t.Fatalf("rollback %d undoes %+v; want event %d back to %s@%d", i+1, got, w.seq, w.mode, w.rev)
		}
		hist = append(hist, model.Promotion{Seq: uint64(len(hist) + 1), Action: model.ActionRollback, Undoes: got.Seq,
			FromMode: got.ToMode, ToMode: got.FromMode, ToRevision: got.FromRevision})
	}
	if got := undoTarget(hist); got != nil {
		t.Errorf("nothing left to roll back, got %+v", got)
	}
}
