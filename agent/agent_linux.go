//go:build linux

// The standalone agent: one process with the controller service, the node
// side and the API server over one bbolt store, for the endpoints of one
// host.
//
// Design: one goroutine per concern, all stopped by one context.
//   - inventory: the sources are listed every InventoryInterval and
//     whenever they notify (the /run/netns watch, container runtime
//     events); each snapshot goes to the node (node.Node.SetInventory),
//     which starts and stops observers and recompiles what the change
//     affects.
//   - container-guard (with containers only, newctr_linux.go): a
//     fail-closed placeholder in each new Podman netns while a container
//     workload is enforced, until the container's own rules replace it.
//   - node: flushes observations to the store every FlushInterval and
//     repairs drift every DriftInterval (node.Node.Run).
//   - api: the server over the controller service (server.Server.Serve);
//     promotions and rollbacks hand the policies in force to the node and
//     wait until the endpoints they changed are applied.
//
// State that must survive a restart lives only in the store; on start the
// agent lists the inventory, then hands the policies in force to the node
// before anything else, and the dataplane updates the tables it finds in
// place without flushing them, so enforcement has no window across a
// restart. Tables in audit or enforce that the store does not know (a
// new or other state file) are kept as found until an operator promotes
// their workloads (node/adopt_linux.go): enforcement is never weakened
// by a start.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/internal/loop"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/inventory/containers"
	_ "github.com/nanoseg/nanoseg/inventory/containers/containerd" // containerd:// runtimes
	_ "github.com/nanoseg/nanoseg/inventory/containers/engine"     // podman:// and docker:// runtimes
	"github.com/nanoseg/nanoseg/inventory/host"
	"github.com/nanoseg/nanoseg/node"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store/bolt"
)

// Agent is the standalone nanoseg agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	store *bolt.Store
	inv   *inventory.Index
	src   inventory.Source
	node  *node.Node
	svc   *controller.Service
	srv   *server.Server
	reg   *prometheus.Registry

	refreshMu sync.Mutex // one inventory refresh at a time (ticker and watch)
	lock      *os.File   // held while the agent manages its inventory
	ctrs      *containers.Source
	guard     *containerGuard // nil without containers (newctr_linux.go)
	// Container gauges (nil without containers): runtimes reached, and
	// containers reported but not enforced (host network, no netns).
	ctrUp, ctrNotEnforced *prometheus.GaugeVec
	lastCtrs              controller.ContainerStatus // the last refresh's, without times
}

// containerStatus is what GET /v1/containers answers from src: its
// runtimes, and its notes about containers as the containers not enforced.
func containerStatus(src *containers.Source) controller.ContainerStatus {
	var st controller.ContainerStatus
	for _, r := range src.Runtimes() {
		rs := controller.RuntimeStatus{Name: r.Name, Reachable: r.Reachable, Since: r.Since, Endpoints: r.Endpoints}
		if r.Err != nil {
			rs.Error = r.Err.Error()
		}
		st.Runtimes = append(st.Runtimes, rs)
	}
	for _, n := range src.Notes() {
		switch {
		case n.Container != "" && n.Enforced:
			st.LabelsNotUsed = append(st.LabelsNotUsed, controller.NotEnforced{Runtime: n.Runtime, Container: n.Container, Reason: n.Reason})
		case n.Container != "":
			st.NotEnforced = append(st.NotEnforced, controller.NotEnforced{Runtime: n.Runtime, Container: n.Container, Reason: n.Reason})
		}
	}
	return st
}

// Containers returns the agent's container source (nil without
// containers): its Notes say which containers it does not enforce and
// which runtimes it cannot reach.
func (a *Agent) Containers() *containers.Source { return a.ctrs }

