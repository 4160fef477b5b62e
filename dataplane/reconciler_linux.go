//go:build linux

package dataplane

// Reconciler: keeps the desired rule set of every endpoint in the kernel.
//
// Drift detection is a periodic comparison (read back, State.Equal), not an
// nftables monitor: a monitor needs one socket per endpoint netns and still
// needs a resync after overflow, while a comparison also catches changes made
// while nanoseg was not running. Triggers (Set, Trigger, the resync tick)
// are coalesced: however many arrive, passes run at most once per
// MinInterval, and a failed endpoint is retried on the next pass. The clock
// is injected so tests drive time.
//
// Sources: kube-network-policies / kube-proxy BoundedFrequencyRunner (the
// coalescing pattern, re-implemented here), the team style guide on kernel code.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Clock is the time source of a Reconciler.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// Resync is the period of the drift comparison (default 10s).
	Resync time.Duration
	// MinInterval is the least time between two passes (default 1s).
	MinInterval time.Duration
	// Workers is how many endpoints a pass compares and repairs at once
	// (default 8; the work mostly waits for the kernel).
	Workers int
	// Clock defaults to the wall clock.
	Clock Clock
	// Log defaults to discard.
	Log *slog.Logger
}

// Defaults fills the zero fields of c.
func (c *ReconcilerConfig) Defaults() {
	if c.Resync == 0 {
		c.Resync = 10 * time.Second
	}
	if c.MinInterval == 0 {
		c.MinInterval = time.Second
	}
	if c.Workers == 0 {
		c.Workers = 8
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Validate refuses negative durations or workers and MinInterval above
// Resync.
func (c ReconcilerConfig) Validate() error {
	if c.Workers < 0 {
		return fmt.Errorf("reconciler config: negative Workers %d", c.Workers)
	}
	if c.Resync < 0 || c.MinInterval < 0 || c.MinInterval > c.Resync {
		return fmt.Errorf("reconciler config: want 0 <= MinInterval (%s) <= Resync (%s)", c.MinInterval, c.Resync)
	}
	return nil
}

// EndpointStatus is the reconciler's view of one endpoint.
type EndpointStatus struct {
	NetNS   string  // netns path
	Desired RuleSet // the last rule set that applied successfully
	// Err is the error of the last apply or comparison, nil if it
	// succeeded. A rule set that failed to apply is not Desired: the
	// kernel keeps the previous one.
	Err      error
	Repairs  int       // drift repairs so far
	LastSync time.Time // end of the last successful comparison or apply
}

type endpoint struct {
	mu     sync.Mutex // serialises kernel calls on this endpoint
	status EndpointStatus
	have   bool // status.Desired was applied at least once
}

// Reconciler applies rule sets to endpoints and repairs drift.
type Reconciler struct {
	dp   *Dataplane
	cfg  ReconcilerConfig
	log  *slog.Logger
	kick chan struct{}

	passes atomic.Int64

	mu        sync.Mutex
	endpoints map[string]*endpoint
}

// Passes returns how many reconcile passes Run has made (for tests and
// metrics).
func (r *Reconciler) Passes() int64 { return r.passes.Load() }

// NewReconciler returns a Reconciler over dp. Errors: cfg.Validate's.
func NewReconciler(dp *Dataplane, cfg ReconcilerConfig) (*Reconciler, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Reconciler{dp: dp, cfg: cfg, log: cfg.Log.With("component", "dataplane-reconciler"),
		kick: make(chan struct{}, 1), endpoints: map[string]*endpoint{}}, nil
}

func (r *Reconciler) get(name string) *endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	ep, ok := r.endpoints[name]
	if !ok {
		ep = &endpoint{}
		r.endpoints[name] = ep
	}
	return ep
}

// Set applies rs to the endpoint name in the netns at nsPath now and
// remembers it as desired. On error (invalid rule set, failed transaction)
// the endpoint keeps its previous rule set, in the kernel and here, and the
// error is returned and kept in its status; other endpoints are unaffected.
func (r *Reconciler) Set(name, nsPath string, rs RuleSet) (ApplyResult, error) {
	ep := r.get(name)
	ep.mu.Lock()
	defer ep.mu.Unlock()
	res, err := r.dp.Apply(nsPath, rs)
	if err != nil && !errors.Is(err, ErrCutConnections) {
		ep.status.Err = fmt.Errorf("endpoint %s: %w", name, err)
		if !ep.have {
			ep.status.NetNS = nsPath
		}
		return res, ep.status.Err
	}
	ep.status = EndpointStatus{NetNS: nsPath, Desired: rs, Err: err, Repairs: ep.status.Repairs, LastSync: r.cfg.Clock.Now()}
	ep.have = true
	return res, err
}

// Desired is the rule set one endpoint should hold.
type Desired struct {
	Name    string // the endpoint's name
	NetNS   string // path of its netns
	RuleSet RuleSet
}

// SetAll makes every endpoint of ds hold its rule set: it applies, Workers
// at a time, each rule set that differs from the one its endpoint last
// applied successfully (or whose last apply or comparison failed, or whose
// netns path changed), skips the unchanged ones (the periodic comparison
// still checks their tables), and returns when every apply has finished,
// with the error of each endpoint that failed, by name (nil map: none).
// Endpoints applied are as with Set; other endpoints are unaffected.
func (r *Reconciler) SetAll(ds []Desired) map[string]error {
	var (
		mu   sync.Mutex
		errs map[string]error
		wg   sync.WaitGroup
	)
	work := make(chan Desired)
	for range r.cfg.Workers {
		wg.Go(func() {
			for d := range work {
				if _, err := r.Set(d.Name, d.NetNS, d.RuleSet); err != nil {
					mu.Lock()
					if errs == nil {
						errs = map[string]error{}
					}
					errs[d.Name] = err
					mu.Unlock()
				}
			}
		})
	}
	for _, d := range ds {
		if r.unchanged(d) {
			continue
		}
		work <- d
	}
	close(work)
	wg.Wait()
	return errs
}

// unchanged reports whether d's endpoint already holds d's rule set as far
// as the reconciler knows: applied successfully, nothing failed since.
func (r *Reconciler) unchanged(d Desired) bool {
	st, ok := r.Status(d.Name)
	return ok && st.Err == nil && !st.LastSync.IsZero() && st.NetNS == d.NetNS && st.Desired.Equal(d.RuleSet)
}

// Remove forgets the endpoint name; its table stays in the kernel.
func (r *Reconciler) Remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.endpoints, name)
}

