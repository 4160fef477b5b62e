//go:build linux

// The node side: what runs on every host that has endpoints.
//
// Design: one goroutine per concern, all stopped by one context.
//   - inventory: SetInventory (called by the agent on every inventory
//     change) updates the index, claims new endpoints (one owner per
//     netns on the host, owner_linux.go: an endpoint another node owns is
//     refused and neither observed nor programmed), gives the claimed ones
//     an observer and stops those of vanished ones, and updates the rule
//     sets through the incremental compiler (compile.Compiler.UpdatePod /
//     DeletePod).
//   - observation: each endpoint's observer hands flow records to one
//     Aggregator; every FlushInterval the aggregated edges and the
//     audit-deny / deny verdict events are committed to the observation
//     sink in one change each, so a crash loses at most one interval.
//   - reconcile: Enforce (the policies in force changed) recompiles every
//     rule set; after either kind of change the rule sets go to one
//     dataplane.Reconciler, which skips the endpoints whose rule set did
//     not change and applies the others with its bounded workers; Enforce
//     returns when they are applied.
//   - drift: the reconciler compares tables with their desired rule sets
//     every DriftInterval and repairs them.
//
// Until the first Enforce the node programs nothing: on a restart the
// dataplane updates the tables it finds in place without flushing them,
// so enforcement has no window across a restart; and a table in audit or
// enforce that the store does not know is kept as found (adopted,
// adopt_linux.go), so a new or empty store never weakens enforcement.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanoseg/nanoseg/compile"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/internal/loop"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/observer"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/store"
)

// Config configures a Node.
type Config struct {
	// FlushInterval is how often observations go to the sink.
	FlushInterval time.Duration
	// DriftInterval is how often every table is compared with its desired
	// rule set and repaired.
	DriftInterval time.Duration
	// AdoptedWarnInterval is how often the node repeats its warning about
	// adopted tables while there are any (adopt_linux.go; 0 = 1 minute).
	AdoptedWarnInterval time.Duration
	// OwnerDir holds the owner files that make one node at a time manage
	// a netns (owner_linux.go; "" = DefaultOwnerDir). Every node of a
	// host must use the same directory.
	OwnerDir string
	// Owner describes this node in its owner files, for the message of a
	// node refused an endpoint (the pid is added), e.g. "socket
	// /run/nanoseg/agent.sock, state file /var/lib/nanoseg/state.db".
	Owner string
	// AllDecided says the policies in force are the whole truth about
	// every endpoint (Kubernetes mode: the API server holds every
	// decision), so no table is ever adopted (adopt_linux.go): every
	// endpoint follows the policies, as if Enforce named every workload.
	AllDecided bool
}

// Node observes and programs the endpoints of one host. It implements
// controller.Node.
type Node struct {
	cfg    Config
	log    *slog.Logger
	inv    *inventory.Index
	sink   store.ObservationSink
	dp     *dataplane.Dataplane
	rec    *dataplane.Reconciler
	agg    *observer.Aggregator
	names  *observer.Names
	obsCfg observer.Config
	obsM   *observer.Metrics

	mu        sync.Mutex
	observers map[string]context.CancelFunc // by netns
	spans     map[string]model.ObservedSpan // the running observers' spans (End unset), by netns
	ended     []model.ObservedSpan          // spans of stopped observers not yet committed
	own       *owners                       // the endpoints this node manages
	refused   map[string]error              // endpoints another node owns (*OwnedError) or that could not be claimed, by netns
	adopted   map[string]dataplane.RuleSet  // tables kept as found (adopt_linux.go), by netns
	metrics   nodeMetrics
	pending   []model.VerdictEvent
	probes    map[probeKey]time.Time // the node's own probes (probe_linux.go)
	probePort uint32
	seenNames map[netip.Addr]string // remote address → DNS name seen by the observer

	// compile state, under compileMu: one compile and apply at a time.
	compileMu sync.Mutex
	enforced  bool             // Enforce was called at least once
	inForce   policies.InForce // the policies in force
	comp      *compile.Compiler
	compNames map[netip.Addr][]string      // DNS names comp was built with
	compNS    map[string]map[string]string // namespaces comp was built with
	compNodes []policies.Node              // nodes comp was built with
	pods      map[string]policies.Pod      // pods comp holds, by key
	checked   map[string]uint64            // endpoints whose table was looked at (adopt_linux.go): netns → inode
	decided   map[string]bool              // workloads the store has decided about (Enforce)
}

