//go:build linux

package node

import (
	"testing"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
)

// TestAdoptable: only audit and enforce tables that no policy in force
// selects are kept as found.
func TestAdoptable(t *testing.T) {
	for _, c := range []struct {
		present  bool
		mode     model.Mode
		selected bool
		want     bool
	}{
		{true, model.ModeEnforce, false, true},
		{true, model.ModeAudit, false, true},
		{true, model.ModeObserve, false, false},
		{false, "", false, false},
		{true, "", false, false}, // altered beyond reading: drift repair's
		{true, model.ModeEnforce, true, false},
		{true, model.ModeAudit, true, false},
	} {
		st := &dataplane.State{Present: c.present, RuleSet: dataplane.RuleSet{Name: "shop/db-0", Mode: c.mode}}
		if got := adoptable(st, c.selected); got != c.want {
			t.Errorf("adoptable(present %v, mode %q, selected %v) = %v, want %v", c.present, c.mode, c.selected, got, c.want)
		}
	}
}
