package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
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

// TestEvidenceListsClusterNetworkPolicyRecords: the bundle lists every
// record of the ClusterNetworkPolicies (bundle.json, a CSV, the report)
// and names, for each one in force, the record that put it there; the
// signed bundle still verifies.
func TestEvidenceListsClusterNetworkPolicyRecords(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.applyCNP(t, guard("Admin", "Deny")) // by alice
	if _, err := f.svc.Apply(ctx, "cnp.yaml", []byte(strings.Replace(guard("Admin", "Deny"), "priority: 7", "priority: 8", 1)), "bob"); err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(guard("Baseline", "Deny"), "name: guard-db", "name: gone", 1)
	if _, err := f.svc.Apply(ctx, "gone.yaml", []byte(other), "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.DeleteClusterNetworkPolicy(ctx, "gone", "dave"); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Export(ctx, controller.ExportRequest{NoPDF: true, NoProbes: true}, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	var b evidence.Bundle
	if err := json.Unmarshal(res.Files["bundle.json"], &b); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range b.Policies.ClusterNetworkPolicyRecords {
		got = append(got, fmt.Sprintf("%s/%d/%s/%s/%t", r.Name, r.Revision, r.Action, r.By, len(r.Policy) > 0))
	}
	if want := "gone/1/apply/carol/true gone/2/delete/dave/false guard-db/1/apply/alice/true guard-db/2/apply/bob/true"; strings.Join(got, " ") != want {
		t.Errorf("records in the bundle: %s, want %s", strings.Join(got, " "), want)
	}
	cnps := b.Policies.ClusterNetworkPolicies
	if len(cnps) != 1 || cnps[0].Name != "guard-db" || cnps[0].Revision != 2 || cnps[0].By != "bob" || cnps[0].Since.IsZero() || cnps[0].Priority != 8 {
		t.Errorf("in force in the bundle: %+v, want guard-db revision 2 by bob", cnps)
	}
	csv := string(res.Files["cluster-network-policy-records.csv"])
	if !strings.HasPrefix(csv, "policy,revision,action,at_utc,by\ngone,1,apply,") || !strings.Contains(csv, ",dave\n") || strings.Count(csv, "\n") != 5 {
		t.Errorf("cluster-network-policy-records.csv:\n%s", csv)
	}
	if html := string(res.Files["report.html"]); !strings.Contains(html, "ClusterNetworkPolicy records") || !strings.Contains(html, "<td>dave</td>") {
		t.Errorf("report.html lacks the records")
	}
	dir := t.TempDir()
	for name, raw := range res.Files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := evidence.Verify(dir, evidence.VerifyOptions{}); err != nil {
		t.Errorf("evidence verify: %v", err)
	}
}

// TestApplyRefusesNamespacedClusterNetworkPolicy: the standalone agent
// refuses a ClusterNetworkPolicy document that sets metadata.namespace
// (the API server would drop it silently; the writer may think the policy
// namespaced), naming the field, and stores nothing.
func TestApplyRefusesNamespacedClusterNetworkPolicy(t *testing.T) {
	f := newFixture(t)
	doc := strings.Replace(guard("Admin", "Deny"), "metadata: {name: guard-db}", "metadata: {name: guard-db, namespace: shop}", 1)
	_, err := f.svc.Apply(context.Background(), "cnp.yaml", []byte(doc), "alice")
	if !errors.Is(err, controller.ErrInvalid) || !strings.Contains(err.Error(), "metadata.namespace: Forbidden") {
		t.Fatalf("apply = %v, want ErrInvalid naming metadata.namespace", err)
	}
	if recs, err := f.svc.ClusterNetworkPolicyRecords("guard-db"); err != nil || len(recs) != 0 {
		t.Errorf("records = %+v, %v; want none", recs, err)
	}
}