var _ controller.Node = (*Node)(nil)

// New returns a node over the index inv (which SetInventory keeps
// current), committing observations to sink. reg receives the observer's
// metrics; log nil discards.
func New(cfg Config, inv *inventory.Index, sink store.ObservationSink, reg prometheus.Registerer, log *slog.Logger) (*Node, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := observer.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register observer metrics: %w", err)
	}
	nm, err := newNodeMetrics(reg)
	if err != nil {
		return nil, err
	}
	if cfg.OwnerDir == "" {
		cfg.OwnerDir = DefaultOwnerDir
	}
	if cfg.AdoptedWarnInterval == 0 {
		cfg.AdoptedWarnInterval = time.Minute
	}
	dp := dataplane.New(log)
	rec, err := dataplane.NewReconciler(dp, dataplane.ReconcilerConfig{Resync: cfg.DriftInterval, MinInterval: cfg.DriftInterval / 5, Log: log})
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log.With("component", "node"), inv: inv, sink: sink, dp: dp, rec: rec,
		names: observer.NewNames(0), obsCfg: observer.Defaults(), obsM: m,
		observers: map[string]context.CancelFunc{}, own: newOwners(cfg.OwnerDir, cfg.Owner), refused: map[string]error{}, metrics: nm,
		adopted: map[string]dataplane.RuleSet{}, checked: map[string]uint64{}, seenNames: map[netip.Addr]string{}}
	n.agg = observer.NewAggregator(inv, n.names, n.isEndpoint)
	if removed := n.own.sweep(); removed > 0 {
		n.log.Info("removed owner files nobody holds (agents that died without releasing, namespaces gone)", "files", removed, "dir", cfg.OwnerDir)
	}
	return n, nil
}

func (n *Node) isEndpoint(addr netip.Addr) bool {
	_, ok := n.inv.Lookup(addr)
	return ok
}

// Run flushes observations every FlushInterval and runs the drift loop
// until ctx is done; then it stops the observers, flushes once more and
// returns nil.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { _ = n.rec.Run(ctx) })
	wg.Go(func() {
		loop.Every(ctx, n.cfg.FlushInterval, func() {
			if err := n.Flush(); err != nil {
				n.log.Warn("flush observations", "err", err)
			}
		})
	})
	wg.Go(func() { loop.Every(ctx, n.cfg.AdoptedWarnInterval, n.warnAdopted) })
	<-ctx.Done()
	wg.Wait()
	n.mu.Lock()
	for _, cancel := range n.observers {
		cancel()
	}
	n.mu.Unlock()
	if err := n.Flush(); err != nil {
		n.log.Warn("final flush", "err", err)
	}
	return nil
}

// SetInventory makes snap the node's inventory: the node claims the
// endpoints it does not manage yet (one owner per netns on the host, see
// owner_linux.go; an endpoint another node owns is refused, logged and
// tried again on the next call), observers start for the endpoints it
// claimed (under ctx) and stop for vanished ones, and, once policies are
// enforced, the rule sets that the change affects are recompiled and
// applied. Refused endpoints stay in the inventory as peers: their
// identity still holds, only their table and traffic are another node's.
// Endpoints without a Path (pods of other nodes, or of this node whose
// netns was not found) are peers only: never claimed, observed or
// programmed, their identity and addresses still resolve. The snapshot's
// Services go to the compiler (egress to a Service address is judged by
// its backends, compile/services.go). It reports whether anything changed.
func (n *Node) SetInventory(ctx context.Context, snap inventory.Snapshot) bool {
	added, removed := n.inv.Replace(snap.Endpoints, snap.Namespaces, snap.Externals)
	changed := len(added) > 0 || len(removed) > 0
	if n.inv.SetServices(snap.Services) {
		changed = true
	}
	if n.inv.SetNodes(snap.Nodes) {
		n.log.Info("nodes changed", "nodes", len(snap.Nodes))
		changed = true
	}
	if changed {
		n.log.Info("inventory changed", "added", added, "removed", removed)
		n.mu.Lock()
		for _, name := range removed {
			if cancel := n.observers[name]; cancel != nil {
				cancel()
				delete(n.observers, name)
			}
			n.endSpanLocked(name, time.Now())
			n.rec.Remove(name)
			n.own.release(name)
			delete(n.refused, name)
		}
		n.mu.Unlock()
	}
	for _, e := range n.claim(snap.Endpoints) {
		changed = true
		n.startObserver(ctx, e)
	}
	n.compileMu.Lock()
	defer n.compileMu.Unlock()
	if !n.enforced {
		return changed
	}
	if err := n.updateLocked(); err != nil {
		n.log.Error("compile rule sets", "err", err)
		return changed
	}
	n.applyLocked()
	return changed
}

