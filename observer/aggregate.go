package observer

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Identity is a workload identity: a namespace and workload name, and the
// identity labels (noise labels such as pod-template-hash removed by the
// inventory). Replicas of one workload share one Identity.
type Identity struct {
	Namespace string            `json:"namespace"`
	Workload  string            `json:"workload"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Inventory resolves an address to the workload that holds it. The lab
// (lab.Plan) and, later, Kubernetes implement it. Lookup must be safe for
// concurrent use and fast: it runs once or twice per flow record.
type Inventory interface {
	Lookup(addr netip.Addr) (Identity, bool)
}

// InventoryFunc adapts a function to Inventory.
type InventoryFunc func(netip.Addr) (Identity, bool)

// Lookup calls f(addr).
func (f InventoryFunc) Lookup(addr netip.Addr) (Identity, bool) { return f(addr) }

// Peer is one end of an edge: a workload identity, or an external peer
// named by the DNS name the workload asked for (Name) or, where no answer
// was seen, by its address (Addr).
//
// JSON: {"namespace":"shop","workload":"api","labels":{...}} for a
// workload; {"external":true,"name":"payments.example"} or
// {"external":true,"addr":"198.19.0.10"} for an external peer.
type Peer struct {
	Namespace string            `json:"namespace,omitempty"`
	Workload  string            `json:"workload,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	External  bool              `json:"external,omitempty"`
	Name      string            `json:"name,omitempty"`
	Addr      netip.Addr        `json:"addr,omitzero"`
}

// String is "namespace/workload", the DNS name, or the address.
func (p Peer) String() string {
	switch {
	case !p.External:
		return p.Namespace + "/" + p.Workload
	case p.Name != "":
		return p.Name
	}
	return p.Addr.String()
}

// VerdictCounts counts the verdicts of an edge's flows. Observed counts the
// connections conntrack saw (each counted once, see Aggregator); Allowed,
// AuditDenied and Denied count verdict-log records with that verdict (one
// per connection attempt: the verdict log source drops retransmissions of
// an attempt it has logged already).
type VerdictCounts struct {
	Observed    uint64 `json:"observed,omitempty"`
	Allowed     uint64 `json:"allowed,omitempty"`
	AuditDenied uint64 `json:"auditDenied,omitempty"`
	Denied      uint64 `json:"denied,omitempty"`
}

// Edge is the aggregate of the flows from one source to one destination on
// one protocol and destination port. The source port never appears.
//
// JSON form (stable; fields only added):
//
//	{"source":{"namespace":"shop","workload":"frontend"},
//	 "destination":{"namespace":"shop","workload":"api"},
//	 "protocol":"tcp","port":8080,"firstSeen":"…","lastSeen":"…",
//	 "flows":12,"packetsOut":72,"bytesOut":5040,"packetsIn":48,"bytesIn":9000,
//	 "verdicts":{"observed":12}}
//
// Port is 0 for protocols without ports (ICMP). Packet and byte counters
// ("Out" from source to destination, "In" back) come from conntrack
// accounting when connections end, so they lag flows that are still open.
type Edge struct {
	Source      Peer          `json:"source"`
	Destination Peer          `json:"destination"`
	Protocol    string        `json:"protocol"`
	Port        uint16        `json:"port,omitempty"`
	FirstSeen   time.Time     `json:"firstSeen"`
	LastSeen    time.Time     `json:"lastSeen"`
	Flows       uint64        `json:"flows"`
	PacketsOut  uint64        `json:"packetsOut,omitempty"`
	BytesOut    uint64        `json:"bytesOut,omitempty"`
	PacketsIn   uint64        `json:"packetsIn,omitempty"`
	BytesIn     uint64        `json:"bytesIn,omitempty"`
	Verdicts    VerdictCounts `json:"verdicts"`
}

// Add folds o's counters into e: flows, packets, bytes and verdict counts
// are summed, FirstSeen keeps the earliest non-zero time and LastSeen the
// latest. e's peers, protocol and port stay as they are.
func (e *Edge) Add(o Edge) {
	if !o.FirstSeen.IsZero() && (e.FirstSeen.IsZero() || o.FirstSeen.Before(e.FirstSeen)) {
		e.FirstSeen = o.FirstSeen
	}
	if o.LastSeen.After(e.LastSeen) {
		e.LastSeen = o.LastSeen
	}
	e.Flows += o.Flows
	e.PacketsOut += o.PacketsOut
	e.BytesOut += o.BytesOut
	e.PacketsIn += o.PacketsIn
	e.BytesIn += o.BytesIn
	e.Verdicts.Observed += o.Verdicts.Observed
	e.Verdicts.Allowed += o.Verdicts.Allowed
	e.Verdicts.AuditDenied += o.Verdicts.AuditDenied
	e.Verdicts.Denied += o.Verdicts.Denied
}

