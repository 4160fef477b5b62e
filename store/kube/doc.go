// Package kube is the Kubernetes side of the store seams: where a node
// agent learns the policies in force, and the cluster controller keeps its
// policy store, in the API server instead of a bbolt file.
//
// PolicyWatcher keeps informers on networking.k8s.io/v1 NetworkPolicies
// (typed) and nanoseg.io/v1alpha1 NanoSegments (dynamic, converted to
// policies/v1alpha1 types) and answers InForce, the policies.InForce the
// node compiles. Every object is checked with the policies package's
// validators before it is applied. Bad input never weakens enforcement: an
// object that fails is not applied, and when an object already in force
// turns invalid its last valid version stays in force; both are logged at
// error level, counted in metrics and listed by Rejected.
//
// Store is store.PolicyStore over the API server (the cluster
// controller's): revisions as ControllerRevisions, the state of each
// workload as its NanoSegment in force, the promotion history as records
// in NanoSegmentPromotions' status chained through a head ConfigMap moved
// by compare-and-swap, NetworkPolicies as themselves. docs/architecture.md
// ("The cluster store") gives the design.
//
// Only this package, inventory/kube, internal/kubetest and the Kubernetes
// compositions import client-go (deps_test.go).
package kube
