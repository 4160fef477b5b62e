package kube

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// clusterNode is the controller.Node of the cluster mode: what the
// NanoSegments' status reports, per endpoint. It programs nothing; its
// probes are NanoSegmentProbes the node agents run (probes.go).
type clusterNode struct {
	sync  map[string]controller.EndpointSync // by netns (endpoint key)
	rules map[string]evidence.EndpointRules  // by netns: the state the status reports, for evidence
	// defaults are the default rule ids the verdicts name (Defaults).
	defaults map[string][]policies.PolicyRef
	prober   *prober
}

var _ controller.Node = (*clusterNode)(nil)

// newClusterNode spreads each NanoSegment's status over its workload's
// endpoints: status.inSync of them (the first by name) are in sync when
// the status is of the NanoSegment's generation; a node's error goes to
// the endpoints not in sync. Endpoints of workloads without a NanoSegment
// are unknown, as on a node that applied nothing.
func newClusterNode(s *snapshot, eps map[string][]model.Endpoint, p *prober) *clusterNode {
	n := &clusterNode{sync: map[string]controller.EndpointSync{}, rules: map[string]evidence.EndpointRules{}, prober: p, defaults: defaultsOf(s)}
	for w, seg := range s.segments {
		list := append([]model.Endpoint(nil), eps[w]...)
		sort.Slice(list, func(i, j int) bool { return list[i].Netns < list[j].Netns })
		current := seg.Status.ObservedGeneration == seg.Generation
		var nodeErr error
		for _, ns := range seg.Status.Nodes {
			if ns.Error != "" {
				nodeErr = errors.New("node " + ns.Node + ": " + ns.Error)
				break
			}
		}
		// The status counts per node, not per endpoint: each node's
		// counters go to the workload's first endpoint, so that a sum
		// over the workload's endpoints (status, counters.json) is
		// the cluster's.
		rules, defaults := map[string]evidence.Count{}, map[model.Direction]evidence.Count{}
		for _, ns := range seg.Status.Nodes {
			for _, h := range ns.RuleHits {
				c := rules[h.RuleID]
				c.Packets += uint64(max(h.Packets, 0))
				c.Bytes += uint64(max(h.Bytes, 0))
				rules[h.RuleID] = c
			}
			for _, h := range ns.DefaultHits {
				c := defaults[model.Direction(h.Direction)]
				c.Packets += uint64(max(h.Packets, 0))
				c.Bytes += uint64(max(h.Bytes, 0))
				defaults[model.Direction(h.Direction)] = c
			}
		}
		for i, e := range list {
			es := controller.EndpointSync{Known: current}
			if i == 0 {
				es.Counters, es.DefaultHits = rules, defaults
			}
			es.InSync = current && i < int(seg.Status.InSync)
			if current && !es.InSync {
				es.Err = nodeErr
			}
			n.sync[e.Netns] = es
			r := evidence.EndpointRules{Netns: e.Netns, Workload: w, Present: es.Known, DesiredMode: string(seg.Spec.Mode), InSync: es.InSync}
			if r.DesiredMode == "" {
				r.DesiredMode = string(model.ModeObserve)
			}
			if es.InSync {
				r.Mode = r.DesiredMode
			}
			if es.Err != nil {
				r.Error = es.Err.Error()
			}
			n.rules[e.Netns] = r
		}
	}
	return n
}

func (n *clusterNode) Enforce(context.Context, policies.InForce, []string) error { return ErrReadOnly }

// Defaults answers from the NanoSegments' aggregated verdicts: each
// rule id with the policies the logging node's agent named for it
// (status.verdicts[].decidedBy), so verdicts and status say what decided
// as against an agent.
func (n *clusterNode) Defaults() map[string][]policies.PolicyRef { return n.defaults }

// defaultsOf collects the rule ids the NanoSegments' verdicts name.
func defaultsOf(s *snapshot) map[string][]policies.PolicyRef {
	out := map[string][]policies.PolicyRef{}
	for _, seg := range s.segments {
		for _, v := range seg.Status.Verdicts {
			if v.RuleID == "" || len(v.DecidedBy) == 0 {
				continue
			}
			refs := make([]policies.PolicyRef, 0, len(v.DecidedBy))
			for _, by := range v.DecidedBy {
				kind, rest, _ := strings.Cut(by, " ")
				ns, name, ok := strings.Cut(rest, "/")
				if !ok {
					ns, name = "", rest
				}
				refs = append(refs, policies.PolicyRef{Kind: kind, Namespace: ns, Name: name})
			}
			out[v.RuleID] = refs
		}
	}
	return out
}

func (n *clusterNode) Applied(netns string) controller.EndpointSync {
	s := n.sync[netns]
	return controller.EndpointSync{Known: s.Known, Err: s.Err}
}

// Read answers from the NanoSegments' status; an endpoint of a workload
// without a NanoSegment is unreported (its pods hold the observe rule
// set the node agents program, but no status in the API server says so).
// With rules, the endpoint's in-sync state as evidence rules without
// entries (the programmed rules and their counters stay on the node
// agents).
func (n *clusterNode) Read(netns string, rules bool) controller.EndpointSync {
	s, ok := n.sync[netns]
	if !ok {
		return controller.EndpointSync{Unreported: true}
	}
	if r, ok := n.rules[netns]; ok && rules {
		s.Rules = &r
	}
	return s
}

func (n *clusterNode) Flush() error { return nil }

func (n *clusterNode) Names() map[netip.Addr]string { return nil }

// Probe asks the node agent of src's node through the API server
// (probes.go).
func (n *clusterNode) Probe(ctx context.Context, src model.Endpoint, proto string, addr netip.AddrPort, timeout time.Duration) controller.ProbeOutcome {
	return n.prober.probe(ctx, src, proto, addr, timeout)
}
