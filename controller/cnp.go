package controller

import (
	"fmt"

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
