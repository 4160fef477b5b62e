//go:build linux

package kube

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// TestConverged: a promotion has converged when every reported endpoint
// that a nanosegment in force selects is in sync in its mode; endpoints of
// other namespaces, unselected or unreported ones do not hold it up.
func TestConverged(t *testing.T) {
	ep := func(ns, pod, app string) model.Endpoint {
		return model.Endpoint{Netns: ns + "_" + pod, Namespace: ns, Workload: app, Labels: map[string]string{"app": app}}
	}
	inv := inventory.NewIndex([]model.Endpoint{ep("a", "web-0", "web"), ep("a", "db-0", "db"), ep("b", "web-0", "web"), ep("b", "gone-0", "gone")}, nil, nil)
	seg := func(ns, app string, mode model.Mode) v1alpha1.NanoSegment {
		return v1alpha1.NanoSegment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
			Spec: v1alpha1.NanoSegmentSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}, Mode: mode}}
	}
	in := policies.InForce{NanoSegments: []v1alpha1.NanoSegment{seg("a", "web", model.ModeAudit), seg("b", "web", "")}}
	rep := func(key string, mode model.Mode, inSync bool) EndpointReport {
		return EndpointReport{Key: key, Mode: mode, InSync: inSync}
	}
	cases := []struct {
		name string
		reps []EndpointReport
		want bool
	}{
		{"all in sync in their modes", []EndpointReport{rep("a_web-0", model.ModeAudit, true), rep("b_web-0", model.ModeObserve, true)}, true},
		{"one still in the old mode", []EndpointReport{rep("a_web-0", model.ModeObserve, true), rep("b_web-0", model.ModeObserve, true)}, false},
		{"one not in sync", []EndpointReport{rep("a_web-0", model.ModeAudit, true), rep("b_web-0", model.ModeObserve, false)}, false},
		{"unselected endpoints do not count", []EndpointReport{rep("a_web-0", model.ModeAudit, true), rep("a_db-0", model.ModeEnforce, false),
			rep("b_web-0", model.ModeObserve, true), rep("b_gone-0", "", false)}, true},
		{"unreported endpoints are not waited for", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &fakeGraph{}
			g.set(nil, nil, []NodeReport{{Node: "n1", Endpoints: tc.reps}})
			n := &clusterNode{graph: g, inv: func() *inventory.Index { return inv }}
			if got := n.converged(in); got != tc.want {
				t.Errorf("converged = %v, want %v", got, tc.want)
			}
		})
	}
	if n := (&clusterNode{graph: &fakeGraph{}, inv: func() *inventory.Index { return inv }}); !n.converged(policies.InForce{}) {
		t.Error("converged with no nanosegment in force = false, want true")
	}
}
