package observer

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// Inventory resolves an address to the workload that holds it. The lab
// (lab.Plan) and, later, Kubernetes implement it. Lookup must be safe for
// concurrent use and fast: it runs once or twice per flow record.
type Inventory interface {
	Lookup(addr netip.Addr) (model.Identity, bool)
}

// InventoryFunc adapts a function to Inventory.
type InventoryFunc func(netip.Addr) (model.Identity, bool)

// Lookup calls f(addr).
func (f InventoryFunc) Lookup(addr netip.Addr) (model.Identity, bool) { return f(addr) }

// peerKey identifies a model.Peer without allocating.
type peerKey struct {
	ns, workload, name string
	addr               netip.Addr
}

type edgeKey struct {
	src, dst peerKey
	proto    model.Protocol
	port     uint16
}

// Aggregator folds flow records into edges. Safe for concurrent use.
//
// Counting rule (each connection counted once, even when both of its ends
// are observed): a connection is counted where it starts, at the client's
// egress, when the client's address is an observed endpoint; otherwise at
// the server's ingress. Records from the server's side of a connection
// whose client is observed are therefore ignored for flows and bytes (the
// client's records carry the same connection); verdict-log records always
// add their verdict, since a server's ingress rule is known only there.
// A conntrack record's Src is the side that opened the connection, so a
// reply never becomes a flow the other way; verdict-log records count a
// flow only when they deny it (conntrack then never confirms the
// connection, so no conntrack record counts it).
//
// Packets and bytes are added from update and end records (each carries
// the growth since the connection's previous update, model.Flow), never
// from start records; update and end records never count as flows.
//
// A conntrack record of a connection's end that says it failed
// (model.Flow.Failed: never established, answered by a reset or not at
// all) adds one to the edge's Failed (and Reset) counters, through the
// same counting rule, so Failed counts failed connections among Flows;
// the controller never learns an edge whose flows all failed as an allow.
//
// A record marked DirectionUnknown (a connection conntrack picked up in
// mid-flight whose opener the observer could not establish) adds nothing:
// its Src may be the server, and an edge the wrong way round would become
// an allow rule the wrong way round. The observer counts such connections
// (nanoseg_observer_direction_unknown_total).
//
// The rule assumes every observed endpoint tracks connections (the
// dataplane's table, or `nanoseg observe --track`, makes it so): a client
// netns without a ct-using rule yields no egress record, and its server's
// ingress record is then skipped too.
type Aggregator struct {
	mu       sync.Mutex
	inv      Inventory
	names    *Names
	observed func(netip.Addr) bool
	now      func() time.Time
	edges    map[edgeKey]*model.Edge
}

// NewAggregator returns an empty aggregator. inv resolves addresses to
// workloads (nil: every address is external); names names external
// addresses (nil: by address only; a record's RemoteName is used first);
// observed tells which addresses belong to endpoints the observer watches
// (nil: none, so every record counts).
func NewAggregator(inv Inventory, names *Names, observed func(netip.Addr) bool) *Aggregator {
	return &Aggregator{inv: inv, names: names, observed: observed, now: time.Now, edges: map[edgeKey]*model.Edge{}}
}

