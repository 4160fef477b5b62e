//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/client/kube"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/inventory"
	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/lab/kubelab"
	"github.com/nanoseg/nanoseg/manifests"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

// The lab of the cluster-mode tests: the shop's web and db as pods.
const clusterTopology = `kind: LabTopology
name: kc
dns: kc-sys/dns
namespaces:
  - {name: kc-sys}
  - {name: shop}
workloads:
  - {name: dns, namespace: kc-sys, ports: [{port: 53, protocol: UDP}]}
  - {name: web, namespace: shop, labels: {app: web}, replicas: 2, ports: [{name: http, port: 80}]}
  - {name: db, namespace: shop, labels: {app: db}, ports: [{port: 5432}]}
`

// clusterFixture is a cluster holding what the controller would have
// written (revisions, promotions with their records, NanoSegments with
// status, proposals), and the same data in a standalone store.
type clusterFixture struct {
	c   *kubetest.Cluster
	dyn dynamic.Interface
	now time.Time
	mem *store.Mem // the standalone store: the same revisions, records, edges and spans
	inv *inventory.Index
	kc  string // the admin's kubeconfig
	cfg string // an empty nanoseg config
}

// TestClusterMode: the CLI against a real API server (the objects the
// controller writes are written by the test) prints for status, policy
// show, policy diff, explain, matrix, graph and history what it prints
// against a standalone agent holding the same data; promote is refused
// Forbidden for a user with nanoseg-view (by the CLI, `kubectl nanoseg`,
// `kubectl create` and client-go), creates a NanoSegmentPromotion for one with nanoseg-operate
// (the admission policies stamp who) and prints the record a stand-in
// controller writes; a Failed promotion is the controller's message and
// exit 1; and a record edited after the fact fails `history --verify`.
func TestClusterMode(t *testing.T) {
	// Not parallel: the CLI sets klog's global logger once per process,
	// a race with any client-go client a parallel test builds meanwhile.
	f := newClusterFixture(t)
	ctx := context.Background()

	std := f.standalone(t)
	same := func(name string, args ...string) {
		t.Helper()
		sameAs(t, name, std.URL, f, nil, args...)
	}
	// JSON outputs match but for the time they were made ("to") and the
	// start of the observation (the cluster's coverage spans end at the
	// time of the read: see client/kube).
	sameJSON := func(name string, args ...string) {
		t.Helper()
		sameAs(t, name, std.URL, f, func(s string) string { return withoutTimes(t, s) }, args...)
	}
	same("status", "status")
	same("policy show", "policy", "show")
	same("policy show web", "policy", "show", "shop/web")
	same("policy show --revision", "policy", "show", "shop/web", "--revision", "1")
	same("history", "history")
	same("history --verify", "history", "--verify")
	// The controller proposes; diff reviews the proposal against what is
	// in force, as diff reviews `policy propose`'s new revision.
	if _, err := f.mem.AddRevision(store.Revision{Workload: "shop/web", Origin: store.OriginProposed, CreatedAt: f.now, CreatedBy: "nanoseg controller",
		Policy: f.proposed(), Window: 0}); err != nil {
		t.Fatal(err)
	}
	same("policy diff", "policy", "diff")
	same("policy diff web", "policy", "diff", "--workload", "shop/web")
	same("policy explain", "policy", "explain", "--from", "shop/web", "--to", "shop/db", "--port", "5432/TCP")
	same("policy matrix", "policy", "matrix", "--ports", "5432/TCP,80/TCP")
	// propose shows the controller's proposals: web's is new (revision 2
	// once promoted), db's equals its revision 1.
	out, err := runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "policy", "propose")
	if err != nil || !regexp.MustCompile(`(?m)^shop/db +1 +false +0 +0$`).MatchString(out) || !regexp.MustCompile(`(?m)^shop/web +2 +true +0 +1$`).MatchString(out) {
		t.Errorf("policy propose: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "policy", "propose", "--window", "1h"); err == nil || !strings.Contains(err.Error(), "window: against a cluster the controller proposes with its own window") {
		t.Errorf("policy propose --window: %v", err)
	}
	sameJSON("policy diff json", "policy", "diff", "-o", "json")
	sameJSON("graph", "graph", "-o", "json")
	sameJSON("status json", "status", "-o", "json")
	sameJSON("history json", "history", "-o", "json")

	// A ClusterNetworkPolicy through the API (and in the standalone
	// store): explain and matrix against the cluster name its Admin Deny
	// as the agent's do.
	guard := noDBGuard(t)
	if _, err := f.mem.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, By: "test", Policy: guard}); err != nil {
		t.Fatal(err)
	}
	createCNP(t, f.dyn, guard)
	same("policy explain with a ClusterNetworkPolicy", "policy", "explain", "--from", "shop/web", "--to", "shop/db", "--port", "5432/TCP")
	same("policy matrix with a ClusterNetworkPolicy", "policy", "matrix", "--ports", "5432/TCP,80/TCP")
	if out, err := runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "policy", "explain", "--from", "shop/web", "--to", "shop/db", "--port", "5432/TCP"); err != nil ||
		!strings.Contains(out, "Admin") || !strings.Contains(out, "no-db") {
		t.Errorf("policy explain against the cluster does not name the Admin Deny: %v\n%s", err, out)
	}
	// The controller left web -> db TCP/5432 out of db's proposal as
	// forbidden and TCP/9999 as failed: propose lists each under its own
	// heading, the forbidden one with the rule.
	web, db := model.Peer{Namespace: "shop", Workload: "web"}, model.Peer{Namespace: "shop", Workload: "db"}
	var edges []any
	for _, oe := range []v1alpha1.ObservedEdge{
		v1alpha1.EdgeFrom(model.Edge{Source: web, Destination: db, Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{FirstSeen: f.now.Add(-time.Hour), LastSeen: f.now, Flows: 3}},
			controller.LeftOutForbidden+"ClusterNetworkPolicy no-db (Admin, priority 5) rule ingress-0"),
		v1alpha1.EdgeFrom(model.Edge{Source: web, Destination: db, Protocol: model.ProtocolTCP, Port: 9999, Traffic: model.Traffic{FirstSeen: f.now.Add(-time.Hour), LastSeen: f.now, Flows: 2, Failed: 2}},
			controller.LeftOutFailed),
	} {
		edges = append(edges, toMap(t, &oe))
	}
	setEdges := func(edges any) {
		t.Helper()
		patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"edges": edges}})
		if _, err := f.dyn.Resource(kube.Proposals).Namespace("shop").Patch(ctx, "db", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dbProposal, err := f.dyn.Resource(kube.Proposals).Namespace("shop").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before, _, _ := unstructured.NestedSlice(dbProposal.Object, "spec", "edges")
	setEdges(edges)
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "policy", "propose")
	setEdges(before)
	forbidden, failed, _ := strings.Cut(out, "left out, because every connection failed")
	failed, _, _ = strings.Cut(failed, "coverage")
	if err != nil || !regexp.MustCompile(`(?m)^left out, because an Admin ClusterNetworkPolicy rule denies them.*\n +shop/web -> shop/db TCP/5432: forbidden by .*no-db \(Admin, priority 5\)`).MatchString(forbidden) ||
		strings.Contains(failed, "5432") || !strings.Contains(failed, "shop/web -> shop/db TCP/9999") {
		t.Errorf("policy propose with edges left out: %v\n%s", err, out)
	}

	// DENIED and WOULD-DENY come from the NanoSegments' status.
	f.setDenied(t, "web", 7)
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "-n", "shop", "status", "-o", "json")
	var st []controller.WorkloadStatus
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || len(st) != 2 || st[1].Workload != "shop/web" || st[1].Denied != 7 || st[1].WouldDeny != 0 {
		t.Errorf("status -n shop: %v %+v\n%s", err, st, out)
	}

	viewer, operator := f.users(t)
	f.admission(t)
	// nanoseg-view alone does not let the CLI list the inventory: it says
	// what is missing instead of waiting.
	reader := filepath.Join(t.TempDir(), "reader")
	if _, err := f.c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader-nanoseg-view"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "reader"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "nanoseg-view"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := kubetest.WriteKubeconfig(reader, f.c.UserConfig("reader"), "reader"); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "--config", f.cfg, "--kubeconfig", reader, "status"); err != nil || !strings.Contains(out, "shop/web") {
		t.Errorf("status with nanoseg-view only: %v\n%s", err, out)
	}
	// Without any role: a clear error naming what was refused.
	nobody := filepath.Join(t.TempDir(), "nobody")
	if err := kubetest.WriteKubeconfig(nobody, f.c.UserConfig("nobody"), "nobody"); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "--config", f.cfg, "--kubeconfig", nobody, "status"); err == nil ||
		!strings.Contains(err.Error(), `is forbidden: User "nobody" cannot list resource`) {
		t.Errorf("status without rights: %v\n%s", err, out)
	}
	// A viewer reads, but may not promote: the CLI says so, exit 1 ...
	if out, err := runCLI(t, "--config", f.cfg, "--kubeconfig", viewer, "history"); err != nil || !strings.Contains(out, "shop/web") {
		t.Errorf("history as viewer: %v\n%s", err, out)
	}
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", viewer, "promote", "shop/db", "--to", "enforce", "--reason", "mine")
	if err == nil || !strings.Contains(err.Error(), "forbidden: user viewer cannot create nanosegmentpromotions in namespace shop") {
		t.Errorf("promote as viewer: %v\n%s", err, out)
	}
	// ... and so does the API server.
	vdyn := dynamic.NewForConfigOrDie(f.c.UserConfig("viewer"))
	_, err = vdyn.Resource(kube.Promotions).Namespace("shop").Create(ctx, unstructuredOf(t, &v1alpha1.NanoSegmentPromotion{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindPromotion},
		ObjectMeta: metav1.ObjectMeta{Name: "by-hand"}, Spec: v1alpha1.NanoSegmentPromotionSpec{Workload: "db", Mode: model.ModeEnforce, Reason: "mine"},
	}), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("create as viewer at the API server: %v", err)
	}

	// An operator's promotion is an object the (stand-in) controller
	// carries out; the CLI prints its record.
	stop := f.standInController(t)
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", operator, "-n", "shop", "promote", "db", "--to", "enforce", "--reason", "go")
	if err != nil || out != "promote shop/db: audit rev 1 -> enforce rev 1 (event 4, by operator: \"go\")\n"+
		"coverage of its proposal: observed 2h, 12 flows, 1 peers, last new peer or port 3h before the window's end\n"+
		"dataplane converged: every endpoint holds the new rule set\n" {
		t.Errorf("promote as operator: %v\n%s", err, out)
	}
	l, err := f.dyn.Resource(kube.Promotions).Namespace("shop").List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 4 {
		t.Fatalf("promotions after promote: %v, %v", l, err)
	}
	if out, err := runCLI(t, "--config", f.cfg, "--kubeconfig", operator, "-n", "shop", "history", "db"); err != nil || strings.Count(out, "shop/db") != 2 {
		t.Errorf("history db -n shop: %v\n%s", err, out)
	}
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", operator, "rollback", "shop/db", "--reason", "back")
	if err != nil || !strings.HasPrefix(out, "rollback shop/db: enforce rev 1 -> audit rev 1 (event 5, by operator: \"back\")\n") {
		t.Errorf("rollback as operator: %v\n%s", err, out)
	}
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", operator, "promote", "shop/db", "--to", "enforce", "--reason", "refuse me")
	if err == nil || err.Error() != "promote shop/db: refused: nothing to do" {
		t.Errorf("failed promotion: %v\n%s", err, out)
	}
	// Forced past the coverage gate: the output gives one observed time,
	// the one the controller's gate saw (recorded), not also the
	// proposal's figure from its last refresh.
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", operator, "promote", "shop/db", "--to", "enforce", "--force", "--reason", "forced")
	if err != nil || !strings.Contains(out, "warning: forced (recorded in the history): observed for 7m, less than the 1h required (--min-observed)\n") ||
		len(regexp.MustCompile(`observed (for )?\d`).FindAllString(out, -1)) != 1 {
		t.Errorf("forced promotion: %v\n%s", err, out)
	}
	stop()
	var ec exitCoder
	if out, err := runCLI(t, "--config", f.cfg, "--kubeconfig", viewer, "history", "--verify"); err != nil || !strings.Contains(out, "history verified: 6 records") {
		t.Errorf("history --verify: %v\n%s", err, out)
	}

	// A record edited after the fact breaks the chain.
	u, err := f.dyn.Resource(kube.Promotions).Namespace("shop").Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, "it was always enforced", "status", "record", "reason"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dyn.Resource(kube.Promotions).Namespace("shop").UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", viewer, "history", "--verify")
	if err == nil || !asExitCoder(err, &ec) || ec.ExitCode() != 1 || !strings.Contains(err.Error(), "event 1 was altered") {
		t.Errorf("history --verify of an edited record: %v\n%s", err, out)
	}

	// As a kubectl plugin: kubectl finds kubectl-nanoseg on PATH and runs
	// it with the rest of its arguments; the kubeconfig comes from
	// KUBECONFIG as kubectl's own does.
	kubectl := filepath.Join(kubetest.Bin(), "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Logf("no kubectl (%v): the plugin is not tried", err)
	} else {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.Symlink(self, filepath.Join(dir, "kubectl-nanoseg")); err != nil {
			t.Fatal(err)
		}
		plugin := exec.Command(kubectl, "nanoseg", "--config", f.cfg, "history", "shop/db")
		plugin.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "KUBECONFIG="+operator, runMainEnv+"=1")
		got, err := plugin.CombinedOutput()
		want, werr := runCLI(t, "--config", f.cfg, "--kubeconfig", operator, "history", "shop/db")
		if err != nil || werr != nil || string(got) != want {
			t.Errorf("kubectl nanoseg history: %v %v\n%s\nwant\n%s", err, werr, got, want)
		}
		plugin = exec.Command(kubectl, "nanoseg", "--config", f.cfg, "promote", "db", "-n", "shop", "--to", "enforce", "--reason", "x")
		plugin.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "KUBECONFIG="+viewer, runMainEnv+"=1")
		got, err = plugin.CombinedOutput()
		if err == nil || !strings.Contains(string(got), "nanoseg: promote db: forbidden: user viewer cannot create nanosegmentpromotions in namespace shop") {
			t.Errorf("kubectl nanoseg promote as viewer: %v\n%s", err, got)
		}
		// kubectl's own create of a promotion, as the viewer: the API
		// server's Forbidden.
		manifest := filepath.Join(dir, "promotion.yaml")
		if err := os.WriteFile(manifest, []byte("apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegmentPromotion\n"+
			"metadata: {name: by-kubectl, namespace: shop}\nspec: {workload: db, mode: enforce, reason: mine}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err = exec.Command(kubectl, "--kubeconfig", viewer, "create", "-f", manifest).CombinedOutput()
		if err == nil || !strings.Contains(string(got), "Error from server (Forbidden)") ||
			!strings.Contains(string(got), `User "viewer" cannot create resource "nanosegmentpromotions"`) {
			t.Errorf("kubectl create -f of a promotion as viewer: %v\n%s", err, got)
		}
	}

	// Probes send traffic: a viewer may not (TestClusterVerifyEvidence
	// runs them through a real node agent).
	if _, err := runCLI(t, "--config", f.cfg, "--kubeconfig", viewer, "verify"); err == nil || !strings.Contains(err.Error(), "forbidden: user viewer cannot create nanosegmentprobes") {
		t.Errorf("verify: %v", err)
	}
}

