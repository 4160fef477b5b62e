package graph

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/html"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/web"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from golden file (-want +got):\n%s", name, diff)
	}
}

func render(t *testing.T, f Format, g *Graph) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Write(&b, f, g); err != nil {
		t.Fatalf("write %s: %v", f, err)
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	g := Build(shopEdges(), Filter{})
	g.GeneratedAt = t0.Add(10 * time.Minute)
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			out := render(t, f, g)
			if f == FormatHTML {
				out = htmlSkeleton(t, out)
			}
			golden(t, "shop."+f.Ext(), out)
		})
	}
}

// TestGoldenInput keeps the fixture as JSON lines: sample input for
// `nanoseg graph --edges` and a check that the observer's edge JSON form
// stays stable.
func TestGoldenInput(t *testing.T) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, e := range shopEdges() {
		if err := enc.Encode(e); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "shop-edges.jsonl", b.Bytes())
}

func TestGoldenFiltered(t *testing.T) {
	g := Build(shopEdges(), Filter{Verdict: model.VerdictDeny, Namespaces: []string{"shop", "shop"}})
	golden(t, "shop-denied.dot", render(t, FormatDOT, g))
	golden(t, "shop-denied.json", render(t, FormatJSON, g))
}

func TestBuildMergesAndSorts(t *testing.T) {
	g := Build(shopEdges(), Filter{})
	var ids []string
	for _, n := range g.Nodes {
		ids = append(ids, n.ID)
	}
	want := []string{"198.19.0.99", "kube-system/dns", "monitoring/prometheus", "payments.example",
		"shop/api", "shop/cache", "shop/db", "shop/frontend", "shop/intruder"}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("node IDs (-want +got):\n%s", diff)
	}
	// Two frontend records merge into one edge.
	var fe []Link
	for _, e := range g.Edges {
		if e.Source == "shop/frontend" && e.Destination == "shop/api" {
			fe = append(fe, e)
		}
	}
	if len(fe) != 1 {
		t.Fatalf("frontend → api: %d edges, want 1 merged", len(fe))
	}
	e := fe[0]
	if e.Flows != 598 || e.Verdicts.Observed != 598 || !e.FirstSeen.Equal(t0.Add(2*time.Second)) || !e.LastSeen.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("merged edge = %+v", e)
	}
	if e.Label != "TCP/8080 · 598 flows" {
		t.Errorf("label = %q", e.Label)
	}
	if len(g.Edges) != 19 {
		t.Errorf("%d edges, want 19", len(g.Edges))
	}
	if !slices.IsSortedFunc(g.Edges, func(a, b Link) int {
		return strings.Compare(a.Source+"\x00"+a.Destination, b.Source+"\x00"+b.Destination)
	}) {
		t.Error("edges are not sorted")
	}
}

func TestFilter(t *testing.T) {
	edges := shopEdges()
	count := func(f Filter) (nodes, es int) {
		g := Build(edges, f)
		return len(g.Nodes), len(g.Edges)
	}
	tests := []struct {
		name         string
		f            Filter
		nodes, edges int
	}{
		{"none", Filter{}, 9, 19},
		{"namespace monitoring", Filter{Namespaces: []string{"monitoring"}}, 7, 7},
		{"namespace kube-system", Filter{Namespaces: []string{"kube-system"}}, 7, 7},
		{"two namespaces", Filter{Namespaces: []string{"monitoring", "kube-system"}}, 7, 12},
		{"namespace unknown", Filter{Namespaces: []string{"nope"}}, 0, 0},
		{"workload db either end", Filter{Workloads: []string{"shop/db"}}, 5, 4},
		{"workload and namespace", Filter{Workloads: []string{"shop/db"}, Namespaces: []string{"monitoring"}}, 2, 1},
		{"verdict deny", Filter{Verdict: model.VerdictDeny}, 2, 1},
		{"verdict audit-deny", Filter{Verdict: model.VerdictAuditDeny}, 2, 1},
		{"verdict allowed", Filter{Verdict: model.VerdictAllow}, 0, 0},
		{"verdict observed", Filter{Verdict: model.VerdictObserved}, 9, 18},
		{"since excludes old", Filter{Since: t0.Add(9 * time.Minute)}, 8, 16},
		{"until excludes late", Filter{Until: t0.Add(5 * time.Minute)}, 8, 16},
		{"window", Filter{Since: t0.Add(6 * time.Minute), Until: t0.Add(7 * time.Minute)}, 9, 18},
		{"narrow window", Filter{Since: t0.Add(8*time.Minute + 10*time.Second), Until: t0.Add(8*time.Minute + 20*time.Second)}, 8, 17},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, e := count(tt.f)
			if n != tt.nodes || e != tt.edges {
				t.Errorf("got %d nodes, %d edges; want %d, %d", n, e, tt.nodes, tt.edges)
			}
		})
	}
}

