package controller

// NetworkPolicies next to the nanosegments: stored as themselves
// (store.NetworkPolicyRecord), enforced as soon as they are applied with
// Kubernetes NetworkPolicy semantics (policies.Evaluate, compile), named
// by status, explain and evidence, deleted with a record.

import (
	"context"
	"fmt"
	"slices"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/store"
)

// NetworkPolicyResult is one NetworkPolicy that Apply or
// DeleteNetworkPolicy handled.
type NetworkPolicyResult struct {
	Record store.NetworkPolicyRecord `json:"record"`
	// Unchanged is true when the NetworkPolicy in force already had this
	// spec: nothing was recorded, and Record is the record in force.
	Unchanged bool `json:"unchanged,omitempty"`
	// Selects lists the workloads of the inventory its podSelector selects
	// now ("namespace/workload", sorted); empty after a delete.
	Selects []string `json:"selects"`
}

// DeleteResult is what DeleteNetworkPolicy recorded and whether the
// dataplane converged (as ApplyResult).
type DeleteResult struct {
	NetworkPolicyResult
	Converged bool              `json:"converged"`
	Errors    map[string]string `json:"errors,omitempty"`
}

// storeNetworkPolicies records each of nps whose spec differs from the one
// in force, adding a result for each to res; it reports whether any was
// recorded.
func (s *Service) storeNetworkPolicies(nps []networkingv1.NetworkPolicy, at time.Time, who string, res *ApplyResult) (bool, error) {
	inForce, err := s.store.NetworkPolicies()
	if err != nil {
		return false, err
	}
	current := map[string]store.NetworkPolicyRecord{}
	for _, r := range inForce {
		current[r.Key()] = r
	}
	changed := false
	for i := range nps {
		np := nps[i].DeepCopy()
		np.APIVersion, np.Kind = "networking.k8s.io/v1", "NetworkPolicy"
		if cur, ok := current[np.Namespace+"/"+np.Name]; ok && sameNetworkPolicy(cur.Policy, np) {
			res.NetworkPolicies = append(res.NetworkPolicies, NetworkPolicyResult{Record: cur, Unchanged: true, Selects: s.selects(np)})
			continue
		}
		rec, err := s.store.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionApply, At: at, By: who, Policy: np})
		if err != nil {
			return changed, err
		}
		changed = true
		s.log.Info("NetworkPolicy applied; enforced from now on", "networkpolicy", rec.Key(), "revision", rec.Revision, "by", who)
		res.NetworkPolicies = append(res.NetworkPolicies, NetworkPolicyResult{Record: rec, Selects: s.selects(np)})
	}
	return changed, nil
}

// sameNetworkPolicy reports whether a and b have the same labels and spec.
func sameNetworkPolicy(a, b *networkingv1.NetworkPolicy) bool {
	return a != nil && b != nil && equality.Semantic.DeepEqual(a.Spec, b.Spec) && equality.Semantic.DeepEqual(a.Labels, b.Labels)
}

// selects returns the inventory workloads np's podSelector selects.
func (s *Service) selects(np *networkingv1.NetworkPolicy) []string {
	out := []string{}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		return out
	}
	for _, e := range s.inv.Endpoints() {
		if e.Namespace == np.Namespace && sel.Matches(labels.Set(e.Labels)) && !slices.Contains(out, e.Key()) {
			out = append(out, e.Key())
		}
	}
	slices.Sort(out)
	return out
}

// enforceAll hands the policies in force to the node, waits at most
// ConvergeTimeout, and reports whether every endpoint holds its rule set,
// naming those that failed.
func (s *Service) enforceAll(ctx context.Context) (bool, map[string]string) {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ConvergeTimeout)
	defer cancel()
	if err := s.Enforce(wctx); err != nil {
		s.log.Warn("converge after a NetworkPolicy change", "err", err)
		return false, nil
	}
	var errs map[string]string
	for _, e := range s.inv.Endpoints() {
		if err := s.node.Applied(e.Netns).Err; err != nil {
			if errs == nil {
				errs = map[string]string{}
			}
			errs[e.Netns] = err.Error()
		}
	}
	return errs == nil, errs
}

