package graph

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/nanoseg/nanoseg/model"
)

// WriteMermaid writes g as a Mermaid flowchart (left to right): one
// subgraph per namespace holding its workloads, external peers as
// stadium-shaped nodes, and one link per edge labelled
// "TCP/5432 · 120 flows" (with the split when any flow was denied or
// audit-denied, see Edge.Text). Links whose flows were mostly denied are
// red, mostly audit-denied orange and dashed (linkStyle, Edge.Dominant).
// Mermaid IDs are generated ("n0", "ns0", ...), never taken from names; every name is written inside double quotes with
// Mermaid entity codes for the characters that could end the string or
// form markup (" # < > & ` | and friends). Errors come from w.
func WriteMermaid(w io.Writer, g *Graph) error {
	bw := bufio.NewWriter(w)
	colors := nsColors(g)
	ids := make(map[string]string, len(g.Nodes))
	for i, n := range g.Nodes {
		ids[n.ID] = "n" + strconv.Itoa(i)
	}
	fmt.Fprintln(bw, "flowchart LR")
	for i, ns := range g.namespaces() {
		c := palette[colors[ns]]
		sid := "ns" + strconv.Itoa(i)
		fmt.Fprintf(bw, "  subgraph %s[%s]\n", sid, mermaidQuote(ns))
		for _, n := range g.Nodes {
			if n.External() || n.Namespace != ns {
				continue
			}
			fmt.Fprintf(bw, "    %s[%s]\n", ids[n.ID], mermaidQuote(n.Workload))
		}
		fmt.Fprintln(bw, "  end")
		fmt.Fprintf(bw, "  style %s fill:#ffffff,stroke:%s\n", sid, c.stroke)
	}
	for _, n := range g.Nodes {
		if n.External() {
			fmt.Fprintf(bw, "  %s([%s])\n", ids[n.ID], mermaidQuote(n.Label()))
		}
	}
	var red, orange []string
	for i, e := range g.Edges {
		fmt.Fprintf(bw, "  %s -->|%s| %s\n", ids[e.Source], mermaidQuote(e.Text()), ids[e.Destination])
		switch e.Dominant() {
		case model.VerdictDeny:
			red = append(red, strconv.Itoa(i))
		case model.VerdictAuditDeny:
			orange = append(orange, strconv.Itoa(i))
		}
	}
	for i, n := range g.Nodes {
		if n.External() {
			fmt.Fprintf(bw, "  class n%d external\n", i)
		} else {
			fmt.Fprintf(bw, "  class n%d color%d\n", i, colors[n.Namespace])
		}
	}
	fmt.Fprintf(bw, "  classDef external fill:%s,stroke:%s,stroke-dasharray:4 3\n", externalFill, externalStroke)
	for i, c := range palette {
		if slices.Contains(slices.Collect(maps.Values(colors)), i) {
			fmt.Fprintf(bw, "  classDef color%d fill:%s,stroke:%s\n", i, c.fill, c.stroke)
		}
	}
	if len(red) > 0 {
		fmt.Fprintf(bw, "  linkStyle %s stroke:%s,stroke-width:2px,color:%s\n", strings.Join(red, ","), colorDeny, colorDeny)
	}
	if len(orange) > 0 {
		fmt.Fprintf(bw, "  linkStyle %s stroke:%s,stroke-width:2px,stroke-dasharray:5 4,color:%s\n", strings.Join(orange, ","), colorAuditDeny, colorAuditDeny)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write graph mermaid: %w", err)
	}
	return nil
}

// mermaidEscapes maps characters that could end a quoted Mermaid string,
// start markup or a Markdown string to Mermaid entity codes.
var mermaidEscapes = strings.NewReplacer(
	`#`, "#35;",
	`"`, "#quot;",
	`&`, "#amp;",
	`<`, "#lt;",
	`>`, "#gt;",
	"`", "#96;",
	`|`, "#124;",
	`[`, "#91;",
	`]`, "#93;",
	`{`, "#123;",
	`}`, "#125;",
	`(`, "#40;",
	`)`, "#41;",
	`;`, "#59;",
	`%`, "#37;",
	`\`, "#92;",
)

// mermaidQuote returns s as a double-quoted Mermaid string.
func mermaidQuote(s string) string {
	return `"` + mermaidEscapes.Replace(cleanText(s)) + `"`
}