// Add folds f into its edge. Records of loopback traffic and records
// marked DirectionUnknown are ignored.
func (a *Aggregator) Add(f model.Flow) {
	if f.DirectionUnknown || f.Src.IsLoopback() || f.Dst.IsLoopback() || !f.Src.IsValid() || !f.Dst.IsValid() {
		return
	}
	serverSide := f.Direction == model.Ingress && a.observed != nil && a.observed(f.Src)
	isLog := f.Source == model.SourceVerdictLog
	if serverSide && !isLog {
		return
	}
	countFlow := false
	switch {
	case isLog:
		countFlow = f.Verdict == model.VerdictDeny && !serverSide
	default:
		countFlow = f.Counts()
	}
	srcName, dstName := "", ""
	if f.Direction == model.Ingress {
		srcName = f.RemoteName
	} else {
		dstName = f.RemoteName
	}
	src, sk := a.peer(f.Src, srcName)
	dst, dk := a.peer(f.Dst, dstName)
	port := f.DstPort
	if f.ICMPType != nil {
		port = 0
	}
	k := edgeKey{src: sk, dst: dk, proto: f.Protocol, port: port}
	t := f.Start
	switch {
	case f.Phase == model.PhaseEnd && !f.End.IsZero():
		t = f.End
	case f.Phase == model.PhaseUpdate:
		t = a.now() // the connection carried traffic up to now
	}
	if t.IsZero() {
		t = a.now()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.edges[k]
	if e == nil {
		e = &model.Edge{Source: src, Destination: dst, Protocol: f.Protocol, Port: port, Traffic: model.Traffic{FirstSeen: t, LastSeen: t}}
		a.edges[k] = e
	}
	if t.Before(e.FirstSeen) {
		e.FirstSeen = t
	}
	if t.After(e.LastSeen) {
		e.LastSeen = t
	}
	if countFlow {
		e.Flows++
	}
	if isLog {
		switch f.Verdict {
		case model.VerdictAllow:
			e.Verdicts.Allowed++
		case model.VerdictAuditDeny:
			e.Verdicts.AuditDenied++
		case model.VerdictDeny:
			e.Verdicts.Denied++
		}
		return
	}
	if countFlow {
		e.Verdicts.Observed++
	}
	if f.Failed != "" && (f.Phase == model.PhaseEnd || f.Phase == model.PhaseComplete) {
		e.Failed++
		if f.Failed == model.FailureReset {
			e.Reset++
		}
	}
	if f.Phase != model.PhaseStart {
		e.PacketsOut += f.PacketsOut
		e.BytesOut += f.BytesOut
		e.PacketsIn += f.PacketsIn
		e.BytesIn += f.BytesIn
	}
}

// peer resolves addr: a workload through the inventory, else an external
// peer named by name, by the name table, or by its address.
func (a *Aggregator) peer(addr netip.Addr, name string) (model.Peer, peerKey) {
	addr = addr.Unmap()
	if a.inv != nil {
		if id, ok := a.inv.Lookup(addr); ok {
			return model.Peer{Namespace: id.Namespace, Workload: id.Workload, Labels: id.Labels},
				peerKey{ns: id.Namespace, workload: id.Workload}
		}
	}
	if name == "" {
		name, _ = a.names.Lookup(addr, a.now())
	}
	if name != "" {
		return model.Peer{External: true, Name: name}, peerKey{name: name}
	}
	return model.Peer{External: true, Addr: addr}, peerKey{addr: addr}
}

// Edges returns a copy of the current edges, sorted by source, destination,
// protocol and port.
func (a *Aggregator) Edges() []model.Edge {
	a.mu.Lock()
	out := make([]model.Edge, 0, len(a.edges))
	for _, e := range a.edges {
		out = append(out, copyEdge(e))
	}
	a.mu.Unlock()
	sortEdges(out)
	return out
}

// Take returns the current edges like Edges and starts a new window.
func (a *Aggregator) Take() []model.Edge {
	a.mu.Lock()
	old := a.edges
	a.edges = map[edgeKey]*model.Edge{}
	a.mu.Unlock()
	out := make([]model.Edge, 0, len(old))
	for _, e := range old {
		out = append(out, copyEdge(e))
	}
	sortEdges(out)
	return out
}

// Restore folds edges that Take returned back in, for a caller that
// could not commit them (a full disk): their counters join what arrived
// since, so the next Take returns them once, nothing lost or counted twice.
func (a *Aggregator) Restore(edges []model.Edge) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range edges {
		k := edgeKey{src: keyOf(e.Source), dst: keyOf(e.Destination), proto: e.Protocol, port: e.Port}
		if cur := a.edges[k]; cur != nil {
			cur.Traffic.Add(e.Traffic)
			continue
		}
		c := copyEdge(&e)
		a.edges[k] = &c
	}
}

// keyOf is the key peer gives p.
func keyOf(p model.Peer) peerKey {
	switch {
	case !p.External:
		return peerKey{ns: p.Namespace, workload: p.Workload}
	case p.Name != "":
		return peerKey{name: p.Name}
	}
	return peerKey{addr: p.Addr}
}

// Len returns the number of edges.
func (a *Aggregator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.edges)
}

func copyEdge(e *model.Edge) model.Edge {
	c := *e
	c.Source.Labels = maps.Clone(e.Source.Labels)
	c.Destination.Labels = maps.Clone(e.Destination.Labels)
	return c
}

func sortEdges(es []model.Edge) {
	slices.SortFunc(es, func(x, y model.Edge) int {
		return cmp.Or(cmp.Compare(x.Source.String(), y.Source.String()),
			cmp.Compare(x.Destination.String(), y.Destination.String()),
			cmp.Compare(x.Protocol, y.Protocol), cmp.Compare(x.Port, y.Port))
	})
}
