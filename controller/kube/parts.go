package kube

import (
	"context"
	"time"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
	storekube "github.com/nanoseg/nanoseg/store/kube"
)

// Store is the cluster policy store (store/kube.Store): store.PolicyStore
// over the API server (revisions as ControllerRevisions, the NanoSegments
// in force, the hash-chained records in the promotions' status with the
// head ConfigMap as the commit point).
type Store interface {
	store.PolicyStore
	// ForRequest returns a view whose Record writes the record into the
	// status of NanoSegmentPromotion namespace/name (phase Succeeded)
	// after the head's compare-and-swap, then writes the NanoSegment.
	ForRequest(namespace, name string) store.PolicyStore
	// Repair finishes what a leader that died mid-promotion left: a head
	// record missing from its promotion object is copied there, and the
	// NanoSegment of each workload's latest record re-applied.
	Repair(ctx context.Context) error
}

// Graph is the merged observation graph of every node agent
// (transport.Graph): what they observed, and what they last said of
// their endpoints.
type Graph interface {
	store.ObservationReader
	// Reports returns each node's last endpoint report, sorted by node.
	Reports() []NodeReport
}

// NodeReport is what one node agent last said of its endpoints.
type NodeReport struct {
	Node      string
	Updated   time.Time
	Endpoints []EndpointReport
}

// EndpointReport is one endpoint as its node agent reports it
// (transport.EndpointState).
type EndpointReport struct {
	// Key is "<namespace>_<pod>", the endpoint's netns name in the
	// Kubernetes inventory.
	Key string
	// Workload is "namespace/workload".
	Workload string
	// Mode is the mode of the rule set applied ("" before the first).
	Mode model.Mode
	// Revision is the NanoSegment revision applied (0: unknown).
	Revision int
	// InSync: the kernel holds the endpoint's desired rule set.
	InSync bool
	// Error says why it is not in sync.
	Error string
	// Counters are the kernel's per-rule counters, by rule id, and
	// Defaults the default verdict's, by direction (nil: not read).
	Counters map[string]evidence.Count
	Defaults map[model.Direction]evidence.Count
}

// Inventory is the cluster-wide inventory source (inventory/kube.Source
// with no node name: every pod a peer; with Config.Nodes, so that the
// nodes peers of ClusterNetworkPolicies match the Nodes' addresses).
type Inventory interface {
	inventory.Source
	// Run starts the informers and runs until ctx ends.
	Run(ctx context.Context) error
	// HasSynced reports whether every informer listed once.
	HasSynced() bool
}

// Parts are what the controller composes.
type Parts struct {
	Store     Store
	Graph     Graph
	Inventory Inventory
	// Resync asks every node agent for its whole state (the ingest
	// receiver forgets their sequences: their next batch gets 409 and
	// they send everything); nil: nothing to ask.
	Resync func()
	// Ingest, when set, is served on Config.Ingest with IngestTLS
	// (the transport receiver); its readiness is the leadership
	// (Controller.Leading).
	Ingest ServeFunc
}

// ServeFunc serves something until ctx ends; it returns nil then.
type ServeFunc func(ctx context.Context) error

// StoreOf adapts the cluster policy store to Store (its ForRequest
// returns the concrete view).
func StoreOf(s *storekube.Store) Store { return kubeStore{s} }

type kubeStore struct{ *storekube.Store }

// The controller's service sees the ClusterNetworkPolicies through the
// store (controller.Service.InForce asks a store.ClusterPolicyStore).
var _ store.ClusterPolicyStore = kubeStore{}

func (k kubeStore) ForRequest(namespace, name string) store.PolicyStore {
	return k.Store.ForRequest(namespace, name)
}
