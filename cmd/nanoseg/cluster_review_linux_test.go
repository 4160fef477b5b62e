//go:build linux

package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/client/kube"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// TestClusterModeReview: defects of the cluster CLI found in review, on
// the cluster-mode fixture.
func TestClusterModeReview(t *testing.T) {
	f := newClusterFixture(t)
	ctx := context.Background()

	// The dns server in kc-sys was observed (its own proposal says so):
	// `policy propose -n shop` shows it, a peer of shop's workloads, with
	// the coverage it has, not as never observed.
	dns := &v1alpha1.NanoSegmentProposal{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindProposal},
		ObjectMeta: metav1.ObjectMeta{Name: "dns", Namespace: "kc-sys", Labels: map[string]string{v1alpha1.LabelWorkload: "dns"}},
		Spec: v1alpha1.NanoSegmentProposalSpec{Workload: "dns", Segment: segment("dns", nil).Spec, Edges: []v1alpha1.ObservedEdge{v1alpha1.EdgeFrom(model.Edge{
			Source: model.Peer{Namespace: "shop", Workload: "web"}, Destination: model.Peer{Namespace: "kc-sys", Workload: "dns"}, Protocol: model.ProtocolUDP, Port: 53,
			Traffic: model.Traffic{FirstSeen: f.now.Add(-time.Hour), LastSeen: f.now.Add(-time.Minute), Flows: 5}}, "")}},
	}
	u := unstructuredOf(t, dns)
	delete(u.Object, "status")
	created, err := f.dyn.Resource(kube.Proposals).Namespace("kc-sys").Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Object["status"] = toMap(t, &v1alpha1.NanoSegmentProposalStatus{Edges: 1, Coverage: &v1alpha1.ProposalCoverage{Observed: metav1.Duration{Duration: 2 * time.Hour}, Endpoints: 1}})
	if _, err := f.dyn.Resource(kube.Proposals).Namespace("kc-sys").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "-n", "shop", "policy", "propose")
	if err != nil {
		t.Fatalf("policy propose -n shop: %v\n%s", err, out)
	}
	line := regexp.MustCompile(`(?m)^ +kc-sys/dns +.*$`).FindString(out)
	if line == "" || strings.Contains(line, "never observed") || !regexp.MustCompile(`^ +kc-sys/dns +2h +1 +5 `).MatchString(line) {
		t.Errorf("policy propose -n shop: the peer kc-sys/dns shows as %q, want observed 2h\n%s", line, out)
	}
	if regexp.MustCompile(`(?m)^kc-sys/dns `).MatchString(out) {
		t.Errorf("policy propose -n shop lists the proposal of another namespace\n%s", out)
	}

	// kc-sys/dns has no NanoSegment (observe, never promoted): nothing in
	// the API server reports its endpoints, so status says unknown ("-"),
	// not 0 in sync; web and db are in sync as their NanoSegments report.
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "status")
	if err != nil || !regexp.MustCompile(`(?m)^kc-sys/dns +observe +0 +1 +- `).MatchString(out) || !regexp.MustCompile(`(?m)^shop/web +enforce +1 +2 +2/2 `).MatchString(out) {
		t.Errorf("status: %v\n%s", err, out)
	}

	// Impersonation as kubectl does it: the admin, --as a viewer, may
	// read but not promote (Forbidden, naming the viewer); --as a user of
	// a group bound to nanoseg-operate may (the promotion is created and
	// waits for a controller); groups without a user are refused.
	f.users(t)
	if out, err := runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "--as", "viewer", "history"); err != nil || !strings.Contains(out, "shop/web") {
		t.Errorf("history --as viewer: %v\n%s", err, out)
	}
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "--as", "viewer", "promote", "shop/db", "--to", "enforce", "--reason", "mine")
	if err == nil || !strings.Contains(err.Error(), "forbidden: user viewer cannot create nanosegmentpromotions in namespace shop") {
		t.Errorf("promote --as viewer: %v\n%s", err, out)
	}
	if _, err := f.c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "operators-nanoseg-operate"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "shop-operators"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "nanoseg-operate"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := f.dyn.Resource(kube.Promotions).Namespace("shop").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "--as", "carol", "--as-group", "shop-operators", "--as-uid", "c-1",
		"--wait-for-controller", "1s", "promote", "shop/db", "--to", "enforce", "--reason", "as carol")
	if err == nil || strings.Contains(err.Error(), "forbidden") {
		t.Errorf("promote --as carol --as-group shop-operators (no controller runs): %v, want a wait that ends\n%s", err, out)
	}
	after, err := f.dyn.Resource(kube.Promotions).Namespace("shop").List(ctx, metav1.ListOptions{})
	if err != nil || len(after.Items) != len(before.Items)+1 {
		t.Errorf("promote --as carol --as-group shop-operators created %d promotions, want 1 (%v)", len(after.Items)-len(before.Items), err)
	}
	if _, err := runCLI(t, "--config", f.cfg, "--kubeconfig", f.kc, "--as-group", "shop-operators", "status"); err == nil || !strings.Contains(err.Error(), "--as-group and --as-uid need --as") {
		t.Errorf("--as-group without --as: %v", err)
	}
}
