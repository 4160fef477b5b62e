package graph

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// Node kinds.
const (
	// KindWorkload is a workload identity (namespace and workload name).
	KindWorkload = "workload"
	// KindExternal is a peer outside the inventory, named by the DNS name a
	// workload asked for or by its address.
	KindExternal = "external"
)

// Graph is the communication graph: nodes sorted by ID, and edges sorted
// by source ID, destination ID, protocol and port. Build makes one.
//
// JSON form (stable; fields only added):
//
//	{"generatedAt":"2026-11-30T06:00:00Z",          // only when set
//	 "since":"…","until":"…",                        // only when filtered by time
//	 "nodes":[{"id":"shop/api","kind":"workload","namespace":"shop",
//	           "workload":"api","labels":{"app":"api"}},
//	          {"id":"payments.example","kind":"external","name":"payments.example"}],
//	 "edges":[{"source":"shop/api","destination":"payments.example",
//	           "protocol":"tcp","port":443,"label":"TCP/443 · 60 flows",
//	           "firstSeen":"…","lastSeen":"…","flows":60,
//	           "packetsOut":600,"bytesOut":72000,"packetsIn":480,"bytesIn":96000,
//	           "verdicts":{"observed":60},
//	           "decidedBy":{"tier":"Admin","policy":"guard","priority":7,  // only when marked
//	                        "rule":"egress-0","action":"Accept"}}]}
type Graph struct {
	// GeneratedAt is when the graph was made; zero (and left out of every
	// output) unless the caller sets it.
	GeneratedAt time.Time `json:"generatedAt,omitzero"`
	// Since and Until are the filter's time window, zero when unbounded.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Selection is the rest of the filter the graph was built with, so
	// that a reader knows what was left out.
	Selection Selection `json:"filter,omitzero"`
	Nodes     []Node    `json:"nodes"`
	Edges     []Link    `json:"edges"`
}

// Selection records a Filter's namespaces and workloads (sorted) and
// verdict. JSON: {"namespaces":["shop"],"workloads":["shop/db"],"verdict":"deny"},
// each field left out when empty.
type Selection struct {
	Namespaces []string      `json:"namespaces,omitempty"`
	Workloads  []string      `json:"workloads,omitempty"`
	Verdict    model.Verdict `json:"verdict,omitempty"`
}

// String is "namespace shop, workload shop/db, verdict deny", or "".
func (s Selection) String() string {
	var parts []string
	for _, ns := range s.Namespaces {
		parts = append(parts, "namespace "+ns)
	}
	for _, w := range s.Workloads {
		parts = append(parts, "workload "+w)
	}
	if s.Verdict != "" {
		parts = append(parts, "verdict "+string(s.Verdict))
	}
	return strings.Join(parts, ", ")
}