// Status returns the status of endpoint name and whether it is known.
func (r *Reconciler) Status(name string) (EndpointStatus, bool) {
	r.mu.Lock()
	ep, ok := r.endpoints[name]
	r.mu.Unlock()
	if !ok {
		return EndpointStatus{}, false
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.status, true
}

// Trigger asks Run for a pass soon; triggers coalesce.
func (r *Reconciler) Trigger() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Sync compares every endpoint with its desired rule set once, Workers at
// a time, and re-applies those that drifted (table deleted or altered). It returns the
// number of endpoints repaired and the joined errors of those that failed.
func (r *Reconciler) Sync(ctx context.Context) (int, error) {
	r.mu.Lock()
	names := slices.Sorted(maps.Keys(r.endpoints))
	r.mu.Unlock()
	var (
		mu       sync.Mutex
		repaired int
		errs     []error
		wg       sync.WaitGroup
	)
	work := make(chan string)
	for range r.cfg.Workers {
		wg.Go(func() {
			for name := range work {
				r.mu.Lock()
				ep, ok := r.endpoints[name]
				r.mu.Unlock()
				if !ok {
					continue
				}
				fixed, err := r.syncOne(name, ep)
				mu.Lock()
				if fixed {
					repaired++
				}
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		work <- name
	}
	close(work)
	wg.Wait()
	return repaired, errors.Join(errs...)
}

func (r *Reconciler) syncOne(name string, ep *endpoint) (bool, error) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if !ep.have {
		return false, nil
	}
	st, err := r.dp.Read(ep.status.NetNS)
	if err != nil {
		ep.status.Err = fmt.Errorf("endpoint %s: %w", name, err)
		return false, ep.status.Err
	}
	if st.Equal(ep.status.Desired) {
		ep.status.Err, ep.status.LastSync = nil, r.cfg.Clock.Now()
		return false, nil
	}
	r.log.Warn("table drifted; restoring", "endpoint", name, "netns", ep.status.NetNS, "present", st.Present)
	if _, err := r.dp.Apply(ep.status.NetNS, ep.status.Desired); err != nil {
		ep.status.Err = fmt.Errorf("endpoint %s: restore: %w", name, err)
		return false, ep.status.Err
	}
	ep.status.Repairs++
	ep.status.Err, ep.status.LastSync = nil, r.cfg.Clock.Now()
	return true, nil
}

// Run passes over all endpoints every Resync and after each Trigger, at
// most once per MinInterval, until ctx ends; it returns nil then.
func (r *Reconciler) Run(ctx context.Context) error {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-r.cfg.Clock.After(r.cfg.Resync):
		}
		if wait := r.cfg.MinInterval - r.cfg.Clock.Now().Sub(last); !last.IsZero() && wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-r.cfg.Clock.After(wait):
			}
		}
		last = r.cfg.Clock.Now()
		r.passes.Add(1)
		if n, err := r.Sync(ctx); err != nil {
			r.log.Error("reconcile pass", "repaired", n, "err", err)
		} else if n > 0 {
			r.log.Info("reconcile pass", "repaired", n)
		}
	}
}
