package kube

// The cluster's controller.Node: the node agents program the dataplane
// (each from the NanoSegments it watches), so the controller's node only
// reads what they report.

import (
	"context"
	"errors"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// ErrNoProbes is the outcome of a live probe asked of the controller: it
// runs none (and has no right on NanoSegmentProbes); `nanoseg verify` and
// `nanoseg evidence export` run them from the CLI through the node agents
// (client/kube).
var ErrNoProbes = errors.New("the controller runs no live probes: run `kubectl nanoseg verify` (the node agents run its probes)")

// clusterNode implements controller.Node over the node agents' reports.
type clusterNode struct {
	graph Graph
	inv   func() *inventory.Index
	poll  time.Duration
}

var _ controller.Node = (*clusterNode)(nil)

// reports returns every endpoint report by key.
func (n *clusterNode) reports() map[string]EndpointReport {
	out := map[string]EndpointReport{}
	for _, nr := range n.graph.Reports() {
		for _, e := range nr.Endpoints {
			out[e.Key] = e
		}
	}
	return out
}

// Enforce implements controller.Node. The store has written the
// NanoSegments already; the agents program them. It waits, until ctx
// ends, for every reported endpoint that a nanosegment of in selects to
// be reported in sync in that nanosegment's mode; endpoints no agent
// reports are not waited for (nothing would tell).
func (n *clusterNode) Enforce(ctx context.Context, in policies.InForce, _ []string) error {
	poll := n.poll
	if poll == 0 {
		poll = 200 * time.Millisecond
	}
	for {
		if n.converged(in) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

func (n *clusterNode) converged(in policies.InForce) bool {
	// The segments by namespace, and the inventory walked once: a walk
	// of every endpoint per segment made one poll O(segments × pods) with
	// a copy of the inventory per segment (docs/benchmarks.md, "Cluster
	// scale").
	type wanted struct {
		sel  labels.Selector
		mode model.Mode
	}
	byNS := map[string][]wanted{}
	for _, seg := range in.NanoSegments {
		sel, err := metav1.LabelSelectorAsSelector(&seg.Spec.Selector)
		if err != nil {
			continue
		}
		mode := seg.Spec.Mode
		if mode == "" {
			mode = model.ModeObserve
		}
		byNS[seg.Namespace] = append(byNS[seg.Namespace], wanted{sel, mode})
	}
	if len(byNS) == 0 {
		return true
	}
	reps := n.reports()
	for _, e := range n.inv().Endpoints() {
		ws := byNS[e.Namespace]
		if len(ws) == 0 {
			continue
		}
		r, ok := reps[e.Netns]
		if !ok {
			continue
		}
		for _, w := range ws {
			if w.sel.Matches(labels.Set(e.Labels)) && (!r.InSync || r.Mode != w.mode) {
				return false
			}
		}
	}
	return true
}

// Defaults implements controller.Node: the default ids are the agents'.
func (n *clusterNode) Defaults() map[string][]policies.PolicyRef {
	return map[string][]policies.PolicyRef{}
}

// Applied implements controller.Node from the endpoint's last report.
func (n *clusterNode) Applied(netns string) controller.EndpointSync {
	r, ok := n.reports()[netns]
	if !ok {
		return controller.EndpointSync{}
	}
	out := controller.EndpointSync{Known: r.Mode != ""}
	if !r.InSync && r.Error != "" {
		out.Err = errors.New(r.Error)
	}
	return out
}

// Read implements controller.Node from the endpoint's last report (no
// rules: the agents do not send them).
func (n *clusterNode) Read(netns string, _ bool) controller.EndpointSync {
	r, ok := n.reports()[netns]
	if !ok {
		return controller.EndpointSync{ReadErr: errors.New("no node agent reports this endpoint")}
	}
	out := n.Applied(netns)
	out.InSync = r.InSync
	out.Counters = map[string]evidence.Count{}
	for id, c := range r.Counters {
		out.Counters[id] = c
	}
	out.DefaultHits = map[model.Direction]evidence.Count{}
	for dir, c := range r.Defaults {
		out.DefaultHits[dir] = c
	}
	return out
}

// Flush implements controller.Node: the agents push their observations.
func (n *clusterNode) Flush() error { return nil }

// Names implements controller.Node: the DNS names the node agents'
// observers learned, as their batches carry them (transport.Graph.Names),
// when the graph keeps them.
func (n *clusterNode) Names() map[netip.Addr]string {
	if g, ok := n.graph.(interface{ Names() map[netip.Addr]string }); ok {
		return g.Names()
	}
	return map[netip.Addr]string{}
}

// Probe implements controller.Node: the controller runs no probes
// (ErrNoProbes).
func (n *clusterNode) Probe(context.Context, model.Endpoint, string, netip.AddrPort, time.Duration) controller.ProbeOutcome {
	return controller.ProbeOutcome{Outcome: "error", Detail: ErrNoProbes.Error()}
}
