package kube

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

	"github.com/nanoseg/nanoseg/policies/v1alpha1"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/store"
)

// ErrLeadershipLost is Run's error when this replica led and lost the
// Lease while its context was still live: it stopped writing at once, and
// the process should exit (the Deployment restarts it as a standby).
var ErrLeadershipLost = errors.New("leadership lost: stopped writing")

// Controller is one replica of the cluster controller.
type Controller struct {
	cfg    Config
	parts  Parts
	client kubernetes.Interface
	dyn    dynamic.Interface
	log    *slog.Logger
	reg    *prometheus.Registry
	inv    *inventory.Index
	node   *clusterNode

	leading atomic.Bool // between OnStartedLeading and its context's end
	running atomic.Bool // the leader's loops run
	// keepLease leaves the Lease held when Run's context ends (tests
	// simulate a crash with it); by default the Lease is released.
	keepLease bool

	mu sync.Mutex
	ln net.Listener

	// countersAt is when the status loop last wrote each NanoSegment's
	// status (namespace/name), for the counters' coarser interval; only
	// the status loop uses it.
	countersAt map[string]time.Time
	// statusAt is when the proposal loop last wrote each proposal's
	// status (namespace/name); only the proposal loop uses it.
	statusAt map[string]time.Time

	// statusKick asks the status loop for a refresh now (after a
	// promotion: its author waits for the NanoSegment's status).
	statusKick chan struct{}

	mLeader     prometheus.Gauge
	mProposals  *prometheus.CounterVec
	mPromotions *prometheus.CounterVec
	mErrors     *prometheus.CounterVec
	mStatus     prometheus.Counter
}

// New returns a controller replica over the clients and parts; its
// metrics go to reg (nil: a private registry); log nil discards.
func New(cfg Config, client kubernetes.Interface, dyn dynamic.Interface, parts Parts, reg *prometheus.Registry, log *slog.Logger) (*Controller, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil || dyn == nil || parts.Store == nil || parts.Graph == nil || parts.Inventory == nil {
		return nil, errors.New("controller: clients, a store, a graph and an inventory are needed")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	c := &Controller{cfg: cfg, parts: parts, client: client, dyn: dyn, log: log.With("component", "controller", "id", cfg.ID), reg: reg,
		inv: inventory.NewIndex(nil, nil, nil), statusKick: make(chan struct{}, 1), countersAt: map[string]time.Time{}, statusAt: map[string]time.Time{}}
	c.node = &clusterNode{graph: parts.Graph, inv: func() *inventory.Index { return c.inv }}
	const ns, sub = "nanoseg", "controller"
	c.mLeader = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "leader",
		Help: "1 while this replica holds the Lease and writes, else 0."})
	c.mProposals = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "proposals_written_total",
		Help: "NanoSegmentProposal writes, by operation: create, update (spec), status, delete."}, []string{"op"})
	c.mPromotions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "promotions_total",
		Help: "NanoSegmentPromotions carried out, by result: succeeded, unchanged, failed."}, []string{"result"})
	c.mErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reconcile_errors_total",
		Help: "Errors of the leader's loops, by loop: repair, proposals, promotions, status, inventory."}, []string{"loop"})
	c.mStatus = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "nanosegment_status_writes_total",
		Help: "NanoSegment status writes (each only when it changed)."})
	for _, r := range []string{"succeeded", "unchanged", "failed"} {
		c.mPromotions.WithLabelValues(r)
	}
	for _, l := range []string{"repair", "proposals", "promotions", "status", "inventory"} {
		c.mErrors.WithLabelValues(l)
	}
	for _, op := range []string{"create", "update", "status", "delete"} {
		c.mProposals.WithLabelValues(op)
	}
	for _, col := range []prometheus.Collector{c.mLeader, c.mProposals, c.mPromotions, c.mErrors, c.mStatus} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register controller metrics: %w", err)
		}
	}
	return c, nil
}

// Leading reports whether this replica holds the Lease (the ingest
// receiver's readiness: a standby answers 503).
func (c *Controller) Leading() bool { return c.leading.Load() }

