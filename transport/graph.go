package transport

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// Consumer takes the batches the receiver accepted.
type Consumer interface {
	// Apply applies b, sent by node (b.Node == node). The receiver calls
	// it for one batch of a node at a time, in Seq order, never twice for
	// one Seq of an epoch. On an error the batch counts as not received:
	// the sender is told to retry it (503).
	Apply(node string, b Batch) error
}

// Graph is the in-memory Consumer of the controller: per node, the edges
// and spans the node last sent under each key, its latest verdict events
// and its endpoints; read merged over every node (it implements
// store.ObservationReader). A Full batch replaces a node's part. Bounded:
// at most MaxEdgesPerNode edges and as many spans per node (beyond, the
// least recently seen go) and MaxVerdictsPerNode verdict events per node
// (the oldest go); what goes is counted (Dropped). Safe for concurrent
// use.
type Graph struct {
	MaxEdgesPerNode    int
	MaxVerdictsPerNode int

	mu      sync.RWMutex
	nodes   map[string]*nodePart
	dropped uint64
}

var (
	_ Consumer                = (*Graph)(nil)
	_ store.ObservationReader = (*Graph)(nil)
)

// nodePart is what one node sent.
type nodePart struct {
	edges     map[string]model.Edge
	spans     map[string]model.ObservedSpan
	verdicts  []model.VerdictEvent // ring, oldest at next when full
	next      int
	endpoints []EndpointState
	names     []DNSName
	ruleIDs   map[string][]string
	updated   time.Time
}

func newNodePart() *nodePart {
	return &nodePart{edges: map[string]model.Edge{}, spans: map[string]model.ObservedSpan{}}
}

// NewGraph returns a Graph holding at most maxEdges edges (and spans) and
// maxVerdicts verdict events per node (values below 1 read as 1).
func NewGraph(maxEdges, maxVerdicts int) *Graph {
	return &Graph{MaxEdgesPerNode: max(1, maxEdges), MaxVerdictsPerNode: max(1, maxVerdicts), nodes: map[string]*nodePart{}}
}

// Apply implements Consumer.
func (g *Graph) Apply(node string, b Batch) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.nodes[node]
	if p == nil || b.Full {
		p = newNodePart()
		g.nodes[node] = p
	}
	p.updated = time.Now()
	for _, e := range b.Edges {
		p.edges[string(store.EdgeKey(e))] = e
	}
	for _, sp := range b.Spans {
		k := sp.SpanKey()
		if old, ok := p.spans[k]; ok {
			sp = store.MergeSpan(old, sp)
		}
		p.spans[k] = sp
	}
	for _, ev := range b.Verdicts {
		if len(p.verdicts) < g.MaxVerdictsPerNode {
			p.verdicts = append(p.verdicts, ev)
			continue
		}
		p.verdicts[p.next] = ev
		p.next = (p.next + 1) % len(p.verdicts)
		g.dropped++
	}
	if b.Endpoints != nil {
		p.endpoints = slices.Clone(b.Endpoints)
	}
	if b.Names != nil {
		p.names = slices.Clone(b.Names)
	}
	if b.RuleIDs != nil {
		p.ruleIDs = maps.Clone(b.RuleIDs)
	}
	g.dropped += evictEdges(p.edges, g.MaxEdgesPerNode)
	g.dropped += evictSpans(p.spans, g.MaxEdgesPerNode)
	return nil
}

// evictEdges removes the least recently seen edges beyond limit (and a
// tenth more, so a full map does not sort on every batch) and returns
// how many it removed.
func evictEdges(m map[string]model.Edge, limit int) uint64 {
	over := len(m) - limit
	if over <= 0 {
		return 0
	}
	over = min(len(m), over+limit/10)
	type aged struct {
		key  string
		seen time.Time
	}
	all := make([]aged, 0, len(m))
	for k, e := range m {
		all = append(all, aged{k, e.LastSeen})
	}
	slices.SortFunc(all, func(a, b aged) int { return a.seen.Compare(b.seen) })
	for _, a := range all[:over] {
		delete(m, a.key)
	}
	return uint64(over)
}

// evictSpans removes the spans that ended first beyond limit.
func evictSpans(m map[string]model.ObservedSpan, limit int) uint64 {
	over := len(m) - limit
	if over <= 0 {
		return 0
	}
	all := make([]model.ObservedSpan, 0, len(m))
	for _, sp := range m {
		all = append(all, sp)
	}
	slices.SortFunc(all, func(a, b model.ObservedSpan) int { return a.End.Compare(b.End) })
	for _, sp := range all[:over] {
		delete(m, sp.SpanKey())
	}
	return uint64(over)
}

