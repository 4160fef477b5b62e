package controller_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// guardDB is a ClusterNetworkPolicy of tier TIER whose ingress rule
// "no-intruder" (ACTION) covers shop/intruder reaching shop/db on 5432.
const guardDB = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard-db}
spec:
  tier: TIER
  priority: 7
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
  ingress:
    - name: no-intruder
      action: ACTION
      from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: intruder}}}}]
      protocols: [{tcp: {destinationPort: {number: 5432}}}]
`

func guard(tier, action string) string {
	return strings.NewReplacer("TIER", tier, "ACTION", action).Replace(guardDB)
}

// applyCNP applies doc and fails the test on error.
func (f fixture) applyCNP(t *testing.T, doc string) {
	t.Helper()
	if _, err := f.svc.Apply(context.Background(), "cnp.yaml", []byte(doc), "alice"); err != nil {
		t.Fatalf("apply ClusterNetworkPolicy: %v", err)
	}
}

// ingressPeers returns the app labels of the peers of w's proposed
// ingress rules.
func ingressPeers(rep controller.ProposeReport, w string) []string {
	var out []string
	for _, p := range rep.Proposals {
		if p.Workload != w {
			continue
		}
		for _, r := range p.Revision.Policy.Spec.Ingress {
			for _, peer := range r.Peers {
				if peer.PodSelector != nil {
					out = append(out, peer.PodSelector.MatchLabels["app"])
				}
			}
		}
	}
	return out
}

// TestProposeLeavesOutWhatAnAdminDenyForbids: an observed edge that an
// Admin Deny forbids is not proposed, with or without --include-denied,
// and the report names the tier, policy, priority and rule; an Admin
// Accept or Pass, or a Baseline Deny (the nanosegment's tier decides
// before Baseline), leaves nothing out.
func TestProposeLeavesOutWhatAnAdminDenyForbids(t *testing.T) {
	for _, tc := range []struct {
		tier, action string
		forbidden    bool
	}{
		{"Admin", "Deny", true},
		{"Admin", "Accept", false},
		{"Admin", "Pass", false},
		{"Baseline", "Deny", false},
	} {
		t.Run(tc.tier+tc.action, func(t *testing.T) {
			f := newFixture(t)
			f.applyCNP(t, guard(tc.tier, tc.action))
			if err := f.mem.MergeEdges([]model.Edge{
				recent("web", "db", 5432, model.VerdictCounts{Observed: 3}),
				recent("intruder", "db", 5432, model.VerdictCounts{Observed: 2}),
			}); err != nil {
				t.Fatal(err)
			}
			for _, includeDenied := range []bool{false, true} {
				rep, err := f.svc.Propose(0, includeDenied, "alice")
				if err != nil {
					t.Fatal(err)
				}
				peers := ingressPeers(rep, "shop/db")
				if !tc.forbidden {
					if len(rep.Forbidden) != 0 || !strings.Contains(strings.Join(peers, ","), "intruder") {
						t.Fatalf("includeDenied=%v: forbidden %v, db ingress peers %v: want intruder proposed, nothing forbidden", includeDenied, rep.Forbidden, peers)
					}
					continue
				}
				if strings.Contains(strings.Join(peers, ","), "intruder") || !strings.Contains(strings.Join(peers, ","), "web") {
					t.Errorf("includeDenied=%v: db ingress peers %v: want web only", includeDenied, peers)
				}
				want := policies.ForbiddenEdge{Edge: "shop/intruder -> shop/db TCP/5432", Direction: model.Ingress, Flows: 1,
					Rule: policies.ClusterRuleRef{Policy: policies.PolicyRef{Kind: "ClusterNetworkPolicy", Name: "guard-db"}, Tier: cnpv1alpha2.TierAdmin,
						Priority: 7, Rule: "ingress-0", Name: "no-intruder", Action: cnpv1alpha2.ActionDeny}}
				if len(rep.Forbidden) != 1 || rep.Forbidden[0] != want {
					t.Fatalf("includeDenied=%v: forbidden = %+v, want [%+v]", includeDenied, rep.Forbidden, want)
				}
				s := rep.Forbidden[0].String()
				for _, part := range []string{"guard-db", "Admin", "priority 7", "ingress-0", "no-intruder"} {
					if !strings.Contains(s, part) {
						t.Errorf("%q does not name %s", s, part)
					}
				}
			}
			inf, err := f.svc.Infer(0, false)
			if err != nil {
				t.Fatal(err)
			}
			for k, why := range inf.LeftOut {
				if tc.forbidden != strings.HasPrefix(why, controller.LeftOutForbidden) {
					t.Errorf("left out %s: %q", k, why)
				}
			}
			if tc.forbidden && len(inf.LeftOut) != 1 {
				t.Errorf("left out: %v, want the intruder edge", inf.LeftOut)
			}
		})
	}
}
