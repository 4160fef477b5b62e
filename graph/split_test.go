package graph

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/nanoseg/nanoseg/model"
)

// mixedEdges: api → db mostly allowed with 2 denied attempts (the case of
// issue 11 item 5), frontend → api mostly audit-denied, intruder → db
// only denied, and a tie (2 allowed, 2 denied) from cache to db.
func mixedEdges() []model.Edge {
	api, db := wl("shop", "api", nil), wl("shop", "db", nil)
	frontend, intruder, cache := wl("shop", "frontend", nil), wl("shop", "intruder", nil), wl("shop", "cache", nil)
	e := func(src, dst model.Peer, port uint16, flows uint64, vc model.VerdictCounts) model.Edge {
		return model.Edge{Source: src, Destination: dst, Protocol: model.ProtocolTCP, Port: port, Traffic: model.Traffic{Flows: flows, Verdicts: vc, FirstSeen: t0, LastSeen: t0.Add(10 * time.Minute), PacketsOut: flows * 6, BytesOut: flows * 420}}
	}
	return []model.Edge{
		e(api, db, 5432, 616, model.VerdictCounts{Observed: 614, Denied: 2}),
		e(frontend, api, 8080, 10, model.VerdictCounts{Observed: 10, AuditDenied: 7}),
		e(intruder, db, 5432, 4, model.VerdictCounts{Denied: 4}),
		e(cache, db, 5432, 4, model.VerdictCounts{Observed: 2, Denied: 2}),
	}
}

func edgeOf(t *testing.T, g *Graph, src, dst string) Link {
	t.Helper()
	for _, e := range g.Edges {
		if e.Source == src && e.Destination == dst {
			return e
		}
	}
	t.Fatalf("no edge %s → %s", src, dst)
	return Link{}
}

// TestEdgeSplit is issue 11 item 5: an edge whose flows were almost all
// allowed but twice denied was drawn red, as a denied path. Each edge now
// says how its flows split (allowed, audit-denied, denied) and is coloured
// by the largest share, the more severe verdict on a tie.
func TestEdgeSplit(t *testing.T) {
	g := Build(mixedEdges(), Filter{})
	tests := []struct {
		src, dst               string
		allowed, audit, denied uint64
		dominant               model.Verdict
		label                  string
	}{
		{"shop/api", "shop/db", 614, 0, 2, model.VerdictObserved, "TCP/5432 · 616 flows (614 allowed, 2 denied)"},
		{"shop/frontend", "shop/api", 3, 7, 0, model.VerdictAuditDeny, "TCP/8080 · 10 flows (3 allowed, 7 audit-denied)"},
		{"shop/intruder", "shop/db", 0, 0, 4, model.VerdictDeny, "TCP/5432 · 4 flows (4 denied)"},
		{"shop/cache", "shop/db", 2, 0, 2, model.VerdictDeny, "TCP/5432 · 4 flows (2 allowed, 2 denied)"},
	}
	for _, tt := range tests {
		e := edgeOf(t, g, tt.src, tt.dst)
		a, au, d := e.Split()
		if a != tt.allowed || au != tt.audit || d != tt.denied {
			t.Errorf("%s → %s: split %d/%d/%d, want %d/%d/%d", tt.src, tt.dst, a, au, d, tt.allowed, tt.audit, tt.denied)
		}
		if got := e.Dominant(); got != tt.dominant {
			t.Errorf("%s → %s: dominant %q, want %q", tt.src, tt.dst, got, tt.dominant)
		}
		if e.Label != tt.label {
			t.Errorf("%s → %s: label %q, want %q", tt.src, tt.dst, e.Label, tt.label)
		}
	}
	// An edge with no denial keeps its short label.
	if e := edgeOf(t, Build(shopEdges(), Filter{}), "shop/api", "shop/db"); e.Label != "TCP/5432 · 600 flows" {
		t.Errorf("all-allowed label %q", e.Label)
	}
	// --verdict deny still keeps every edge with at least one denied flow
	// (README, `nanoseg graph --help`), however it is drawn.
	if n := len(Build(mixedEdges(), Filter{Verdict: model.VerdictDeny}).Edges); n != 3 {
		t.Errorf("--verdict deny keeps %d edges, want 3", n)
	}
}

// TestEdgeSplitStyles checks every drawing: the mostly allowed api → db
// edge is not drawn as denied anywhere, its label and tooltip give the
// split, and the denied count stands out in the HTML label.
func TestEdgeSplitStyles(t *testing.T) {
	g := Build(mixedEdges(), Filter{})
	dot := string(render(t, FormatDOT, g))
	for _, l := range strings.Split(dot, "\n") {
		switch {
		case strings.HasPrefix(l, `  "shop/api" -> "shop/db"`):
			if strings.Contains(l, colorDeny) || !strings.Contains(l, "614 allowed, 2 denied") {
				t.Errorf("DOT api → db: %s", l)
			}
		case strings.HasPrefix(l, `  "shop/intruder" -> "shop/db"`):
			if !strings.Contains(l, colorDeny) {
				t.Errorf("DOT intruder → db not red: %s", l)
			}
		}
	}
	mmd := string(render(t, FormatMermaid, g))
	links := regexp.MustCompile(`(?m)^  n\d+ -->\|"([^"]*)"\| n\d+$`).FindAllStringSubmatch(mmd, -1)
	red := regexp.MustCompile(`(?m)^  linkStyle ([\d,]+) stroke:` + colorDeny).FindStringSubmatch(mmd)
	if red == nil {
		t.Fatalf("Mermaid has no red link:\n%s", mmd)
	}
	for _, i := range strings.Split(red[1], ",") {
		var n int
		for _, c := range i {
			n = n*10 + int(c-'0')
		}
		if strings.Contains(links[n][1], "616 flows") {
			t.Errorf("Mermaid draws the mostly allowed link red: %s", links[n][1])
		}
	}

	// The HTML page draws the edge from its data (the split colours are
	// checked in a browser: TestHTMLExportInBrowser).
	out := render(t, FormatHTML, g)
	found := false
	for _, e := range htmlData(t, out).Edges {
		if e.Source == "shop/api" && e.Destination == "shop/db" {
			found = true
			if a, au, d := e.Split(); a != 614 || au != 0 || d != 2 || e.Dominant() == model.VerdictDeny {
				t.Errorf("HTML data api → db split %d/%d/%d dominant %s", a, au, d, e.Dominant())
			}
		}
	}
	if !found {
		t.Fatal("HTML has no api → db edge")
	}
	golden(t, "mixed.html", htmlSkeleton(t, out))
	golden(t, "mixed.dot", []byte(dot))
	golden(t, "mixed.mmd", []byte(mmd))
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func child(n *html.Node, tag string) *html.Node {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && c.Data == tag {
			return c
		}
	}
	return nil
}

func text(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}