// Edges implements store.ObservationReader: every node's edges last seen
// at or after since (all for the zero time), an edge seen by several
// nodes merged, sorted by store.EdgeKey.
//
// Merging counts each connection once. A connection between pods of two
// nodes is observed at both ends: the client's node counts it at the
// client's egress, the server's node at the server's ingress (a node
// counts at the server only connections whose client it does not
// observe itself: observer.Aggregator). So for an edge whose source
// workload has an endpoint on at least one reporting node (the node's
// endpoint states say which workloads it hosts), the connections, their
// failures, packets and bytes are the sum of those source-side reports
// only; the other nodes' reports add their times, their verdict-log
// counts (allowed, audit-denied, denied: a server's ingress rule is known
// only on its node) and a DNS name. Without a source-side report (an
// external client, or a client whose node sends nothing) every report
// is summed (store.MergeEdge). Known limit: a node that hosts endpoints
// of both the source and the destination also counts, at its server,
// connections from source endpoints on other nodes; those count twice.
func (g *Graph) Edges(since time.Time) ([]model.Edge, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	type merge struct {
		src, other model.Edge
		hasSrc     bool
		hasOther   bool
	}
	merged := map[string]*merge{}
	for _, p := range g.nodes {
		hosts := map[string]bool{}
		for _, ep := range p.endpoints {
			hosts[ep.Workload] = true
		}
		for k, e := range p.edges {
			if !since.IsZero() && e.LastSeen.Before(since) {
				continue
			}
			m := merged[k]
			if m == nil {
				m = &merge{}
				merged[k] = m
			}
			switch {
			case !e.Source.External && hosts[e.Source.String()] && m.hasSrc:
				m.src = store.MergeEdge(m.src, e)
			case !e.Source.External && hosts[e.Source.String()]:
				m.src, m.hasSrc = e, true
			case m.hasOther:
				m.other = store.MergeEdge(m.other, e)
			default:
				m.other, m.hasOther = e, true
			}
		}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]model.Edge, 0, len(keys))
	for _, k := range keys {
		m := merged[k]
		switch {
		case m.hasSrc && m.hasOther:
			e := m.src
			o := m.other.Traffic
			e.Add(model.Traffic{FirstSeen: o.FirstSeen, LastSeen: o.LastSeen,
				Verdicts: model.VerdictCounts{Allowed: o.Verdicts.Allowed, AuditDenied: o.Verdicts.AuditDenied, Denied: o.Verdicts.Denied}})
			if e.Destination.Name == "" {
				e.Destination.Name = m.other.Destination.Name
			}
			out = append(out, e)
		case m.hasSrc:
			out = append(out, m.src)
		default:
			out = append(out, m.other)
		}
	}
	return out, nil
}

// Verdicts implements store.ObservationReader: every node's kept events
// at or after since, oldest first.
func (g *Graph) Verdicts(since time.Time) ([]model.VerdictEvent, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []model.VerdictEvent
	for _, p := range g.nodes {
		for _, ev := range p.verdicts {
			if since.IsZero() || !ev.At.Before(since) {
				out = append(out, ev)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b model.VerdictEvent) int { return a.At.Compare(b.At) })
	return out, nil
}

// Observed implements store.ObservationReader.
func (g *Graph) Observed(since time.Time) ([]model.ObservedSpan, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := []model.ObservedSpan{}
	for _, p := range g.nodes {
		for _, sp := range p.spans {
			if since.IsZero() || !sp.End.Before(since) {
				out = append(out, sp)
			}
		}
	}
	store.SortSpans(out)
	return out, nil
}

// NodeEndpoints is the endpoint list one node last sent.
type NodeEndpoints struct {
	Node      string
	Updated   time.Time // when the node's last batch was applied
	Endpoints []EndpointState
}

// Endpoints returns every node's endpoints, sorted by node.
func (g *Graph) Endpoints() []NodeEndpoints {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]NodeEndpoints, 0, len(g.nodes))
	for name, p := range g.nodes {
		out = append(out, NodeEndpoints{Node: name, Updated: p.updated, Endpoints: slices.Clone(p.endpoints)})
	}
	slices.SortFunc(out, func(a, b NodeEndpoints) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// Names returns the DNS names the nodes' observers learned (address →
// name; for an address two nodes name differently, the name of the node
// first in name order).
func (g *Graph) Names() map[netip.Addr]string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	nodes := make([]string, 0, len(g.nodes))
	for n := range g.nodes {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	out := map[netip.Addr]string{}
	for _, n := range nodes {
		for _, dn := range g.nodes[n].names {
			if _, ok := out[dn.Addr]; !ok {
				out[dn.Addr] = dn.Name
			}
		}
	}
	return out
}

// RuleIDs returns the default rule ids the nodes reported (Batch.RuleIDs),
// merged: an id is derived from the policies it stands for, so every
// node that knows it names the same ones.
func (g *Graph) RuleIDs() map[string][]string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := map[string][]string{}
	for _, p := range g.nodes {
		for id, refs := range p.ruleIDs {
			out[id] = refs
		}
	}
	return out
}

// Forget drops everything node sent (a node that left the cluster).
func (g *Graph) Forget(node string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.nodes, node)
}

// Dropped returns how many edges, spans and verdict events the bounds
// dropped.
func (g *Graph) Dropped() uint64 {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.dropped
}

// Register adds the graph's metrics to reg: nanoseg_ingest_dropped_total
// (what its bounds dropped) and nanoseg_ingest_graph_edges (edges held,
// counted per node).
func (g *Graph) Register(reg prometheus.Registerer) error {
	dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "ingest", Name: "dropped_total",
		Help: "Edges, spans and verdict events the controller's in-memory graph dropped beyond its bounds per node."},
		func() float64 { return float64(g.Dropped()) })
	edges := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "ingest", Name: "graph_edges",
		Help: "Edges the controller's in-memory graph holds, counted per node."}, func() float64 {
		g.mu.RLock()
		defer g.mu.RUnlock()
		n := 0
		for _, p := range g.nodes {
			n += len(p.edges)
		}
		return float64(n)
	})
	for _, c := range []prometheus.Collector{dropped, edges} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register graph metrics: %w", err)
		}
	}
	return nil
}