func newClusterFixture(t *testing.T) *clusterFixture {
	t.Helper()
	c := kubetest.New(t, kubetest.Options{CRDDirs: []string{filepath.Join("..", "..", "manifests", "crds"), filepath.Join("..", "..", "manifests", "crds", "cnp")}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	top, err := lab.Parse([]byte(clusterTopology))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := lab.NewPlan(top, []byte(clusterTopology))
	if err != nil {
		t.Fatal(err)
	}
	if err := kubelab.Register(ctx, c.Client, plan); err != nil {
		t.Fatal(err)
	}
	f := &clusterFixture{c: c, dyn: dynamic.NewForConfigOrDie(c.Config), now: time.Now().UTC().Truncate(time.Second), mem: store.NewMem(), kc: c.Kubeconfig}
	f.cfg = filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(f.cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Revisions: one declared per workload, as ControllerRevisions.
	for _, w := range []string{"web", "db"} {
		r, err := f.mem.AddRevision(store.Revision{Workload: "shop/" + w, Origin: store.OriginDeclared, CreatedAt: f.now.Add(-4 * time.Hour), CreatedBy: "alice",
			Policy: segment(w, nil)})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(r)
		if _, err := c.Client.AppsV1().ControllerRevisions("shop").Create(ctx, &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-r%d", w, r.Number), Labels: map[string]string{v1alpha1.LabelWorkload: w}},
			Data:       runtime.RawExtension{Raw: data}, Revision: int64(r.Number),
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The history: web to audit, then enforce; db to audit.
	for i, p := range []model.Promotion{
		{Workload: "shop/web", ToMode: model.ModeAudit, Reason: "learn", Who: "alice"},
		{Workload: "shop/web", ToMode: model.ModeEnforce, Reason: "lock it", Who: "bob"},
		{Workload: "shop/db", ToMode: model.ModeAudit, Reason: "learn", Who: "alice"},
	} {
		p.Action, p.ToRevision, p.At = model.ActionPromote, 1, f.now.Add(time.Duration(i-3)*time.Hour)
		rec, err := f.mem.Record(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.writePromotion(t, fmt.Sprintf("%s-%d", strings.TrimPrefix(p.Workload, "shop/"), rec.Seq), rec)
	}
	// The NanoSegments in force, with what the node agents reported.
	f.writeSegment(t, "web", model.ModeEnforce, 2, 0)
	f.writeSegment(t, "db", model.ModeAudit, 1, 0)
	// What was observed: web talks to db; both proposals keep the edge.
	// The agent's edges carry the peers' identity labels; a proposal's
	// spec.edges do not (the CLI labels them from the inventory).
	web := model.Peer{Namespace: "shop", Workload: "web", Labels: map[string]string{"app": "web"}}
	db := model.Peer{Namespace: "shop", Workload: "db", Labels: map[string]string{"app": "db"}}
	e := model.Edge{Source: web, Destination: db, Protocol: model.ProtocolTCP, Port: 5432,
		Traffic: model.Traffic{FirstSeen: f.now.Add(-3 * time.Hour), LastSeen: f.now.Add(-10 * time.Minute), Flows: 12, BytesOut: 4000, BytesIn: 9000}}
	oe := v1alpha1.EdgeFrom(e, "")
	back, err := oe.Model()
	if err != nil {
		t.Fatal(err)
	}
	back.Source.Labels, back.Destination.Labels = e.Source.Labels, e.Destination.Labels
	if err := f.mem.MergeEdges([]model.Edge{back}); err != nil {
		t.Fatal(err)
	}
	f.writeProposal(t, "web", f.proposed().Spec, oe, 2)
	f.writeProposal(t, "db", segment("db", nil).Spec, oe, 1)
	var spans []model.ObservedSpan
	for w, n := range map[string]int{"web": 2, "db": 1} {
		for i := range n {
			spans = append(spans, model.ObservedSpan{Workload: "shop/" + w, Endpoint: fmt.Sprintf("%s-%d", w, i), Start: f.now.Add(-2 * time.Hour), End: f.now})
		}
	}
	if err := f.mem.RecordObserved(spans); err != nil {
		t.Fatal(err)
	}
	// The inventory, as the CLI lists it.
	src, err := invkube.New(c.Client, invkube.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ictx, icancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(ictx) }()
	defer func() { icancel(); <-done }()
	if err := src.WaitForSync(ictx); err != nil {
		t.Fatal(err)
	}
	snap, err := src.List(ictx)
	if err != nil {
		t.Fatal(err)
	}
	f.inv = inventory.NewIndex(snap.Endpoints, snap.Namespaces, snap.Externals)
	f.inv.SetServices(snap.Services)
	return f
}

// segment is workload w's NanoSegment with egress rules.
func segment(w string, egress []v1alpha1.Rule) *v1alpha1.NanoSegment {
	return &v1alpha1.NanoSegment{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: w, Namespace: "shop"},
		Spec:       v1alpha1.NanoSegmentSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": w}}, Egress: egress},
	}
}

// proposed is what the controller proposes for web: egress to db on 5432.
func (f *clusterFixture) proposed() *v1alpha1.NanoSegment {
	var seg v1alpha1.NanoSegment
	doc := `apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  egress:
  - id: web-db
    peers: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 5432, protocol: TCP}]
`
	if err := yaml.UnmarshalStrict([]byte(doc), &seg); err != nil {
		panic(err)
	}
	return &seg
}

func unstructuredOf(t *testing.T, obj any) *unstructured.Unstructured {
	t.Helper()
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: raw}
}

// createWithStatus creates obj in shop and then writes its status.
func (f *clusterFixture) createWithStatus(t *testing.T, gvr schema.GroupVersionResource, obj any, status map[string]any) {
	t.Helper()
	ctx := context.Background()
	u := unstructuredOf(t, obj)
	delete(u.Object, "status")
	created, err := f.dyn.Resource(gvr).Namespace("shop").Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s: %v", gvr.Resource, err)
	}
	if status != nil {
		if g, ok := status["observedGeneration"]; ok && g == int64(-1) {
			status["observedGeneration"] = created.GetGeneration()
		}
		created.Object["status"] = status
		if _, err := f.dyn.Resource(gvr).Namespace("shop").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("status of %s %s: %v", gvr.Resource, created.GetName(), err)
		}
	}
}

func toMap(t *testing.T, v any) map[string]any {
	t.Helper()
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (f *clusterFixture) writePromotion(t *testing.T, name string, rec model.Promotion) {
	t.Helper()
	f.createWithStatus(t, kube.Promotions, &v1alpha1.NanoSegmentPromotion{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindPromotion},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.NanoSegmentPromotionSpec{Workload: strings.TrimPrefix(rec.Workload, "shop/"), Mode: rec.ToMode, Revision: int32(rec.ToRevision), Reason: rec.Reason},
	}, toMap(t, &v1alpha1.NanoSegmentPromotionStatus{Phase: v1alpha1.PromotionSucceeded, Record: ptrTo(v1alpha1.RecordFrom(rec))}))
}

func ptrTo[T any](v T) *T { return &v }

func (f *clusterFixture) writeSegment(t *testing.T, w string, mode model.Mode, endpoints int32, denied int64) {
	t.Helper()
	seg := segment(w, nil)
	seg.Spec.Mode = mode
	seg.Labels = map[string]string{v1alpha1.LabelWorkload: w, v1alpha1.LabelRevision: "1"}
	st := toMap(t, &v1alpha1.NanoSegmentStatus{Revision: 1, Endpoints: endpoints, InSync: endpoints, Denied: denied})
	st["observedGeneration"] = int64(-1)
	f.createWithStatus(t, kube.NanoSegments, seg, st)
}

func (f *clusterFixture) writeProposal(t *testing.T, w string, spec v1alpha1.NanoSegmentSpec, edge v1alpha1.ObservedEdge, endpoints int32) {
	t.Helper()
	f.createWithStatus(t, kube.Proposals, &v1alpha1.NanoSegmentProposal{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindProposal},
		ObjectMeta: metav1.ObjectMeta{Name: w, Labels: map[string]string{v1alpha1.LabelWorkload: w}},
		Spec:       v1alpha1.NanoSegmentProposalSpec{Workload: w, Segment: spec, Edges: []v1alpha1.ObservedEdge{edge}},
	}, toMap(t, &v1alpha1.NanoSegmentProposalStatus{Edges: 1, Coverage: &v1alpha1.ProposalCoverage{Observed: metav1.Duration{Duration: 2 * time.Hour}, Endpoints: endpoints}}))
}

// standalone serves the fixture's data as an agent would: the same
// store, the same inventory, a node whose endpoints of web and db are in
// sync (as the NanoSegments' status says).
func (f *clusterFixture) standalone(t *testing.T) *httptest.Server {
	node := &syncedNode{inSync: map[string]bool{}}
	for _, w := range []string{"shop/web", "shop/db"} {
		for _, e := range f.inv.Workload(w) {
			node.inSync[e.Netns] = true
		}
	}
	svc := controller.New(controller.Config{}, f.mem, f.mem, f.inv, node, nil)
	ts := httptest.NewServer(server.New(svc, server.Config{}, nil).Handler())
	t.Cleanup(ts.Close)
	return ts
}

// syncedNode is a node whose endpoints in inSync hold their rule sets;
// it reports nothing of the others, as against the cluster nothing
// reports the endpoints of a workload without a NanoSegment.
type syncedNode struct{ inSync map[string]bool }

func (n *syncedNode) Enforce(context.Context, policies.InForce, []string) error { return nil }
func (n *syncedNode) Defaults() map[string][]policies.PolicyRef                 { return nil }
func (n *syncedNode) Applied(netns string) controller.EndpointSync {
	return controller.EndpointSync{Known: n.inSync[netns]}
}
func (n *syncedNode) Read(netns string, _ bool) controller.EndpointSync {
	return controller.EndpointSync{Known: n.inSync[netns], InSync: n.inSync[netns], Unreported: !n.inSync[netns]}
}
func (n *syncedNode) Flush() error                 { return nil }
func (n *syncedNode) Names() map[netip.Addr]string { return nil }
func (n *syncedNode) Probe(context.Context, model.Endpoint, string, netip.AddrPort, time.Duration) controller.ProbeOutcome {
	return controller.ProbeOutcome{}
}

// users binds "viewer" to the ClusterRole nanoseg-view and "operator" to
// nanoseg-operate (manifests/rbac), and returns their kubeconfigs: those
// roles alone are what the CLI needs.
func (f *clusterFixture) users(t *testing.T) (viewer, operator string) {
	t.Helper()
	ctx := context.Background()
	f.apply(t, "rbac")
	bind := func(user, role string) {
		if _, err := f.c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind("viewer", "nanoseg-view")
	bind("operator", "nanoseg-operate")
	dir := t.TempDir()
	viewer, operator = filepath.Join(dir, "viewer"), filepath.Join(dir, "operator")
	for path, user := range map[string]string{viewer: "viewer", operator: "operator"} {
		if err := kubetest.WriteKubeconfig(path, f.c.UserConfig(user), user); err != nil {
			t.Fatal(err)
		}
	}
	return viewer, operator
}

// apply creates the objects of the manifests' directory dir (cluster-scoped
// ones: ClusterRoles, admission policies and their bindings).
func (f *clusterFixture) apply(t *testing.T, dir string) {
	t.Helper()
	objs, err := manifests.Render(manifests.FS, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		gv, err := schema.ParseGroupVersion(o.GetAPIVersion())
		if err != nil {
			t.Fatal(err)
		}
		plural := strings.ToLower(o.GetKind())
		if strings.HasSuffix(plural, "y") {
			plural = strings.TrimSuffix(plural, "y") + "ies"
		} else {
			plural += "s"
		}
		if _, err := f.dyn.Resource(gv.WithResource(plural)).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// admission applies the admission policies (manifests/admission) and
// waits until the API server stamps spec.requestedBy.
func (f *clusterFixture) admission(t *testing.T) {
	t.Helper()
	f.apply(t, "admission")
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := f.dyn.Resource(kube.Promotions).Namespace("shop").Create(context.Background(), unstructuredOf(t, &v1alpha1.NanoSegmentPromotion{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindPromotion},
			ObjectMeta: metav1.ObjectMeta{Name: "dry-run"}, Spec: v1alpha1.NanoSegmentPromotionSpec{Workload: "db", Mode: model.ModeAudit, Reason: "x"},
		}), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			if user, _, _ := unstructured.NestedString(got.Object, "spec", "requestedBy", "username"); user == "admin" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admission policies never took effect (last error: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// standInController carries out the promotions of shop as the cluster
// controller does, recording in the fixture's store: a promotion whose
// reason is "refuse me" fails; others get the next record and their
// NanoSegment is updated and reported in sync. It returns its stop.
func (f *clusterFixture) standInController(t *testing.T) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if err := f.carryOutPending(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("stand-in controller: %v", err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

func (f *clusterFixture) carryOutPending(ctx context.Context) error {
	api := f.dyn.Resource(kube.Promotions).Namespace("shop")
	l, err := api.List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, u := range l.Items {
		var p v1alpha1.NanoSegmentPromotion
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
			return err
		}
		if p.Status.Phase != "" {
			continue
		}
		st := v1alpha1.NanoSegmentPromotionStatus{Phase: v1alpha1.PromotionFailed, Message: "refused: nothing to do"}
		if p.Spec.Reason != "refuse me" {
			w := "shop/" + p.Spec.Workload
			cur, _ := f.mem.State(w)
			who := "(not stamped)"
			if p.Spec.RequestedBy != nil {
				who = p.Spec.RequestedBy.Username
			}
			ev := model.Promotion{At: v1alpha1.RecordTime(time.Now()), Who: who, Workload: w, Action: model.ActionPromote, ToMode: p.Spec.Mode,
				ToRevision: max(int(p.Spec.Revision), cur.Revision), Reason: p.Spec.Reason}
			if p.Spec.Force {
				ev.FromMode, ev.FromRevision = cur.Mode, cur.Revision
				ev.Forced = []string{"observed for 7m, less than the 1h required (--min-observed)"}
			}
			if p.Spec.Rollback {
				hist, _ := f.mem.History(w)
				last := hist[len(hist)-1]
				ev.Action, ev.ToMode, ev.ToRevision, ev.Undoes = model.ActionRollback, last.FromMode, last.FromRevision, last.Seq
			}
			rec, err := f.mem.Record(ev, nil)
			if err != nil {
				return err
			}
			st = v1alpha1.NanoSegmentPromotionStatus{Phase: v1alpha1.PromotionSucceeded, Record: ptrTo(v1alpha1.RecordFrom(rec))}
			if err := f.updateSegment(ctx, p.Spec.Workload, rec.ToMode); err != nil {
				return err
			}
		}
		u.Object["status"] = toMapErr(&st)
		if _, err := api.UpdateStatus(ctx, &u, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return err
		}
	}
	return nil
}

func toMapErr(v any) map[string]any {
	raw, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
	return raw
}

// updateSegment sets workload w's NanoSegment to mode and reports its
// endpoints in sync for the new generation.
func (f *clusterFixture) updateSegment(ctx context.Context, w string, mode model.Mode) error {
	api := f.dyn.Resource(kube.NanoSegments).Namespace("shop")
	u, err := api.Get(ctx, w, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if err := unstructured.SetNestedField(u.Object, string(mode), "spec", "mode"); err != nil {
		return err
	}
	if u, err = api.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return err
	}
	n, _, _ := unstructured.NestedInt64(u.Object, "status", "endpoints")
	if err := errors.Join(unstructured.SetNestedField(u.Object, u.GetGeneration(), "status", "observedGeneration"),
		unstructured.SetNestedField(u.Object, n, "status", "inSync")); err != nil {
		return err
	}
	_, err = api.UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}

// setDenied sets the denied count of workload w's NanoSegment's status.
func (f *clusterFixture) setDenied(t *testing.T, w string, denied int64) {
	t.Helper()
	api := f.dyn.Resource(kube.NanoSegments).Namespace("shop")
	u, err := api.Get(context.Background(), w, metav1.GetOptions{})
	if err == nil {
		err = unstructured.SetNestedField(u.Object, denied, "status", "denied")
	}
	if err == nil {
		_, err = api.UpdateStatus(context.Background(), u, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// lineDiff lists the lines where a and b differ.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("%d: %s\n%d: %s", i+1, x, i+1, y))
		}
	}
	return strings.Join(out, "\n")
}

// sameAs runs the CLI with args against the standalone API at url and
// against the fixture's cluster and fails t unless the outputs, through
// norm (nil: as they are), are the same.
func sameAs(t *testing.T, name, url string, f *clusterFixture, norm func(string) string, args ...string) {
	t.Helper()
	want, err := runAgainst(t, url, args...)
	if err != nil {
		t.Fatalf("%s standalone: %v\n%s", name, err, want)
	}
	got, err := runCLI(t, append([]string{"--config", f.cfg, "--kubeconfig", f.kc}, args...)...)
	if err != nil {
		t.Fatalf("%s against the cluster: %v\n%s", name, err, got)
	}
	if norm != nil {
		got, want = norm(got), norm(want)
	}
	if got != want {
		t.Errorf("%s: against the cluster, then standalone:\n%s", name, lineDiff(got, want))
	}
}

// withoutTimes re-encodes JSON document s with the coverage's "to",
// "from" and "firstObserved" fields and the graph's "generatedAt" removed.
func withoutTimes(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is no JSON: %v\n%s", err, s)
	}
	var strip func(any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			delete(x, "to")
			delete(x, "from")
			delete(x, "firstObserved")
			delete(x, "generatedAt")
			for _, y := range x {
				strip(y)
			}
		case []any:
			for _, y := range x {
				strip(y)
			}
		}
	}
	strip(v)
	out, _ := json.MarshalIndent(v, "", "  ")
	return string(out)
}

// noDBGuard is an Admin ClusterNetworkPolicy that denies shop/db's port
// 5432 to every pod.
func noDBGuard(t *testing.T) *cnpv1alpha2.ClusterNetworkPolicy {
	t.Helper()
	var p cnpv1alpha2.ClusterNetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(`apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-db}
spec:
  tier: Admin
  priority: 5
  subject: {pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}, podSelector: {matchLabels: {app: db}}}}
  ingress: [{name: no-5432, action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}]
`), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// createCNP creates p through the API server.
func createCNP(t *testing.T, dyn dynamic.Interface, p *cnpv1alpha2.ClusterNetworkPolicy) {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	if _, err := dyn.Resource(kube.ClusterNetworkPolicies).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
