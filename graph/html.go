package graph

import (
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

//go:embed page.html.tmpl
var pageTemplate string

// page parses the page template once.
var page = sync.OnceValues(func() (*template.Template, error) {
	return template.New("page").Parse(pageTemplate)
})

// WriteHTML writes g as one self-contained HTML page: a header with counts,
// a legend, an inline SVG drawing (layered left to right, see layout.go;
// namespaces by colour, external peers as grey dashed pills; an edge is
// red when most of its flows were denied, orange and dashed when most were
// audit-denied (Edge.Dominant), and its label gives the split with the
// denied and audit-denied counts in their colour), and a table of every
// edge with its allowed, audit-denied and denied flows.
// A small inline script highlights a node's or edge's neighbourhood on
// hover and filters by text; the page loads nothing else (no external
// scripts, fonts or styles). Every name goes through html/template's
// contextual escaping. Errors come from w.
func WriteHTML(w io.Writer, g *Graph) error {
	t, err := page()
	if err != nil {
		return fmt.Errorf("parse page template: %w", err)
	}
	if err := t.Execute(w, newPageData(g)); err != nil {
		return fmt.Errorf("write graph html: %w", err)
	}
	return nil
}

type pageData struct {
	Title, Summary, Window, GeneratedAt string
	Width, Height                       string
	MinWidth                            string // the drawing shrinks to fit the window down to this width
	Legend                              []pageLegend
	Markers                             []pageMarker
	Nodes                               []pageNode
	Pairs                               []pagePair
	Rows                                []pageRow

	ExternalFill, ExternalStroke, ColorNormal, ColorAuditDeny, ColorDeny string
}

type pageLegend struct{ Name, Fill, Stroke string }

type pageMarker struct{ ID, Color string }

type pageNode struct {
	ID, Title, Name, Sub, Edges, Search string
	X, Y, W, H, RX, TX, NameY, SubY     string
	Fill, Stroke                        string
	Dashed                              bool
}

type pagePair struct {
	ID, From, To, D, Color, Marker, Class, Title, Search string
	Dashed                                               bool
	LX, LY, LW, LH                                       string
	Lines                                                []pageLine
}

type pageLine struct {
	X, Y  string
	Spans []pageSpan
}

// pageSpan is part of a label line; Class is the verdict of a count
// ("deny", "audit-deny"), empty for plain text.
type pageSpan struct{ Text, Class string }

type pageRow struct {
	Class, Pair, Source, Destination, Service, Flows, BytesOut, BytesIn, FirstSeen, LastSeen string
	Allowed, AuditDenied, Denied                                                             string
	// Title lists the verdict records behind the split.
	Title string
}

// markers names the arrowhead of each edge colour.
var markers = []pageMarker{{"arrow", colorNormal}, {"arrow-audit", colorAuditDeny}, {"arrow-deny", colorDeny}}

func newPageData(g *Graph) pageData {
	L := computeLayout(g)
	colors := nsColors(g)
	d := pageData{
		Title:          "nanoseg communication graph",
		Width:          num(L.width),
		Height:         num(L.height),
		MinWidth:       strconv.Itoa(int(min(L.width, max(L.width*0.7, 900)))),
		Markers:        markers,
		ExternalFill:   externalFill,
		ExternalStroke: externalStroke,
		ColorNormal:    colorNormal,
		ColorAuditDeny: colorAuditDeny,
		ColorDeny:      colorDeny,
	}
	workloads, externals := 0, 0
	for _, n := range g.Nodes {
		if n.External() {
			externals++
		} else {
			workloads++
		}
	}
	var flows, denied, audited, failed uint64
	for _, e := range g.Edges {
		flows += e.Flows
		denied += e.Verdicts.Denied
		audited += e.Verdicts.AuditDenied
		failed += e.Failed
	}
	d.Summary = fmt.Sprintf("%s, %s, %s, %s", plural(workloads, "workload"), plural(externals, "external peer"),
		plural(len(g.Edges), "edge"), plural(int(flows), "flow"))
	if audited > 0 {
		d.Summary += fmt.Sprintf(", %d audit-denied", audited)
	}
	if denied > 0 {
		d.Summary += fmt.Sprintf(", %d denied", denied)
	}
	if failed > 0 {
		d.Summary += fmt.Sprintf(", %d failed", failed)
	}
	silent := 0
	for _, n := range g.Nodes {
		if n.Coverage != nil && n.Coverage.Silent {
			silent++
		}
	}
	if silent > 0 {
		d.Summary += fmt.Sprintf(", %s silent (no successful connection)", plural(silent, "workload"))
	}
	switch {
	case !g.Since.IsZero() && !g.Until.IsZero():
		d.Window = "from " + stamp(g.Since) + " to " + stamp(g.Until)
	case !g.Since.IsZero():
		d.Window = "since " + stamp(g.Since)
	case !g.Until.IsZero():
		d.Window = "until " + stamp(g.Until)
	}
	if sel := g.Selection.String(); sel != "" {
		d.Window = strings.TrimPrefix(d.Window+" · "+cleanText(sel), " · ")
	}
	if !g.GeneratedAt.IsZero() {
		d.GeneratedAt = stamp(g.GeneratedAt)
	}
	for _, ns := range g.namespaces() {
		c := palette[colors[ns]]
		d.Legend = append(d.Legend, pageLegend{cleanText(ns), c.fill, c.stroke})
	}

	nodeEdges := make([][]string, len(g.Nodes))
	idx := make(map[string]int, len(g.Nodes))
	for i, n := range g.Nodes {
		idx[n.ID] = i
	}
	for pi, pp := range L.pairs {
		id := "p" + strconv.Itoa(pi)
		nodeEdges[pp.src] = append(nodeEdges[pp.src], id)
		if pp.dst != pp.src {
			nodeEdges[pp.dst] = append(nodeEdges[pp.dst], id)
		}
		var allowed, auditDenied, denied uint64
		logged := false
		var titles, search []string
		for _, ei := range pp.edges {
			e := g.Edges[ei]
			a, au, de := e.Split()
			allowed, auditDenied, denied = allowed+a, auditDenied+au, denied+de
			logged = logged || e.Verdicts.Allowed > 0
			titles = append(titles, edgeTitle(e))
			search = append(search, e.Text(), string(e.Dominant()), string(e.Worst()))
			d.Rows = append(d.Rows, pageRow{
				Class:       string(e.Dominant()),
				Pair:        id,
				Source:      cleanText(e.Source),
				Destination: cleanText(e.Destination),
				Service:     e.Service(),
				Flows:       strconv.FormatUint(e.Flows, 10),
				BytesOut:    edgeBytes(e, e.BytesOut),
				BytesIn:     edgeBytes(e, e.BytesIn),
				FirstSeen:   stamp(e.FirstSeen),
				LastSeen:    stamp(e.LastSeen),
				Allowed:     strconv.FormatUint(a, 10),
				AuditDenied: strconv.FormatUint(au, 10),
				Denied:      strconv.FormatUint(de, 10),
				Title:       "verdict records: " + cmp.Or(verdictText(e), "none"),
			})
		}
		// The pair is drawn in the colour of most of its flows.
		dom := dominant(allowed, auditDenied, denied, logged)
		color, dashed := edgeColor(dom)
		marker := "arrow"
		switch dom {
		case model.VerdictDeny:
			marker = "arrow-deny"
		case model.VerdictAuditDeny:
			marker = "arrow-audit"
		}
		src, dst := g.Nodes[pp.src].ID, g.Nodes[pp.dst].ID
		p := pagePair{
			ID: id, From: "n" + strconv.Itoa(pp.src), To: "n" + strconv.Itoa(pp.dst),
			D: pathData(pp.points, pp.self), Color: color, Dashed: dashed, Marker: marker,
			Class:  string(dom),
			Title:  cleanText(src+" → "+dst) + "\n" + strings.Join(titles, "\n"),
			Search: strings.ToLower(cleanText(strings.Join(search, " "))),
			LX:     num(pp.label.x), LY: num(pp.label.y), LW: num(pp.label.w), LH: num(pp.label.h),
		}
		for i, l := range pp.lines {
			line := pageLine{
				X: num(pp.label.x + pp.label.w/2),
				Y: num(pp.label.y + 2 + labelLineH*float64(i) + 11),
			}
			for _, sp := range l {
				cls := ""
				if sp.verdict.Denies() {
					cls = string(sp.verdict)
				}
				line.Spans = append(line.Spans, pageSpan{Text: sp.text, Class: cls})
			}
			p.Lines = append(p.Lines, line)
		}
		d.Pairs = append(d.Pairs, p)
	}

	for i, n := range g.Nodes {
		pn := L.nodes[i]
		maxChars := int((L.nodeW - 16) / titleChar)
		if n.External() {
			maxChars = int((L.nodeW - 16 - nodeH/2) / titleChar)
		}
		node := pageNode{
			ID:     "n" + strconv.Itoa(i),
			Title:  nodeTitle(n),
			Name:   truncate(cleanText(n.Label()), maxChars),
			Edges:  strings.Join(nodeEdges[i], " "),
			Search: strings.ToLower(cleanText(n.ID + " " + n.Namespace + " " + n.Kind)),
			X:      num(pn.x), Y: num(pn.y), W: num(pn.w), H: num(pn.h),
			RX: "8", TX: num(pn.x + pn.w/2), NameY: num(pn.y + 20), SubY: num(pn.y + 36),
		}
		if n.External() {
			node.Sub = "external"
			node.RX = num(pn.h / 2)
			node.Fill, node.Stroke, node.Dashed = externalFill, externalStroke, true
		} else {
			c := palette[colors[n.Namespace]]
			sub := n.Namespace
			if cv := n.Coverage; cv != nil {
				sub += " · " + model.ShortDuration(cv.Observed())
				if cv.Silent {
					sub += " · silent"
				}
			}
			node.Sub = truncate(cleanText(sub), int((L.nodeW-16)/labelChar))
			node.Fill, node.Stroke = c.fill, c.stroke
		}
		d.Nodes = append(d.Nodes, node)
	}
	return d
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}

// stamp formats t in UTC to the second, or "" when zero.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// verdictText is "observed 12, audit-deny 3", leaving out zero counts.
func verdictText(e Link) string {
	var parts []string
	for _, v := range model.Verdicts {
		if n := e.Verdicts.Of(v); n > 0 {
			parts = append(parts, string(v)+" "+strconv.FormatUint(n, 10))
		}
	}
	return strings.Join(parts, ", ")
}

// edgeTitle is the edge's tooltip: "TCP/5432 · 616 flows (614 allowed,
// 2 denied), 252.7 KiB out, 0 B in; verdict records: observed 614, deny 2;
// seen … – …".
func edgeTitle(e Link) string {
	s := fmt.Sprintf("%s, %s out, %s in", e.Text(), edgeBytes(e, e.BytesOut), edgeBytes(e, e.BytesIn))
	if v := verdictText(e); v != "" {
		s += "; verdict records: " + v
	}
	if !e.FirstSeen.IsZero() {
		s += "; seen " + stamp(e.FirstSeen) + " – " + stamp(e.LastSeen)
	}
	return s
}

func nodeTitle(n Node) string {
	s := cleanText(n.ID)
	if n.External() {
		s += " (external)"
	}
	for _, k := range sortedKeys(n.Labels) {
		s += "\n" + cleanText(k+"="+n.Labels[k])
	}
	if n.Coverage != nil {
		s += "\n" + cleanText(n.Coverage.Summary())
	}
	return s
}
