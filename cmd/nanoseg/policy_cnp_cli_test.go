package main

import (
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

// TestPolicyCheckClusterNetworkPolicyFile: `policy check` of a case whose
// only policy is a ClusterNetworkPolicy runs it; of a file that holds a
// bare ClusterNetworkPolicy (no case) it fails naming the policy, what a
// case needs and what to run instead; of an invalid one it names the
// field.
func TestPolicyCheckClusterNetworkPolicyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	indented := "  - " + strings.ReplaceAll(strings.TrimSuffix(guardDBDoc, "\n"), "\n", "\n    ") + "\n"
	kase := write("case.yaml", `name: guard-only
namespaces: [{name: shop, labels: {kubernetes.io/metadata.name: shop}}]
pods:
  - {namespace: shop, name: db-0, labels: {app: db}, ips: [198.18.87.10]}
  - {namespace: shop, name: intruder-0, labels: {app: intruder}, ips: [198.18.87.11]}
  - {namespace: shop, name: web-0, labels: {app: web}, ips: [198.18.87.12]}
policies:
`+indented+`connections:
  - {from: shop/intruder-0, to: shop/db-0, port: 5432, protocol: TCP, expect: deny}
  - {from: shop/web-0, to: shop/db-0, port: 5432, protocol: TCP, expect: allow}
`)
	if out, err := runCLI(t, "policy", "check", kase); err != nil || out != "ok   "+kase+" (guard-only)\n" {
		t.Errorf("policy check of a case with only a ClusterNetworkPolicy: %v\n%s", err, out)
	}
	bare := write("guard.yaml", guardDBDoc)
	out, err := runCLI(t, "policy", "check", bare)
	if err == nil || !strings.Contains(out, "FAIL "+bare+": holds policy manifests (ClusterNetworkPolicy guard-db), not a verdict case: "+
		"a verdict case needs name, namespaces, pods, policies and connections (policies/testdata/cases); "+
		"to evaluate policy files use policy explain or matrix with --world FILE or --case FILE and --policies "+bare) {
		t.Errorf("policy check of a bare ClusterNetworkPolicy: %v\n%s", err, out)
	}
	bad := write("bad.yaml", strings.Replace(guardDBDoc, "priority: 7", "priority: 7000", 1))
	out, err = runCLI(t, "policy", "check", bad)
	if err == nil || !strings.Contains(out, "holds policy manifests, not a verdict case, and they are invalid: ") || !strings.Contains(out, "spec.priority") {
		t.Errorf("policy check of an invalid bare ClusterNetworkPolicy: %v\n%s", err, out)
	}
}

// nodesPeerDoc is an Admin ClusterNetworkPolicy denying every pod's
// egress to the nodes labelled role=infra on 8080.
const nodesPeerDoc = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-infra}
spec:
  tier: Admin
  priority: 3
  subject: {namespaces: {}}
  egress: [{name: infra-8080, action: Deny, to: [{nodes: {matchLabels: {role: infra}}}], protocols: [{tcp: {destinationPort: {number: 8080}}}]}]