// claim tries to become the owner of every endpoint of eps the node does
// not manage yet and returns those it now manages. A refusal is logged at
// error level when it is new or names another owner than before.
func (n *Node) claim(eps []model.Endpoint) []model.Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	var got []model.Endpoint
	for _, e := range eps {
		if e.Path == "" || n.own.owns(e.Netns) {
			// A peer only (no netns on this host), or managed already.
			continue
		}
		err := n.own.claim(e.Netns, e.Path)
		if err == nil {
			if n.refused[e.Netns] != nil {
				n.log.Info("endpoint now managed here: its previous owner let it go", "netns", e.Netns)
				delete(n.refused, e.Netns)
			}
			got = append(got, e)
			continue
		}
		if prev := n.refused[e.Netns]; prev == nil || prev.Error() != err.Error() {
			msg := "endpoint not managed: cannot claim its network namespace"
			if errors.Is(err, ErrOwned) {
				msg = "endpoint refused: another agent manages its network namespace (one owner per netns)"
			}
			n.log.Error(msg, "netns", e.Netns, "workload", e.Key(), "err", err)
		}
		n.refused[e.Netns] = err
	}
	n.metrics.refused.Set(float64(len(n.refused)))
	return got
}

// owns reports whether the node manages endpoint netns.
func (n *Node) owns(netns string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.own.owns(netns)
}

// refusal returns why the node does not manage endpoint netns, nil when
// it does or has not tried yet.
func (n *Node) refusal(netns string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.refused[netns]
}

// Refused returns the endpoints of the inventory the node does not manage,
// with the reason (an *OwnedError naming the owner when another node
// manages it), by netns.
func (n *Node) Refused() map[string]error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.refused)
}

// Close lets every endpoint the node manages go (their tables stay in the
// kernel), so another node may claim them. Call it once Run has returned.
func (n *Node) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.own.releaseAll()
}

func (n *Node) startObserver(ctx context.Context, e model.Endpoint) {
	octx, cancel := context.WithCancel(ctx)
	o, err := observer.New(n.obsCfg, []model.Endpoint{{Netns: e.Netns, Path: e.Path, Addrs: e.Addrs}}, n.handleFlow, n.names, n.obsM, n.log)
	if err != nil {
		cancel()
		n.log.Warn("start observer", "netns", e.Netns, "err", err)
		return
	}
	n.mu.Lock()
	n.observers[e.Netns] = cancel
	if n.spans == nil {
		n.spans = map[string]model.ObservedSpan{}
	}
	n.spans[e.Netns] = model.ObservedSpan{Endpoint: e.Netns, Workload: e.Key(), Start: time.Now().UTC()}
	n.mu.Unlock()
	go func() {
		if err := o.Run(octx); err != nil && octx.Err() == nil {
			n.log.Warn("observer stopped", "netns", e.Netns, "err", err)
			n.mu.Lock()
			n.endSpanLocked(e.Netns, time.Now())
			n.mu.Unlock()
		}
	}()
}

// endSpanLocked ends the observation span of endpoint netns at t: it is
// committed with the next flush and no longer grows.
func (n *Node) endSpanLocked(netns string, t time.Time) {
	sp, ok := n.spans[netns]
	if !ok {
		return
	}
	delete(n.spans, netns)
	sp.End = t.UTC()
	n.ended = append(n.ended, sp)
}

