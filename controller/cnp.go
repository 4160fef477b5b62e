package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

// ClusterNetworkPolicyResult is one ClusterNetworkPolicy of an applied
// document: its name, tier and priority, and whether it was already in
// force unchanged.
type ClusterNetworkPolicyResult struct {
	Name      string `json:"name"`
	Tier      string `json:"tier"`
	Priority  int32  `json:"priority"`
	Unchanged bool   `json:"unchanged,omitempty"`
}

// storeClusterNetworkPolicies stores the valid cnps in cs (each replacing
// the one of its name) and reports whether any changed.
func (s *Service) storeClusterNetworkPolicies(cs store.ClusterPolicyStore, cnps []cnpv1alpha2.ClusterNetworkPolicy, who string, res *ApplyResult) (bool, error) {
	if len(cnps) == 0 {
		return false, nil
	}
	cur, err := cs.ClusterNetworkPolicies()
	if err != nil {
		return false, err
	}
	byName := map[string]cnpv1alpha2.ClusterNetworkPolicy{}
	for _, c := range cur {
		byName[c.Name] = c
	}
	changed := false
	for i := range cnps {
		p := cnps[i].DeepCopy()
		p.APIVersion, p.Kind = cnpv1alpha2.SchemeGroupVersion.String(), cnpv1alpha2.Kind
		r := ClusterNetworkPolicyResult{Name: p.Name, Tier: string(p.Spec.Tier), Priority: p.Spec.Priority}
		if c, ok := byName[p.Name]; ok && equality.Semantic.DeepEqual(c.Spec, p.Spec) {
			r.Unchanged = true
			res.ClusterNetworkPolicies = append(res.ClusterNetworkPolicies, r)
			continue
		}
		if err := cs.PutClusterNetworkPolicy(p); err != nil {
			return changed, fmt.Errorf("store ClusterNetworkPolicy %s: %w", p.Name, err)
		}
		changed = true
		s.log.Info("ClusterNetworkPolicy applied; enforced from now on", "clusternetworkpolicy", p.Name, "tier", p.Spec.Tier, "priority", p.Spec.Priority, "by", who)
		res.ClusterNetworkPolicies = append(res.ClusterNetworkPolicies, r)
	}
	return changed, nil
}

// ClusterNetworkPolicies returns the ClusterNetworkPolicies in force,
// sorted by name (never nil); none for a store that holds none.
func (s *Service) ClusterNetworkPolicies() ([]cnpv1alpha2.ClusterNetworkPolicy, error) {
	out := []cnpv1alpha2.ClusterNetworkPolicy{}
	cs, ok := s.store.(store.ClusterPolicyStore)
	if !ok {
		return out, nil
	}
	in, err := cs.ClusterNetworkPolicies()
	for i := range in {
		in[i].APIVersion, in[i].Kind = cnpv1alpha2.SchemeGroupVersion.String(), cnpv1alpha2.Kind
	}
	return append(out, in...), err
}

// ClusterDeleteResult is what DeleteClusterNetworkPolicy removed and
// whether the dataplane converged (as ApplyResult).
type ClusterDeleteResult struct {
	ClusterNetworkPolicyResult
	// Policy is the ClusterNetworkPolicy as it was in force until deleted.
	Policy    *cnpv1alpha2.ClusterNetworkPolicy `json:"policy"`
	By        string                            `json:"by"`
	At        time.Time                         `json:"at"`
	Converged bool                              `json:"converged"`
	Errors    map[string]string                 `json:"errors,omitempty"`
}

// DeleteClusterNetworkPolicy removes ClusterNetworkPolicy name from the
// store, which ends its enforcement at once, logs who did it, and waits
// for the dataplane as Apply does. One not in force is an error wrapping
// store.ErrNotFound; a store without ClusterPolicyStore refuses
// (ErrInvalid).
func (s *Service) DeleteClusterNetworkPolicy(ctx context.Context, name, who string) (ClusterDeleteResult, error) {
	if name == "" {
		return ClusterDeleteResult{}, fmt.Errorf("%w: name: required (the ClusterNetworkPolicy's metadata.name)", ErrInvalid)
	}
	cs, ok := s.store.(store.ClusterPolicyStore)
	if !ok {
		return ClusterDeleteResult{}, fmt.Errorf("%w: ClusterNetworkPolicy %s: this store does not hold ClusterNetworkPolicies", ErrInvalid, name)
	}
	cur, err := cs.ClusterNetworkPolicies()
	if err != nil {
		return ClusterDeleteResult{}, err
	}
	i := slices.IndexFunc(cur, func(c cnpv1alpha2.ClusterNetworkPolicy) bool { return c.Name == name })
	if i < 0 {
		return ClusterDeleteResult{}, fmt.Errorf("delete ClusterNetworkPolicy %s: not in force: %w", name, store.ErrNotFound)
	}
	if err := cs.DeleteClusterNetworkPolicy(name); err != nil {
		return ClusterDeleteResult{}, err
	}
	p := cur[i].DeepCopy()
	p.APIVersion, p.Kind = cnpv1alpha2.SchemeGroupVersion.String(), cnpv1alpha2.Kind
	s.log.Info("ClusterNetworkPolicy deleted; no longer enforced", "clusternetworkpolicy", name, "tier", p.Spec.Tier, "priority", p.Spec.Priority, "by", who)
	res := ClusterDeleteResult{ClusterNetworkPolicyResult: ClusterNetworkPolicyResult{Name: name, Tier: string(p.Spec.Tier), Priority: p.Spec.Priority},
		Policy: p, By: who, At: time.Now().UTC()}
	res.Converged, res.Errors = s.enforceAll(ctx)
	return res, nil
}
