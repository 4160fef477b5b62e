package controller_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/controller"
)

// TestClipAndNames: an error echoes at most 64 runes of an input and lists
// at most 10 known names.
func TestClipAndNames(t *testing.T) {
	long := strings.Repeat("é", 1<<20)
	if got := fmt.Sprintf("%q", controller.Clip(long)); got != `"`+strings.Repeat("é", 64)+`…"` {
		t.Errorf("Clip of 1 Mi runes: %d bytes %.80s, want 64 runes and …", len(got), got)
	}
	if got := fmt.Sprintf("%q", controller.Clip("shop/db")); got != `"shop/db"` {
		t.Errorf("Clip of a short input: %s", got)
	}
	var names []string
	for i := range 25 {
		names = append(names, fmt.Sprintf("ns/w%02d", i))
	}
	if got := controller.Names(names).String(); got != "[ns/w00 ns/w01 ns/w02 ns/w03 ns/w04 ns/w05 ns/w06 ns/w07 ns/w08 ns/w09 and 15 more]" {
		t.Errorf("Names of 25: %s", got)
	}
	if got := fmt.Sprintf("%v", controller.Names(names[:2])); got != "[ns/w00 ns/w01]" {
		t.Errorf("Names of 2: %s", got)
	}
}
