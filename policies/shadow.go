package policies

// What the Admin tier of ClusterNetworkPolicies takes out of the hands of
// the namespace owners' policies (NetworkPolicies and nanosegments, the
// NetworkPolicy tier). Upstream evaluation order
// (https://network-policy-api.sigs.k8s.io/api-overview/, "Tiers"; and the
// ClusterNetworkPolicySpec reference,
// https://network-policy-api.sigs.k8s.io/reference/spec/): per direction,
// the Admin tier is consulted first and its first matching Accept or Deny
// rule is final; only when no Admin rule matches, or a Pass matches, does
// the NetworkPolicy tier decide. A connection is allowed only when both its
// egress (at the source) and its ingress (at the destination) allow it.
//
// Hence, for one connection:
//
//   - forbidden: an Admin Deny decides either direction. No rule of any
//     lower tier can allow the connection, so a proposal never proposes it
//     (ForbiddenEdge) and a nanosegment rule that would allow it can never
//     allow it (ShadowNeverAllows).
//   - redundant: an Admin Accept decides the direction of a nanosegment
//     rule that would allow it: the rule is never consulted for that
//     connection, which is allowed in that direction whatever the rule
//     says (ShadowRedundant). Removing the rule changes nothing for that
//     peer while the Admin rule stands; unlike a Deny it does no harm.
//
// A Pass is not a shadow: it hands the direction to the NetworkPolicy
// tier, where the rule decides as usual. Baseline rules never shadow a
// NetworkPolicy-tier rule: Baseline is consulted only when no policy of
// the NetworkPolicy tier isolates the pod.

