package compile

// ClusterNetworkPolicy tiers in rule sets (issue 15). For each pod the
// subject of a ClusterNetworkPolicy selects, its rules of one direction
// become that tier's entries, in the order policies.Evaluate consults them
// (policies by priority, then name; rules in written order); the dataplane
// keeps that order (dataplane.Tiers). The peers become addresses as the
// NetworkPolicy tier's do: namespaces/pods peers the addresses of the
// participating pods they select, nodes peers the addresses of the nodes
// they select (CompileInput.Nodes), networks their CIDRs, domainNames the
// addresses the names resolved to (CompileInput.Names);
// destinationNamedPort resolves at the destination pod (the pod itself
// for ingress, each peer pod for egress, also the pods inside a networks
// peer). The Baseline tier goes only into a direction no enforcing or
// auditing policy isolates: Evaluate consults it only there.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// ClusterRuleID returns the dataplane rule id of rule (its ID,
// "ingress-<i>" or "egress-<i>") of ClusterNetworkPolicy p:
// "cnp/admin/<name>/<rule>" or "cnp/baseline/<name>/<rule>", so that
// every counter and verdict-log record names the tier, the policy and the
// rule; shortened with a hash when longer than verdictlog.MaxIDLen.
func ClusterRuleID(p *policies.ClusterPolicy, rule string) string {
	return p.RuleID(rule)
}

