package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runPolicy(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cfg := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.SetArgs(append([]string{"--config", cfg, "policy"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestPolicyCheck(t *testing.T) {
	good := "../../policies/testdata/cases/port-range-inclusive.yaml"
	if out, err := runPolicy(t, "check", good); err != nil || !strings.Contains(out, "ok ") {
		t.Fatalf("check good: %v\n%s", err, out)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	wrong := strings.Replace(string(data), "port: 10007, protocol: UDP, expect: allow", "port: 10007, protocol: UDP, expect: deny", 1)
	if err := os.WriteFile(bad, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runPolicy(t, "check", good, bad)
	var ec exitCoder
	if err == nil || !asExitCoder(err, &ec) || ec.ExitCode() != 1 {
		t.Fatalf("check bad: want exit code 1, got %v", err)
	}
	if !strings.Contains(out, "FAIL "+bad+": connections[2]: media/edge -> media/relay 10007/UDP: expected deny, got allow") {
		t.Errorf("output lacks the mismatch:\n%s", out)
	}
}

func TestPolicyExplainAndExport(t *testing.T) {
	out, err := runPolicy(t, "explain", "--case", "../../policies/testdata/cases/named-port-resolves-per-destination.yaml",
		"--from", "monitoring/prometheus", "--to", "shop/api-2", "--port", "9102/TCP")
	if err != nil || !strings.Contains(out, "9102/TCP: allow") || !strings.Contains(out, "NetworkPolicy shop/api-metrics-from-monitoring rule ingress-0") {
		t.Errorf("explain: %v\n%s", err, out)
	}
	out, err = runPolicy(t, "export", "--to", "networkpolicy", "../../policies/testdata/segments/web.yaml")
	if err != nil || !strings.Contains(out, "kind: NetworkPolicy") || !strings.Contains(out, "warning: NanoSegment shop/web: spec.egress[1].peers[0].dnsName") {
		t.Errorf("export: %v\n%s", err, out)
	}
	out, err = runPolicy(t, "propose", "--edges", "../../policies/testdata/edges/shop.json")
	if err != nil || strings.Count(out, "kind: NanoSegment") != 4 {
		t.Errorf("propose: %v\n%s", err, out)
	}
	// The observer's own edge format (JSON lines, as `observe --edges -o json` writes).
	out, err = runPolicy(t, "propose", "--edges", "../../graph/testdata/shop-edges.jsonl")
	if err != nil || strings.Count(out, "kind: NanoSegment") != 7 || !strings.Contains(out, "dnsName: payments.example") {
		t.Errorf("propose from observer edges: %v\n%s", err, out)
	}
}

// TestReadmePolicyCheck runs the README's `nanoseg policy check` example
// from the repository root: its files are the project's own and it passes.
func TestReadmePolicyCheck(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var pattern string
	for _, l := range strings.Split(string(readme), "\n") {
		if rest, ok := strings.CutPrefix(l, "nanoseg policy check "); ok {
			pattern = strings.Fields(rest)[0]
			break
		}
	}
	if pattern == "" {
		t.Fatal("README has no `nanoseg policy check` example")
	}
	files, err := filepath.Glob(filepath.Join("../..", pattern))
	if err != nil || len(files) < 5 {
		t.Fatalf("README's %s matches %d files in this repository (%v)", pattern, len(files), err)
	}
	out, err := runPolicy(t, append([]string{"check"}, files...)...)
	if err != nil || strings.Count(out, "ok ") != len(files) {
		t.Errorf("README's example fails: %v\n%s", err, out)
	}
}

// TestPolicyClusterNetworkPolicy: check, explain and matrix take
// ClusterNetworkPolicy objects next to NetworkPolicies; explain names the
// tier, policy, priority and rule, matrix marks the cells a tier decided;
// import and export to other languages refuse them by name.
func TestPolicyClusterNetworkPolicy(t *testing.T) {
	cases, err := filepath.Glob("../../policies/testdata/cases/cnp/*.yaml")
	if err != nil || len(cases) < 4 {
		t.Fatalf("glob: %v %v", cases, err)
	}
	if out, err := runPolicy(t, append([]string{"check"}, cases...)...); err != nil || strings.Count(out, "ok ") != len(cases) {
		t.Fatalf("check: %v\n%s", err, out)
	}
	c := "../../policies/testdata/cases/cnp/cnp-state-010.yaml"
	out, err := runPolicy(t, "explain", "--case", c, "--from", "network-policy-conformance-gryffindor/harry-potter-1",
		"--to", "network-policy-conformance-hufflepuff/cedric-diggory-1", "--port", "80/TCP")
	want := `egress of network-policy-conformance-gryffindor/harry-potter-1 denied by ClusterNetworkPolicy egress-tcp (Admin, priority 6) rule egress-6 "deny-to-hufflepuff-everything-else"`
	if err != nil || !strings.Contains(out, "80/TCP: deny") || !strings.Contains(out, want) || !strings.Contains(out, "decided in the Admin tier") {
		t.Errorf("explain: %v\n%s", err, out)
	}
	out, err = runPolicy(t, "matrix", "--case", c, "--ports", "8080/TCP")
	if err != nil || !strings.Contains(out, "* decided by an Admin ClusterNetworkPolicy rule, + by a Baseline one") || !strings.Contains(out, "A* ") {
		t.Errorf("matrix: %v\n%s", err, out)
	}
	out, err = runPolicy(t, "matrix", "--case", "../../policies/testdata/cases/cnp/cnp-state-049.yaml", "--ports", "80/TCP", "-o", "json")
	if err != nil || !strings.Contains(out, `"tier": "Baseline"`) {
		t.Errorf("matrix json: %v\n%s", err, out)
	}
	cnp := filepath.Join(t.TempDir(), "cnp.yaml")
	if err := os.WriteFile(cnp, []byte(`apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Without --world or --case the files are evaluated in the running
	// agent's world (TestPolicyExplainPoliciesAgainstAgent): without an
	// agent, the error says which world was missing.
	if _, err := runPolicy(t, "explain", "--server", "http://127.0.0.1:1", "--policies", cnp, "--from", "a/b", "--to", "c/d", "--port", "80/TCP"); err == nil || !strings.Contains(err.Error(), "no --world or --case given, and the agent's world: ") {
		t.Errorf("explain --policies without a world or an agent: %v", err)
	}
	if _, err := runPolicy(t, "import", cnp); err == nil || !strings.Contains(err.Error(), "ClusterNetworkPolicy guard: only NetworkPolicies convert") {
		t.Errorf("import: %v", err)
	}
	web := "../../policies/testdata/segments/web.yaml"
	out, err = runPolicy(t, "export", "--to", "clusternetworkpolicy", web)
	if err != nil || !strings.Contains(out, "kind: ClusterNetworkPolicy") || !strings.Contains(out, "name: shop.web.isolate") || !strings.Contains(out, "tier: Baseline") ||
		!strings.Contains(out, "warning: NanoSegment shop/web: spec: exported to the Baseline tier") || !strings.Contains(out, "spec.egress[2].peers[0].ipBlock.except") {
		t.Errorf("export --to clusternetworkpolicy: %v\n%s", err, out)
	}
	out, err = runPolicy(t, "export", "--to", "cilium-clusterwide", web)
	if err != nil || !strings.Contains(out, "kind: CiliumClusterwideNetworkPolicy") || !strings.Contains(out, "metadata:\n  name: shop.web\n") || strings.Contains(out, "\n  namespace: shop\n") {
		t.Errorf("export --to cilium-clusterwide: %v\n%s", err, out)
	}
	if _, err := runPolicy(t, "export", "--to", "calico", web); err == nil || !strings.Contains(err.Error(), "--to: unknown target \"calico\"") {
		t.Errorf("export --to calico: %v", err)
	}
	if _, err := runPolicy(t, "export", cnp); err == nil || !strings.Contains(err.Error(), "ClusterNetworkPolicy guard: --to networkpolicy cannot express a ClusterNetworkPolicy") {
		t.Errorf("export: %v", err)
	}
}

// TestPolicyExplainAuditedAdminDeny (issue 15): explain says that an
// Admin Deny on a workload in audit mode is audit-deny, logged and not
// dropped, and names the rule.
func TestPolicyExplainAuditedAdminDeny(t *testing.T) {
	out, err := runPolicy(t, "explain", "--case", "../../policies/testdata/cases/cnp/tiers-audit-mode.yaml",
		"--from", "ops/scanner", "--to", "shop/web", "--port", "80/TCP")
	want := `ingress of shop/web audit-denied by ClusterNetworkPolicy guard (Admin, priority 10) rule ingress-2 "no-ops" (shop/web is in audit mode: logged as audit-deny, not dropped)`
	if err != nil || !strings.Contains(out, "80/TCP: audit-deny") || !strings.Contains(out, want) || !strings.Contains(out, "decided in the Admin tier") {
		t.Errorf("explain: %v\n%s", err, out)
	}
}
