//go:build linux

package nodeagent

// The node agent's loops.
//
// Design: the inventory source and the policy watcher keep their own
// informer caches and notify on every change; a notification marks its
// side dirty and kicks one sync loop, which coalesces kicks (events that
// arrive during a sync are handled by the next one, right after):
//   - inventory dirty: the snapshot (pods of the cluster, this node's
//     with their netns, namespaces, Services) goes to node.SetInventory,
//     which claims and observes the new local pods and recompiles only
//     what the change touches;
//   - policies dirty: node.Enforce with the watcher's policies in force,
//     a full recompile; every endpoint is decided (node.Config.AllDecided:
//     the API server is the whole truth).
//
// Nothing is enforced before both caches have synced: a partial cache
// would open (or close) what the cluster does not say. Until then the
// node claims and programs nothing, and the tables a previous agent left
// keep enforcing; the first Enforce updates them in place (no flush), so
// a restart has no window. When the API server is unreachable the
// informers keep their caches and retry: nothing changes, nothing is
// flushed or opened, and the changes made meanwhile arrive as events on
// reconnect (a relist when the watch cannot resume).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/node"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/transport"
)

// Inventory is the Kubernetes inventory source of one node
// (inventory/kube.Source): List fails until HasSynced.
type Inventory interface {
	inventory.Source
	// Run starts the informers and the netns finder and runs until ctx
	// ends.
	Run(ctx context.Context) error
	// HasSynced reports whether every informer listed once and the finder
	// scanned once.
	HasSynced() bool
}

// Policies is the policy watcher (store/kube.PolicyWatcher).
type Policies interface {
	// Run starts the informers and runs until ctx ends.
	Run(ctx context.Context) error
	// Synced reports whether every informer listed once.
	Synced() bool
	// InForce returns the valid NetworkPolicies and NanoSegments.
	InForce() policies.InForce
	// Watch calls notify (which must not block) on every change until ctx
	// ends.
	Watch(ctx context.Context, notify func())
}

// UnfoundPod is a pod of this node whose network namespace was not found
// (inventory/kube.Unfound): it is a peer only until found, and its
// policies are not programmed.
type UnfoundPod struct {
	Pod    string // "namespace/name"
	Code   string // not_found, partial, ambiguous
	Reason string
	// Netns is the pod's endpoint key in the inventory
	// (inventory/kube.NetnsKey): once found, its endpoint has a Path.
	Netns string
}

// Parts are what the agent composes; New builds them from client-go.
type Parts struct {
	Inventory Inventory
	Policies  Policies
	// Unfound lists the unfound pods of the last inventory List (nil:
	// none is reported).
	Unfound func() []UnfoundPod
	// Event records a Kubernetes Event on an unfound pod (nil: none). An
	// error that EventsRefused calls a refusal (RBAC) is logged once and
	// stops further Events; any other (the pod's namespace terminating,
	// the API server away) is logged and only that Event is lost.
	Event func(ctx context.Context, u UnfoundPod) error
	// Found records a Kubernetes Event on a pod that had an Event as
	// unfound and whose netns is now found (nil: none); errors as Event's.
	Found func(ctx context.Context, u UnfoundPod) error
	// Probe asks the API server for what the caches need (nil: nothing is
	// asked). While the caches have not synced, the agent calls it every
	// little while and logs its error: client-go retries a failing list
	// quietly, so an unreachable API server, a missing CRD or a missing
	// RBAC right would otherwise look like a silent wait.
	Probe func(ctx context.Context) error
	// Ping checks that the API server answers (nil: never checked); the
	// agent calls it every Config.APIServerCheckInterval and shows the
	// outcome in metrics, logs and /readyz (contact_linux.go).
	Ping func(ctx context.Context) error
	// ControllerCA gives the CA of the controller's serving certificate
	// (transport.SenderConfig.CA) when Config.Controller is set (nil: the
	// system's roots).
	ControllerCA func(ctx context.Context) ([]byte, error)
	// Probes delivers the live probes asked of this node
	// (NanoSegmentProbes, probes.go); nil: none are run.
	Probes ProbeSource
}

