package inventory

import (
	"context"
	"net/netip"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// Snapshot is what an inventory source knows at one moment.
type Snapshot struct {
	Endpoints []model.Endpoint
	// Namespaces maps namespace name → labels (with
	// kubernetes.io/metadata.name, as the Kubernetes API server sets it).
	Namespaces map[string]map[string]string
	// Externals maps addresses outside the inventory to the DNS name they
	// are known by (a lab's externals).
	Externals map[netip.Addr]string
	// Services are the virtual addresses in front of endpoints (Kubernetes
	// Services with their ready backends); nil where there are none.
	Services []model.Service
	// Nodes are the cluster's nodes with their labels and addresses, for
	// the nodes peers of ClusterNetworkPolicies, sorted by name; nil where
	// the source knows none (such a peer then matches nothing).
	Nodes []Node
}

// Node is a cluster node as ClusterNetworkPolicy nodes peers see it: name,
// labels and addresses (policies.Node, so that sources need not import
// the policies package).
type Node = policies.Node

// Source is the endpoint source seam: where a node learns which endpoints
// exist, with their identities (namespace, workload, labels), addresses and
// named ports. Implementations: LabSource (a running lab), LabelsFileSource
// (named netns described by a labels file), NetnsSource (keeps the
// endpoints whose netns exists and watches /run/netns); inventory/kube.Source
// (informers on Pods, Namespaces, Services and EndpointSlices) is another.
type Source interface {
	// List returns what the source knows now.
	List(ctx context.Context) (Snapshot, error)
	// Watch calls notify whenever List may answer differently (calls may
	// be coalesced, and may be spurious), until ctx ends; it returns nil
	// then, or an error when it cannot watch (callers then rely on
	// listing periodically).
	Watch(ctx context.Context, notify func()) error
}

// Merge returns a Source listing the endpoints of every source in order;
// a namespace or external named by several takes the last one's labels.
// Watch watches all of them.
func Merge(sources ...Source) Source { return merged(sources) }

type merged []Source

func (m merged) List(ctx context.Context) (Snapshot, error) {
	out := Snapshot{Namespaces: map[string]map[string]string{}, Externals: map[netip.Addr]string{}}
	for _, s := range m {
		snap, err := s.List(ctx)
		if err != nil {
			return Snapshot{}, err
		}
		out.Endpoints = append(out.Endpoints, snap.Endpoints...)
		out.Services = append(out.Services, snap.Services...)
		out.Nodes = append(out.Nodes, snap.Nodes...)
		for k, v := range snap.Namespaces {
			out.Namespaces[k] = v
		}
		for k, v := range snap.Externals {
			out.Externals[k] = v
		}
	}
	return out, nil
}

func (m merged) Watch(ctx context.Context, notify func()) error {
	errc := make(chan error, len(m))
	for _, s := range m {
		go func() { errc <- s.Watch(ctx, notify) }()
	}
	var first error
	for range m {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}
