package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

// ClusterNetworkPolicyResult is one ClusterNetworkPolicy of an applied
// document or a delete: its name, tier and priority, the revision of its
// record (store.ClusterNetworkPolicyRecord: the one written, or for an
// unchanged one the record in force), and whether it was already in
// force unchanged (nothing recorded then).
type ClusterNetworkPolicyResult struct {
	Name      string `json:"name"`
	Tier      string `json:"tier"`
	Priority  int32  `json:"priority"`
	Revision  int    `json:"revision"`
	Unchanged bool   `json:"unchanged,omitempty"`
}

// storeClusterNetworkPolicies records each of the valid cnps whose spec
// differs from the one in force in cs as an apply by who at at, and
// reports whether any was recorded.
func (s *Service) storeClusterNetworkPolicies(cs store.ClusterPolicyStore, cnps []cnpv1alpha2.ClusterNetworkPolicy, at time.Time, who string, res *ApplyResult) (bool, error) {
	if len(cnps) == 0 {
		return false, nil
	}
	recs, err := cs.ClusterNetworkPolicyRecords("")
	if err != nil {
		return false, err
	}
	byName := map[string]store.ClusterNetworkPolicyRecord{}
	for _, r := range recs {
		byName[r.Name] = r // the latest wins: sorted by revision
	}
	changed := false
	for i := range cnps {
		p := cnps[i].DeepCopy()
		p.APIVersion, p.Kind = cnpv1alpha2.SchemeGroupVersion.String(), cnpv1alpha2.Kind
		r := ClusterNetworkPolicyResult{Name: p.Name, Tier: string(p.Spec.Tier), Priority: p.Spec.Priority}
		if c, ok := byName[p.Name]; ok && c.Action == store.ActionApply && c.Policy != nil && equality.Semantic.DeepEqual(c.Policy.Spec, p.Spec) {
			r.Unchanged, r.Revision = true, c.Revision
			res.ClusterNetworkPolicies = append(res.ClusterNetworkPolicies, r)
			continue
		}
		rec, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, At: at, By: who, Policy: p})
		if err != nil {
			return changed, fmt.Errorf("store ClusterNetworkPolicy %s: %w", p.Name, err)
		}
		r.Revision = rec.Revision
		changed = true
		s.log.Info("ClusterNetworkPolicy applied; enforced from now on", "clusternetworkpolicy", p.Name, "revision", rec.Revision, "tier", p.Spec.Tier, "priority", p.Spec.Priority, "by", who)
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

// ClusterNetworkPolicyRecords returns every record (applies and deletes)
// of ClusterNetworkPolicy name, or of every one for "", sorted by name and
// revision; never nil; none for a store that holds none.
func (s *Service) ClusterNetworkPolicyRecords(name string) ([]store.ClusterNetworkPolicyRecord, error) {
	out := []store.ClusterNetworkPolicyRecord{}
	cs, ok := s.store.(store.ClusterPolicyStore)
	if !ok {
		return out, nil
	}
	recs, err := cs.ClusterNetworkPolicyRecords(name)
	for i := range recs {
		if p := recs[i].Policy; p != nil {
			p.APIVersion, p.Kind = cnpv1alpha2.SchemeGroupVersion.String(), cnpv1alpha2.Kind
		}
	}
	return append(out, recs...), err
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

// DeleteClusterNetworkPolicy records the deletion of ClusterNetworkPolicy
// name by who (a store.ClusterNetworkPolicyRecord), which ends its
// enforcement at once, logs it, and waits for the dataplane as Apply
// does. One not in force is an error wrapping
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
		return ClusterDeleteResult{}, fmt.Errorf("delete ClusterNetworkPolicy %s: %w: none of that name is in force", name, store.ErrNotFound)
	}
	rec, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionDelete, Name: name, At: time.Now().UTC(), By: who})
	if err != nil {
		return ClusterDeleteResult{}, err
	}
	p := cur[i].DeepCopy()
	p.APIVersion, p.Kind = cnpv1alpha2.SchemeGroupVersion.String(), cnpv1alpha2.Kind
	s.log.Info("ClusterNetworkPolicy deleted; no longer enforced", "clusternetworkpolicy", name, "revision", rec.Revision, "tier", p.Spec.Tier, "priority", p.Spec.Priority, "by", who)
	s.changes.Publish(TopicPolicies)
	res := ClusterDeleteResult{ClusterNetworkPolicyResult: ClusterNetworkPolicyResult{Name: name, Tier: string(p.Spec.Tier), Priority: p.Spec.Priority, Revision: rec.Revision},
		Policy: p, By: who, At: rec.At}
	res.Converged, res.Errors = s.enforceAll(ctx)
	return res, nil
}

