//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/client/kube"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/nodeagent"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// Addresses of the verify test's pods (one netns each, joined by a veth).
var (
	vWebV4 = netip.MustParseAddr("198.18.78.1")
	vWebV6 = netip.MustParseAddr("2001:db8:78::1")
	vDBV4  = netip.MustParseAddr("198.18.78.2")
	vDBV6  = netip.MustParseAddr("2001:db8:78::2")
)

// TestClusterVerifyEvidence: against a real API server with a real node
// agent programming real network namespaces, `verify` runs its probes
// through the agent (NanoSegmentProbes) and they really connect, then
// really get dropped once a NetworkPolicy is enforced, each matching the
// prediction; a user with nanoseg-view only is refused Forbidden (verify
// and evidence export); an operator's `evidence export` writes a bundle
// with the cluster's objects and the probes that `evidence verify` checks
// offline; a promotion record edited in the API server afterwards is
// reported by `history --verify`, by the next export and by `evidence
// verify` of that bundle. No probe object is left behind.
func TestClusterVerifyEvidence(t *testing.T) {
	nettest.RequireRoot(t)
	c := kubetest.New(t, kubetest.Options{CRDDirs: []string{filepath.Join("..", "..", "manifests", "crds"), filepath.Join("..", "..", "manifests", "crds", "cnp")}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // the exporter's evidence key
	f := &clusterFixture{c: c, dyn: dynamic.NewForConfigOrDie(c.Config), now: time.Now().UTC().Truncate(time.Second), mem: store.NewMem(), kc: c.Kubeconfig}
	f.cfg = filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(f.cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Two pods of node-a in real network namespaces: web (a client that
	// declares port 80, where nothing listens) and db (a server on 5432).
	web, db := nettest.New(t), nettest.New(t)
	nettest.Connect(t, web, db, []netip.Prefix{netip.PrefixFrom(vWebV4, 24), netip.PrefixFrom(vWebV6, 64)},
		[]netip.Prefix{netip.PrefixFrom(vDBV4, 24), netip.PrefixFrom(vDBV6, 64)})
	nettest.ServeTCP(t, db, 5432)
	// Both families up (IPv6 duplicate address detection) before probing.
	for _, a := range []netip.Addr{vDBV4, vDBV6} {
		for nettest.DialTCP(web, netip.AddrPortFrom(a, 5432), 200*time.Millisecond) != nil {
			if ctx.Err() != nil {
				t.Fatalf("web -> db %s never up", a)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	pod := func(name string, port int32, ips ...netip.Addr) {
		p, err := c.Client.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "busybox",
				Ports: []corev1.ContainerPort{{ContainerPort: port, Protocol: corev1.ProtocolTCP}}}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase, p.Status.PodIP = corev1.PodRunning, ips[0].String()
		for _, a := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: a.String()})
		}
		if _, err := c.Client.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("web", 80, vWebV4, vWebV6)
	pod("db", 5432, vDBV4, vDBV6)

	// What the controller would have written: a revision of web, two
	// promotions with their hash-chained records, web's NanoSegment
	// (observe: it filters nothing) with its status.
	rev, err := f.mem.AddRevision(store.Revision{Workload: "shop/web", Origin: store.OriginDeclared, CreatedAt: f.now.Add(-time.Hour), CreatedBy: "alice",
		Policy: segment("web", nil)})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(rev)
	if _, err := c.Client.AppsV1().ControllerRevisions("shop").Create(ctx, &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: "web-r1", Labels: map[string]string{v1alpha1.LabelWorkload: "web"}},
		Data:       runtime.RawExtension{Raw: data}, Revision: 1,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, p := range []model.Promotion{
		{Workload: "shop/web", ToMode: model.ModeAudit, Reason: "learn", Who: "alice"},
		{Workload: "shop/web", FromMode: model.ModeAudit, ToMode: model.ModeObserve, FromRevision: 1, Reason: "back to observing", Who: "bob"},
	} {
		p.Action, p.ToRevision, p.At = model.ActionPromote, 1, f.now.Add(time.Duration(i-2)*time.Minute)
		rec, err := f.mem.Record(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.writePromotion(t, fmt.Sprintf("web-%d", rec.Seq), rec)
	}
	f.writeSegment(t, "web", model.ModeObserve, 1, 0)
	viewer, operator := f.users(t)

	// The node agent of node-a, as `nanoseg node` builds it.
	agent, err := nodeagent.New(nodeagent.Config{NodeName: "node-a", Listen: "127.0.0.1:0", OwnerDir: t.TempDir(), FlushInterval: time.Second,
		DriftInterval: time.Second}, c.Config, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = agent.Run(actx) })
	t.Cleanup(func() { acancel(); wg.Wait() })
	for !agent.Ready() {
		if ctx.Err() != nil {
			t.Fatal("node agent not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	cli := func(kc string, args ...string) (string, error) {
		t.Helper()
		return runCLI(t, append([]string{"--config", f.cfg, "--kubeconfig", kc}, args...)...)
	}
	verify := func(what string) evidence.ProbeRun {
		t.Helper()
		start := time.Now()
		out, err := cli(operator, "verify", "--timeout", "300ms", "-o", "json")
		var run evidence.ProbeRun
		if err != nil || json.Unmarshal([]byte(out), &run) != nil {
			t.Fatalf("verify %s: %v\n%s", what, err, out)
		}
		t.Logf("verify %s: %d probes through the node agent in %s (CLI run %s)", what, run.Probed, run.Finished.Sub(run.Started).Round(time.Millisecond),
			time.Since(start).Round(time.Millisecond))
		return run
	}
	outcomes := func(run evidence.ProbeRun) map[string]string {
		m := map[string]string{}
		for _, r := range run.Results {
			m[fmt.Sprintf("%s->%s:%d", r.Source, r.Destination, r.Port)] = r.Outcome + "/" + string(r.Expected)
			if !r.Match {
				t.Errorf("mismatch: %+v", r)
			}
		}
		return m
	}
	got := outcomes(verify("without policy"))
	if got["shop/web->shop/db:5432"] != "connected/allow" || got["shop/db->shop/web:80"] != "refused/allow" || len(got) != 2 {
		t.Errorf("verify without policy: %v", got)
	}
	// The table output is the standalone one.
	if out, err := cli(operator, "verify", "--timeout", "300ms"); err != nil ||
		!regexp.MustCompile(`^probed 2 of 2 paths in \S+ \(timeout 300ms per probe, 8 in parallel\): 2 expected to connect, 0 expected blocked, 0 mismatches\n$`).MatchString(out) {
		t.Errorf("verify table: %v\n%s", err, out)
	}

	// db admits nobody: the agent enforces it, and the probe is dropped.
	if _, err := c.Client.NetworkingV1().NetworkPolicies("shop").Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "db-closed"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for nettest.DialTCP(web, netip.AddrPortFrom(vDBV4, 5432), 200*time.Millisecond) == nil {
		if ctx.Err() != nil {
			t.Fatal("db-closed never enforced")
		}
	}
	got = outcomes(verify("with db closed"))
	if got["shop/web->shop/db:5432"] != "timeout/deny" || got["shop/db->shop/web:80"] != "refused/allow" {
		t.Errorf("verify with db closed: %v", got)
	}

	// A viewer may read but not probe.
	for _, args := range [][]string{{"verify"}, {"evidence", "export", "--out", filepath.Join(t.TempDir(), "v")}} {
		if _, err := cli(viewer, args...); err == nil || !strings.Contains(err.Error(),
			"forbidden: user viewer cannot create nanosegmentprobes in namespace shop: ") {
			t.Errorf("%v as viewer: %v", args, err)
		}
	}
	if _, err := cli(viewer, "evidence", "export", "--no-probes", "--no-pdf", "--out", filepath.Join(t.TempDir(), "v")); err != nil {
		t.Errorf("evidence export --no-probes as viewer: %v", err)
	}

	// The cluster administrator's guard on db's port: the bundle lists it.
	createCNP(t, f.dyn, noDBGuard(t))

	// Export and verify offline.
	dir := filepath.Join(t.TempDir(), "bundle")
	out, err := cli(operator, "evidence", "export", "--out", dir, "--no-pdf", "--max-probes", "16")
	if err != nil || !strings.Contains(out, "probes: 2, 0 mismatches") || !strings.Contains(out, "1 of 1 endpoints in sync") {
		t.Fatalf("evidence export: %v\n%s", err, out)
	}
	t.Logf("evidence export:\n%s", out)
	if out, err := runCLI(t, "evidence", "verify", dir); err != nil || !strings.Contains(out, "promotion history hash chain verified") {
		t.Errorf("evidence verify: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, kube.ClusterFile))
	if err != nil {
		t.Fatal(err)
	}
	var co kube.ClusterObjects
	if err := json.Unmarshal(raw, &co); err != nil || len(co.NanoSegments) != 1 || co.NanoSegments[0].Status.InSync != 1 ||
		len(co.Promotions) != 2 || co.Promotions[1].Status.Record == nil || len(co.NetworkPolicies) != 1 || co.NetworkPolicies[0].Name != "db-closed" ||
		len(co.ClusterNetworkPolicies) != 1 || co.ClusterNetworkPolicies[0].Name != "no-db" || co.ClusterNetworkPolicies[0].Spec.Tier != "Admin" {
		t.Errorf("%s: %v\n%s", kube.ClusterFile, err, raw)
	}
	var b evidence.Bundle
	if raw, err := os.ReadFile(filepath.Join(dir, "bundle.json")); err != nil || json.Unmarshal(raw, &b) != nil {
		t.Fatal(err)
	} else if b.Meta.RequestedBy != "operator" || b.Probes == nil || b.Probes.Probed != 2 || !b.Policies.Chain.Verified || len(b.Policies.History) != 2 {
		t.Errorf("bundle: requested by %q, probes %+v, chain %+v", b.Meta.RequestedBy, b.Probes, b.Policies.Chain)
	}

	// A record edited in the API server after the fact.
	probes := f.dyn.Resource(kube.Promotions).Namespace("shop")
	u, err := probes.Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, "it was always enforced", "status", "record", "reason"); err != nil {
		t.Fatal(err)
	}
	if _, err := probes.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(viewer, "history", "--verify"); err == nil || !strings.Contains(err.Error(), "event 1 was altered") {
		t.Errorf("history --verify of an edited record: %v\n%s", err, out)
	}
	dir2 := filepath.Join(t.TempDir(), "bundle2")
	out, err = cli(operator, "evidence", "export", "--out", dir2, "--no-pdf", "--no-probes")
	if err != nil || !regexp.MustCompile(`promotion history chain BROKEN: .*event 1 was altered`).MatchString(out) {
		t.Errorf("evidence export of an edited history: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "evidence", "verify", dir2, "--previous", dir); err == nil || !strings.Contains(err.Error(), "event 1 was altered") {
		t.Errorf("evidence verify of an edited history: %v\n%s", err, out)
	}

	// Every probe object was deleted.
	if l, err := f.dyn.Resource(kube.Probes).Namespace("shop").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("probes left behind: %v %v", l, err)
	}
}
