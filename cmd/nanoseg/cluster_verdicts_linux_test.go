//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/client/kube"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// TestClusterVerdictsAndRuleHits: against a real API server, with
// `nanoseg controller` as a process and a node agent programming real
// network namespaces, the server enforced from its proposal: attempts on
// the port it does not allow are dropped, and `kubectl nanoseg verdicts`
// lists them (aggregated, from the NanoSegment's status, through the API
// server only), `status` shows the kernel's rule hits and default-verdict
// packets per workload as against an agent, and the evidence bundle's
// cluster.json carries the per-node rule counters. A NanoSegment that
// selects no pod is said to in status.
func TestClusterVerdictsAndRuleHits(t *testing.T) {
	nettest.RequireRoot(t)
	w := newResilienceWorldAt(t, 213, "  countersInterval: 1s\n")
	ctx := context.Background()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // the exporter's evidence key
	cfg := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, error) {
		t.Helper()
		return runCLI(t, append([]string{"--config", cfg, "--kubeconfig", w.c.Kubeconfig}, args...)...)
	}

	for range 3 {
		if !w.dial(8080) {
			t.Fatal("client -> server:8080 refused before any policy")
		}
	}
	waitUntil(t, "the proposal of server", 30*time.Second, func() error { _, _, err := w.proposalEdge(8080); return err })
	prom := &v1alpha1.NanoSegmentPromotion{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindPromotion},
		ObjectMeta: metav1.ObjectMeta{Name: "server-enforce"},
		Spec: v1alpha1.NanoSegmentPromotionSpec{Workload: "server", Mode: model.ModeEnforce, Reason: "lock down", Force: true,
			RequestedBy: &v1alpha1.RequestUser{Username: "alice"}}}
	if _, err := w.dyn.Resource(kube.Promotions).Namespace("shop").Create(ctx, unstructuredOf(t, prom), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "8080 allowed, 9090 denied", 60*time.Second, func() error {
		if !w.dial(8080) || w.dial(9090) {
			return fmt.Errorf("8080 open %v, 9090 open %v", w.dial(8080), w.dial(9090))
		}
		return nil
	})
	for range 2 {
		w.dial(8080)
		w.dial(9090)
	}

	// The status carries the aggregated denies and the node's counters.
	var seg *v1alpha1.NanoSegment
	waitUntil(t, "verdicts and counters in the server's status", 30*time.Second, func() error {
		_, seg = w.segment(t)
		var denies int64
		for _, v := range seg.Status.Verdicts {
			if v.Verdict == "deny" && v.Source == "shop/client" && v.Destination == "shop/server" && v.Port == 9090 && v.Endpoint == "shop_server-0" {
				denies += v.Count
			}
		}
		if denies == 0 || len(seg.Status.Nodes) != 1 || len(seg.Status.Nodes[0].RuleHits) == 0 || len(seg.Status.Nodes[0].DefaultHits) == 0 {
			return fmt.Errorf("status: verdicts %+v, nodes %+v", seg.Status.Verdicts, seg.Status.Nodes)
		}
		return nil
	})
	var hits int64
	for _, h := range seg.Status.Nodes[0].RuleHits {
		hits += h.Packets
	}
	if hits < 3 {
		t.Errorf("rule hits of the server on its node: %d packets, want at least the 3 connections to 8080 since enforce", hits)
	}

	// kubectl nanoseg verdicts: the standalone table, aggregated.
	out, err := cli("verdicts", "--verdict", "deny", "--port", "9090", "--expect")
	if err != nil || !regexp.MustCompile(`(?m)^AT +VERDICT +SOURCE +DESTINATION +PORT +LOGGED IN +RULE ID +DECIDED BY +ATTEMPTS +FIRST SEEN\n\S+ +deny +shop/client +shop/server +TCP/9090 +shop_server-0 +seg/shop/server/default\.ingress +NanoSegment shop/server +\d+ +\S+\n`).MatchString(out) {
		t.Errorf("verdicts: %v\n%s", err, out)
	}
	t.Logf("kubectl nanoseg verdicts:\n%s", out)

	// status: rule hits and the default verdict's packets, as against an agent.
	out, err = cli("status", "-o", "json")
	var st []controller.WorkloadStatus
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, s := range st {
		if s.Workload != "shop/server" {
			continue
		}
		var rh, dh uint64
		for _, h := range s.RuleHits {
			rh += h.Packets
		}
		for _, h := range s.DefaultHits {
			dh += h.Packets
		}
		if rh < 3 || dh == 0 || s.Denied == 0 || len(s.Breaks) == 0 || s.Breaks[0].Port != 9090 || s.Breaks[0].Count < 1 ||
			!slices.Equal(s.Breaks[0].DecidedBy, []string{"NanoSegment shop/server"}) {
			t.Errorf("status of shop/server: rule hits %d, no rule %d, denied %d, breaks %+v", rh, dh, s.Denied, s.Breaks)
		}
	}

	// A NanoSegment that selects no pod.
	ghost := segment("ghost", nil)
	ghost.Spec.Mode = model.ModeAudit
	if _, err := w.dyn.Resource(kube.NanoSegments).Namespace("shop").Create(ctx, unstructuredOf(t, ghost), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("status"); err != nil || !strings.Contains(out, "shop/ghost: selects no pod: its audit policy applies to nothing running") ||
		!regexp.MustCompile(`(?m)^shop/server +enforce +\d+ +1 +1/1 +[1-9]\d* +[1-9]\d* `).MatchString(out) {
		t.Errorf("status: %v\n%s", err, out)
	}

	// Evidence: cluster.json carries the per-node counters.
	dir := filepath.Join(t.TempDir(), "bundle")
	if out, err := cli("evidence", "export", "--out", dir, "--no-pdf", "--no-probes"); err != nil {
		t.Fatalf("evidence export: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, kube.ClusterFile))
	if err != nil {
		t.Fatal(err)
	}
	var co kube.ClusterObjects
	if err := json.Unmarshal(raw, &co); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range co.Nodes {
		if n.NanoSegment == "shop/server" && len(n.RuleHits) > 0 && len(n.DefaultHits) > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("%s: no node of shop/server with counters: %+v", kube.ClusterFile, co.Nodes)
	}
}
