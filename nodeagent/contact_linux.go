//go:build linux

package nodeagent

// API server contact: whether the API server answers, made visible.
//
// Design: the informers retry a failed list or watch without a word, and
// an open watch that receives nothing looks the same whether the cluster
// is quiet or the API server gone. So the agent asks the API server
// itself (Parts.Ping: GET /readyz, which every identity may read) every
// APIServerCheckInterval and keeps the answer: the gauges
// nanoseg_node_apiserver_reachable and
// nanoseg_node_apiserver_last_contact_timestamp_seconds, one log line
// when contact is lost and one when it is back, and a line in /readyz.
//
// Enforcement does not depend on it: the tables keep what the policies
// last said (never flushed, never opened), and the informers catch up on
// reconnect. Readiness does not fail on a lost contact once the policies
// are enforced. The node is protected as the cluster last said; a
// DaemonSet pod is behind no Service, so readiness only gates rollouts
// and counts available pods; an outage of the API server would turn every
// agent of the cluster unready at once and, when it is back, make every
// kubelet write its agent's status twice against an API server that is
// recovering, for nothing the agent could do better; and a rollout cannot
// proceed without the API server anyway. A new agent that never reaches
// the API server is never ready (its caches never sync), so a broken
// rollout still stops. Alert on the gauges instead (for instance
// nanoseg_node_apiserver_reachable == 0 for 5 minutes).

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanoseg/nanoseg/internal/loop"
)

// contactState is what the agent knows of its contact with the API
// server; guarded by Agent.mu.
type contactState struct {
	checked   bool      // at least one check finished
	reachable bool      // the last check succeeded
	since     time.Time // when the current state began (the first failed or first successful check)
	last      time.Time // the last successful check
	err       error     // the last check's error
}

func newContactMetrics() (reachable, last prometheus.Gauge) {
	reachable = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node", Name: "apiserver_reachable",
		Help: "1 when the last check of the API server (GET /readyz, every apiServerCheckInterval) succeeded, 0 when it failed; enforcement stays as it is either way."})
	last = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node", Name: "apiserver_last_contact_timestamp_seconds",
		Help: "When a check of the API server last succeeded (Unix time; 0 before the first)."})
	return reachable, last
}

// checkContact asks Parts.Ping every APIServerCheckInterval, and once at
// start, until ctx ends.
func (a *Agent) checkContact(ctx context.Context) {
	if a.parts.Ping == nil {
		return
	}
	a.pingOnce(ctx)
	loop.Every(ctx, a.cfg.APIServerCheckInterval, func() { a.pingOnce(ctx) })
}

// pingOnce makes one check and records its outcome, logging a change.
func (a *Agent) pingOnce(ctx context.Context) {
	timeout := min(a.cfg.APIServerCheckInterval, 5*time.Second)
	pctx, cancel := context.WithTimeout(ctx, timeout)
	err := a.parts.Ping(pctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	a.mu.Lock()
	prev := a.contact
	c := prev
	c.checked, c.err = true, err
	if err == nil {
		c.last = now
	}
	if !prev.checked || prev.reachable != (err == nil) {
		c.reachable, c.since = err == nil, now
	}
	a.contact = c
	a.mu.Unlock()
	if err == nil {
		a.mReachable.Set(1)
		a.mLastContact.Set(float64(now.UnixNano()) / 1e9)
	} else {
		a.mReachable.Set(0)
	}
	switch {
	case err != nil && (!prev.checked || prev.reachable):
		args := []any{"err", err}
		if !prev.last.IsZero() {
			args = append(args, "lastContact", prev.last.UTC().Format(time.RFC3339))
		}
		if a.enforced.Load() {
			a.log.Warn("API server unreachable: enforcement stays as it is (nothing flushed or opened); changes made meanwhile are applied once it is back", args...)
		} else {
			a.log.Warn("API server unreachable", args...)
		}
	case err == nil && prev.checked && !prev.reachable:
		a.log.Info("API server reachable again; the informers catch up on what changed meanwhile", "unreachableFor", now.Sub(prev.since).Round(time.Millisecond))
	}
}

// APIServerContact reports whether the last check of the API server
// succeeded, when the last successful one was (zero before any), and
// whether any check has finished (false also when Parts.Ping is nil).
func (a *Agent) APIServerContact() (reachable bool, last time.Time, checked bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.contact.reachable, a.contact.last, a.contact.checked
}

// contactDetail returns the /readyz line about a lost API server contact,
// "" while it answers (or nothing was checked yet).
func (a *Agent) contactDetail() string {
	a.mu.Lock()
	c := a.contact
	a.mu.Unlock()
	if !c.checked || c.reachable {
		return ""
	}
	last := "never"
	if !c.last.IsZero() {
		last = c.last.UTC().Format(time.RFC3339)
	}
	what := "enforcing the policies it last gave, changes made meanwhile apply once it is back"
	if !a.enforced.Load() {
		what = "nothing is enforced or changed until the caches sync"
	}
	return fmt.Sprintf("warning: API server unreachable since %s (%s; last contact %s): %v; %s\n",
		c.since.UTC().Format(time.RFC3339), time.Since(c.since).Round(time.Second), last, c.err, what)
}
