package kube

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// ErrNoProbes: live probes from inside endpoints (verify, evidence
// export's probes) need the node agents, which the CLI does not reach yet.
var ErrNoProbes = errors.New("not available against a cluster yet: live probes run inside endpoints by the node agents, which the CLI does not reach; run it on a node against its agent")

// clusterNode is the controller.Node of the cluster mode: what the
// NanoSegments' status reports, per endpoint. It programs nothing.
type clusterNode struct {
	sync map[string]controller.EndpointSync // by netns (endpoint key)
}

var _ controller.Node = (*clusterNode)(nil)

// newClusterNode spreads each NanoSegment's status over its workload's
// endpoints: status.inSync of them (the first by name) are in sync when
// the status is of the NanoSegment's generation; a node's error goes to
// the endpoints not in sync. Endpoints of workloads without a NanoSegment
// are unknown, as on a node that applied nothing.
func newClusterNode(s *snapshot, eps map[string][]model.Endpoint) *clusterNode {
	n := &clusterNode{sync: map[string]controller.EndpointSync{}}
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
		for i, e := range list {
			es := controller.EndpointSync{Known: current}
			es.InSync = current && i < int(seg.Status.InSync)
			if current && !es.InSync {
				es.Err = nodeErr
			}
			n.sync[e.Netns] = es
		}
	}
	return n
}

func (n *clusterNode) Enforce(context.Context, policies.InForce, []string) error { return ErrReadOnly }

func (n *clusterNode) Defaults() map[string][]policies.PolicyRef { return nil }

func (n *clusterNode) Applied(netns string) controller.EndpointSync {
	s := n.sync[netns]
	return controller.EndpointSync{Known: s.Known, Err: s.Err}
}

// Read answers from the NanoSegments' status; an endpoint of a workload
// without a NanoSegment is unreported (its pods hold the observe rule
// set the node agents program, but no status in the API server says so).
func (n *clusterNode) Read(netns string, _ bool) controller.EndpointSync {
	s, ok := n.sync[netns]
	if !ok {
		return controller.EndpointSync{Unreported: true}
	}
	return s
}

func (n *clusterNode) Flush() error { return nil }

func (n *clusterNode) Names() map[netip.Addr]string { return nil }

func (n *clusterNode) Probe(context.Context, model.Endpoint, string, netip.AddrPort, time.Duration) controller.ProbeOutcome {
	return controller.ProbeOutcome{Outcome: "error", Detail: ErrNoProbes.Error()}
}
