package graph

import (
	"maps"
	"slices"
	"strings"

	"github.com/nanoseg/nanoseg/model"
)

// palette holds the fill and stroke colours given to namespaces in sorted
// order (cycling when there are more namespaces than colours).
var palette = []struct{ fill, stroke string }{
	{"#dbeafe", "#2563eb"}, // blue
	{"#dcfce7", "#16a34a"}, // green
	{"#f3e8ff", "#9333ea"}, // purple
	{"#fef9c3", "#ca8a04"}, // yellow
	{"#ccfbf1", "#0d9488"}, // teal
	{"#fce7f3", "#db2777"}, // pink
	{"#e0e7ff", "#4f46e5"}, // indigo
	{"#ffedd5", "#ea580c"}, // orange
}

// Colours of external peers and of edges by their dominant verdict.
const (
	externalFill   = "#f3f4f6"
	externalStroke = "#6b7280"
	colorNormal    = "#64748b"
	colorAuditDeny = "#ea8a00"
	colorDeny      = "#dc2626"
)

// edgeColor returns the stroke colour and whether the stroke is dashed for
// an edge whose dominant verdict (Edge.Dominant) is v.
func edgeColor(v model.Verdict) (string, bool) {
	switch v {
	case model.VerdictDeny:
		return colorDeny, false
	case model.VerdictAuditDeny:
		return colorAuditDeny, true
	}
	return colorNormal, false
}

// nsColors maps each namespace of g to its palette index.
func nsColors(g *Graph) map[string]int {
	m := map[string]int{}
	for i, ns := range g.namespaces() {
		m[ns] = i % len(palette)
	}
	return m
}

// cleanText replaces control characters (newlines included) with spaces,
// for formats where a line break inside a name would break the layout.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
