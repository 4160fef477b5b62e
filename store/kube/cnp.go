package kube

import (
	"cmp"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

var _ store.ClusterPolicyStore = (*Store)(nil)

// ClusterNetworkPolicies implements store.ClusterPolicyStore over the API
// server: every policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy the
// cluster holds that passes CheckClusterNetworkPolicy (as the node agents
// check it), sorted by name, with apiVersion and kind set. A cluster that
// does not serve the kind (no CRD: NotFound) has none. An invalid one is
// left out and logged once per resourceVersion: the node agents do not
// apply it either (they keep an earlier valid version in force, which
// this read, holding only the current version, cannot know). Any other
// error of the list (RBAC: list clusternetworkpolicies) is returned.
func (s *Store) ClusterNetworkPolicies() ([]cnpv1alpha2.ClusterNetworkPolicy, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	list, err := s.dyn.Resource(ClusterNetworkPolicyResource).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return []cnpv1alpha2.ClusterNetworkPolicy{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list ClusterNetworkPolicies: %w", err)
	}
	out := make([]cnpv1alpha2.ClusterNetworkPolicy, 0, len(list.Items))
	for i := range list.Items {
		u := &list.Items[i]
		p, err := ClusterNetworkPolicyFromUnstructured(u)
		if err == nil {
			err = CheckClusterNetworkPolicy(p)
		}
		if err != nil {
			s.warnInvalidCNP(u, err)
			continue
		}
		p.APIVersion, p.Kind = cnpv1alpha2.APIVersion, cnpv1alpha2.Kind
		p.ManagedFields = nil
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b cnpv1alpha2.ClusterNetworkPolicy) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// warnInvalidCNP logs an invalid ClusterNetworkPolicy once per
// resourceVersion.
func (s *storeCore) warnInvalidCNP(u *unstructured.Unstructured, err error) {
	key := u.GetName() + "@" + u.GetResourceVersion()
	s.mu.Lock()
	if s.cnpWarned == nil {
		s.cnpWarned = map[string]bool{}
	}
	seen := s.cnpWarned[key]
	s.cnpWarned[key] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn("ClusterNetworkPolicy invalid: left out of the policies in force", "name", u.GetName(), "resourceVersion", u.GetResourceVersion(), "error", err)
	}
}

// PutClusterNetworkPolicy implements store.ClusterPolicyStore: it creates
// or replaces (spec, labels, annotations) the ClusterNetworkPolicy of p's
// name through the API, with this Store's identity (RBAC: create and
// update clusternetworkpolicies, which nanoseg's own roles do not grant:
// a cluster administrator applies them with kubectl). p is validated
// first; an invalid one wraps policies.ErrInvalid and nothing is written.
func (s *Store) PutClusterNetworkPolicy(p *cnpv1alpha2.ClusterNetworkPolicy) error {
	_, err := s.putCNP(p)
	return err
}

// putCNP is PutClusterNetworkPolicy; it returns the metadata.generation
// of the object written.
func (s *Store) putCNP(p *cnpv1alpha2.ClusterNetworkPolicy) (int64, error) {
	if p == nil || p.Name == "" {
		return 0, fmt.Errorf("store ClusterNetworkPolicy: %w", store.ErrNoName)
	}
	if err := CheckClusterNetworkPolicy(p); err != nil {
		return 0, fmt.Errorf("store ClusterNetworkPolicy %s: %w", p.Name, err)
	}
	want := &cnpv1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Labels: p.Labels, Annotations: p.Annotations}, Spec: *p.Spec.DeepCopy()}
	want.APIVersion, want.Kind = cnpv1alpha2.APIVersion, cnpv1alpha2.Kind
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(want)
	if err != nil {
		return 0, fmt.Errorf("store ClusterNetworkPolicy %s: %w", p.Name, err)
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	ctx, cancel := s.ctx()
	defer cancel()
	api := s.dyn.Resource(ClusterNetworkPolicyResource)
	for attempt := 1; ; attempt++ {
		have, err := api.Get(ctx, p.Name, metav1.GetOptions{})
		var done *unstructured.Unstructured
		switch {
		case apierrors.IsNotFound(err):
			done, err = api.Create(ctx, u, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) && attempt < 10 {
				continue
			}
		case err == nil:
			u.SetResourceVersion(have.GetResourceVersion())
			done, err = api.Update(ctx, u, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) && attempt < 10 {
				continue
			}
		}
		if err != nil {
			return 0, fmt.Errorf("store ClusterNetworkPolicy %s: %w", p.Name, err)
		}
		return done.GetGeneration(), nil
	}
}

// DeleteClusterNetworkPolicy implements store.ClusterPolicyStore: it
// deletes the ClusterNetworkPolicy name through the API (store.ErrNotFound
// when there is none, or when the kind is not served).
func (s *Store) DeleteClusterNetworkPolicy(name string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	err := s.dyn.Resource(ClusterNetworkPolicyResource).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("delete ClusterNetworkPolicy %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete ClusterNetworkPolicy %s: %w", name, err)
	}
	return nil
}

// AddClusterNetworkPolicyRecord implements store.ClusterPolicyStore over
// the API itself: an apply is PutClusterNetworkPolicy, a delete
// DeleteClusterNetworkPolicy. Deviation from the append-only records of
// the standalone store: the API keeps only the current version and not
// who wrote it, so the returned record's Revision is the object's
// metadata.generation (for a delete, the deleted one's plus one), and
// ClusterNetworkPolicyRecords synthesizes one record per policy in force
// (see there). The audit trail of changes in a cluster is the API
// server's audit log.
func (s *Store) AddClusterNetworkPolicyRecord(rec store.ClusterNetworkPolicyRecord) (store.ClusterNetworkPolicyRecord, error) {
	rec, err := store.PrepareClusterNetworkPolicyRecord(rec)
	if err != nil {
		return store.ClusterNetworkPolicyRecord{}, err
	}
	if rec.Action == store.ActionApply {
		gen, err := s.putCNP(rec.Policy)
		if err != nil {
			return store.ClusterNetworkPolicyRecord{}, err
		}
		rec.Revision = int(gen)
		return rec, nil
	}
	ctx, cancel := s.ctx()
	have, err := s.dyn.Resource(ClusterNetworkPolicyResource).Get(ctx, rec.Name, metav1.GetOptions{})
	cancel()
	if apierrors.IsNotFound(err) {
		return store.ClusterNetworkPolicyRecord{}, fmt.Errorf("delete ClusterNetworkPolicy %s: %w", rec.Name, store.ErrNotFound)
	}
	if err != nil {
		return store.ClusterNetworkPolicyRecord{}, fmt.Errorf("delete ClusterNetworkPolicy %s: %w", rec.Name, err)
	}
	if err := s.DeleteClusterNetworkPolicy(rec.Name); err != nil {
		return store.ClusterNetworkPolicyRecord{}, err
	}
	rec.Revision = int(have.GetGeneration()) + 1
	return rec, nil
}

// ClusterNetworkPolicyRecords implements store.ClusterPolicyStore with the
// deviation AddClusterNetworkPolicyRecord describes: one apply record per
// ClusterNetworkPolicy in force (of name, or all for ""), Revision its
// metadata.generation, At its creationTimestamp, By "" (the API server
// does not keep who); no deletions.
func (s *Store) ClusterNetworkPolicyRecords(name string) ([]store.ClusterNetworkPolicyRecord, error) {
	cnps, err := s.ClusterNetworkPolicies()
	if err != nil {
		return nil, err
	}
	return store.SynthesizeClusterNetworkPolicyRecords(cnps, name), nil
}