func TestParseVerdict(t *testing.T) {
	for in, want := range map[string]model.Verdict{"": "", "observed": model.VerdictObserved, "Allowed": model.VerdictAllow,
		"audit-deny": model.VerdictAuditDeny, "auditDenied": model.VerdictAuditDeny, "deny": model.VerdictDeny, "denied": model.VerdictDeny} {
		got, err := ParseVerdictFilter(in)
		if err != nil || got != want {
			t.Errorf("ParseVerdictFilter(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseVerdictFilter("drop"); !errors.Is(err, ErrUnknownVerdict) {
		t.Errorf("ParseVerdictFilter(drop) error = %v, want ErrUnknownVerdict", err)
	}
}

func TestDeterministic(t *testing.T) {
	edges := shopEdges()
	want := map[Format][]byte{}
	g := Build(edges, Filter{})
	for _, f := range Formats {
		want[f] = render(t, f, g)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5 {
		shuffled := slices.Clone(edges)
		r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		g := Build(shuffled, Filter{})
		for _, f := range Formats {
			if got := render(t, f, g); !bytes.Equal(got, want[f]) {
				t.Errorf("shuffle %d: %s output differs:\n%s", i, f, cmp.Diff(string(want[f]), string(got)))
			}
		}
	}
}

type parsedGraphML struct {
	Keys []struct {
		ID   string `xml:"id,attr"`
		For  string `xml:"for,attr"`
		Name string `xml:"attr.name,attr"`
		Type string `xml:"attr.type,attr"`
	} `xml:"key"`
	Graph struct {
		EdgeDefault string `xml:"edgedefault,attr"`
		Nodes       []struct {
			ID   string    `xml:"id,attr"`
			Data []gmlData `xml:"data"`
		} `xml:"node"`
		Edges []struct {
			Source string    `xml:"source,attr"`
			Target string    `xml:"target,attr"`
			Data   []gmlData `xml:"data"`
		} `xml:"edge"`
	} `xml:"graph"`
}

func TestGraphMLParses(t *testing.T) {
	for _, edges := range [][]model.Edge{shopEdges(), hostileEdges()} {
		var doc parsedGraphML
		g := Build(edges, Filter{})
		out := render(t, FormatGraphML, g)
		if err := xml.Unmarshal(out, &doc); err != nil {
			t.Fatalf("parse graphml: %v\n%s", err, out)
		}
		keys := map[string]string{}
		for _, k := range doc.Keys {
			keys[k.ID] = k.For
		}
		if doc.Graph.EdgeDefault != "directed" || len(doc.Graph.Nodes) != len(g.Nodes) || len(doc.Graph.Edges) != len(g.Edges) {
			t.Fatalf("graphml has %d nodes, %d edges (%s); want %d, %d, directed",
				len(doc.Graph.Nodes), len(doc.Graph.Edges), doc.Graph.EdgeDefault, len(g.Nodes), len(g.Edges))
		}
		ids := map[string]bool{}
		for i, n := range doc.Graph.Nodes {
			if n.ID != strings.ToValidUTF8(g.Nodes[i].ID, "\uFFFD") && !strings.ContainsAny(g.Nodes[i].ID, "\x00\x01\x1b") {
				t.Errorf("node %d: id %q, want %q", i, n.ID, g.Nodes[i].ID)
			}
			ids[n.ID] = true
			for _, d := range n.Data {
				if keys[d.Key] != "node" {
					t.Errorf("node %q: data key %q not declared for nodes", n.ID, d.Key)
				}
			}
		}
		for _, e := range doc.Graph.Edges {
			if !ids[e.Source] || !ids[e.Target] {
				t.Errorf("edge %q → %q: unknown node", e.Source, e.Target)
			}
			for _, d := range e.Data {
				if keys[d.Key] != "edge" {
					t.Errorf("edge %q → %q: data key %q not declared for edges", e.Source, e.Target, d.Key)
				}
			}
		}
	}
}

func TestDOTShape(t *testing.T) {
	for _, edges := range [][]model.Edge{shopEdges(), hostileEdges()} {
		g := Build(edges, Filter{})
		out := string(render(t, FormatDOT, g))
		// Braces balance outside quoted strings; every edge is one line.
		depth, inQuote := 0, false
		for i := 0; i < len(out); i++ {
			switch c := out[i]; {
			case inQuote && c == '\\':
				i++
			case c == '"':
				inQuote = !inQuote
			case !inQuote && c == '{':
				depth++
			case !inQuote && c == '}':
				depth--
				if depth < 0 {
					t.Fatalf("unbalanced braces at byte %d", i)
				}
			}
		}
		if depth != 0 || inQuote {
			t.Errorf("depth %d, in quote %v at end\n%s", depth, inQuote, out)
		}
		arrows := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, `" -> "`) {
				arrows++
				if !strings.HasSuffix(l, "];") {
					t.Errorf("edge line not terminated: %q", l)
				}
			}
		}
		if arrows != len(g.Edges) {
			t.Errorf("%d edge lines, want %d", arrows, len(g.Edges))
		}
		if !strings.HasPrefix(out, "digraph nanoseg {\n") || !strings.HasSuffix(out, "}\n") {
			t.Errorf("not one digraph:\n%s", out)
		}
	}
}

func TestJSONShape(t *testing.T) {
	g := Build(shopEdges(), Filter{})
	out := render(t, FormatJSON, g)
	var back Graph
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g, &back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	if bytes.Contains(out, []byte("generatedAt")) {
		t.Error("generatedAt written although not set")
	}
	empty := render(t, FormatJSON, &Graph{})
	if string(empty) != "{\n  \"nodes\": [],\n  \"edges\": []\n}\n" {
		t.Errorf("empty graph JSON = %s", empty)
	}
}

func TestWriteErrors(t *testing.T) {
	g := Build(shopEdges(), Filter{})
	for _, f := range Formats {
		if err := Write(failWriter{}, f, g); err == nil {
			t.Errorf("%s: no error from a failing writer", f)
		}
	}
	if err := Write(io.Discard, "svg", g); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("Write(svg) error = %v, want ErrUnknownFormat", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestEmptyGraph(t *testing.T) {
	g := Build(nil, Filter{})
	for _, f := range Formats {
		if out := render(t, f, g); len(out) == 0 {
			t.Errorf("%s: empty output", f)
		}
	}
}

func TestCycleAndSelfLoop(t *testing.T) {
	a, b, c := wl("x", "a", nil), wl("x", "b", nil), wl("x", "c", nil)
	e := func(s, d model.Peer) model.Edge {
		return model.Edge{Source: s, Destination: d, Protocol: model.ProtocolTCP, Port: 80, Traffic: model.Traffic{Flows: 1}}
	}
	g := Build([]model.Edge{e(a, b), e(b, c), e(c, a), e(a, a), e(b, a)}, Filter{})
	if d := htmlData(t, render(t, FormatHTML, g)); len(d.Edges) != 5 || len(d.Nodes) != 3 {
		t.Errorf("the page's data has %d edges and %d nodes, want 5 and 3 (a self-loop and both directions)", len(d.Edges), len(d.Nodes))
	}
}

// Failed connections show in the label; coverage attaches to workload
// nodes, and an observed silent workload gets a node of its own.
func TestFailedAndCoverage(t *testing.T) {
	at := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	e := model.Edge{Source: model.Peer{Namespace: "shop", Workload: "web"}, Destination: model.Peer{Namespace: "shop", Workload: "db"},
		Protocol: model.ProtocolTCP, Port: 9999, Traffic: model.Traffic{FirstSeen: at, LastSeen: at, Flows: 3, Failed: 3, Reset: 3}}
	g := Build([]model.Edge{e}, Filter{})
	if got := g.Edges[0].Label; got != "TCP/9999 · 3 flows, 3 failed" {
		t.Errorf("label %q", got)
	}
	g.AddCoverage([]model.Coverage{
		{Workload: "shop/db", ObservedSeconds: 60, Flows: 3, Failed: 3, Peers: 1, To: at},
		{Workload: "shop/batch", ObservedSeconds: 60, Endpoints: 1, Silent: true, To: at},
		{Workload: "shop/ghost", Silent: true, To: at}, // never observed: no node
	})
	if len(g.Nodes) != 3 || g.Nodes[0].ID != "shop/batch" || g.Nodes[0].Coverage == nil || !g.Nodes[0].Coverage.Silent ||
		g.Nodes[1].ID != "shop/db" || g.Nodes[1].Coverage == nil || g.Nodes[2].Coverage != nil {
		t.Fatalf("nodes %+v", g.Nodes)
	}
	var b strings.Builder
	if err := WriteHTML(&b, g); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "1 workload silent") || !strings.Contains(b.String(), "3 failed") {
		t.Errorf("page lacks the silent workload or the failed flows")
	}
	b.Reset()
	if err := Write(&b, FormatJSON, g); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"silent": true`) || !strings.Contains(b.String(), `"failed": 3`) {
		t.Errorf("JSON lacks coverage or failed:\n%s", b.String())
	}
}

// htmlSkeleton returns the HTML export with the inlined bundle and style
// sheet (package web's, checked against its sources there) cut down to a
// marker, so that golden files hold the page's markup and data only. It
// fails t when the export does not inline exactly that bundle and sheet.
func htmlSkeleton(t *testing.T, out []byte) []byte {
	t.Helper()
	js, css := web.AppJS(), web.AppCSS()
	if bytes.Count(out, js) != 1 || bytes.Count(out, css) != 1 {
		t.Fatalf("the HTML export does not inline the page's script and style sheet once each")
	}
	out = bytes.Replace(out, js, []byte("/* web/dist/app.js */\n"), 1)
	return bytes.Replace(out, css, []byte("/* web/dist/app.css */\n"), 1)
}

// htmlData parses the HTML export and returns the graph embedded for the
// page, failing t unless the file has exactly the two scripts (the data
// and the inlined bundle), no event handler attribute and no element the
// page does not have.
func htmlData(t *testing.T, out []byte) Graph {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var data, code []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script":
				switch {
				case attr(n, "type") == "application/json" && attr(n, "id") == "nanoseg-graph":
					data = append(data, text(n))
				case attr(n, "src") == "" && attr(n, "type") == "":
					code = append(code, text(n))
				default:
					t.Errorf("unexpected script element %v", n.Attr)
				}
			case "img", "svg", "iframe", "object", "embed":
				t.Errorf("a <%s> element in the export", n.Data)
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("event handler attribute %q on <%s>", a.Key, n.Data)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if len(data) != 1 || len(code) != 1 {
		t.Fatalf("%d data and %d code scripts, want 1 and 1", len(data), len(code))
	}
	if code[0] != "\n"+string(web.AppJS()) {
		t.Error("the export's script is not the page's bundle (web.AppJS)")
	}
	var g Graph
	if err := json.Unmarshal([]byte(data[0]), &g); err != nil {
		t.Fatalf("the export's data: %v", err)
	}
	return g
}