// Node is one workload identity or one external peer.
type Node struct {
	// ID is "namespace/workload" for a workload and the DNS name or the
	// address for an external peer. IDs are unique within a Graph: in the
	// rare case that two peers give the same ID (an external name equal to
	// a workload's ID, or names holding "/"), the later one in the order
	// workloads (by namespace, name), externals (by name, address) gets a
	// suffix "#2", "#3", ...
	ID string `json:"id"`
	// Kind is KindWorkload or KindExternal.
	Kind      string            `json:"kind"`
	Namespace string            `json:"namespace,omitempty"`
	Workload  string            `json:"workload,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Name is an external peer's DNS name, Addr its address when no name
	// was seen.
	Name string `json:"name,omitempty"`
	Addr string `json:"addr,omitempty"`
	// Coverage is how well a workload was observed (AddCoverage); absent
	// when the graph was built from edges alone.
	Coverage *model.Coverage `json:"coverage,omitempty"`
}

// AddCoverage attaches each workload's coverage to its node, and adds a
// node without edges for every workload of covs that was observed and
// silent (no successful connection) within the graph's selection, so that
// what was not seen is on the picture too. Externals have no coverage.
func (g *Graph) AddCoverage(covs []model.Coverage) {
	idx := map[string]int{}
	for i, n := range g.Nodes {
		if !n.External() {
			idx[n.ID] = i
		}
	}
	added := false
	for _, c := range covs {
		c := c
		if i, ok := idx[c.Workload]; ok {
			g.Nodes[i].Coverage = &c
			continue
		}
		ns, w, ok := strings.Cut(c.Workload, "/")
		if !ok || !c.Silent || c.Endpoints == 0 || g.Selection.Verdict != "" ||
			(len(g.Selection.Namespaces) > 0 && !slices.Contains(g.Selection.Namespaces, ns)) ||
			(len(g.Selection.Workloads) > 0 && !slices.Contains(g.Selection.Workloads, c.Workload)) {
			continue
		}
		g.Nodes = append(g.Nodes, Node{ID: c.Workload, Kind: KindWorkload, Namespace: ns, Workload: w, Coverage: &c})
		added = true
	}
	if added {
		slices.SortFunc(g.Nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	}
}

// External reports whether n is an external peer.
func (n Node) External() bool { return n.Kind == KindExternal }

// Label is the node's short display name: the workload name, or the
// external peer's name or address.
func (n Node) Label() string {
	if n.External() {
		return cmp.Or(n.Name, n.Addr, n.ID)
	}
	return n.Workload
}

// Link is the traffic from one node to another on one protocol and
// destination port, merged over every observed edge with that key.
type Link struct {
	// Source and Destination are node IDs.
	Source      string `json:"source"`
	Destination string `json:"destination"`
	// Protocol is model's: "TCP", "UDP", "ICMP", ...
	Protocol model.Protocol `json:"protocol"`
	// Port is the destination port, 0 for protocols without ports.
	Port uint16 `json:"port,omitempty"`
	// Label is "TCP/5432 · 120 flows" (see Link.Text).
	Label string `json:"label"`
	// DecidedBy is the Admin or Baseline ClusterNetworkPolicy rule that
	// decides the edge's connections under the policies in force
	// (MarkDecisions), nil when none does or none was asked.
	DecidedBy *Decision `json:"decidedBy,omitempty"`
	// Traffic is the merged edges' counters, inline in JSON.
	model.Traffic
}

// Service is the protocol and port: "TCP/5432", or "ICMP" for protocols
// without ports.
func (e Link) Service() string {
	p := string(e.Protocol)
	if e.Port == 0 {
		return p
	}
	return p + "/" + strconv.Itoa(int(e.Port))
}

// Text is the edge's label: "TCP/5432 · 120 flows" ("1 flow" when one),
// followed by the split of its flows when any was denied or audit-denied:
// "TCP/5432 · 616 flows (614 allowed, 2 denied)" (see Split), and by the
// connections that never succeeded when any did: "TCP/9999 · 3 flows, 3
// failed" (model.Traffic.Failed; never learned as allows).
func (e Link) Text() string {
	a, au, d := e.Split()
	s := spansText(labelSpans(e.Service(), e.Flows, a, au, d))
	if e.Failed > 0 {
		s += ", " + failedText(e.Failed)
	}
	return s
}

// failedText is "3 failed".
func failedText(n uint64) string { return fmt.Sprintf("%d failed", n) }

// Split divides the edge's flows by what happened to them: denied
// (dropped by a policy in enforce mode), auditDenied (would have been
// dropped; the policy is in audit mode, so they went through), and
// allowed, the rest of Flows: connections that got through with no deny
// or audit-deny verdict, whether a rule allowed them or nothing was
// enforced (never below zero). The counts come from Verdicts: denied and
// audit-denied attempts are logged once each (the log is rate limited, so
// a burst may count fewer).
func (e Link) Split() (allowed, auditDenied, denied uint64) {
	auditDenied, denied = e.Verdicts.AuditDenied, e.Verdicts.Denied
	if e.Flows > auditDenied+denied {
		allowed = e.Flows - auditDenied - denied
	}
	return allowed, auditDenied, denied
}

// Dominant is the verdict of the largest share of Split, the more severe
// one on a tie: model.VerdictDeny, model.VerdictAuditDeny, or, when most flows were
// allowed, model.VerdictAllow if an allow rule logged any and model.VerdictObserved
// otherwise. Drawings colour an edge by it, so an edge with 614 allowed
// flows and 2 denied ones is not drawn as a denied path; Worst names the
// most severe verdict of any flow.
func (e Link) Dominant() model.Verdict {
	a, au, d := e.Split()
	return dominant(a, au, d, e.Verdicts.Allowed > 0)
}

func dominant(allowed, auditDenied, denied uint64, logged bool) model.Verdict {
	switch {
	case denied > 0 && denied >= allowed && denied >= auditDenied:
		return model.VerdictDeny
	case auditDenied > 0 && auditDenied >= allowed:
		return model.VerdictAuditDeny
	case logged:
		return model.VerdictAllow
	}
	return model.VerdictObserved
}

// span is one part of an edge label; verdict is set on a count of flows
// with that verdict.
type span struct {
	text    string
	verdict model.Verdict
}

// labelSpans is "head · N flows", then " (A allowed, B audit-denied, C
// denied)" when B or C is not zero (see splitSpans).
func labelSpans(head string, flows, allowed, auditDenied, denied uint64) []span {
	out := []span{headSpan(head, flows)}
	if split := splitSpans(allowed, auditDenied, denied); split != nil {
		out = append(out, span{text: " ("})
		out = append(append(out, split...), span{text: ")"})
	}
	return out
}

// headSpan is "head · N flows" ("1 flow" when one).
func headSpan(head string, flows uint64) span {
	unit := "flows"
	if flows == 1 {
		unit = "flow"
	}
	return span{text: fmt.Sprintf("%s · %d %s", head, flows, unit)}
}

// splitSpans is "A allowed, B audit-denied, C denied" with the zero
// counts left out, each count tagged with its verdict; nil when no flow
// was denied or audit-denied (then every flow was allowed and the label
// says nothing more).
func splitSpans(allowed, auditDenied, denied uint64) []span {
	if auditDenied == 0 && denied == 0 {
		return nil
	}
	var out []span
	for _, p := range []struct {
		n    uint64
		word string
		v    model.Verdict
	}{{allowed, "allowed", model.VerdictAllow}, {auditDenied, "audit-denied", model.VerdictAuditDeny}, {denied, "denied", model.VerdictDeny}} {
		if p.n == 0 {
			continue
		}
		if out != nil {
			out = append(out, span{text: ", "})
		}
		out = append(out, span{text: fmt.Sprintf("%d %s", p.n, p.word), verdict: p.v})
	}
	return out
}

func spansText(ss []span) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(s.text)
	}
	return b.String()
}

// Worst is the most severe verdict the edge carries: model.VerdictDeny if any
// flow was denied, else model.VerdictAuditDeny if any was audit-denied, else
// model.VerdictAllow if any was allowed by a rule, else model.VerdictObserved.
// GraphML writes it as the edge's "verdict"; drawings colour by Dominant.
func (e Link) Worst() model.Verdict {
	switch {
	case e.Verdicts.Denied > 0:
		return model.VerdictDeny
	case e.Verdicts.AuditDenied > 0:
		return model.VerdictAuditDeny
	case e.Verdicts.Allowed > 0:
		return model.VerdictAllow
	}
	return model.VerdictObserved
}

// ParseVerdictFilter parses the --verdict flag of the graph commands: a
// verdict in any case and any spelling model.ParseVerdict knows ("observed",
// "allow", "audit-deny", "deny", "allowed", "audit-denied", "denied"), or
// "audit" / "auditDenied". The empty string is the empty model.Verdict (no
// verdict filter). Other names give an error wrapping ErrUnknownVerdict.
func ParseVerdictFilter(s string) (model.Verdict, error) {
	w := strings.ToLower(strings.TrimSpace(s))
	switch w {
	case "":
		return "", nil
	case "audit", "auditdenied":
		return model.VerdictAuditDeny, nil
	}
	if v, err := model.ParseVerdict(w); err == nil {
		return v, nil
	}
	return "", fmt.Errorf("parse verdict %q (want observed, allow, audit-deny or deny): %w", s, ErrUnknownVerdict)
}

// Filter selects the observed edges a graph is built from, before they
// are merged: an edge record from an earlier window that ended before Since
// adds nothing. The zero Filter keeps everything; the conditions that are
// set must all hold.
type Filter struct {
	// Namespaces keeps an edge when its source or destination workload is
	// in one of these namespaces.
	Namespaces []string
	// Workloads keeps an edge when its source or destination is one of
	// these workloads, each "namespace/workload".
	Workloads []string
	// Verdict keeps an edge that has at least one flow with this verdict.
	Verdict model.Verdict
	// Since keeps an edge last seen at or after Since; Until keeps an edge
	// first seen at or before Until (the edge overlaps [Since, Until]).
	Since, Until time.Time
}

func (f Filter) keep(e model.Edge) bool {
	if len(f.Namespaces) > 0 && !inNamespaces(e.Source, f.Namespaces) && !inNamespaces(e.Destination, f.Namespaces) {
		return false
	}
	if len(f.Workloads) > 0 && !isWorkload(e.Source, f.Workloads) && !isWorkload(e.Destination, f.Workloads) {
		return false
	}
	if f.Verdict != "" && e.Verdicts.Of(f.Verdict) == 0 {
		return false
	}
	if !f.Since.IsZero() && e.LastSeen.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && e.FirstSeen.After(f.Until) {
		return false
	}
	return true
}

func inNamespaces(p model.Peer, nss []string) bool {
	return !p.External && slices.Contains(nss, p.Namespace)
}

func isWorkload(p model.Peer, ws []string) bool {
	return !p.External && slices.Contains(ws, p.Namespace+"/"+p.Workload)
}

// peerKey identifies a peer: workloads by namespace and name, externals by
// name or address.
type peerKey struct {
	external           bool
	ns, workload, name string
	addr               netip.Addr
}

func keyOf(p model.Peer) peerKey {
	if !p.External {
		return peerKey{ns: p.Namespace, workload: p.Workload}
	}
	if p.Name != "" {
		return peerKey{external: true, name: p.Name}
	}
	return peerKey{external: true, addr: p.Addr.Unmap()}
}

func compareKeys(a, b peerKey) int {
	// Workloads first, by namespace and name; then externals by name, then
	// by address.
	if a.external != b.external {
		if a.external {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.workload, b.workload),
		cmp.Compare(a.name, b.name), a.addr.Compare(b.addr))
}

type edgeKey struct {
	src, dst peerKey
	proto    model.Protocol
	port     uint16
}

// Build returns the graph of the edges that f keeps. Edges with the same
// source, destination, protocol and port are merged:
// counters are summed, FirstSeen is the earliest and LastSeen the latest,
// and workload labels are united (on a conflict the smaller value wins, so
// that the order of edges never matters). Nodes are the ends of the kept
// edges. Build does not modify edges.
func Build(edges []model.Edge, f Filter) *Graph {
	nodes := map[peerKey]*Node{}
	merged := map[edgeKey]*model.Edge{}
	ends := map[edgeKey][2]peerKey{}
	for _, oe := range edges {
		if !f.keep(oe) {
			continue
		}
		sk, dk := keyOf(oe.Source), keyOf(oe.Destination)
		addNode(nodes, sk, oe.Source)
		addNode(nodes, dk, oe.Destination)
		proto := oe.Protocol
		k := edgeKey{src: sk, dst: dk, proto: proto, port: oe.Port}
		e := merged[k]
		if e == nil {
			e = &model.Edge{Protocol: proto, Port: oe.Port}
			merged[k] = e
			ends[k] = [2]peerKey{sk, dk}
		}
		e.Add(oe.Traffic)
	}

	keys := slices.SortedFunc(maps.Keys(nodes), compareKeys)
	ids := make(map[peerKey]string, len(keys))
	used := make(map[string]bool, len(keys))
	sel := Selection{Namespaces: sortedSet(f.Namespaces), Workloads: sortedSet(f.Workloads), Verdict: f.Verdict}
	g := &Graph{Since: f.Since, Until: f.Until, Selection: sel, Nodes: make([]Node, 0, len(keys)), Edges: make([]Link, 0, len(merged))}
	for _, k := range keys {
		n := nodes[k]
		// Workloads come first, so a clash renames the external.
		base := n.ID
		for i := 2; used[n.ID]; i++ {
			n.ID = base + "#" + strconv.Itoa(i)
		}
		used[n.ID] = true
		ids[k] = n.ID
		g.Nodes = append(g.Nodes, *n)
	}
	slices.SortFunc(g.Nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	for k, m := range merged {
		e := Link{Source: ids[ends[k][0]], Destination: ids[ends[k][1]], Protocol: m.Protocol, Port: m.Port, Traffic: m.Traffic}
		e.Label = e.Text()
		g.Edges = append(g.Edges, e)
	}
	slices.SortFunc(g.Edges, func(a, b Link) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Destination, b.Destination),
			cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
	return g
}

func addNode(nodes map[peerKey]*Node, k peerKey, p model.Peer) {
	n := nodes[k]
	if n == nil {
		n = &Node{}
		if k.external {
			n.Kind, n.Name = KindExternal, k.name
			if k.name == "" {
				n.Addr = k.addr.String()
			}
			n.ID = cmp.Or(n.Name, n.Addr)
		} else {
			n.Kind, n.Namespace, n.Workload = KindWorkload, k.ns, k.workload
			n.ID = k.ns + "/" + k.workload
		}
		nodes[k] = n
	}
	for lk, lv := range p.Labels {
		if old, ok := n.Labels[lk]; ok && old <= lv {
			continue
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[lk] = lv
	}
}

// namespaces returns the namespaces of the graph's workloads, sorted.
func (g *Graph) namespaces() []string {
	var nss []string
	for _, n := range g.Nodes {
		if !n.External() && !slices.Contains(nss, n.Namespace) {
			nss = append(nss, n.Namespace)
		}
	}
	slices.Sort(nss)
	return nss
}

// sortedSet returns the distinct strings of ss, sorted; nil when empty.
func sortedSet(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}