// takeSpans returns the observation spans to commit: every running
// observer's up to now, and the ended ones.
func (n *Node) takeSpans(now time.Time) []model.ObservedSpan {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.ended
	n.ended = nil
	for _, sp := range n.spans {
		sp.End = now.UTC()
		out = append(out, sp)
	}
	return out
}

// requeueSpans keeps ended spans a flush could not commit.
func (n *Node) requeueSpans(spans []model.ObservedSpan) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, sp := range spans {
		if cur, live := n.spans[sp.Endpoint]; live && cur.Start.Equal(sp.Start) {
			continue // still running: the next flush records it up to then
		}
		n.ended = append(n.ended, sp)
	}
}

// Enforce implements controller.Node: it recompiles every rule set from
// the policies in force and applies those that changed, returning when
// they are applied (or with ctx's error when ctx ends first; the apply
// then still finishes). Endpoints of the decided workloads follow the
// policies; others keep an audit or enforce table found in them
// (adopt_linux.go).
func (n *Node) Enforce(ctx context.Context, in policies.InForce, decided []string) error {
	done := make(chan error, 1)
	go func() {
		n.compileMu.Lock()
		defer n.compileMu.Unlock()
		n.inForce, n.enforced = in, true
		n.decided = map[string]bool{}
		for _, w := range decided {
			n.decided[w] = true
		}
		if err := n.compileLocked(); err != nil {
			n.log.Error("compile rule sets", "err", err)
			done <- err
			return
		}
		n.applyLocked()
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Defaults implements controller.Node: the compiler's table of default
// ids (compile.Compiler.Defaults); empty before the first Enforce.
func (n *Node) Defaults() map[string][]policies.PolicyRef {
	n.compileMu.Lock()
	defer n.compileMu.Unlock()
	if n.comp == nil {
		return map[string][]policies.PolicyRef{}
	}
	return n.comp.Defaults()
}

// knownNames returns every DNS name known for an address: inventory
// externals and names the observer saw in DNS answers.
func (n *Node) knownNames() map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for addr, name := range n.inv.Externals() {
		out[addr] = append(out[addr], name)
	}
	for addr, name := range n.Names() {
		out[addr] = append(out[addr], name)
	}
	return out
}

// compileLocked compiles every rule set from scratch.
func (n *Node) compileLocked() error {
	names := n.knownNames()
	world, err := n.inv.World(names)
	if err != nil {
		return err
	}
	in, err := compile.Input(world, n.inForce, names)
	if err != nil {
		return err
	}
	in.Services = n.inv.Services()
	c, err := compile.NewCompiler(in)
	if err != nil {
		return err
	}
	for _, w := range c.Warnings() {
		n.log.Debug("compile warning", "warning", w)
	}
	n.comp, n.compNames, n.compNS, n.compNodes = c, names, n.inv.Namespaces(), in.Nodes
	n.pods = map[string]policies.Pod{}
	for _, p := range in.Pods {
		n.pods[p.Key()] = p
	}
	return nil
}

// updateLocked brings the compiler up to date with the inventory: pod by
// pod (UpdatePod, DeletePod) when only endpoints changed, from scratch when
// namespaces, nodes (their labels or addresses) or known DNS names changed
// too.
func (n *Node) updateLocked() error {
	if n.comp == nil || !reflect.DeepEqual(n.compNS, n.inv.Namespaces()) || !reflect.DeepEqual(n.compNodes, n.inv.Nodes()) || !sameNames(n.compNames, n.knownNames()) {
		return n.compileLocked()
	}
	now := map[string]policies.Pod{}
	for _, e := range n.inv.Endpoints() {
		p := inventory.Pod(e)
		now[p.Key()] = p
	}
	for k, p := range now {
		if old, ok := n.pods[k]; ok && reflect.DeepEqual(old, p) {
			continue
		}
		if _, err := n.comp.UpdatePod(p); err != nil {
			return n.compileLocked()
		}
	}
	for k := range n.pods {
		if _, ok := now[k]; !ok {
			if _, err := n.comp.DeletePod(k); err != nil {
				return n.compileLocked()
			}
		}
	}
	n.pods = now
	n.comp.SetServices(n.inv.Services())
	return nil
}

func sameNames(a, b map[netip.Addr][]string) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool {
		x, y = slices.Clone(x), slices.Clone(y)
		slices.Sort(x)
		slices.Sort(y)
		return slices.Equal(x, y)
	})
}

