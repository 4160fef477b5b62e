package graph

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/web"
)

// Where the export puts its parts into the page's markup.
const (
	pageCSSLink  = `<link rel="stylesheet" href="app.css" id="__________cytoscape_stylesheet">`
	pageJSScript = `<script src="app.js" defer></script>`
	pageTitle    = `<title>nanoseg</title>`
	pageHeading  = `<h1 id="title">nanoseg</h1>`
	pageEnd      = `</body>`
)

// WriteHTML writes g as one self-contained HTML file that draws it with
// the agent's web page (package web: the same markup, style sheet and
// script, cytoscape.js with the fcose layout): the style sheet and the
// script inline, and the graph in its JSON form (see Graph) in a
// `<script type="application/json" id="nanoseg-graph">` element, which the
// page draws instead of asking an agent. Filters and the edge and node
// panels work as on the live page; actions, evidence and the matrix need
// an agent and are hidden. The file loads nothing else. The title and
// heading give the counts (workloads, external peers, edges, flows, and
// the audit-denied, denied and failed flows and silent workloads when
// there are any), the window, the filter and when it was generated.
// encoding/json escapes <, > and & in the data, so no name can end its
// element. Errors come from w, or (a defect of the build) from a bundle
// that cannot be inlined safely.
func WriteHTML(w io.Writer, g *Graph) error {
	page := string(web.IndexHTML())
	css, js := web.AppCSS(), web.AppJS()
	for _, bad := range []string{"</style", "<!--"} {
		if bytes.Contains(bytes.ToLower(css), []byte(bad)) {
			return fmt.Errorf("write graph html: the page's style sheet contains %q and cannot be inlined", bad)
		}
	}
	for _, bad := range []string{"</script", "<!--"} {
		if bytes.Contains(bytes.ToLower(js), []byte(bad)) {
			return fmt.Errorf("write graph html: the page's script contains %q and cannot be inlined", bad)
		}
	}
	data, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("write graph html: %w", err)
	}
	for _, part := range []string{pageCSSLink, pageJSScript, pageTitle, pageHeading, pageEnd} {
		if strings.Count(page, part) != 1 {
			return fmt.Errorf("write graph html: the page's markup does not hold %q once", part)
		}
	}
	title := html.EscapeString(pageSummary(g))
	r := strings.NewReplacer(
		pageCSSLink, `<style id="__________cytoscape_stylesheet">`+"\n"+string(css)+"</style>",
		pageJSScript, "",
		pageTitle, "<title>nanoseg communication graph</title>",
		pageHeading, `<h1 id="title">nanoseg communication graph</h1><span id="summary">`+title+`</span>`,
		pageEnd, `<script type="application/json" id="nanoseg-graph">`+string(data)+"</script>\n<script>\n"+string(js)+"</script>\n"+pageEnd,
	)
	if _, err := io.WriteString(w, r.Replace(page)); err != nil {
		return fmt.Errorf("write graph html: %w", err)
	}
	return nil
}

// pageSummary is the export's one-line description: counts, window,
// filter and generation time.
func pageSummary(g *Graph) string {
	workloads, externals, silent := 0, 0, 0
	for _, n := range g.Nodes {
		if n.External() {
			externals++
		} else {
			workloads++
		}
		if n.Coverage != nil && n.Coverage.Silent {
			silent++
		}
	}
	var flows, denied, audited, failed uint64
	for _, e := range g.Edges {
		flows += e.Flows
		denied += e.Verdicts.Denied
		audited += e.Verdicts.AuditDenied
		failed += e.Failed
	}
	s := fmt.Sprintf("%s, %s, %s, %s", plural(workloads, "workload"), plural(externals, "external peer"),
		plural(len(g.Edges), "edge"), plural(int(flows), "flow"))
	if audited > 0 {
		s += fmt.Sprintf(", %d audit-denied", audited)
	}
	if denied > 0 {
		s += fmt.Sprintf(", %d denied", denied)
	}
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	if silent > 0 {
		s += fmt.Sprintf(", %s silent (no successful connection)", plural(silent, "workload"))
	}
	switch {
	case !g.Since.IsZero() && !g.Until.IsZero():
		s += " · from " + stamp(g.Since) + " to " + stamp(g.Until)
	case !g.Since.IsZero():
		s += " · since " + stamp(g.Since)
	case !g.Until.IsZero():
		s += " · until " + stamp(g.Until)
	}
	if sel := g.Selection.String(); sel != "" {
		s += " · " + cleanText(sel)
	}
	if !g.GeneratedAt.IsZero() {
		s += " · generated " + stamp(g.GeneratedAt)
	}
	return s
}

// plural is "1 edge", "2 edges".
func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// stamp formats t in UTC to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
