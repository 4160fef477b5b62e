package observer

// Design: packet and byte counters of live connections.
//
// Conntrack reports a connection's counters in its DESTROY event, and a
// closed TCP connection leaves the table only after TIME_WAIT (120 s by
// default): an edge's bytes would lag by two minutes, and a long-lived
// connection's would lag by its whole life. Conntrack UPDATE events do not
// carry counters (checked on Linux 6.18) and come for every state change.
// So the observer reads the counters itself: every Config.CounterInterval
// it asks the kernel for each connection it knows to be live
// (observer_linux.go, readCounters) and, for each whose counters grew,
// emits a model.PhaseUpdate record with the growth since the previous
// update. The DESTROY's model.PhaseEnd record carries the rest, so a
// connection's update and end records add up to its totals and an
// aggregate sums them without counting anything twice; update records
// never count as flows.
//
// How it asks: one IPCTNL_MSG_CT_GET per live connection, by its original
// tuple (a hash lookup in the kernel), sent in batches of getBatch
// requests per datagram, each answered by the entry or by ENOENT. A table
// dump was measured and rejected: the kernel walks the whole conntrack
// hash table, shared by all namespaces (nf_conntrack_buckets, 262144
// here), for every dump: 2.3 ms per endpoint and interval even for an
// empty table, plus 3-5 µs per entry.
//
// Cost: proportional to the endpoint's live connections, a few µs each
// per interval (BenchmarkCounterRead). A TCP connection is asked for
// until it is seen in TIME_WAIT or CLOSE (once or twice for a short one);
// a UDP or ICMP entry until it leaves the table (30 s after its last
// packet for a single exchange); entries of the generic tracker (GRE,
// ...) are not asked for and have their counters at their end. The reads
// of all endpoints of the process take turns (at most one at a time), and
// an endpoint whose read took d waits at least 20·d before the next, so
// reading counters takes at most about 5% of a core.

import (
	"sync"

	"github.com/nanoseg/nanoseg/model"
)

// counters are a connection's packets and bytes as conntrack counts
// them: in its original direction and in its reply direction.
type counters struct {
	pktsOrig, bytesOrig, pktsReply, bytesReply uint64
}

func (ev *ctEvent) counters() counters {
	return counters{ev.PacketsOrig, ev.BytesOrig, ev.PacketsReply, ev.BytesReply}
}

// minus is c - o per counter, 0 where o is larger (counters zeroed by
// someone else).
func (c counters) minus(o counters) counters {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return counters{sub(c.pktsOrig, o.pktsOrig), sub(c.bytesOrig, o.bytesOrig), sub(c.pktsReply, o.pktsReply), sub(c.bytesReply, o.bytesReply)}
}

func (c counters) zero() bool { return c == counters{} }

// set puts c on f, a record built from conntrack's original tuple (before
// orient): "Out" is the original direction.
func (c counters) set(f *model.Flow) {
	f.PacketsOut, f.BytesOut, f.PacketsIn, f.BytesIn = c.pktsOrig, c.bytesOrig, c.pktsReply, c.bytesReply
}

// openConn is what the observer remembers of a live connection.
type openConn struct {
	key    ctTuple  // its original tuple, to ask the kernel for its counters
	name   string   // the remote's DNS name when the connection was first seen
	origin origin   // how its original tuple relates to its opener
	sent   counters // already reported in update records
	done   bool     // closed, and its final counters reported
}

// liveConn is an open connection whose counters may still grow.
type liveConn struct {
	id  uint32
	key ctTuple
}

// TCP conntrack states after which a connection carries no more data
// (include/uapi/linux/netfilter/nf_conntrack_tcp.h).
const (
	tcpCTTimeWait = 7 // TCP_CONNTRACK_TIME_WAIT
	tcpCTClose    = 8 // TCP_CONNTRACK_CLOSE
)

// connTable is the observer's knowledge of one endpoint's connections,
// written by the conntrack reader and read by the counter reader.
type connTable struct {
	mu     sync.Mutex
	open   map[uint32]*openConn
	pruned map[uint32]*openConn // dropped by a resync; their DESTROY may still come
	live   int                  // entries of open that are not done
}

func newConnTable() *connTable {
	return &connTable{open: map[uint32]*openConn{}, pruned: map[uint32]*openConn{}}
}

// maxOpen bounds the live-connection table of one endpoint; beyond it the
// oldest knowledge is dropped at the next resync (a DESTROY whose NEW is
// forgotten then counts as a complete flow, once). Connections not
// remembered get their counters only at their end.
const maxOpen = 1 << 20

// known reports whether id is an open connection.
func (t *connTable) known(id uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.open[id]
	return ok
}

// add remembers a new open connection (up to maxOpen).
func (t *connTable) add(id uint32, oc *openConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.open[id]; ok || len(t.open) >= maxOpen {
		return
	}
	t.open[id] = oc
	t.live++
}

// remove forgets connection id and returns what was known of it: from
// open (inOpen) or from pruned; nil when neither knew it.
func (t *connTable) remove(id uint32) (oc *openConn, inOpen bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if oc, ok := t.open[id]; ok {
		delete(t.open, id)
		if !oc.done {
			t.live--
		}
		return oc, true
	}
	oc = t.pruned[id]
	delete(t.pruned, id)
	return oc, false
}

// prune moves the open connections not in seen to pruned (a resync found
// them gone) and returns how many.
func (t *connTable) prune(seen map[uint32]bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.pruned)
	n := 0
	for id, oc := range t.open {
		if seen[id] {
			continue
		}
		delete(t.open, id)
		if !oc.done {
			t.live--
		}
		t.pruned[id] = oc
		n++
	}
	return n
}

// liveConns appends to dst the open connections whose counters may still
// grow and the kernel can be asked for.
func (t *connTable) liveConns(dst []liveConn) []liveConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live == 0 {
		return dst
	}
	for id, oc := range t.open {
		if !oc.done && oc.key.gettable() {
			dst = append(dst, liveConn{id, oc.key})
		}
	}
	return dst
}

// grew records the counters of a dumped entry: for an open connection
// whose counters grew since its last update it returns the growth, its
// origin and name (ok). A TCP connection seen in TIME_WAIT or CLOSE is
// done after that.
func (t *connTable) grew(ev *ctEvent) (d counters, o origin, name string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	oc := t.open[ev.ID]
	if oc == nil || oc.done {
		return counters{}, 0, "", false
	}
	now := ev.counters()
	d = now.minus(oc.sent)
	if ev.Proto == protoTCP && (ev.TCPState == tcpCTTimeWait || ev.TCPState == tcpCTClose) {
		oc.done = true
		t.live--
	}
	if d.zero() {
		return counters{}, 0, "", false
	}
	oc.sent = now
	return d, oc.origin, oc.name, true
}
