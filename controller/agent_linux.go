//go:build linux

// The standalone agent: observer, controller and dataplane in one process.
//
// Design: one goroutine per concern, all stopped by one context.
//   - inventory: re-read every InventoryInterval; new endpoints get an
//     observer and a rule set, vanished ones lose both.
//   - observation: each endpoint's observer hands flow records to one
//     Aggregator; every FlushInterval the aggregated edges and the
//     audit-deny / deny verdict events are committed to the store in one
//     transaction each, so a crash loses at most one interval.
//   - reconcile: any change (promotion, rollback, new revision, inventory
//     change) bumps a generation and kicks one coalesced pass that compiles
//     the active policies into one rule set per endpoint and applies them
//     through the dataplane reconciler, endpoints in parallel; a promotion
//     waits until a pass that started after it has finished.
//   - drift: the dataplane reconciler compares tables with their desired
//     rule sets every DriftInterval and repairs them.
//
// State that must survive a restart lives only in the store; on start the
// agent re-compiles from it and the dataplane adopts the tables it finds
// without flushing them, so enforcement has no window across a restart.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/observer"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// Agent is the standalone nanoseg agent.
type Agent struct {
	cfg    AgentConfig
	labCfg lab.Config
	log    *slog.Logger
	store  *Store
	inv    *Inventory
	rec    *dataplane.Reconciler
	agg    *observer.Aggregator
	names  *observer.Names
	obsCfg observer.Config
	obsM   *observer.Metrics
	reg    *prometheus.Registry

	token     string     // bearer token of the TCP API ("" without one)
	refreshMu sync.Mutex // one inventory refresh at a time (ticker and netns watch)
	lock      *os.File   // held while the agent manages its inventory

	mu        sync.Mutex
	observers map[string]context.CancelFunc // by netns
	pending   []VerdictEvent
	probes    map[probeKey]time.Time // the agent's own probes (verify_linux.go)
	probePort uint32
	seenNames map[netip.Addr]string // remote address → DNS name seen by the observer

	// reconcile generations: want is bumped by every change, done is the
	// generation the last finished pass started from.
	genMu   sync.Mutex
	genCond *sync.Cond
	want    uint64
	done    uint64
	lastErr map[string]error // netns → last apply error
	kick    chan struct{}
}

// NewAgent opens the store and prepares the agent; Run starts it. reg
// receives the agent's metrics (nil: a private registry).
func NewAgent(cfg AgentConfig, labCfg lab.Config, log *slog.Logger, reg *prometheus.Registry) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Lab == "" && cfg.LabelsFile == "" {
		return nil, errors.New("agent: no inventory: set lab (a running lab's name) or labelsFile")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	token, err := readToken(cfg)
	if err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", cfg.Socket, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another agent is serving %s: stop it first, or give this one another socket", cfg.Socket)
	}
	lock, err := lockInventory(cfg, labCfg)
	if err != nil {
		return nil, err
	}
	st, err := openStoreDir(cfg.StateFile)
	if err != nil {
		lock.Close()
		return nil, err
	}
	m, err := observer.NewMetrics(reg)
	if err != nil {
		st.Close()
		lock.Close()
		return nil, fmt.Errorf("register observer metrics: %w", err)
	}
	dp := dataplane.New(log)
	rec, err := dataplane.NewReconciler(dp, dataplane.ReconcilerConfig{Resync: cfg.DriftInterval, MinInterval: cfg.DriftInterval / 5, Log: log})
	if err != nil {
		st.Close()
		lock.Close()
		return nil, err
	}
	a := &Agent{cfg: cfg, token: token, lock: lock, labCfg: labCfg, log: log.With("component", "agent"), store: st, inv: NewInventory(nil, nil, nil),
		rec: rec, names: observer.NewNames(0), obsCfg: observer.Defaults(), obsM: m, reg: reg,
		observers: map[string]context.CancelFunc{}, seenNames: map[netip.Addr]string{}, lastErr: map[string]error{},
		kick: make(chan struct{}, 1)}
	a.genCond = sync.NewCond(&a.genMu)
	a.agg = observer.NewAggregator(a.inv, a.names, a.isEndpoint)
	return a, nil
}

func (a *Agent) isEndpoint(addr netip.Addr) bool {
	_, ok := a.inv.Lookup(addr)
	return ok
}

// Store returns the agent's store.
func (a *Agent) Store() *Store { return a.store }

// Inventory returns the agent's inventory.
func (a *Agent) Inventory() *Inventory { return a.inv }