// Agent is the node agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	reg   *prometheus.Registry
	parts Parts
	inv   *inventory.Index
	node  *node.Node
	sink  *MemSink
	// sender carries the sink's observations to the controller (nil
	// without Config.Controller).
	sender *transport.Sender
	guard  *newPodGuard // nil: no placeholders (newpod_linux.go)

	kick     chan struct{}
	invDirty atomic.Bool
	polDirty atomic.Bool
	enforced atomic.Bool // the first Enforce was applied
	ln       net.Listener

	// waitWarn is how often the agent says it is still waiting for its
	// caches (and what Probe answers); 10s, shorter in tests.
	waitWarn time.Duration

	// counters caches each endpoint's kernel counters for the reports
	// to the controller (transport_linux.go), read at most every
	// CounterInterval.
	counters counterCache

	mu        sync.Mutex
	reported  map[string]UnfoundPod // unfound pods with an Event (or none: Parts.Event nil), by pod
	eventsOff bool
	contact   contactState

	mSynced   *prometheus.GaugeVec
	mEnforce  prometheus.Histogram
	mInvSync  prometheus.Histogram
	mUnfound  prometheus.Gauge
	mLastSync prometheus.Gauge

	mReachable, mLastContact prometheus.Gauge
}

// NewAgent returns an agent over parts, registering its metrics (and the
// node's) in reg (nil: a private registry); log nil discards.
func NewAgent(cfg Config, parts Parts, reg *prometheus.Registry, log *slog.Logger) (*Agent, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if parts.Inventory == nil || parts.Policies == nil {
		return nil, errors.New("nodeagent: an inventory source and a policy watcher are needed")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	inv := inventory.NewIndex(nil, nil, nil)
	sink := NewMemSink(cfg.MaxEdges, cfg.MaxVerdicts)
	nd, err := node.New(node.Config{FlushInterval: cfg.FlushInterval, DriftInterval: cfg.DriftInterval, OwnerDir: cfg.OwnerDir,
		Owner: "nanoseg node " + cfg.NodeName, AllDecided: true}, inv, sink, reg, log)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, counters: counterCache{interval: cfg.CounterInterval}, log: log.With("component", "nodeagent", "node", cfg.NodeName), reg: reg, parts: parts, inv: inv, node: nd, sink: sink,
		kick: make(chan struct{}, 1), reported: map[string]UnfoundPod{}, waitWarn: 10 * time.Second}
	a.mSynced = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node", Name: "cache_synced",
		Help: "1 once the informer caches of a side (inventory, policies) have synced."}, []string{"cache"})
	a.mEnforce = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "nanoseg", Subsystem: "node", Name: "enforce_seconds",
		Help: "Time to recompile every rule set from the policies in force and apply the changed ones.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)})
	a.mInvSync = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "nanoseg", Subsystem: "node", Name: "inventory_sync_seconds",
		Help: "Time to hand an inventory snapshot to the node (claim, observe, recompile what changed, apply).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)})
	a.mUnfound = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node", Name: "pods_unfound",
		Help: "Pods of this node whose network namespace was not found: peers only, not programmed."})
	a.mLastSync = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node", Name: "last_sync_timestamp_seconds",
		Help: "When the agent last handed its caches to the node (Unix time)."})
	a.mReachable, a.mLastContact = newContactMetrics()
	dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "node", Name: "observations_dropped_total",
		Help: "Edges and verdict events the bounded in-memory sink dropped."}, func() float64 {
		e, v := sink.Dropped()
		return float64(e + v)
	})
	for _, c := range []prometheus.Collector{a.mSynced, a.mEnforce, a.mInvSync, a.mUnfound, a.mLastSync, a.mReachable, a.mLastContact, dropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register node agent metrics: %w", err)
		}
	}
	if cfg.Controller != "" {
		a.sender, err = transport.NewSender(transport.SenderConfig{URL: cfg.Controller, Node: cfg.NodeName, TokenFile: cfg.TokenFile,
			CA: parts.ControllerCA, Interval: cfg.SendInterval}, sink, a.endpointStates, reg, log)
		if err != nil {
			return nil, fmt.Errorf("node.controller: %w", err)
		}
		a.sender.ReportNames(a.node.Names)
		a.sender.ReportRuleIDs(a.ruleIDs)
	}
	if early, ok := parts.Inventory.(EarlyPods); ok && !cfg.LateFind {
		if a.guard, err = newNewPodGuard(early, reg, a.log); err != nil {
			return nil, fmt.Errorf("register node agent metrics: %w", err)
		}
	}
	return a, nil
}

// Node returns the agent's node side.
func (a *Agent) Node() *node.Node { return a.node }