// New opens the store and prepares the agent; Run starts it. labs locates
// running labs (its Config; its Name is set from cfg.Lab). reg receives
// the agent's metrics (nil: a private registry). Errors: an invalid
// configuration, no inventory, a bad token file, another agent on the
// socket or the same endpoints, or a store that cannot be opened.
func New(cfg Config, labs host.LabSource, log *slog.Logger, reg *prometheus.Registry) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Lab == "" && cfg.LabelsFile == "" && len(cfg.Containers) == 0 {
		return nil, errors.New("agent: no inventory: set lab (a running lab's name), labelsFile or containers (runtime URIs)")
	}
	var runtimes []containers.Runtime
	for i, uri := range cfg.Containers {
		rt, err := containers.Open(uri)
		if err != nil {
			return nil, fmt.Errorf("agent.containers[%d]: %w", i, err)
		}
		runtimes = append(runtimes, rt)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	token, err := readToken(log, cfg.Listen, "agent.tokenFile", cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	readTok, err := readToken(log, cfg.Listen, "agent.readTokenFile", cfg.ReadTokenFile)
	if err != nil {
		return nil, err
	}
	if token != "" && token == readTok {
		return nil, fmt.Errorf("agent.readTokenFile: %s holds the operator's token (agent.tokenFile): the viewer's token must differ", cfg.ReadTokenFile)
	}
	if c, err := net.DialTimeout("unix", cfg.Socket, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another agent is serving %s: stop it first, or give this one another socket", cfg.Socket)
	}
	labs.Name = cfg.Lab
	lock, err := lockInventory(cfg, labs)
	if err != nil {
		return nil, err
	}
	st, err := openStoreDir(cfg.StateFile)
	if err != nil {
		lock.Close()
		return nil, err
	}
	var sources []inventory.Source
	if cfg.Lab != "" {
		sources = append(sources, labs)
	}
	if cfg.LabelsFile != "" {
		sources = append(sources, host.LabelsFileSource{Path: cfg.LabelsFile})
	}
	var ctrs *containers.Source
	if len(runtimes) > 0 {
		ctrs = containers.NewSource(log, runtimes...)
		sources = append(sources, ctrs)
	}
	inv := inventory.NewIndex(nil, nil, nil)
	// Committed observations and the service's commits go to one change
	// feed (GET /v1/events).
	changes := controller.NewChanges()
	nd, err := node.New(node.Config{FlushInterval: cfg.FlushInterval, DriftInterval: cfg.DriftInterval,
		Owner: fmt.Sprintf("socket %s, state file %s", cfg.Socket, cfg.StateFile)}, inv, changes.Sink(st), reg, log)
	if err != nil {
		st.Close()
		lock.Close()
		return nil, err
	}
	var guard *containerGuard
	if ctrs != nil {
		guard = newContainerGuard(nd, inv, log)
	}
	minObserved := cfg.MinObserved
	if minObserved == 0 {
		minObserved = -1 // no minimum
	}
	var ctrStatus func() controller.ContainerStatus
	if ctrs != nil {
		ctrStatus = func() controller.ContainerStatus { return containerStatus(ctrs) }
	}
	svc := controller.New(controller.Config{EvidenceDir: filepath.Join(filepath.Dir(cfg.StateFile), "evidence"),
		EvidenceKeyFile: cfg.EvidenceKeyFile, Lab: cfg.Lab, MinObserved: minObserved, Propose: cfg.Propose.Options(), Changes: changes,
		Containers: ctrStatus}, st, st, inv, nd, log)
	srv := server.New(svc, server.Config{Socket: cfg.Socket, Listen: cfg.Listen, Token: token, ReadToken: readTok, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey,
		TLSClientCA: cfg.TLSClientCA, MetricsAddr: cfg.MetricsAddr, Metrics: reg}, log)
	a := &Agent{cfg: cfg, log: log.With("component", "agent"), store: st, inv: inv, src: host.NetnsSource{Source: inventory.Merge(sources...)},
		node: nd, svc: svc, srv: srv, reg: reg, lock: lock, ctrs: ctrs, guard: guard}
	if ctrs != nil {
		a.ctrUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "agent", Name: "container_runtime_reachable",
			Help: "1 when the container runtime answered the last inventory list, 0 when it could not be reached (its last endpoints are kept)."}, []string{"runtime"})
		a.ctrNotEnforced = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "agent", Name: "containers_not_enforced",
			Help: "Running containers the agent reports but does not enforce (host network, no netns), by runtime."}, []string{"runtime"})
		reg.MustRegister(a.ctrUp, a.ctrNotEnforced)
	}
	return a, nil
}

// Store returns the agent's store.
func (a *Agent) Store() *bolt.Store { return a.store }

// Inventory returns the agent's inventory index.
func (a *Agent) Inventory() *inventory.Index { return a.inv }

// Node returns the agent's node side.
func (a *Agent) Node() *node.Node { return a.node }

// Service returns the agent's controller service.
func (a *Agent) Service() *controller.Service { return a.svc }

// Server returns the agent's API server.
func (a *Agent) Server() *server.Server { return a.srv }

