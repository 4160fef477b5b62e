// Package graph turns observed edges (model.Edge) into the communication
// graph that network engineers review, and writes it as JSON, DOT
// (Graphviz), GraphML, Mermaid, or a self-contained HTML page that draws
// it with the agent's web page (package web).
//
// Build merges edges that share source, destination, protocol and port (for
// example from several observation windows or nodes), applies a Filter
// (namespaces, workloads, verdict, time window), and sorts nodes and edges,
// so that the same edges, in any order, give the same bytes in every
// format. No writer reads the clock: Graph.GeneratedAt appears in the output
// only when the caller sets it.
//
// DecodeEdges reads the edges themselves: a JSON array, JSON lines, or the
// windows that `nanoseg observe --edges -o json` prints, with errors that
// name the line.
//
// An edge's label splits its flows into allowed, audit-denied and denied
// when any was denied or audit-denied (Edge.Split), and the drawings colour
// it by the verdict of most of its flows (Edge.Dominant), not by the worst
// one: a path that works and was denied twice is not drawn as denied.
//
// The HTML page is the agent's live page (package web: cytoscape.js with
// the fcose layout, filters, edge and node panels) with its script and
// style sheet inline and the graph's JSON form embedded as its data, so
// the export and the live page share one rendering; it needs no network.
//
// Every name in the graph (namespaces, workloads, labels, DNS names) comes
// from user input or from the network, so every writer escapes it for its
// format.
package graph