// Index returns the agent's inventory index.
func (a *Agent) Index() *inventory.Index { return a.inv }

// Sink returns the in-memory observation sink.
func (a *Agent) Sink() *MemSink { return a.sink }

// Registry returns the agent's metrics registry.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// Ready reports whether both caches synced and the first Enforce was
// applied (/readyz).
func (a *Agent) Ready() bool { return a.enforced.Load() }

// Addr returns the address /metrics, /healthz and /readyz are served on,
// once Run has bound it ("" before).
func (a *Agent) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

func (a *Agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Run runs the agent until ctx ends and returns nil then; it returns an
// error when its listener cannot be bound (before touching any endpoint).
// Tables stay in the kernel when it stops.
func (a *Agent) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("node.listen: %w", err)
	}
	a.mu.Lock()
	a.ln = ln
	a.mu.Unlock()
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	defer a.node.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("serve metrics and health", "err", err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	})
	wg.Go(func() {
		if err := a.parts.Inventory.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("inventory source stopped", "err", err)
		}
	})
	wg.Go(func() {
		if err := a.parts.Policies.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("policy watcher stopped", "err", err)
		}
	})
	wg.Go(func() {
		_ = a.parts.Inventory.Watch(ctx, func() { a.invDirty.Store(true); a.poke() })
	})
	wg.Go(func() { a.parts.Policies.Watch(ctx, func() { a.polDirty.Store(true); a.poke() }) })
	wg.Go(func() { a.checkContact(ctx) })
	if a.parts.Probes != nil {
		wg.Go(func() {
			if err := a.parts.Probes.Run(ctx, a.runProbe); err != nil && ctx.Err() == nil {
				a.log.Error("probe watcher stopped", "err", err)
			}
		})
	}
	// The node stops after the sync loop: its final flush keeps what the
	// observers saw; the sender stops after the node, so that flush still
	// goes to the controller.
	nodeCtx, stopNode := context.WithCancel(context.WithoutCancel(ctx))
	nodeDone := make(chan struct{})
	go func() { defer close(nodeDone); _ = a.node.Run(nodeCtx) }()
	sendCtx, stopSender := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSender()
	if a.sender != nil {
		wg.Go(func() { _ = a.sender.Run(sendCtx) })
	}
	a.log.Info("node agent started; waiting for the caches to sync before enforcing", "listen", ln.Addr().String())
	a.loop(ctx)
	stopNode()
	<-nodeDone
	if a.sender != nil {
		a.sender.Kick()
	}
	stopSender()
	return nil
}

// loop runs syncs on kicks, on every ResyncInterval, and every 100 ms
// while the caches have not synced (at the start, or again later), until
// ctx ends.
func (a *Agent) loop(ctx context.Context) {
	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	wait := time.NewTicker(100 * time.Millisecond)
	defer wait.Stop()
	waitC := wait.C
	warn := time.NewTicker(a.waitWarn)
	defer warn.Stop()
	warnC := warn.C
	start := time.Now()
	var probing atomic.Bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-waitC:
		case <-warnC:
			if !a.enforced.Load() && probing.CompareAndSwap(false, true) {
				go func() { defer probing.Store(false); a.warnWaiting(ctx, time.Since(start)) }()
			}
			continue
		case <-resync.C:
			a.invDirty.Store(true)
			a.polDirty.Store(true)
		}
		switch synced := a.sync(ctx); {
		case synced && waitC != nil:
			wait.Stop()
			waitC = nil
		case !synced && waitC == nil:
			// A cache is unsynced again (a kind the API server serves
			// anew: its informer hands over objects, each a kick, before
			// it has synced). The change that woke us is still to do and
			// nothing else may wake us: look again every 100 ms.
			wait.Reset(100 * time.Millisecond)
			waitC = wait.C
		}
		if warnC != nil && a.enforced.Load() {
			warn.Stop()
			warnC = nil
		}
	}
}

// warnWaiting logs that the caches have not synced after waited, which
// ones, and what Probe says about the API server.
func (a *Agent) warnWaiting(ctx context.Context, waited time.Duration) {
	var pending []string
	if !a.parts.Inventory.HasSynced() {
		pending = append(pending, "inventory")
	}
	if !a.parts.Policies.Synced() {
		pending = append(pending, "policies")
	}
	if len(pending) == 0 {
		return // synced; the first Enforce is under way or retried
	}
	args := []any{"waited", waited.Round(time.Second), "caches", pending}
	if a.parts.Probe != nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := a.parts.Probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.log.Warn("caches not synced; nothing enforced or changed until they are: the API server refuses or does not answer", append(args, "err", err)...)
			return
		}
		args = append(args, "apiServer", "answers")
	}
	a.log.Warn("caches not synced; nothing enforced or changed until they are", args...)
}