`

// TestPolicyExplainPoliciesAgainstAgent: `policy explain --policies FILE`
// without --world or --case evaluates the file's policies in the running
// agent's world (workloads as their first pod, its nodes too), with a
// note saying so; without --policies the agent answers with its policies
// in force only.
func TestPolicyExplainPoliciesAgainstAgent(t *testing.T) {
	inv := controllertest.Shop()
	inv.SetNodes([]policies.Node{{Name: "infra-1", Labels: map[string]string{"role": "infra"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.87.20")}}})
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, inv, &controllertest.Node{}, nil)
	ts := httptest.NewServer(server.New(svc, server.Config{}, nil).Handler())
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	guard, infra := filepath.Join(dir, "guard.yaml"), filepath.Join(dir, "infra.yaml")
	for f, doc := range map[string]string{guard: guardDBDoc, infra: nodesPeerDoc} {
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runAgainst(t, ts.URL, "policy", "explain", "--from", "shop/intruder", "--to", "shop/db", "--port", "5432/TCP")
	if err != nil || !strings.Contains(out, ": allow") {
		t.Errorf("explain with the agent's policies only: %v\n%s", err, out)
	}
	// With the policy in force, the agent's explanation says which tier
	// decided, as the explanation of a case does.
	if _, err := svc.Apply(t.Context(), guard, []byte(guardDBDoc), "test"); err != nil {
		t.Fatal(err)
	}
	out, err = runAgainst(t, ts.URL, "policy", "explain", "--from", "shop/intruder", "--to", "shop/db", "--port", "5432/TCP")
	if err != nil || !strings.Contains(out, `denied by ClusterNetworkPolicy guard-db (Admin, priority 7) rule ingress-0 "no-intruder"`) ||
		!strings.Contains(out, "decided in the Admin tier of ClusterNetworkPolicies") {
		t.Errorf("explain with the agent's policy in force: %v\n%s", err, out)
	}
	if _, err := svc.DeleteClusterNetworkPolicy(t.Context(), "guard-db", "test"); err != nil {
		t.Fatal(err)
	}
	out, err = runAgainst(t, ts.URL, "policy", "explain", "--from", "shop/intruder", "--to", "shop/db", "--port", "5432/TCP", "--policies", guard)
	if err != nil || !strings.Contains(out, "shop/intruder-0 -> shop/db-0 5432/TCP: deny") ||
		!strings.Contains(out, `denied by ClusterNetworkPolicy guard-db (Admin, priority 7) rule ingress-0 "no-intruder"`) ||
		!strings.Contains(out, "note: evaluated in the agent's world with its policies in force and those of "+guard+" in place of the same kind, namespace and name (nothing applied)") {
		t.Errorf("explain --policies against the agent: %v\n%s", err, out)
	}
	out, err = runAgainst(t, ts.URL, "policy", "explain", "--from", "shop/web", "--to", "198.18.87.20", "--port", "8080/TCP", "--policies", infra)
	if err != nil || !strings.Contains(out, ": deny") || !strings.Contains(out, `denied by ClusterNetworkPolicy no-infra (Admin, priority 3) rule egress-0 "infra-8080"`) {
		t.Errorf("explain --policies with a nodes peer against the agent: %v\n%s", err, out)
	}
	if cnps, _ := mem.ClusterNetworkPolicies(); len(cnps) != 0 {
		t.Errorf("explain --policies applied something: %+v", cnps)
	}
}

// TestPolicyDiffRefusesIgnoredFlags: --policies and --proposal belong to
// the offline diff (with --edges), --workload and --window to the agent's;
// given to the other, they are refused by name before anything is read,
// rather than ignored (a malformed --policies file used to give the
// agent's diff and exit 0).
func TestPolicyDiffRefusesIgnoredFlags(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("metadata: {name: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "none.sock") // no agent: the refusal comes first
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "diff", "--server", sock, "--policies", bad}, "--policies"},
		{[]string{"policy", "diff", "--server", sock, "--proposal", bad}, "--proposal"},
		{[]string{"policy", "diff", "--edges", bad, "--workload", "shop/db"}, "--workload"},
		{[]string{"policy", "diff", "--edges", bad, "--window", "5m"}, "--window"},
	} {
		_, err := runCLI(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}

// TestPolicyApplyDirectoryAllOrNothing: `policy apply -f DIR` stores
// nothing when the agent refuses one file for what only it can check (a
// NanoSegment that selects no workload), not even the files before it;
// with every file good, all of them are stored.
func TestPolicyApplyDirectoryAllOrNothing(t *testing.T) {
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	ts := httptest.NewServer(server.New(svc, server.Config{}, nil).Handler())
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	ghost := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: ghost, namespace: shop}\nspec:\n  selector: {matchLabels: {app: ghost}}\n  mode: observe\n  policyTypes: [Ingress]\n"
	for f, doc := range map[string]string{"a.yaml": guardDBDoc, "b.yaml": ghost} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runAgainst(t, ts.URL, "policy", "apply", "-f", dir)
	if err == nil || !strings.Contains(err.Error(), "nothing stored") || !strings.Contains(err.Error(), "shop/ghost") {
		t.Errorf("apply of a directory with a NanoSegment selecting nothing: %v\n%s", err, out)
	}
	if cnps, _ := mem.ClusterNetworkPolicies(); len(cnps) != 0 {
		t.Errorf("the refused directory stored %s's ClusterNetworkPolicy: %+v", filepath.Join(dir, "a.yaml"), cnps)
	}
	np := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny, namespace: shop}\nspec:\n  podSelector: {}\n"
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(np), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runAgainst(t, ts.URL, "policy", "apply", "-f", dir); err != nil || !strings.Contains(out, "ClusterNetworkPolicy guard-db") || !strings.Contains(out, "NetworkPolicy shop/default-deny") {
		t.Errorf("apply of a good directory: %v\n%s", err, out)
	}
}