// Registry returns the agent's metrics registry.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// Run runs the agent until ctx is done, then flushes and closes the store.
// It returns nil on a clean stop.
func (a *Agent) Run(ctx context.Context) error {
	defer func() {
		// Remove the lock file while still holding the lock: an agent
		// starting now either held it first or finds no file to wait on.
		_ = os.Remove(a.lock.Name())
		a.lock.Close()
	}()
	defer a.store.Close()
	if err := a.refreshInventory(ctx); err != nil {
		return err
	}
	// First pass before anything else: adopt and converge.
	a.reconcile()
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
			a.log.Debug("stopped", "loop", name)
		}()
	}
	run("reconcile", a.reconcileLoop)
	run("flush", func(ctx context.Context) { a.every(ctx, a.cfg.FlushInterval, "flush observations", a.flush) })
	run("inventory", func(ctx context.Context) {
		a.every(ctx, a.cfg.InventoryInterval, "refresh inventory", func() error { return a.refreshInventory(ctx) })
	})
	run("netns-watch", a.watchNetns)
	run("drift", func(ctx context.Context) { _ = a.rec.Run(ctx) })
	ctx, cancel := context.WithCancelCause(ctx)
	run("api", func(ctx context.Context) {
		if err := a.Serve(ctx); err != nil {
			cancel(err)
		}
	})
	a.log.Info("agent running", "endpoints", len(a.inv.Endpoints()), "store", a.cfg.StateFile)
	<-ctx.Done()
	wg.Wait()
	a.mu.Lock()
	for _, cancel := range a.observers {
		cancel()
	}
	a.mu.Unlock()
	if err := a.flush(); err != nil {
		a.log.Warn("final flush", "err", err)
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// every runs f every d until ctx is done, logging its errors as what.
func (a *Agent) every(ctx context.Context, d time.Duration, what string, f func() error) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := f(); err != nil {
				a.log.Warn(what, "err", err)
			}
		}
	}
}

// watchNetns refreshes the inventory as soon as a named network namespace
// appears or disappears (inotify on /run/netns), so a new endpoint gets its
// rule set within milliseconds instead of at the next InventoryInterval
// tick; the tick stays as the fallback. Events are coalesced over 50 ms.
func (a *Agent) watchNetns(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.log.Warn("watch network namespaces; relying on the periodic refresh", "err", err)
		return
	}
	defer w.Close()
	if err := w.Add(nsenter.RunDir); err != nil {
		a.log.Warn("watch network namespaces; relying on the periodic refresh", "dir", nsenter.RunDir, "err", err)
		return
	}
	var pending <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Op&(fsnotify.Create|fsnotify.Remove) != 0 && pending == nil {
				pending = time.After(50 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			a.log.Debug("watch network namespaces", "err", err)
		case <-pending:
			pending = nil
			if err := a.refreshInventory(ctx); err != nil {
				a.log.Warn("refresh inventory", "err", err)
			}
		}
	}
}

// refreshInventory re-reads the inventory sources, starts observers for new
// endpoints, stops those of vanished ones, and asks for a reconcile pass
// when anything changed.
func (a *Agent) refreshInventory(ctx context.Context) error {
	a.refreshMu.Lock()
	defer a.refreshMu.Unlock()
	var eps []Endpoint
	nss := map[string]map[string]string{}
	ext := map[netip.Addr]string{}
	if a.cfg.Lab != "" {
		e, n, x, err := LabInventory(a.labCfg, a.cfg.Lab)
		if err != nil {
			return fmt.Errorf("read lab inventory: %w", err)
		}
		eps, nss, ext = append(eps, e...), n, x
	}
	if a.cfg.LabelsFile != "" {
		e, n, err := ReadLabelsFile(a.cfg.LabelsFile)
		if err != nil {
			return err
		}
		for i := range e {
			if len(e[i].Addrs) == 0 {
				e[i].Addrs, _ = netnsAddrs(e[i].Path)
			}
		}
		eps = append(eps, e...)
		for k, v := range n {
			nss[k] = v
		}
	}
	eps = presentEndpoints(eps)
	added, removed := a.inv.Replace(eps, nss, ext)
	if len(added) == 0 && len(removed) == 0 {
		return nil
	}
	a.log.Info("inventory changed", "added", added, "removed", removed)
	byName := map[string]Endpoint{}
	for _, e := range eps {
		byName[e.Netns] = e
	}
	a.mu.Lock()
	for _, n := range removed {
		if cancel := a.observers[n]; cancel != nil {
			cancel()
			delete(a.observers, n)
		}
		a.rec.Remove(n)
	}
	a.mu.Unlock()
	for _, n := range added {
		a.startObserver(ctx, byName[n])
	}
	a.requestReconcile()
	return nil
}