// Registry returns the agent's metrics registry.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// Run runs the agent until ctx is done, then flushes and closes the store.
// It returns nil on a clean stop, or the error that stopped the API.
func (a *Agent) Run(ctx context.Context) error {
	defer func() {
		// Remove the lock file while still holding the lock: an agent
		// starting now either held it first or finds no file to wait on.
		_ = os.Remove(a.lock.Name())
		a.lock.Close()
	}()
	defer a.store.Close()
	defer a.node.Close()
	// Bind the API and metrics listeners before touching any endpoint: an
	// address in use stops the agent before it claims or programs anything.
	if err := a.srv.Listen(); err != nil {
		return err
	}
	defer a.srv.Close()
	if err := a.refreshInventory(ctx); err != nil {
		return err
	}
	if err := a.allRefused(); err != nil {
		return err
	}
	// First pass before anything else: adopt and converge.
	if err := a.svc.Enforce(ctx); err != nil {
		a.log.Error("enforce policies", "err", err)
	}
	// Every loop stops when ctx ends or the API fails (its error is the
	// cause). Made before the loops start: they read ctx.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
			a.log.Debug("stopped", "loop", name)
		}()
	}
	nodeCtx, stopNode := context.WithCancel(context.WithoutCancel(ctx))
	nodeDone := make(chan struct{})
	go func() {
		defer close(nodeDone)
		_ = a.node.Run(nodeCtx)
	}()
	run("inventory", func(ctx context.Context) {
		loop.Every(ctx, a.cfg.InventoryInterval, func() {
			if err := a.refreshInventory(ctx); err != nil {
				a.log.Warn("refresh inventory", "err", err)
			}
		})
	})
	run("inventory-watch", func(ctx context.Context) {
		err := a.src.Watch(ctx, func() {
			if err := a.refreshInventory(ctx); err != nil {
				a.log.Warn("refresh inventory", "err", err)
			}
		})
		if err != nil {
			a.log.Warn("watch inventory; relying on the periodic refresh", "err", err)
		}
	})
	if a.guard != nil {
		run("container-guard", func(ctx context.Context) {
			if err := a.guard.run(ctx); err != nil {
				a.log.Warn("watch new container network namespaces: no placeholders", "err", err)
			}
		})
	}
	run("api", func(ctx context.Context) {
		if err := a.srv.Serve(ctx); err != nil {
			cancel(err)
		}
	})
	a.log.Info("agent running", "endpoints", len(a.inv.Endpoints()), "store", a.cfg.StateFile)
	<-ctx.Done()
	wg.Wait()
	// The node stops last: its final flush commits what the observers saw.
	stopNode()
	<-nodeDone
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// refreshInventory lists the inventory sources and hands the snapshot to
// the node.
func (a *Agent) refreshInventory(ctx context.Context) error {
	a.refreshMu.Lock()
	defer a.refreshMu.Unlock()
	snap, err := a.src.List(ctx)
	if err != nil {
		return err
	}
	if a.guard != nil {
		a.guard.listed(snap)
	}
	if a.ctrs != nil {
		notes := a.ctrs.Notes()
		for rt, up := range a.ctrs.Reachable() {
			a.ctrUp.WithLabelValues(rt).Set(map[bool]float64{true: 1}[up])
			n := 0
			for _, x := range notes {
				if x.Runtime == rt && x.Container != "" && !x.Enforced {
					n++
				}
			}
			a.ctrNotEnforced.WithLabelValues(rt).Set(float64(n))
		}
	}
	before := a.inv.Endpoints()
	a.node.SetInventory(ctx, snap)
	if !reflect.DeepEqual(before, a.inv.Endpoints()) {
		a.svc.Changes().Publish(controller.TopicInventory, controller.TopicStatus)
	}
	if a.ctrs != nil {
		// A runtime lost or back, a host-network container started or
		// gone: what GET /v1/containers answers changed.
		now := a.svc.Containers()
		for i := range now.Runtimes {
			now.Runtimes[i].Since = time.Time{}
		}
		if !reflect.DeepEqual(now, a.lastCtrs) {
			a.svc.Changes().Publish(controller.TopicInventory)
		}
		a.lastCtrs = now
	}
	a.svc.WarnCaptures()
	return nil
}

// allRefused returns an error naming the owners when the inventory has
// endpoints and another agent manages every one of them: this agent would
// have nothing to do. Some refused endpoints only are logged by the node
// and shown by status.
func (a *Agent) allRefused() error {
	refused := a.node.Refused()
	eps := a.inv.Endpoints()
	if len(eps) == 0 || len(refused) < len(eps) {
		return nil
	}
	var errs []error
	for _, e := range eps {
		errs = append(errs, refused[e.Netns])
	}
	return fmt.Errorf("agent: no endpoint to manage (one owner per network namespace):\n%w", errors.Join(errs...))
}

// lockInventory takes an exclusive lock that keeps a second agent from
// managing the same endpoints: beside the lab's state for a lab, beside the
// labels file for one, beside the state file for containers only (two
// agents on one runtime are kept apart by the node's one owner per netns).
// The lock goes with the process, also on kill -9.
func lockInventory(cfg Config, labs host.LabSource) (*os.File, error) {
	path := cfg.LabelsFile + ".agent.lock"
	if cfg.LabelsFile == "" {
		path = cfg.StateFile + ".agent.lock"
	}
	if cfg.Lab != "" {
		if _, err := os.Stat(labs.Dir()); err != nil {
			return nil, fmt.Errorf("agent.lab: lab %q is not up (no state in %s): run `nanoseg lab up` first", cfg.Lab, labs.Dir())
		}
		path = labs.LockPath()
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

// readToken reads a bearer token of the TCP API (setting key, from file)
// when a TCP listener is configured, refusing a missing, empty or short
// one before anything starts. A file that users other than its owner may
// read or write is used, with a warning on log naming the key, the file
// and its mode (the README makes them 0600).
func readToken(log *slog.Logger, listen, key, file string) (string, error) {
	if listen == "" || file == "" {
		return "", nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	token := strings.TrimSpace(string(raw))
	if len(token) < 16 {
		return "", fmt.Errorf("%s: %s: the token must have at least 16 characters", key, file)
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("token file readable or writable by others than its owner: anyone who reads it gets its rights; chmod 600 it",
			"key", key, "file", file, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
	}
	return token, nil
}

// openStoreDir creates the store file's directory (0700) and opens it.
func openStoreDir(path string) (*bolt.Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	return bolt.Open(path)
}