// clusterPoliciesSection returns the ClusterNetworkPolicies in force as
// evidence lists them (each with the record that put it in force), and
// every record of them, sorted by name and revision. The ones in force
// come in the order evaluation consults them (Admin tier, then Baseline,
// each by priority and name), each rule with the sums of counters (the
// window's per-endpoint counters in scope) under its dataplane rule id
// (policies.ClusterPolicy.RuleID).
func (s *Service) clusterPoliciesSection(counters []evidence.RuleCounter) ([]evidence.ClusterPolicy, []evidence.ClusterNetworkPolicyRecord, error) {
	cnps, err := s.ClusterNetworkPolicies()
	if err != nil {
		return nil, nil, err
	}
	recs, err := s.ClusterNetworkPolicyRecords("")
	if err != nil {
		return nil, nil, err
	}
	erecs := make([]evidence.ClusterNetworkPolicyRecord, 0, len(recs))
	latest := map[string]store.ClusterNetworkPolicyRecord{}
	for _, r := range recs {
		er := evidence.ClusterNetworkPolicyRecord{Name: r.Name, Revision: r.Revision, Action: string(r.Action), At: r.At.UTC(), By: r.By}
		if r.Policy != nil {
			if raw, err := json.Marshal(r.Policy); err == nil {
				er.Policy = raw
			}
		}
		erecs = append(erecs, er)
		latest[r.Name] = r
	}
	byName := map[string]*cnpv1alpha2.ClusterNetworkPolicy{}
	var cps []*policies.ClusterPolicy
	for i := range cnps {
		cp, err := policies.CompileClusterNetworkPolicy(&cnps[i])
		if err != nil {
			return nil, nil, fmt.Errorf("ClusterNetworkPolicy %s in force: %w", cnps[i].Name, err)
		}
		byName[cnps[i].Name] = &cnps[i]
		cps = append(cps, cp)
	}
	type sum struct {
		n              int
		wp, wb, tp, tb uint64
	}
	sums := map[string]*sum{}
	for _, c := range counters {
		x := sums[c.RuleID]
		if x == nil {
			x = &sum{}
			sums[c.RuleID] = x
		}
		x.n++
		x.wp, x.wb, x.tp, x.tb = x.wp+c.WindowPackets, x.wb+c.WindowBytes, x.tp+c.TotalPackets, x.tb+c.TotalBytes
	}
	out := []evidence.ClusterPolicy{}
	for _, cp := range (policies.PolicySet{}).WithClusterPolicies(cps).ClusterPolicies() {
		ec := evidence.ClusterPolicy{Name: cp.Ref.Name, Tier: string(cp.Tier), Priority: cp.Priority, Rules: []evidence.ClusterRule{}}
		if r, ok := latest[cp.Ref.Name]; ok && r.Action == store.ActionApply {
			ec.Revision, ec.Since, ec.By = r.Revision, r.At.UTC(), r.By
		}
		if raw, err := json.Marshal(byName[cp.Ref.Name]); err == nil {
			ec.Policy = raw
		}
		for _, dir := range []model.Direction{model.Ingress, model.Egress} {
			for _, r := range cp.Rules[dir.Index()] {
				er := evidence.ClusterRule{ID: r.ID, Name: r.Name, Direction: dir, Action: string(r.Action), RuleID: cp.RuleID(r.ID)}
				if x := sums[er.RuleID]; x != nil {
					er.Endpoints, er.WindowPackets, er.WindowBytes, er.TotalPackets, er.TotalBytes = x.n, x.wp, x.wb, x.tp, x.tb
				}
				ec.Rules = append(ec.Rules, er)
			}
		}
		out = append(out, ec)
	}
	return out, erecs, nil
}
