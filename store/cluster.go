package store

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// ClusterPolicyStore is an optional part of a PolicyStore: the
// ClusterNetworkPolicies in force (policy.networking.k8s.io/v1alpha2,
// cluster-scoped, keyed by name), kept as the objects themselves. A store
// without it cannot hold them, and the controller refuses to apply one.
// Only the current version of each is kept (no numbered records yet).
type ClusterPolicyStore interface {
	// PutClusterNetworkPolicy stores p, replacing the one of its name.
	PutClusterNetworkPolicy(p *cnpv1alpha2.ClusterNetworkPolicy) error
	// DeleteClusterNetworkPolicy removes the one named name; it wraps
	// ErrNotFound when there is none.
	DeleteClusterNetworkPolicy(name string) error
	// ClusterNetworkPolicies returns every one in force, sorted by name.
	ClusterNetworkPolicies() ([]cnpv1alpha2.ClusterNetworkPolicy, error)
}

// ErrNoName is returned for a ClusterNetworkPolicy without a name.
var ErrNoName = errors.New("ClusterNetworkPolicy without a name")

var _ ClusterPolicyStore = (*Mem)(nil)

// PutClusterNetworkPolicy implements ClusterPolicyStore.
func (m *Mem) PutClusterNetworkPolicy(p *cnpv1alpha2.ClusterNetworkPolicy) error {
	if p == nil || p.Name == "" {
		return fmt.Errorf("store ClusterNetworkPolicy: %w", ErrNoName)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cnps == nil {
		m.cnps = map[string]*cnpv1alpha2.ClusterNetworkPolicy{}
	}
	m.cnps[p.Name] = p.DeepCopy()
	return nil
}

// DeleteClusterNetworkPolicy implements ClusterPolicyStore.
func (m *Mem) DeleteClusterNetworkPolicy(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cnps[name]; !ok {
		return fmt.Errorf("delete ClusterNetworkPolicy %s: %w", name, ErrNotFound)
	}
	delete(m.cnps, name)
	return nil
}

// ClusterNetworkPolicies implements ClusterPolicyStore.
func (m *Mem) ClusterNetworkPolicies() ([]cnpv1alpha2.ClusterNetworkPolicy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]cnpv1alpha2.ClusterNetworkPolicy, 0, len(m.cnps))
	for _, p := range m.cnps {
		out = append(out, *p.DeepCopy())
	}
	slices.SortFunc(out, func(a, b cnpv1alpha2.ClusterNetworkPolicy) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}