// sync hands what changed to the node, once both caches synced; it
// reports whether they have.
func (a *Agent) sync(ctx context.Context) bool {
	invOK, polOK := a.parts.Inventory.HasSynced(), a.parts.Policies.Synced()
	a.mSynced.WithLabelValues("inventory").Set(b2f(invOK))
	a.mSynced.WithLabelValues("policies").Set(b2f(polOK))
	if !invOK || !polOK {
		return false
	}
	first := !a.enforced.Load()
	invD, polD := a.invDirty.Swap(false), a.polDirty.Swap(false)
	if !first && !invD && !polD {
		return true
	}
	if first || invD {
		start := time.Now()
		snap, err := a.parts.Inventory.List(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return true // stopping: no news
			}
			a.invDirty.Store(true)
			a.polDirty.Store(a.polDirty.Load() || polD)
			a.log.Warn("list inventory; trying again", "err", err)
			time.AfterFunc(time.Second, a.poke)
			return true
		}
		a.guardNewPods(&snap)
		a.node.SetInventory(ctx, snap)
		if a.guard != nil {
			a.guard.applied(snap)
		}
		a.mInvSync.Observe(time.Since(start).Seconds())
		a.reportUnfound(ctx)
	}
	if polD && !invD && !first {
		a.guardNewPods(nil) // a new policy may isolate a pending pod
	}
	if first || polD {
		start := time.Now()
		in := a.parts.Policies.InForce()
		if err := a.node.Enforce(ctx, in, nil); err != nil {
			if ctx.Err() != nil {
				return true
			}
			a.polDirty.Store(true)
			a.log.Error("enforce policies; trying again", "err", err)
			time.AfterFunc(time.Second, a.poke)
			return true
		}
		a.mEnforce.Observe(time.Since(start).Seconds())
		if first {
			a.log.Info("caches synced, policies enforced", "networkPolicies", len(in.NetworkPolicies), "nanoSegments", len(in.NanoSegments),
				"endpoints", len(a.inv.Endpoints()), "took", time.Since(start))
		}
		a.enforced.Store(true)
		// The endpoints' new state goes to the controller now rather than
		// at the next send interval: a promotion waits for it.
		if a.sender != nil {
			a.sender.Kick()
		}
	}
	a.mLastSync.SetToCurrentTime()
	return true
}

// reportUnfound counts the unfound pods and records an Event on each newly
// unfound one (once per pod and reason), and one on each that was and is
// now found (found_linux.go).
func (a *Agent) reportUnfound(ctx context.Context) {
	if a.parts.Unfound == nil {
		return
	}
	list := a.parts.Unfound()
	a.mUnfound.Set(float64(len(list)))
	a.mu.Lock()
	now := map[string]UnfoundPod{}
	var fresh []UnfoundPod
	for _, u := range list {
		now[u.Pod] = u
		if prev, ok := a.reported[u.Pod]; !ok || prev.Code != u.Code {
			fresh = append(fresh, u)
		}
	}
	gone := a.noLongerUnfoundLocked(now)
	a.reported = now
	off := a.eventsOff
	a.mu.Unlock()
	if a.parts.Event == nil || off {
		return
	}
	if !a.reportFound(ctx, gone) {
		return
	}
	for _, u := range fresh {
		if err := a.parts.Event(ctx, u); err != nil && !a.eventFailed(u, err) {
			return
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// handler serves /metrics, /healthz (the process serves) and /readyz
// (both caches synced and the first Enforce applied; a lost API server
// contact adds a warning line but does not fail it: contact_linux.go).
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case !a.parts.Inventory.HasSynced():
			http.Error(w, "inventory caches not synced\n"+a.contactDetail(), http.StatusServiceUnavailable)
		case !a.parts.Policies.Synced():
			http.Error(w, "policy caches not synced\n"+a.contactDetail(), http.StatusServiceUnavailable)
		case !a.enforced.Load():
			http.Error(w, "policies not enforced yet\n"+a.contactDetail(), http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n" + a.contactDetail()))
		}
	})
	return mux
}
