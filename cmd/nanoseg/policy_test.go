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
