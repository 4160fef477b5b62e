// Package kube is the Kubernetes side of the store seams: where a node
// agent learns the policies in force from the API server instead of a
// bbolt file.
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
// Only this package, inventory/kube, internal/kubetest and the node agent's
// composition import client-go (deps_test.go).
package kube
