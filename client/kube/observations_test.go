package kube

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// TestLabelPeersMakesDiffSeeProposals: the proposals' edges name
// workloads only; labelled from the inventory, a proposal's rules match
// them, so policy diff reports the rules it would add over nothing in
// force (it reported none before).
func TestLabelPeersMakesDiffSeeProposals(t *testing.T) {
	api := model.Peer{Namespace: "shop", Workload: "api"}
	db := model.Peer{Namespace: "shop", Workload: "db"}
	ext := model.Peer{External: true, Name: "payments"}
	o := &observations{edges: []model.Edge{
		{Source: api, Destination: db, Protocol: model.ProtocolTCP, Port: 5432},
		{Source: api, Destination: ext, Protocol: model.ProtocolTCP, Port: 443},
	}}
	o.labelPeers([]model.Endpoint{
		{Namespace: "shop", Workload: "api", Labels: map[string]string{"app": "api", "pod-template-hash": "abc"}},
		{Namespace: "shop", Workload: "db", Labels: map[string]string{"app": "db"}},
	})
	if got := o.edges[0].Source.Labels; len(got) != 1 || got["app"] != "api" {
		t.Errorf("api's labels %v, want app=api alone (noise dropped)", got)
	}
	if got := o.edges[1].Destination.Labels; got != nil {
		t.Errorf("external peer labelled %v", got)
	}
	seg := v1alpha1.NanoSegment{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Spec: v1alpha1.NanoSegmentSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress: []v1alpha1.Rule{{ID: "from-api", Peers: []v1alpha1.Peer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}}}}}}}
	active, err := policies.NewPolicySet(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := policies.Diff([]v1alpha1.NanoSegment{seg}, active, o.edges)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Added) != 1 || rep.Added[0].Rule != "from-api" {
		t.Errorf("added %v, want shop/db from-api", rep.Added)
	}
}
