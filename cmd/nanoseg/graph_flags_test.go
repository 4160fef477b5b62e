package main

import (
	"strings"
	"testing"
)

// TestGraphNamespaceShorthand: `graph -n NS` keeps the edges of NS, as
// `-n` means a namespace for every other verb (and for kubectl).
func TestGraphNamespaceShorthand(t *testing.T) {
	edges := "../../graph/testdata/shop-edges.jsonl"
	out, err := runCLI(t, "graph", "--edges", edges, "-n", "shop", "-o", "dot")
	if err != nil || !strings.Contains(out, `"shop/`) {
		t.Errorf("graph -n shop: %v\n%s", err, out)
	}
	out, err = runCLI(t, "graph", "--edges", edges, "-n", "nope", "-o", "dot")
	if err != nil || strings.Contains(out, `"shop/`) {
		t.Errorf("graph -n nope keeps shop's edges: %v\n%s", err, out)
	}
}
