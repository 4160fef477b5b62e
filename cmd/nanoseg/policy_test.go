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
	good := "../../policies/testdata/cases/endport-range.yaml"
	if out, err := runPolicy(t, "check", good); err != nil || !strings.Contains(out, "ok ") {
		t.Fatalf("check good: %v\n%s", err, out)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	wrong := strings.Replace(string(data), "port: 8005, protocol: TCP, expect: allow", "port: 8005, protocol: TCP, expect: deny", 1)
	if err := os.WriteFile(bad, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runPolicy(t, "check", good, bad)
	var ec exitCoder
	if err == nil || !asExitCoder(err, &ec) || ec.ExitCode() != 1 {
		t.Fatalf("check bad: want exit code 1, got %v", err)
	}
	if !strings.Contains(out, "FAIL "+bad+": connections[2]: default/fighter -> default/station 8005/TCP: expected deny, got allow") {
		t.Errorf("output lacks the mismatch:\n%s", out)
	}
}

func TestPolicyExplainAndExport(t *testing.T) {
	out, err := runPolicy(t, "explain", "--case", "../../policies/testdata/cases/named-port-per-pod.yaml",
		"--from", "default/client", "--to", "default/web-2", "--port", "8080/TCP")
	if err != nil || !strings.Contains(out, "8080/TCP: allow") || !strings.Contains(out, "NetworkPolicy default/web-http-from-client rule ingress-0") {
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