// Ready reports whether the replica is of use: its inventory synced
// (a standby is ready, so that a rolling update proceeds; only the leader
// writes and takes observations).
func (c *Controller) Ready() bool { return c.parts.Inventory.HasSynced() }

// Addr returns the address of /metrics, /healthz and /readyz once Run
// bound it ("" before).
func (c *Controller) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return ""
	}
	return c.ln.Addr().String()
}

// Registry returns the metrics registry.
func (c *Controller) Registry() *prometheus.Registry { return c.reg }

// Handler serves /metrics, /healthz and /readyz.
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		role := "standby"
		if c.Leading() {
			role = "leader"
		}
		if !c.Ready() {
			http.Error(w, "inventory not synced ("+role+")", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok ("+role+")")
	})
	return mux
}

// Run serves the probes and metrics, runs the inventory's informers and
// the leader election until ctx ends (nil) or this replica loses the
// leadership it held (ErrLeadershipLost). On ctx's end the Lease is
// released, so a standby takes over at once.
func (c *Controller) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("controller.listen: %w", err)
	}
	c.mu.Lock()
	c.ln = ln
	c.mu.Unlock()
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("serve metrics and probes", "err", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	ictx, stopInv := context.WithCancel(ctx)
	defer stopInv()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.parts.Inventory.Run(ictx); err != nil && ictx.Err() == nil {
			c.log.Error("inventory informers", "err", err)
		}
	}()
	wg.Add(1)
	go func() { defer wg.Done(); c.watchInventory(ictx) }()
	if c.parts.Ingest != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.serveIngest(ictx) }()
	}
	c.log.Info("controller starting", "lease", c.cfg.Namespace+"/"+LeaseName, "listen", ln.Addr().String())
	led, err := c.elect(ctx)
	if err != nil {
		return err
	}
	if led && ctx.Err() == nil {
		return ErrLeadershipLost
	}
	return nil
}

