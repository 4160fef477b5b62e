package graph

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

// TestDOTWithGraphviz lets Graphviz parse the DOT output, when it is
// installed, and checks that it sees every node and edge and no more.
func TestDOTWithGraphviz(t *testing.T) {
	dot, err := exec.LookPath("dot")
	if err != nil {
		t.Skip("Graphviz dot not installed")
	}
	for name, edges := range map[string][]model.Edge{"shop": shopEdges(), "hostile": hostileEdges()} {
		g := Build(edges, Filter{})
		cmd := exec.Command(dot, "-Tplain")
		cmd.Stdin = bytes.NewReader(render(t, FormatDOT, g))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("%s: dot: %v: %s", name, err, stderr.String())
		}
		nodes, es := 0, 0
		for _, l := range strings.Split(string(out), "\n") {
			switch {
			case strings.HasPrefix(l, "node "):
				nodes++
			case strings.HasPrefix(l, "edge "):
				es++
			}
		}
		if nodes != len(g.Nodes) || es != len(g.Edges) {
			t.Errorf("%s: Graphviz sees %d nodes and %d edges, want %d and %d", name, nodes, es, len(g.Nodes), len(g.Edges))
		}
	}
}