// NetworkPolicies returns the NetworkPolicies in force (their latest
// records), sorted by namespace and name; never nil.
func (s *Service) NetworkPolicies() ([]store.NetworkPolicyRecord, error) {
	recs, err := s.store.NetworkPolicies()
	if recs == nil {
		recs = []store.NetworkPolicyRecord{}
	}
	return recs, err
}

// NetworkPolicyRecords returns every record (applies and deletes) of
// namespace/name, or of every NetworkPolicy for "", ""; never nil.
func (s *Service) NetworkPolicyRecords(namespace, name string) ([]store.NetworkPolicyRecord, error) {
	recs, err := s.store.NetworkPolicyRecords(namespace, name)
	if recs == nil {
		recs = []store.NetworkPolicyRecord{}
	}
	return recs, err
}

// DeleteNetworkPolicy records the deletion of NetworkPolicy namespace/name
// by who, which ends its enforcement, and waits for the dataplane as Apply
// does. A NetworkPolicy not in force is an error wrapping
// store.ErrNotFound.
func (s *Service) DeleteNetworkPolicy(ctx context.Context, namespace, name, who string) (DeleteResult, error) {
	if namespace == "" || name == "" {
		return DeleteResult{}, fmt.Errorf("%w: networkpolicy: want NAMESPACE/NAME, got %q/%q", ErrInvalid, Clip(namespace), Clip(name))
	}
	rec, err := s.store.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionDelete, Namespace: namespace, Name: name, At: time.Now().UTC(), By: who})
	if err != nil {
		return DeleteResult{}, err
	}
	s.log.Info("NetworkPolicy deleted; no longer enforced", "networkpolicy", rec.Key(), "revision", rec.Revision, "by", who)
	s.changes.Publish(TopicPolicies)
	res := DeleteResult{NetworkPolicyResult: NetworkPolicyResult{Record: rec, Selects: []string{}}}
	res.Converged, res.Errors = s.enforceAll(ctx)
	return res, nil
}

// networkPoliciesOf returns "NetworkPolicy namespace/name" for every
// NetworkPolicy of in whose podSelector selects workload's labels in its
// namespace, sorted.
func networkPoliciesOf(in []networkingv1.NetworkPolicy, namespace string, lbls map[string]string) []string {
	var out []string
	for i := range in {
		np := &in[i]
		if np.Namespace != namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err == nil && sel.Matches(labels.Set(lbls)) {
			out = append(out, policies.PolicyRef{Kind: "NetworkPolicy", Namespace: np.Namespace, Name: np.Name}.String())
		}
	}
	slices.Sort(out)
	return out
}

// RuleIDs returns the table of default ids (the id a verdict record
// carries for a connection no rule allowed) with the names of the
// policies each stands for ("NetworkPolicy shop/default-deny"), as the
// node compiled them. An id of policies no longer in force may be missing.
// The rule ids of the ClusterNetworkPolicies in force ("cnp/admin/guard-db/
// ingress-0") are in it too, each naming its rule as explain does
// ("ClusterNetworkPolicy guard-db (Admin, priority 7) rule ingress-0
// \"no-intruder\""). It fails when the store cannot be read.
func (s *Service) RuleIDs() (map[string][]string, error) {
	out := map[string][]string{}
	for id, refs := range s.node.Defaults() {
		names := make([]string, len(refs))
		for i, r := range refs {
			names[i] = r.String()
		}
		out[id] = names
	}
	cnps, err := s.ClusterNetworkPolicies()
	if err != nil {
		return nil, fmt.Errorf("rule ids: %w", err)
	}
	for i := range cnps {
		cp, err := policies.CompileClusterNetworkPolicy(&cnps[i])
		if err != nil {
			continue // stored only after validation; never expected
		}
		for _, rules := range cp.Rules {
			for _, r := range rules {
				ref := policies.ClusterRuleRef{Policy: cp.Ref, Tier: cp.Tier, Priority: cp.Priority, Rule: r.ID, Name: r.Name, Action: r.Action}
				out[cp.RuleID(r.ID)] = []string{ref.String()}
			}
		}
	}
	return out, nil
}