// serveIngest runs Parts.Ingest until ctx ends, starting it again after
// a failure (say the namespace of its certificate Secret does not exist
// yet, or the port is taken) with a backoff from 1s doubling to 30s, so
// a controller started before its namespace takes observations once it
// exists instead of never.
func (c *Controller) serveIngest(ctx context.Context) {
	backoff := time.Second
	for {
		start := time.Now()
		err := c.parts.Ingest(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = time.Second
		}
		c.log.Error("ingest server failed; starting it again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// elect runs the leader election until ctx ends or the leadership held
// is lost, and reports whether this replica led.
func (c *Controller) elect(ctx context.Context) (bool, error) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LeaseName, Namespace: c.cfg.Namespace},
		Client:     c.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.cfg.ID},
	}
	var led atomic.Bool
	var loops sync.WaitGroup
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   c.cfg.LeaseDuration,
		RenewDeadline:   c.cfg.RenewDeadline,
		RetryPeriod:     c.cfg.RetryPeriod,
		ReleaseOnCancel: !c.keepLease,
		Name:            LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				loops.Add(1)
				defer loops.Done()
				led.Store(true)
				c.lead(lctx)
			},
			OnStoppedLeading: func() {
				if c.leading.Swap(false) {
					c.log.Warn("leadership lost or given up: writing stopped")
				}
				c.mLeader.Set(0)
			},
			OnNewLeader: func(id string) {
				if id != c.cfg.ID {
					c.log.Info("leader elected", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return false, fmt.Errorf("leader election: %w", err)
	}
	le.Run(ctx)
	loops.Wait()
	return led.Load(), nil
}

// lead is the leader's work, until lctx ends (the Lease lost or Run's
// context ended): repair what a previous leader left, ask the agents for
// their whole state, then run the loops.
func (c *Controller) lead(lctx context.Context) {
	c.leading.Store(true)
	c.mLeader.Set(1)
	defer func() {
		c.leading.Store(false)
		c.running.Store(false)
		c.mLeader.Set(0)
	}()
	c.log.Info("leading: repairing the history head, asking node agents to resync")
	for {
		err := c.parts.Store.Repair(lctx)
		if err == nil {
			break
		}
		c.mErrors.WithLabelValues("repair").Inc()
		c.log.Error("repair the cluster store; trying again", "err", err)
		select {
		case <-lctx.Done():
			return
		case <-time.After(c.cfg.RetryPeriod):
		}
	}
	if c.parts.Resync != nil {
		c.parts.Resync()
	}
	for !c.parts.Inventory.HasSynced() {
		select {
		case <-lctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.refreshInventory(lctx)
	c.running.Store(true)
	var wg sync.WaitGroup
	start := func(loops ...func(context.Context)) {
		for _, loop := range loops {
			wg.Add(1)
			go func() { defer wg.Done(); loop(lctx) }()
		}
	}
	start(c.promotionLoop)
	c.log.Info("leading: promotions carried out")
	if c.catchUp(lctx) {
		start(c.proposalLoop, c.statusLoop)
		c.log.Info("leading: proposals and status written")
	}
	wg.Wait()
}

// catchUp waits, before proposals and status are written, until every
// node that a NanoSegment's status names has sent its state to this
// leader (its graph holds a report of the node), at most Config.CatchUp: a new
// leader's graph starts empty, and written at once the statuses would say
// NotReported and the proposals Silent until the agents have resent. It
// reports false when ctx ended meanwhile. The promotions do not wait: a
// promotion waits for its own endpoints' reports.
func (c *Controller) catchUp(ctx context.Context) bool {
	want, err := c.reportingNodes(ctx)
	if err != nil {
		c.log.Warn("read the nodes the NanoSegments' status names; not waiting for their agents", "err", err)
		return ctx.Err() == nil
	}
	deadline := time.Now().Add(c.cfg.CatchUp)
	for {
		missing := 0
		seen := map[string]bool{}
		for _, r := range c.parts.Graph.Reports() {
			seen[r.Node] = true
		}
		for n := range want {
			if !seen[n] {
				missing++
			}
		}
		if missing == 0 {
			return true
		}
		if !time.Now().Before(deadline) {
			c.log.Warn("node agents did not send their state in time; writing status and proposals without them", "missing", missing, "waited", c.cfg.CatchUp)
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// reportingNodes returns the nodes the NanoSegments' status names
// (status.nodes[].node): those whose agents reported to a leader before.
func (c *Controller) reportingNodes(ctx context.Context) (map[string]bool, error) {
	list, err := c.dyn.Resource(NanoSegmentResource).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nanosegments: %w", err)
	}
	out := map[string]bool{}
	for i := range list.Items {
		var seg v1alpha1.NanoSegment
		if err := toTyped(&list.Items[i], &seg); err != nil {
			continue
		}
		for _, n := range seg.Status.Nodes {
			out[n.Node] = true
		}
	}
	return out, nil
}

// watchInventory keeps the index current: on every change the source
// notifies, coalesced, and every 30 s.
func (c *Controller) watchInventory(ctx context.Context) {
	kick := make(chan struct{}, 1)
	go func() {
		if err := c.parts.Inventory.Watch(ctx, func() {
			select {
			case kick <- struct{}{}:
			default:
			}
		}); err != nil && ctx.Err() == nil {
			c.log.Warn("watch inventory; listing every 30 s", "err", err)
		}
	}()
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-t.C:
		}
		if c.parts.Inventory.HasSynced() {
			c.refreshInventory(ctx)
		}
	}
}

func (c *Controller) refreshInventory(ctx context.Context) {
	snap, err := c.parts.Inventory.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.mErrors.WithLabelValues("inventory").Inc()
			c.log.Warn("list inventory", "err", err)
		}
		return
	}
	c.inv.Replace(snap.Endpoints, snap.Namespaces, snap.Externals)
	c.inv.SetServices(snap.Services)
	c.inv.SetNodes(snap.Nodes)
}

// service returns the controller service over ps (the store, or its
// view for one promotion).
func (c *Controller) service(ps store.PolicyStore) *controller.Service {
	return controller.New(controller.Config{ConvergeTimeout: c.cfg.ConvergeTimeout, MinObserved: c.cfg.MinObserved}, ps, c.parts.Graph, c.inv, c.node, c.log)
}
