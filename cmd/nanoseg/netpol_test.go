package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

// TestNetworkPolicyCommands: `policy apply` of a default deny stores and
// enforces it as a NetworkPolicy; `status`, `verdicts` and `policy show`
// name it; `policy delete networkpolicy` removes it with a record.
func TestNetworkPolicyCommands(t *testing.T) {
	mem := store.NewMem()
	node := &controllertest.Node{DefaultIDs: map[string][]policies.PolicyRef{
		"np/shop/default-deny/default.ingress": {{Kind: "NetworkPolicy", Namespace: "shop", Name: "default-deny"}},
	}}
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), node, nil)
	ts := httptest.NewServer(server.New(svc, server.Config{}, nil).Handler())
	defer ts.Close()
	file := filepath.Join(t.TempDir(), "deny.yaml")
	doc := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny, namespace: shop}\nspec:\n  podSelector: {}\n"
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := runAgainst(t, ts.URL, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	out := run("policy", "apply", "-f", file)
	if !strings.Contains(out, "NetworkPolicy shop/default-deny: revision 1, enforced now (selects shop/db, shop/intruder, shop/web)") {
		t.Errorf("policy apply:\n%s", out)
	}
	if err := mem.AddVerdicts([]model.VerdictEvent{{At: time.Now(), Endpoint: "web-0", Verdict: "deny", RuleID: "np/shop/default-deny/default.ingress",
		Source: "shop/intruder", SrcPort: 40000, Destination: "shop/web", Protocol: model.ProtocolTCP, Port: 80}}); err != nil {
		t.Fatal(err)
	}
	out = run("status")
	if !strings.Contains(out, "NetworkPolicy shop/default-deny") || !strings.Contains(out, "decided by NetworkPolicy shop/default-deny") {
		t.Errorf("status does not name the NetworkPolicy:\n%s", out)
	}
	out = run("verdicts")
	if !strings.Contains(out, "np/shop/default-deny/default.ingress") || !strings.Contains(out, "NetworkPolicy shop/default-deny") {
		t.Errorf("verdicts do not name the isolating policy:\n%s", out)
	}
	out = run("policy", "show")
	if !strings.Contains(out, "shop/default-deny") || !strings.Contains(out, "NETWORKPOLICY") {
		t.Errorf("policy show does not list the NetworkPolicy:\n%s", out)
	}
	if out = run("policy", "show", "networkpolicy", "shop/default-deny"); !strings.Contains(out, "kind: NetworkPolicy") || !strings.Contains(out, "podSelector: {}") {
		t.Errorf("policy show networkpolicy:\n%s", out)
	}
	out = run("policy", "delete", "networkpolicy", "shop/default-deny")
	if !strings.Contains(out, "NetworkPolicy shop/default-deny deleted (record 2") {
		t.Errorf("policy delete:\n%s", out)
	}
	if nps, _ := mem.NetworkPolicies(); len(nps) != 0 {
		t.Errorf("still in force after delete: %+v", nps)
	}
	if _, err := runAgainst(t, ts.URL, "policy", "delete", "networkpolicy", "shop/default-deny"); err == nil {
		t.Errorf("deleting it again succeeded")
	}
}

// TestPolicyApplyFilesAllOrNothing: `policy apply -f good.yaml -f bad.yaml`
// stores nothing: every file is checked before any is sent, as the command
// promises ("nothing is stored if any is invalid").
func TestPolicyApplyFilesAllOrNothing(t *testing.T) {
	_, _, ts := testAgent(t, &controllertest.Node{})
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny, namespace: shop}\nspec:\n  podSelector: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 70000}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runAgainst(t, ts.URL, "policy", "apply", "-f", good, "-f", bad)
	if err == nil || !strings.Contains(err.Error()+out, "spec.ingress[0].ports[0].port") {
		t.Fatalf("apply of a good and a bad file: err %v, out:\n%s", err, out)
	}
	out, err = runAgainst(t, ts.URL, "policy", "show", "networkpolicy", "shop/default-deny")
	if err == nil {
		t.Errorf("the good file was stored although the bad one was refused:\n%s", out)
	}
	// An invalid ClusterNetworkPolicy is refused the same way; a valid one
	// is stored and enforced at once.
	cnp := filepath.Join(dir, "cnp.yaml")
	guard := "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: guard}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}\n"
	if err := os.WriteFile(cnp, []byte(strings.Replace(guard, "priority: 1", "priority: 1001", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runAgainst(t, ts.URL, "policy", "apply", "-f", good, "-f", cnp)
	if err == nil || !strings.Contains(err.Error()+out, "spec.priority") {
		t.Fatalf("apply of a NetworkPolicy and an invalid ClusterNetworkPolicy: err %v, out:\n%s", err, out)
	}
	if out, err := runAgainst(t, ts.URL, "policy", "show", "networkpolicy", "shop/default-deny"); err == nil {
		t.Errorf("the good file was stored although the ClusterNetworkPolicy was refused:\n%s", out)
	}
	if err := os.WriteFile(cnp, []byte(guard), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runAgainst(t, ts.URL, "policy", "apply", "-f", cnp)
	if err != nil || !strings.Contains(out, "ClusterNetworkPolicy guard (Admin, priority 1): revision 1, enforced now") {
		t.Fatalf("apply of a ClusterNetworkPolicy: err %v, out:\n%s", err, out)
	}
}

// TestPolicyApplyDirectory: -f DIR applies every .yaml/.yml/.json file in
// it (what `policy propose --out DIR` writes), and a directory with none is
// refused by name.
func TestPolicyApplyDirectory(t *testing.T) {
	mem, _, ts := testAgent(t, &controllertest.Node{})
	dir := t.TempDir()
	for _, app := range []string{"db", "web"} {
		doc := segDoc(app)
		if err := os.WriteFile(filepath.Join(dir, app+".yaml"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not a policy"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runAgainst(t, ts.URL, "policy", "apply", "-f", dir); err != nil {
		t.Fatalf("apply -f DIR: %v\n%s", err, out)
	}
	for _, w := range []string{"shop/db", "shop/web"} {
		if rs, _ := mem.Revisions(w); len(rs) != 1 {
			t.Errorf("%s has %d revisions after apply -f DIR, want 1", w, len(rs))
		}
	}
	empty := t.TempDir()
	if _, err := runAgainst(t, ts.URL, "policy", "apply", "-f", empty); err == nil || !strings.Contains(err.Error(), empty+": a directory without .yaml") {
		t.Errorf("apply -f EMPTYDIR: %v", err)
	}
}

// TestPolicyMatrixPreviewsClusterNetworkPolicy: without --case or
// --world, matrix --policies evaluates a ClusterNetworkPolicy against the
// agent's world (nothing is stored) and marks what it decides.
func TestPolicyMatrixPreviewsClusterNetworkPolicy(t *testing.T) {
	_, _, ts := testAgent(t, &controllertest.Node{})
	cnp := filepath.Join(t.TempDir(), "cnp.yaml")
	if err := os.WriteFile(cnp, []byte("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: guard}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runAgainst(t, ts.URL, "policy", "matrix", "--policies", cnp, "--ports", "5432/TCP", "-o", "json")
	if err != nil || !strings.Contains(out, `"tier": "Admin"`) || !strings.Contains(out, `"action": "deny"`) {
		t.Fatalf("matrix --policies against the agent: %v\n%s", err, out)
	}
	if out, err := runAgainst(t, ts.URL, "policy", "matrix", "--ports", "5432/TCP", "-o", "json"); err != nil || strings.Contains(out, `"tier"`) {
		t.Errorf("the preview stored something: %v\n%s", err, out)
	}
}
