//go:build linux

package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

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
}