// applyLocked hands the rule set of every endpoint the node manages to
// the reconciler, which applies the changed ones; one endpoint's failure
// leaves the others alone. The tables of endpoints new to the node are
// looked at first: one in audit or enforce that the store does not know
// is kept as found (adopt_linux.go); one that cannot be read is left
// alone until it can.
func (n *Node) applyLocked() {
	var eps []model.Endpoint
	mine := map[string]bool{}
	for _, e := range n.inv.Endpoints() {
		if n.owns(e.Netns) {
			eps = append(eps, e)
			mine[e.Netns] = true
		}
	}
	n.forgetLocked(mine)
	unread := n.checkTablesLocked(eps)
	ds := make([]dataplane.Desired, 0, len(eps))
	for _, e := range eps {
		if err := unread[e.Netns]; err != nil {
			n.log.Warn("read table before programming; left alone for now", "netns", e.Netns, "err", err)
			continue
		}
		ds = append(ds, dataplane.Desired{Name: e.Netns, NetNS: e.Path, RuleSet: n.desiredLocked(e)})
	}
	n.updateAdoptedMetric()
	for name, err := range n.rec.SetAll(ds) {
		n.log.Warn("apply rule set", "netns", name, "err", err)
	}
}

// Applied implements controller.Node. An endpoint the node does not
// manage has the reason as its error.
func (n *Node) Applied(netns string) controller.EndpointSync {
	if err := n.refusal(netns); err != nil {
		return controller.EndpointSync{Err: err}
	}
	st, ok := n.rec.Status(netns)
	return controller.EndpointSync{Known: ok, Err: st.Err, Adopted: n.adoptedMode(netns)}
}

// Desired returns the rule set endpoint netns last applied successfully,
// and whether there is one.
func (n *Node) Desired(netns string) (dataplane.RuleSet, bool) {
	st, ok := n.rec.Status(netns)
	return st.Desired, ok && st.Desired.Name != ""
}

// Read implements controller.Node: it reads the endpoint's table back.
// An endpoint the node does not manage is not read: its table is another
// node's.
func (n *Node) Read(netns string, rules bool) controller.EndpointSync {
	out := n.Applied(netns)
	if n.refusal(netns) != nil {
		return out
	}
	rst, known := n.rec.Status(netns)
	e, ok := n.inv.Endpoint(netns)
	if !ok {
		out.ReadErr = fmt.Errorf("endpoint %s is not in the inventory", netns)
		return out
	}
	ks, err := n.dp.Read(e.Path)
	if err != nil {
		out.ReadErr = err
	} else {
		out.InSync = known && ks.Equal(rst.Desired)
		out.Counters = map[string]evidence.Count{}
		for id, c := range ks.Counters {
			out.Counters[id] = evidence.Count{Packets: c.Packets, Bytes: c.Bytes}
		}
		out.DefaultHits = map[model.Direction]evidence.Count{}
		for dir, c := range ks.Defaults {
			out.DefaultHits[dir] = evidence.Count{Packets: c.Packets, Bytes: c.Bytes}
		}
	}
	if !rules {
		return out
	}
	var want dataplane.RuleSet
	n.compileMu.Lock()
	if n.comp != nil {
		want = n.comp.For(podKey(e))
	}
	n.compileMu.Unlock()
	if known && rst.Desired.Name != "" {
		want = rst.Desired
	}
	er := evidence.EndpointRules{Netns: e.Netns, Workload: e.Key(), DesiredMode: string(want.Mode)}
	for _, el := range dataplane.Elements(want) {
		er.Desired = append(er.Desired, ruleOf(el))
	}
	if err != nil {
		er.Error = err.Error()
		er.Drift = []string{"cannot read the table back: " + err.Error()}
		out.Rules = &er
		return out
	}
	er.Present, er.Mode, er.Name = ks.Present, string(ks.RuleSet.Mode), ks.RuleSet.Name
	if er.Name == "" && ks.Present {
		// In audit and enforce the table holds the default ids, not the
		// name: the endpoint's rule set is the one it was given.
		er.Name = want.Name
	}
	for _, el := range ks.Elements {
		er.Programmed = append(er.Programmed, ruleOf(el))
	}
	er.InSync = ks.Equal(want)
	er.Drift, er.Missing, er.Extra = drift(ks.Present, er.InSync, ks.RuleSet, ks.Elements, want)
	out.Rules = &er
	return out
}