import (
	"fmt"
	"strings"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// AdminDeny returns the Admin-tier Deny rule that decides v in some
// direction (egress first) and that direction, or nil when no Admin Deny
// decides v. Such a connection is denied whatever the NetworkPolicy and
// Baseline tiers say (see the package comment of shadow.go); while the
// subject of that direction is in audit mode it is audit-deny (logged,
// not dropped: DirectionEvaluation.AuditedClusterDeny), and denied once
// the subject enforces, so it is forbidden all the same.
func (v Evaluation) AdminDeny() (*ClusterRuleRef, model.Direction) {
	for _, d := range []DirectionEvaluation{v.Egress, v.Ingress} {
		if r := d.ClusterRule; r != nil && r.Tier == cnpv1alpha2.TierAdmin && r.Action == cnpv1alpha2.ActionDeny {
			return r, d.Direction
		}
	}
	return nil, ""
}

// ForbiddenEdge is an observed edge that a Deny rule of the Admin tier
// forbids: no nanosegment or NetworkPolicy can allow it, so proposals
// leave it out and name the rule.
type ForbiddenEdge struct {
	// Edge is "source -> destination PROTO/port".
	Edge string `json:"edge"`
	// Direction is the direction the rule decides: egress of the source
	// or ingress of the destination.
	Direction model.Direction `json:"direction"`
	// Rule is the Admin Deny rule (tier, policy, priority, rule id/name).
	Rule ClusterRuleRef `json:"rule"`
	// Flows is the number of connections of the edge in the window.
	Flows int64 `json:"flows"`
}

// String returns "EDGE: forbidden by RULE (on ingress|egress); no
// nanosegment can allow it".
func (f ForbiddenEdge) String() string {
	return fmt.Sprintf("%s: forbidden by %s (on %s); no nanosegment can allow it", f.Edge, f.Rule, strings.ToLower(string(f.Direction)))
}

// Shadow effects of an Admin rule on a NetworkPolicy-tier rule.
const (
	// ShadowNeverAllows: an Admin Deny decides the connection; the rule
	// can never allow it.
	ShadowNeverAllows = "never-allows"
	// ShadowRedundant: an Admin Accept decides the rule's direction for
	// the connection; the rule is never consulted for that peer.
	ShadowRedundant = "redundant"
)

// ShadowedRule is a nanosegment (or NetworkPolicy) rule that would allow
// an observed edge but that an Admin rule decides before it (see the
// comment of shadow.go for what shadowed means).
type ShadowedRule struct {
	// Rule is the shadowed rule.
	Rule RuleRef `json:"rule"`
	// Edge is the observed edge ("source -> destination PROTO/port") the
	// rule would allow.
	Edge string `json:"edge"`
	// By is the Admin rule that decides first.
	By ClusterRuleRef `json:"by"`
	// Effect is ShadowNeverAllows (By is a Deny) or ShadowRedundant (By
	// is an Accept).
	Effect string `json:"effect"`
}

// String returns "RULE: EFFECT for EDGE: shadowed by ADMIN RULE".
func (s ShadowedRule) String() string {
	what := "can never allow"
	if s.Effect == ShadowRedundant {
		what = "is redundant for"
	}
	return fmt.Sprintf("%s %s %s: shadowed by %s", s.Rule, what, s.Edge, s.By)
}

// shadows returns the rules of dev (an evaluation of the connection
// without ClusterNetworkPolicies) that withAdmin (the same connection with
// them) shows shadowed by an Admin rule.
func shadows(edge string, dev, withAdmin Evaluation) []ShadowedRule {
	var out []ShadowedRule
	deny, _ := withAdmin.AdminDeny()
	for _, pair := range [][2]DirectionEvaluation{{dev.Egress, withAdmin.Egress}, {dev.Ingress, withAdmin.Ingress}} {
		d, a := pair[0], pair[1]
		by, effect := deny, ShadowNeverAllows
		if by == nil {
			r := a.ClusterRule
			if r == nil || r.Tier != cnpv1alpha2.TierAdmin || r.Action != cnpv1alpha2.ActionAccept {
				continue
			}
			by, effect = r, ShadowRedundant
		}
		for _, rr := range d.Allowing {
			out = append(out, ShadowedRule{Rule: rr, Edge: edge, By: *by, Effect: effect})
		}
	}
	return out
}

// DecidingClusterRule returns the ClusterNetworkPolicy rule that decided
// v, chosen as DecidedByCluster chooses its tier (of a direction that
// denies when v is denied, Admin before Baseline), or nil when no
// ClusterNetworkPolicy rule decided v.
func (v Evaluation) DecidingClusterRule() *ClusterRuleRef {
	tier := v.DecidedByCluster()
	if tier == "" {
		return nil
	}
	for _, d := range []DirectionEvaluation{v.Egress, v.Ingress} {
		if d.ClusterRule != nil && d.Tier == tier && (v.Action == model.VerdictAllow || d.Action == v.Action) {
			return d.ClusterRule
		}
	}
	return nil
}

// LeaveOutForbidden returns the edges of observed that no Admin Deny of
// set forbids, and the forbidden ones with their rule, evaluated on a
// world built from the edges' identities as Diff builds it (namespaces
// carry only their kubernetes.io/metadata.name label). The offline
// `policy propose --edges --policies` uses it; the agent evaluates on its
// inventory (controller.Service.Infer).
func LeaveOutForbidden(observed []model.Edge, set PolicySet) (keep []model.Edge, forbidden []ForbiddenEdge) {
	var edges []inferEdge
	for _, e := range observed {
		if ie, ok := inferable(e); ok {
			edges = append(edges, ie)
		}
	}
	w := newEdgeWorld(edges)
	for _, e := range observed {
		ie, ok := inferable(e)
		if !ok {
			keep = append(keep, e)
			continue
		}
		v := Evaluate(w, set, w.connection(ie))
		if r, dir := v.AdminDeny(); r != nil {
			forbidden = append(forbidden, ForbiddenEdge{Edge: ie.key(), Direction: dir, Rule: *r, Flows: int64(e.Flows)})
			continue
		}
		keep = append(keep, e)
	}
	return keep, forbidden
}