func (a *Agent) startObserver(ctx context.Context, e Endpoint) {
	octx, cancel := context.WithCancel(ctx)
	o, err := observer.New(a.obsCfg, []model.Endpoint{{Netns: e.Netns, Path: e.Path, Addrs: e.Addrs}}, a.handleFlow, a.names, a.obsM, a.log)
	if err != nil {
		cancel()
		a.log.Warn("start observer", "netns", e.Netns, "err", err)
		return
	}
	a.mu.Lock()
	a.observers[e.Netns] = cancel
	a.mu.Unlock()
	go func() {
		if err := o.Run(octx); err != nil && octx.Err() == nil {
			a.log.Warn("observer stopped", "netns", e.Netns, "err", err)
		}
	}()
}

// handleFlow receives every flow record of every endpoint. The agent's
// own probes are not traffic of the workloads and are left out.
func (a *Agent) handleFlow(f model.Flow) {
	if a.isProbe(f) {
		return
	}
	a.agg.Add(f)
	if f.RemoteName != "" || f.Verdict == model.VerdictAuditDeny || f.Verdict == model.VerdictDeny {
		a.mu.Lock()
		if f.RemoteName != "" {
			a.seenNames[f.Remote()] = f.RemoteName
		}
		if f.Verdict == model.VerdictAuditDeny || f.Verdict == model.VerdictDeny {
			a.pending = append(a.pending, VerdictEvent{At: f.Start, Endpoint: f.Endpoint, Verdict: f.Verdict, RuleID: f.RuleID,
				Source: a.peerName(f.Src), SrcPort: f.SrcPort, Destination: a.peerName(f.Dst), Protocol: f.Protocol, Port: f.DstPort})
		}
		a.mu.Unlock()
	}
}

func (a *Agent) peerName(addr netip.Addr) string {
	if id, ok := a.inv.Lookup(addr); ok {
		return id.Namespace + "/" + id.Workload
	}
	if n, ok := a.names.Lookup(addr, time.Now()); ok {
		return n
	}
	return addr.String()
}

// flush commits the aggregated edges and pending verdict events.
func (a *Agent) flush() error {
	edges := a.agg.Take()
	// A connection can be seen a moment before the DNS answer that named
	// its address; by now the name is known, so the edge joins the named one.
	now := time.Now()
	for i := range edges {
		for _, p := range []*model.Peer{&edges[i].Source, &edges[i].Destination} {
			if p.External && p.Name == "" && p.Addr.IsValid() {
				if n, ok := a.names.Lookup(p.Addr, now); ok {
					*p = model.Peer{External: true, Name: n}
				}
			}
		}
	}
	a.mu.Lock()
	evs := a.pending
	a.pending = nil
	a.mu.Unlock()
	if err := a.store.MergeEdges(edges); err != nil {
		return err
	}
	return a.store.AddVerdicts(evs)
}

// requestReconcile asks for a pass and returns the generation that a pass
// must reach to include this request.
func (a *Agent) requestReconcile() uint64 {
	a.genMu.Lock()
	a.want++
	g := a.want
	a.genMu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return g
}

// waitReconciled waits until a pass that includes generation g finished.
func (a *Agent) waitReconciled(ctx context.Context, g uint64) error {
	stop := context.AfterFunc(ctx, func() {
		a.genMu.Lock()
		a.genCond.Broadcast()
		a.genMu.Unlock()
	})
	defer stop()
	a.genMu.Lock()
	defer a.genMu.Unlock()
	for a.done < g {
		if err := ctx.Err(); err != nil {
			return err
		}
		a.genCond.Wait()
	}
	return nil
}

func (a *Agent) reconcileLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
			a.reconcile()
		}
	}
}

// reconcile compiles the active policies and applies one rule set per
// endpoint; endpoints are applied in parallel, and one endpoint's failure
// leaves the others alone.
func (a *Agent) reconcile() {
	a.genMu.Lock()
	g := a.want
	a.genMu.Unlock()
	sets, err := a.compileAll()
	if err != nil {
		a.log.Error("compile rule sets", "err", err)
	} else {
		eps := a.inv.Endpoints()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		errs := make([]error, len(eps))
		for i, e := range eps {
			rs, ok := sets[e.Netns]
			if !ok {
				continue
			}
			// Unchanged since the last successful apply: nothing to send.
			// The drift loop still compares the kernel with it.
			if st, ok := a.rec.Status(e.Netns); ok && st.Err == nil && !st.LastSync.IsZero() && reflect.DeepEqual(st.Desired, rs) {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if _, err := a.rec.Set(e.Netns, e.Path, rs); err != nil {
					errs[i] = err
					a.log.Warn("apply rule set", "netns", e.Netns, "err", err)
				}
			}()
		}
		wg.Wait()
		a.mu.Lock()
		for i, e := range eps {
			a.lastErr[e.Netns] = errs[i]
		}
		a.mu.Unlock()
	}
	a.genMu.Lock()
	if g > a.done {
		a.done = g
	}
	a.genCond.Broadcast()
	a.genMu.Unlock()
}

