package controller_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/store"
)

// TestClusterNetworkPolicyRecords: every apply that changes a
// ClusterNetworkPolicy and every delete is a numbered record with the
// caller and the policy as applied; an unchanged apply records nothing
// (and answers the revision in force); a refused document records
// nothing; records grow across a delete.
func TestClusterNetworkPolicyRecords(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	apply := func(doc, who string) controller.ApplyResult {
		t.Helper()
		res, err := f.svc.Apply(ctx, "cnp.yaml", []byte(doc), who)
		if err != nil || len(res.ClusterNetworkPolicies) != 1 {
			t.Fatalf("apply as %s: %+v, %v", who, res, err)
		}
		return res
	}
	if res := apply(guard("Admin", "Deny"), "alice"); res.ClusterNetworkPolicies[0].Revision != 1 || res.ClusterNetworkPolicies[0].Unchanged {
		t.Errorf("first apply = %+v, want revision 1", res.ClusterNetworkPolicies[0])
	}
	if res := apply(guard("Admin", "Deny"), "bob"); res.ClusterNetworkPolicies[0].Revision != 1 || !res.ClusterNetworkPolicies[0].Unchanged {
		t.Errorf("same apply again = %+v, want unchanged at revision 1", res.ClusterNetworkPolicies[0])
	}
	if res := apply(guard("Admin", "Pass"), "bob"); res.ClusterNetworkPolicies[0].Revision != 2 {
		t.Errorf("changed apply = %+v, want revision 2", res.ClusterNetworkPolicies[0])
	}
	// Refused (an unknown action): nothing is recorded.
	if _, err := f.svc.Apply(ctx, "bad.yaml", []byte(guard("Admin", "Maybe")), "mallory"); !errors.Is(err, controller.ErrInvalid) {
		t.Fatalf("invalid ClusterNetworkPolicy: %v, want ErrInvalid", err)
	}
	del, err := f.svc.DeleteClusterNetworkPolicy(ctx, "guard-db", "carol")
	if err != nil || del.Revision != 3 || del.By != "carol" {
		t.Fatalf("delete = %+v, %v; want revision 3 by carol", del, err)
	}
	if res := apply(guard("Baseline", "Deny"), "dave"); res.ClusterNetworkPolicies[0].Revision != 4 {
		t.Errorf("apply after the delete = %+v, want revision 4", res.ClusterNetworkPolicies[0])
	}
	recs, err := f.svc.ClusterNetworkPolicyRecords("guard-db")
	if err != nil || len(recs) != 4 {
		t.Fatalf("records = %+v, %v; want 4", recs, err)
	}
	want := []struct {
		action store.NetworkPolicyAction
		by     string
		rule   string // the rule's action; "" for a delete
	}{{store.ActionApply, "alice", "Deny"}, {store.ActionApply, "bob", "Pass"}, {store.ActionDelete, "carol", ""}, {store.ActionApply, "dave", "Deny"}}
	for i, w := range want {
		r := recs[i]
		if r.Name != "guard-db" || r.Revision != i+1 || r.Action != w.action || r.By != w.by || r.At.IsZero() {
			t.Errorf("record %d = %+v, want %s by %s", i, r, w.action, w.by)
			continue
		}
		if w.rule == "" {
			if r.Policy != nil {
				t.Errorf("record %d: a delete with a policy", i)
			}
			continue
		}
		if r.Policy == nil || string(r.Policy.Spec.Ingress[0].Action) != w.rule || r.Policy.Kind != "ClusterNetworkPolicy" || !strings.HasPrefix(r.Policy.APIVersion, "policy.networking.k8s.io/") {
			t.Errorf("record %d policy = %+v, want rule action %s with apiVersion and kind", i, r.Policy, w.rule)
		}
	}
	if all, _ := f.svc.ClusterNetworkPolicyRecords(""); len(all) != 4 {
		t.Errorf("all records: %d, want 4", len(all))
	}
	if none, err := f.svc.ClusterNetworkPolicyRecords("nope"); err != nil || none == nil || len(none) != 0 {
		t.Errorf("records of one never applied = %#v, %v; want an empty list", none, err)
	}
}
