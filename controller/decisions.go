package controller

import (
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// EdgeDecision is an observed edge whose connections a ClusterNetworkPolicy
// rule of the Admin or Baseline tier decides under the policies in force
// now (the page marks such edges; `nanoseg graph` marks them in its
// formats as graph.Link.DecidedBy). JSON:
//
//	{"source":{"namespace":"shop","workload":"intruder"},
//	 "destination":{"namespace":"shop","workload":"db"},"protocol":"TCP","port":5432,
//	 "action":"audit-deny","audited":true,
//	 "rule":{"policy":{"kind":"ClusterNetworkPolicy","namespace":"","name":"no-intruder-to-db"},
//	         "tier":"Admin","priority":10,"rule":"ingress-0","name":"no-intruder","action":"Deny"}}
type EdgeDecision struct {
	Source      model.Peer     `json:"source"`
	Destination model.Peer     `json:"destination"`
	Protocol    model.Protocol `json:"protocol"`
	Port        uint16         `json:"port"`
	// Action is the verdict now: allow, audit-deny or deny.
	Action model.Verdict `json:"action"`
	// Audited is true for a Deny logged as audit-deny and not dropped:
	// the workload it protects is in audit mode (policies.
	// DirectionEvaluation.AuditedClusterDeny).
	Audited bool `json:"audited,omitempty"`
	// Rule is the deciding rule: policy, tier, priority, rule id, name,
	// action (Accept or Deny).
	Rule policies.ClusterRuleRef `json:"rule"`
}

// EdgeDecisions returns, for the edges observed within window (all for
// 0), those a ClusterNetworkPolicy rule decides now, in the order of the
// stored edges; an empty list without ClusterNetworkPolicies in force.
// Each edge is evaluated as `policy explain` evaluates it (Explain: a
// workload by its first endpoint, an external peer by the address it was
// seen at, else its name); an edge whose ends the inventory no longer
// holds is left out. Errors are those of the store and the inventory.
func (s *Service) EdgeDecisions(window time.Duration) ([]EdgeDecision, error) {
	out := []EdgeDecision{}
	world, set, err := s.policyWorld()
	if err != nil || len(set.ClusterPolicies()) == 0 {
		return out, err
	}
	edges, err := s.obs.Edges(windowStart(window))
	if err != nil {
		return nil, err
	}
	pods := map[string]string{} // workload → its first endpoint's pod
	for _, ep := range s.inv.Endpoints() {
		if k := ep.Namespace + "/" + ep.Workload; ep.Workload != "" && pods[k] == "" {
			pods[k] = ep.Namespace + "/" + ep.Netns
		}
	}
	end := func(p model.Peer) (policies.ConnEnd, bool) {
		if !p.External {
			pod, ok := pods[p.String()]
			return policies.ConnEnd{Pod: pod}, ok
		}
		if p.Addr.IsValid() {
			return policies.ConnEnd{IP: p.Addr, DNSName: p.Name}, true
		}
		return policies.ConnEnd{DNSName: p.Name}, p.Name != ""
	}
	for _, e := range edges {
		from, ok1 := end(e.Source)
		to, ok2 := end(e.Destination)
		if !ok1 || !ok2 {
			continue
		}
		c, ok := policies.EdgeConnection(from, to, e.Protocol, e.Port)
		if !ok {
			continue
		}
		v := policies.Evaluate(world, set, c)
		r := v.DecidingClusterRule()
		if v.Err != "" || r == nil {
			continue
		}
		out = append(out, EdgeDecision{Source: e.Source, Destination: e.Destination, Protocol: e.Protocol, Port: e.Port,
			Action: v.Action, Audited: v.Egress.AuditedClusterDeny() || v.Ingress.AuditedClusterDeny(), Rule: *r})
	}
	return out, nil
}
