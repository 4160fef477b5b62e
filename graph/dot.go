package graph

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteDOT writes g as a Graphviz digraph: one cluster per namespace
// holding its workloads, external peers as grey dashed ellipses outside
// every cluster, and one line per edge labelled "TCP/5432 · 120 flows"
// (with the split when any flow was denied or audit-denied, see
// Edge.Text); edges whose flows were mostly denied are red, mostly
// audit-denied orange and dashed (Edge.Dominant); an edge a
// ClusterNetworkPolicy rule decides (Link.DecidedBy) carries the
// matrix's mark ("*" Admin, "+" Baseline) and the rule in its label, and
// tier, policy, rule and action attributes. Every name
// is written as a quoted DOT string with backslashes and quotes escaped
// and control characters turned into spaces, so that no name can end a
// string or inject a Graphviz escape such as \N. Errors come from w.
func WriteDOT(w io.Writer, g *Graph) error {
	bw := bufio.NewWriter(w)
	colors := nsColors(g)
	fmt.Fprintln(bw, "digraph nanoseg {")
	fmt.Fprintln(bw, `  graph [rankdir=LR, fontname="Helvetica", fontsize=12, nodesep=0.4, ranksep=1.2];`)
	fmt.Fprintln(bw, `  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];`)
	fmt.Fprintln(bw, `  edge [fontname="Helvetica", fontsize=9, color="`+colorNormal+`", fontcolor="#334155"];`)
	for i, ns := range g.namespaces() {
		c := palette[colors[ns]]
		fmt.Fprintf(bw, "  subgraph \"cluster_%d\" {\n", i)
		fmt.Fprintf(bw, "    label=%s; style=\"rounded\"; color=\"%s\"; fontcolor=\"%s\";\n", dotQuote(ns), c.stroke, c.stroke)
		for _, n := range g.Nodes {
			if n.External() || n.Namespace != ns {
				continue
			}
			fmt.Fprintf(bw, "    %s [label=%s, fillcolor=\"%s\", color=\"%s\", tooltip=%s];\n",
				dotQuote(n.ID), dotQuote(n.Workload), c.fill, c.stroke, dotQuote(labelsText(n)))
		}
		fmt.Fprintln(bw, "  }")
	}
	for _, n := range g.Nodes {
		if !n.External() {
			continue
		}
		fmt.Fprintf(bw, "  %s [label=%s, shape=ellipse, style=\"dashed,filled\", fillcolor=\"%s\", color=\"%s\"];\n",
			dotQuote(n.ID), dotQuote(n.Label()), externalFill, externalStroke)
	}
	for _, e := range g.Edges {
		attrs := "label=" + dotQuote(e.Text())
		if c := e.DecidedBy; c != nil {
			// The matrix's marks: "*" Admin, "+" Baseline; the rule in
			// the label and as attributes for tools.
			attrs = "label=" + dotQuote(e.Text()+" "+c.Mark()+" "+c.String()) + ", tier=" + dotQuote(c.Tier) + ", policy=" + dotQuote(c.Policy) +
				", rule=" + dotQuote(c.Rule) + ", action=" + dotQuote(c.Action)
		}
		switch c, dashed := edgeColor(e.Dominant()); {
		case dashed:
			attrs += fmt.Sprintf(`, color="%s", fontcolor="%s", style=dashed`, c, c)
		case c != colorNormal:
			attrs += fmt.Sprintf(`, color="%s", fontcolor="%s", penwidth=2`, c, c)
		}
		fmt.Fprintf(bw, "  %s -> %s [%s];\n", dotQuote(e.Source), dotQuote(e.Destination), attrs)
	}
	fmt.Fprintln(bw, "}")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write graph dot: %w", err)
	}
	return nil
}

// dotQuote returns s as a double-quoted DOT string that Graphviz shows
// literally.
func dotQuote(s string) string {
	s = cleanText(s)
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	if strings.HasSuffix(s, `\`) {
		// Older Graphviz lexers read a backslash before the closing quote as escaping it.
		s += " "
	}
	return `"` + s + `"`
}

// labelsText is a node's labels as "k=v, k=v", sorted by key.
func labelsText(n Node) string {
	var b strings.Builder
	b.WriteString(n.ID)
	for i, k := range sortedKeys(n.Labels) {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(k + "=" + n.Labels[k])
	}
	return b.String()
}
