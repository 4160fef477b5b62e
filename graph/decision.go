package graph

import "fmt"

// Decision names the ClusterNetworkPolicy rule that decides an edge's
// connections under the policies in force: a rule of the Admin tier
// (consulted before every NetworkPolicy and nanosegment) or of the
// Baseline tier (after them). The marks are those of `policy matrix`:
// "*" for Admin, "+" for Baseline. JSON:
//
//	{"tier":"Admin","policy":"guard-db","priority":7,"rule":"ingress-0",
//	 "name":"no-intruder","action":"Deny","audited":true}
type Decision struct {
	Tier     string `json:"tier"` // Admin or Baseline
	Policy   string `json:"policy"`
	Priority int32  `json:"priority"`
	// Rule is the rule's id ("ingress-<i>" or "egress-<i>"), Name its
	// optional name.
	Rule   string `json:"rule"`
	Name   string `json:"name,omitempty"`
	Action string `json:"action"` // Accept or Deny
	// Audited is true for a Deny that the workload's audit mode logs as
	// audit-deny and does not drop (policies.DirectionEvaluation.
	// AuditedClusterDeny).
	Audited bool `json:"audited,omitempty"`
}

// Mark is "*" for the Admin tier, "+" for Baseline.
func (d Decision) Mark() string {
	if d.Tier == "Admin" {
		return "*"
	}
	return "+"
}

// String is "Admin guard-db (priority 7) ingress-0 \"no-intruder\": Deny",
// followed by " (audit mode: logged, not dropped)" when Audited.
func (d Decision) String() string {
	s := fmt.Sprintf("%s %s (priority %d) %s", d.Tier, d.Policy, d.Priority, d.Rule)
	if d.Name != "" {
		s += fmt.Sprintf(" %q", d.Name)
	}
	s += ": " + d.Action
	if d.Audited {
		s += " (audit mode: logged, not dropped)"
	}
	return s
}

// MarkDecisions sets DecidedBy on every edge for which decide, given the
// edge's source and destination nodes, returns a decision (nil: no
// ClusterNetworkPolicy rule decides it, or it cannot be evaluated).
func (g *Graph) MarkDecisions(decide func(src, dst Node, e Link) *Decision) {
	nodes := map[string]Node{}
	for _, n := range g.Nodes {
		nodes[n.ID] = n
	}
	for i := range g.Edges {
		e := &g.Edges[i]
		e.DecidedBy = decide(nodes[e.Source], nodes[e.Destination], *e)
	}
}