// Names implements controller.Node.
func (n *Node) Names() map[netip.Addr]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.seenNames)
}

// handleFlow receives every flow record of every endpoint. The node's
// own probes are not traffic of the workloads and are left out.
func (n *Node) handleFlow(f model.Flow) {
	if n.isProbe(f) {
		return
	}
	n.agg.Add(f)
	if f.RemoteName != "" || f.Verdict == model.VerdictAuditDeny || f.Verdict == model.VerdictDeny {
		n.mu.Lock()
		if f.RemoteName != "" {
			n.seenNames[f.Remote()] = f.RemoteName
		}
		if f.Verdict == model.VerdictAuditDeny || f.Verdict == model.VerdictDeny {
			n.pending = append(n.pending, model.VerdictEvent{At: f.Start, Endpoint: f.Endpoint, Verdict: f.Verdict, RuleID: f.RuleID,
				Source: n.peerName(f.Src), SrcPort: f.SrcPort, Destination: n.peerName(f.Dst), Protocol: f.Protocol, Port: f.DstPort})
		}
		n.mu.Unlock()
	}
}

func (n *Node) peerName(addr netip.Addr) string {
	if id, ok := n.inv.Lookup(addr); ok {
		return id.Namespace + "/" + id.Workload
	}
	if name, ok := n.names.Lookup(addr, time.Now()); ok {
		return name
	}
	return addr.String()
}

// Flush implements controller.Node: it commits the aggregated edges,
// pending verdict events and the observation spans (each observer's, up
// to now: model.ObservedSpan) to the sink.
func (n *Node) Flush() error {
	spanEnd := time.Now()
	edges := n.agg.Take()
	// A connection can be seen a moment before the DNS answer that named
	// its address; by now the name is known, so the edge joins the named one.
	now := time.Now()
	for i := range edges {
		for _, p := range []*model.Peer{&edges[i].Source, &edges[i].Destination} {
			if p.External && p.Name == "" && p.Addr.IsValid() {
				if name, ok := n.names.Lookup(p.Addr, now); ok {
					*p = model.Peer{External: true, Name: name}
				}
			}
		}
	}
	n.mu.Lock()
	evs := n.pending
	n.pending = nil
	n.mu.Unlock()
	// Each write is one transaction: what a failed one took is kept for
	// the next flush (a full disk loses no observation while it lasts).
	if err := n.sink.MergeEdges(edges); err != nil {
		n.agg.Restore(edges)
		n.requeue(evs)
		return err
	}
	if err := n.sink.AddVerdicts(evs); err != nil {
		n.requeue(evs)
		return err
	}
	// Spans last: a span never claims a time whose edges are not stored.
	spans := n.takeSpans(spanEnd)
	if err := n.sink.RecordObserved(spans); err != nil {
		n.requeueSpans(spans)
		return err
	}
	return nil
}

// maxPending bounds the verdict events kept while the sink refuses them.
const maxPending = 100_000

// requeue puts evs, which a flush could not commit, back before the
// events recorded since; beyond maxPending the oldest are dropped, and
// said so.
func (n *Node) requeue(evs []model.VerdictEvent) {
	if len(evs) == 0 {
		return
	}
	n.mu.Lock()
	n.pending = append(evs, n.pending...)
	drop := len(n.pending) - maxPending
	if drop > 0 {
		n.pending = n.pending[drop:]
	}
	n.mu.Unlock()
	if drop > 0 {
		n.log.Error("verdict events dropped: the store refused them too long", "dropped", drop, "kept", maxPending)
	}
}
