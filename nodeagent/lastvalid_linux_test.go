//go:build linux

package nodeagent

import (
	"os"
	"strings"
	"testing"
)

// TestLastValidFileWhereDocumented checks that the README names the file
// where the node agent keeps the last valid policy versions by default
// (LastValidFile without --owner-dir), so an operator looking for it, or
// cleaning a host up, finds it: the README said
// /run/nanoseg/policies-<node>.json while it is in the owner files'
// directory /run/nanoseg/owners.
func TestLastValidFileWhereDocumented(t *testing.T) {
	got := LastValidFile(Config{NodeName: "<node>"})
	if got != "/run/nanoseg/owners/policies-<node>.json" {
		t.Errorf("LastValidFile = %s, want /run/nanoseg/owners/policies-<node>.json", got)
	}
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "`"+got+"`") {
		t.Errorf("README.md does not name %s, where the node agent keeps the last valid policy versions", got)
	}
}
