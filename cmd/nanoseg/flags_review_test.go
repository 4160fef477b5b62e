package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestGraphNamespaceShorthand: `graph -n NS` keeps the edges of NS, as
// `-n` means a namespace for every other verb (and for kubectl).
func TestGraphNamespaceShorthand(t *testing.T) {
	edges := "../../graph/testdata/shop-edges.jsonl"
	out, err := runCLI(t, "graph", "--edges", edges, "-n", "shop", "-o", "dot")
	if err != nil || !strings.Contains(out, `"shop/`) {
		t.Errorf("graph -n shop: %v\n%s", err, out)
	}
	out, err = runCLI(t, "graph", "--edges", edges, "-n", "nope", "-o", "dot")
	if err != nil || strings.Contains(out, `"shop/`) {
		t.Errorf("graph -n nope keeps shop's edges: %v\n%s", err, out)
	}
}

// TestPoliciesGivenTwice: one policy given twice in --policies is an
// error naming it, not the last one silently winning.
func TestPoliciesGivenTwice(t *testing.T) {
	doc := func(prio int, action string) string {
		return "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: p1}\nspec:\n  tier: Admin\n  priority: " +
			strconv.Itoa(prio) + "\n  subject: {namespaces: {}}\n  ingress:\n  - action: " + action + "\n    from: [{namespaces: {}}]\n"
	}
	file := filepath.Join(t.TempDir(), "dup.yaml")
	if err := os.WriteFile(file, []byte(doc(5, "Deny")+"---\n"+doc(6, "Accept")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(t, "policy", "matrix", "--case", "../../policies/testdata/cases/cnp/cnp-state-010.yaml", "--policies", file)
	if err == nil || !strings.Contains(err.Error(), "ClusterNetworkPolicy p1 is also in") {
		t.Errorf("p1 twice: %v", err)
	}
}

// TestParsePortProtoRange: port 0 is refused but for ICMP, and a port
// out of range says so.
func TestParsePortProtoRange(t *testing.T) {
	for in, want := range map[string]string{
		"0/TCP":     "port 0 is not from 1 to 65535",
		"99999/TCP": "port 99999 is not from 1 to 65535",
		"80/XYZ":    "unknown protocol",
		"x":         "want PORT",
		"0/ICMP":    "",
		"53/udp":    "",
	} {
		_, _, err := parsePortProto(in)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}

// TestControllerErrorsNameFlags: a bad controller setting names its flag.
func TestControllerErrorsNameFlags(t *testing.T) {
	_, err := runCLI(t, "controller", "--catch-up", "-1s", "--id", "a", "--kubeconfig", filepath.Join(t.TempDir(), "none"))
	if err == nil || !strings.Contains(err.Error(), "controller.catchUp (--catch-up): -1s: must be positive") {
		t.Errorf("--catch-up -1s: %v", err)
	}
}

// TestZeroDurationFlags: a duration flag given as 0 whose setting reads
// 0 as "not set" is refused naming the flag and its default, rather than
// silently running with the default; a flag whose help gives 0 a
// meaning (promote --min-observed) is not refused for it.
func TestZeroDurationFlags(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for flag, args := range map[string][]string{
		"--catch-up: 0s: must be positive (leave the flag out for the default 45s)":             {"controller", "--catch-up", "0", "--id", "a"},
		"--timeout: 0s: must be positive (leave the flag out for the default 1s)":               {"verify", "--timeout", "0s", "--kubeconfig", none},
		"--wait-for-controller: 0s: must be positive (leave the flag out for the default 1m0s)": {"status", "--wait-for-controller", "0", "--kubeconfig", none},
	} {
		if _, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%v: %v, want %q", args, err, flag)
		}
	}
	if _, err := runCLI(t, "promote", "shop/web", "--to", "enforce", "--min-observed", "0", "--kubeconfig", none); err != nil && strings.Contains(err.Error(), "must be positive") {
		t.Errorf("--min-observed 0 refused: %v", err)
	}
}