// ParseClusterRuleID splits a rule id made by ClusterRuleID into its tier
// ("admin" or "baseline"), policy name and rule; ok is false for any other
// id (and for a shortened one, whose rule is then the hashed tail).
func ParseClusterRuleID(id string) (tier, policy, rule string, ok bool) {
	rest, found := strings.CutPrefix(id, "cnp/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || (parts[0] != "admin" && parts[0] != "baseline") {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

var actions = map[cnpv1alpha2.Action]dataplane.Action{
	cnpv1alpha2.ActionAccept: dataplane.ActionAccept,
	cnpv1alpha2.ActionDeny:   dataplane.ActionDeny,
	cnpv1alpha2.ActionPass:   dataplane.ActionPass,
}

// tierIndex returns 0 for the Admin tier, 1 for Baseline.
func tierIndex(t cnpv1alpha2.Tier) int {
	if t == cnpv1alpha2.TierAdmin {
		return 0
	}
	return 1
}

// clusterSelects reports whether a ClusterNetworkPolicy selects pod p as
// its subject.
func (c *Compiler) clusterSelects(p policies.Pod) bool {
	if !p.Participates() {
		return false
	}
	ns := c.namespaces[p.Namespace]
	for _, tier := range c.cluster {
		for _, cp := range tier {
			if cp.Subject.Matches(ns.Labels, p.Labels) {
				return true
			}
		}
	}
	return false
}

// notIsolatedBaseline is the rule id of the accept-everything entry that
// ends the Baseline tier of a direction no policy isolates, in a rule set
// whose mode would otherwise deny there (audit, enforce): what no Baseline
// rule decides is allowed.
const notIsolatedBaseline = "not-isolated.baseline"

// addTiers adds the ClusterNetworkPolicy tiers to the rule set of the
// participating pod p (key), which rebuild made: the Admin tier in both
// directions, the Baseline tier in the directions not isolated (by a
// policy of any mode but observe; Evaluate's NetworkPolicy tier decides
// whenever one isolates).
func (c *Compiler) addTiers(key string, p policies.Pod, isolated [2]bool) {
	if len(c.cluster[0])+len(c.cluster[1]) == 0 {
		return
	}
	rs := c.ruleSets[key]
	for d, dir := range model.Directions {
		admin := c.clusterEntries(0, dir, p)
		var base []dataplane.Entry
		if !isolated[d] {
			base = c.clusterEntries(1, dir, p)
		}
		if len(base) > 0 && rs.Mode != model.ModeObserve {
			// rebuild allowed everything in the NetworkPolicy tier of
			// this direction (allowAll); that goes after the Baseline
			// tier instead.
			for _, e := range allowAll(notIsolatedBaseline) {
				e.Action = dataplane.ActionAccept
				base = append(base, e)
			}
			if dir == model.Ingress {
				rs.Ingress = nil
			} else {
				rs.Egress = nil
			}
		}
		if dir == model.Ingress {
			rs.Admin.Ingress, rs.Baseline.Ingress = admin, base
		} else {
			rs.Admin.Egress, rs.Baseline.Egress = admin, base
		}
	}
	c.ruleSets[key] = rs
}

// clusterEntries returns the entries of tier (0 Admin, 1 Baseline) in
// direction dir for the participating pod p.
func (c *Compiler) clusterEntries(tier int, dir model.Direction, p policies.Pod) []dataplane.Entry {
	var out []dataplane.Entry
	ns := c.namespaces[p.Namespace]
	for _, cp := range c.cluster[tier] {
		if !cp.Subject.Matches(ns.Labels, p.Labels) {
			continue
		}
		for ri, r := range cp.Rules[dir.Index()] {
			out = append(out, c.clusterRuleEntries(cp, dir, ri, r, p)...)
		}
	}
	return out
}

// clusterPeers are the peer addresses of one ClusterNetworkPolicy rule:
// targets, and namedOnly the participating pods inside a networks peer
// (for egress named ports only). They do not depend on the subject, so
// they are computed once per rule (clusterPeersOf) and kept until a pod
// the rule's peers reach changes (changed, clusterReaches).
type clusterPeers struct {
	targets, namedOnly []peerTarget
}

// clusterPeersOf returns the peers of rule ri (r) of cp in direction dir,
// from c.clusterTargets or computed and kept there.
func (c *Compiler) clusterPeersOf(cp *policies.ClusterPolicy, dir model.Direction, ri int, r policies.ClusterRule) clusterPeers {
	key := [2]int{dir.Index(), ri}
	if cached, ok := c.clusterTargets[cp][key]; ok {
		return cached
	}
	named := slices.ContainsFunc(r.Ports, func(p policies.ClusterPort) bool { return p.Name != "" })
	// targets are the peer addresses; namedOnly the participating pods
	// inside a networks peer, for egress named ports only.
	var targets, namedOnly []peerTarget
	addPod := func(p policies.Pod) {
		pp := p
		for _, a := range p.IPs {
			targets = append(targets, peerTarget{prefix: netip.PrefixFrom(a, a.BitLen()), pod: &pp})
		}
	}
	for _, peer := range r.Peers {
		switch {
		case peer.Pods != nil:
			for _, k := range c.sortedPods() {
				q := c.pods[k]
				if q.Participates() && peer.Pods.Matches(c.namespaces[q.Namespace].Labels, q.Labels) {
					addPod(q)
				}
			}
		case peer.Nodes != nil:
			for _, n := range c.nodes {
				if peer.Nodes.Matches(labelsOf(n.Labels)) {
					for _, a := range n.IPs {
						targets = append(targets, peerTarget{prefix: netip.PrefixFrom(a, a.BitLen())})
					}
				}
			}
		case peer.Networks != nil:
			for _, n := range peer.Networks {
				targets = append(targets, peerTarget{prefix: n, block: true})
				if named && dir == model.Egress {
					// A named port resolves at a participating pod
					// inside the network.
					for _, k := range c.sortedPods() {
						q := c.pods[k]
						if q.Participates() && slices.ContainsFunc(q.IPs, n.Contains) {
							for _, a := range q.IPs {
								if n.Contains(a) {
									qq := q
									namedOnly = append(namedOnly, peerTarget{prefix: netip.PrefixFrom(a, a.BitLen()), pod: &qq})
								}
							}
						}
					}
				}
			}
		case peer.DomainNames != nil:
			found := false
			for _, d := range peer.DomainNames {
				for name, addrs := range c.names {
					if policies.MatchDomainName(d, name) {
						found = true
						for _, a := range addrs {
							targets = append(targets, peerTarget{prefix: netip.PrefixFrom(a, a.BitLen())})
						}
					}
				}
			}
			if !found {
				c.warnings[fmt.Sprintf("%s rule %s: domain names %s not resolved yet; they match nothing until they are", cp.Ref, r.ID, strings.Join(peer.DomainNames, ", "))] = true
			}
		}
	}
	out := clusterPeers{targets: targets, namedOnly: namedOnly}
	if c.clusterTargets[cp] == nil {
		c.clusterTargets[cp] = map[[2]int]clusterPeers{}
	}
	c.clusterTargets[cp][key] = out
	return out
}

// clusterRuleEntries returns the entries of rule ri (r) of cp for subject
// pod self.
func (c *Compiler) clusterRuleEntries(cp *policies.ClusterPolicy, dir model.Direction, ri int, r policies.ClusterRule, self policies.Pod) []dataplane.Entry {
	id := ClusterRuleID(cp, r.ID)
	action := actions[r.Action]
	peers := c.clusterPeersOf(cp, dir, ri, r)
	targets, namedOnly := peers.targets, peers.namedOnly
	var out []dataplane.Entry
	if r.AllPorts {
		for _, t := range targets {
			out = append(out, dataplane.Entry{Peer: t.prefix, RuleID: id, Action: action})
		}
		return out
	}
	for _, port := range r.Ports {
		if port.Name == "" {
			for _, t := range targets {
				e := dataplane.Entry{Peer: t.prefix, Protocol: port.Protocol, RuleID: id, Action: action}
				if !port.Any {
					e.Port = int(port.Port)
					if port.EndPort != port.Port {
						e.EndPort = int(port.EndPort)
					}
				}
				out = append(out, e)
			}
			continue
		}
		for _, t := range slices.Concat(targets, namedOnly) {
			dst := &self
			if dir == model.Egress {
				dst = t.pod
			}
			if dst == nil {
				continue
			}
			for _, cport := range dst.Ports {
				if cport.Name == port.Name {
					out = append(out, dataplane.Entry{Peer: t.prefix, Protocol: cport.Protocol, Port: int(cport.Port), RuleID: id, Action: action})
				}
			}
		}
	}
	return out
}

// clusterReaches reports whether a rule of cp may compile to entries
// that depend on pod p (clusterRuleEntries): p participates and a
// namespaces or pods peer selects it (its addresses, and for an egress
// named port its ports), or, for an egress rule with a named port, one of
// p's addresses is inside a networks peer (the port resolves at p). A
// nodes, networks or domainNames peer is addresses that no pod change
// moves. A change of p then changes at most the rule sets of cp's
// subjects (and p's own).
func (c *Compiler) clusterReaches(cp *policies.ClusterPolicy, p policies.Pod) bool {
	if !p.Participates() {
		return false
	}
	ns := c.namespaces[p.Namespace].Labels
	for d, dir := range model.Directions {
		for _, r := range cp.Rules[d] {
			named := dir == model.Egress && slices.ContainsFunc(r.Ports, func(port policies.ClusterPort) bool { return port.Name != "" })
			for _, peer := range r.Peers {
				switch {
				case peer.Pods != nil && peer.Pods.Matches(ns, p.Labels):
					return true
				case named && slices.ContainsFunc(peer.Networks, func(n netip.Prefix) bool { return slices.ContainsFunc(p.IPs, n.Contains) }):
					return true
				}
			}
		}
	}
	return false
}

// sortedPods returns the keys of every pod, sorted (cached until the
// pods change).
func (c *Compiler) sortedPods() []string {
	if c.podKeys == nil {
		c.podKeys = make([]string, 0, len(c.pods))
		for k := range c.pods {
			c.podKeys = append(c.podKeys, k)
		}
		slices.Sort(c.podKeys)
	}
	return c.podKeys
}