// peerKey identifies a Peer without allocating.
type peerKey struct {
	ns, workload, name string
	addr               netip.Addr
}

type edgeKey struct {
	src, dst peerKey
	proto    string
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
	edges    map[edgeKey]*Edge
}

// NewAggregator returns an empty aggregator. inv resolves addresses to
// workloads (nil: every address is external); names names external
// addresses (nil: by address only; a record's RemoteName is used first);
// observed tells which addresses belong to endpoints the observer watches
// (nil: none, so every record counts).
func NewAggregator(inv Inventory, names *Names, observed func(netip.Addr) bool) *Aggregator {
	return &Aggregator{inv: inv, names: names, observed: observed, now: time.Now, edges: map[edgeKey]*Edge{}}
}

// Add folds f into its edge. Records of loopback traffic are ignored.
func (a *Aggregator) Add(f Flow) {
	if f.Src.IsLoopback() || f.Dst.IsLoopback() || !f.Src.IsValid() || !f.Dst.IsValid() {
		return
	}
	serverSide := f.Direction == Ingress && a.observed != nil && a.observed(f.Src)
	isLog := f.Source == SourceVerdictLog
	if serverSide && !isLog {
		return
	}
	countFlow := false
	switch {
	case isLog:
		countFlow = f.Verdict == VerdictDenied && !serverSide
	default:
		countFlow = f.Counts()
	}
	srcName, dstName := "", ""
	if f.Direction == Ingress {
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
	if f.Phase == PhaseEnd && !f.End.IsZero() {
		t = f.End
	}
	if t.IsZero() {
		t = a.now()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.edges[k]
	if e == nil {
		e = &Edge{Source: src, Destination: dst, Protocol: f.Protocol, Port: port, FirstSeen: t, LastSeen: t}
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
		case VerdictAllowed:
			e.Verdicts.Allowed++
		case VerdictAuditDenied:
			e.Verdicts.AuditDenied++
		case VerdictDenied:
			e.Verdicts.Denied++
		}
		return
	}
	if countFlow {
		e.Verdicts.Observed++
	}
	if f.Phase != PhaseStart {
		e.PacketsOut += f.PacketsOut
		e.BytesOut += f.BytesOut
		e.PacketsIn += f.PacketsIn
		e.BytesIn += f.BytesIn
	}
}

// peer resolves addr: a workload through the inventory, else an external
// peer named by name, by the name table, or by its address.
func (a *Aggregator) peer(addr netip.Addr, name string) (Peer, peerKey) {
	addr = addr.Unmap()
	if a.inv != nil {
		if id, ok := a.inv.Lookup(addr); ok {
			return Peer{Namespace: id.Namespace, Workload: id.Workload, Labels: id.Labels},
				peerKey{ns: id.Namespace, workload: id.Workload}
		}
	}
	if name == "" {
		name, _ = a.names.Lookup(addr, a.now())
	}
	if name != "" {
		return Peer{External: true, Name: name}, peerKey{name: name}
	}
	return Peer{External: true, Addr: addr}, peerKey{addr: addr}
}

// Edges returns a copy of the current edges, sorted by source, destination,
// protocol and port.
func (a *Aggregator) Edges() []Edge {
	a.mu.Lock()
	out := make([]Edge, 0, len(a.edges))
	for _, e := range a.edges {
		out = append(out, copyEdge(e))
	}
	a.mu.Unlock()
	sortEdges(out)
	return out
}

// Take returns the current edges like Edges and starts a new window.
func (a *Aggregator) Take() []Edge {
	a.mu.Lock()
	old := a.edges
	a.edges = map[edgeKey]*Edge{}
	a.mu.Unlock()
	out := make([]Edge, 0, len(old))
	for _, e := range old {
		out = append(out, copyEdge(e))
	}
	sortEdges(out)
	return out
}

// Len returns the number of edges.
func (a *Aggregator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.edges)
}

func copyEdge(e *Edge) Edge {
	c := *e
	c.Source.Labels = maps.Clone(e.Source.Labels)
	c.Destination.Labels = maps.Clone(e.Destination.Labels)
	return c
}

func sortEdges(es []Edge) {
	slices.SortFunc(es, func(x, y Edge) int {
		return cmp.Or(cmp.Compare(x.Source.String(), y.Source.String()),
			cmp.Compare(x.Destination.String(), y.Destination.String()),
			cmp.Compare(x.Protocol, y.Protocol), cmp.Compare(x.Port, y.Port))
	})
}