// ActivePolicy is a workload's policy as it is in force: the revision's
// nanosegment with the workload's promoted mode.
type ActivePolicy struct {
	State  WorkloadState
	Policy *v1alpha1.NanoSegment
}

// Active returns the active policy of every workload with a revision.
func (a *Agent) Active() ([]ActivePolicy, error) {
	states, err := a.store.States()
	if err != nil {
		return nil, err
	}
	var out []ActivePolicy
	for _, st := range states {
		if st.Revision == 0 {
			continue
		}
		r, err := a.store.Revision(st.Workload, st.Revision)
		if err != nil {
			return nil, err
		}
		p := r.Policy.DeepCopy()
		p.Spec.Mode = st.Mode
		out = append(out, ActivePolicy{State: st, Policy: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].State.Workload < out[j].State.Workload })
	return out, nil
}

// names returns every DNS name known for an address: lab externals and
// names the observer saw in DNS answers.
func (a *Agent) knownNames() map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for addr, n := range a.inv.Externals() {
		out[addr] = append(out[addr], n)
	}
	a.mu.Lock()
	for addr, n := range a.seenNames {
		out[addr] = append(out[addr], n)
	}
	a.mu.Unlock()
	return out
}

// compileAll compiles the active policies for every endpoint.
func (a *Agent) compileAll() (map[string]dataplane.RuleSet, error) {
	active, err := a.Active()
	if err != nil {
		return nil, err
	}
	names := a.knownNames()
	world, err := a.inv.World(names)
	if err != nil {
		return nil, err
	}
	sets, warnings, err := compileRuleSets(world, active, a.inv.Endpoints(), names)
	for _, w := range warnings {
		a.log.Debug("compile warning", "warning", w)
	}
	return sets, err
}

// netnsAddrs reads the global unicast addresses of the netns at path.
func netnsAddrs(path string) ([]netip.Addr, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer nl.Close()
	addrs, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses in %s: %w", path, err)
	}
	var out []netip.Addr
	for _, ad := range addrs {
		if a, ok := netip.AddrFromSlice(ad.IP); ok && a.Unmap().IsGlobalUnicast() {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

// presentEndpoints keeps the endpoints whose netns exists, with the inode
// of the namespace mounted at their path.
func presentEndpoints(eps []Endpoint) []Endpoint {
	var out []Endpoint
	for _, e := range eps {
		var st unix.Stat_t
		if err := unix.Stat(e.Path, &st); err == nil {
			e.NetnsInode = st.Ino
			out = append(out, e)
		}
	}
	return out
}

// lockInventory takes an exclusive lock that keeps a second agent from
// managing the same endpoints: beside the lab's state for a lab, beside the
// labels file otherwise. The lock goes with the process, also on kill -9.
func lockInventory(cfg AgentConfig, labCfg lab.Config) (*os.File, error) {
	path := cfg.LabelsFile + ".agent.lock"
	if cfg.Lab != "" {
		if _, err := os.Stat(labCfg.Dir(cfg.Lab)); err != nil {
			return nil, fmt.Errorf("agent.lab: lab %q is not up (no state in %s): run `nanoseg lab up` first", cfg.Lab, labCfg.Dir(cfg.Lab))
		}
		// Beside the lab's state directory, not in it: `lab down` removes
		// the directory, and the lock must outlive a lab re-created under
		// a running agent.
		path = filepath.Join(labCfg.StateDir, "."+cfg.Lab+".agent.lock")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock inventory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another agent already manages these endpoints (lock %s held): two agents would fight over the same tables", path)
		}
		return nil, fmt.Errorf("lock inventory %s: %w", path, err)
	}
	return f, nil
}

// readToken reads the TCP API's bearer token when a TCP listener is
// configured, refusing a missing, empty or short one before anything starts.
func readToken(cfg AgentConfig) (string, error) {
	if cfg.Listen == "" || cfg.TokenFile == "" {
		return "", nil
	}
	raw, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("agent.tokenFile: %w", err)
	}
	token := strings.TrimSpace(string(raw))
	if len(token) < 16 {
		return "", fmt.Errorf("agent.tokenFile: %s: the token must have at least 16 characters", cfg.TokenFile)
	}
	return token, nil
}

// openStoreDir creates the store file's directory (0700) and opens it.
func openStoreDir(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	return OpenStore(path)
}
