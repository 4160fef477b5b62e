package policies

import (
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// dbSegment allows shop/db ingress on 5432 from web (rule from-web) and
// from intruder (rule from-intruder).
const dbSegment = `apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  mode: enforce
  policyTypes: [Ingress]
  ingress:
    - id: from-web
      peers: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{protocol: TCP, port: 5432}]
    - id: from-intruder
      peers: [{podSelector: {matchLabels: {app: intruder}}}]
      ports: [{protocol: TCP, port: 5432}]
`

// dbGuards is an Admin ClusterNetworkPolicy on shop/db ingress: rule
// ingress-0 (WEB_ACTION) for web, ingress-1 (INTRUDER_ACTION) for
// intruder.
const dbGuards = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: db-guard}
spec:
  tier: TIER
  priority: 3
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
  ingress:
    - action: WEB_ACTION
      from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}]
    - name: no-intruder
      action: INTRUDER_ACTION
      from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: intruder}}}}]
`

func shopEdge(src, dst string, port uint16) model.Edge {
	return model.Edge{Source: model.Peer{Namespace: "shop", Workload: src, Labels: map[string]string{"app": src}},
		Destination: model.Peer{Namespace: "shop", Workload: dst, Labels: map[string]string{"app": dst}},
		Protocol:    model.ProtocolTCP, Port: port, Traffic: model.Traffic{Flows: 2}}
}

// TestDiffShadowedByAdmin: diff names the nanosegment rules an Admin rule
// decides before them, with the effect (a Deny: the rule can never allow
// that edge; an Accept: the rule is redundant for it) and the rule that
// shadows them, and lists the edges an Admin Deny forbids. A Pass hands
// the direction to the nanosegment and a Baseline rule comes after it:
// neither shadows.
func TestDiffShadowedByAdmin(t *testing.T) {
	edges := []model.Edge{shopEdge("web", "db", 5432), shopEdge("intruder", "db", 5432)}
	objs, err := ParseObjects("db.yaml", []byte(dbSegment))
	if err != nil {
		t.Fatal(err)
	}
	_, segs := SplitObjects(objs)
	ref := func(rule string, action cnpv1alpha2.Action, name string) ClusterRuleRef {
		return ClusterRuleRef{Policy: PolicyRef{Kind: "ClusterNetworkPolicy", Name: "db-guard"}, Tier: cnpv1alpha2.TierAdmin, Priority: 3, Rule: rule, Name: name, Action: action}
	}
	segRule := func(id string) RuleRef {
		return RuleRef{Policy: PolicyRef{Kind: "NanoSegment", Namespace: "shop", Name: "db"}, Rule: id}
	}
	for _, tc := range []struct {
		tier, web, intruder string
		shadowed            []ShadowedRule
		forbidden           []ForbiddenEdge
	}{
		{tier: "Admin", web: "Accept", intruder: "Deny",
			shadowed: []ShadowedRule{
				{Rule: segRule("from-intruder"), Edge: "shop{app=intruder} -> shop{app=db} TCP/5432", By: ref("ingress-1", "Deny", "no-intruder"), Effect: ShadowNeverAllows},
				{Rule: segRule("from-web"), Edge: "shop{app=web} -> shop{app=db} TCP/5432", By: ref("ingress-0", "Accept", ""), Effect: ShadowRedundant},
			},
			forbidden: []ForbiddenEdge{{Edge: "shop{app=intruder} -> shop{app=db} TCP/5432", Direction: model.Ingress, Rule: ref("ingress-1", "Deny", "no-intruder"), Flows: 2}}},
		{tier: "Admin", web: "Pass", intruder: "Pass"},
		{tier: "Baseline", web: "Deny", intruder: "Deny"},
	} {
		t.Run(tc.tier+tc.web+tc.intruder, func(t *testing.T) {
			doc := strings.NewReplacer("TIER", tc.tier, "WEB_ACTION", tc.web, "INTRUDER_ACTION", tc.intruder).Replace(dbGuards)
			cobjs, err := ParseObjects("cnp.yaml", []byte(doc+"---\n"+dbSegment))
			if err != nil {
				t.Fatal(err)
			}
			active, err := NewObjectSet(cobjs)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Diff(segs, active, edges)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Shadowed) != len(tc.shadowed) {
				t.Fatalf("shadowed = %+v, want %+v", rep.Shadowed, tc.shadowed)
			}
			for i := range tc.shadowed {
				if rep.Shadowed[i] != tc.shadowed[i] {
					t.Errorf("shadowed[%d] = %+v, want %+v", i, rep.Shadowed[i], tc.shadowed[i])
				}
			}
			if len(rep.Forbidden) != len(tc.forbidden) || (len(tc.forbidden) > 0 && rep.Forbidden[0] != tc.forbidden[0]) {
				t.Errorf("forbidden = %+v, want %+v", rep.Forbidden, tc.forbidden)
			}
			for _, s := range rep.Shadowed {
				want := "can never allow"
				if s.Effect == ShadowRedundant {
					want = "is redundant for"
				}
				if str := s.String(); !strings.Contains(str, want) || !strings.Contains(str, "db-guard") {
					t.Errorf("%q: want %q and the policy", str, want)
				}
			}
		})
	}
}
