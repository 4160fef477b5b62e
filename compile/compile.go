package compile

// Compilation: policies plus the inventory become one dataplane rule set per
// endpoint (pod). The meaning is policies.Evaluate's (Kubernetes
// NetworkPolicy semantics, https://kubernetes.io/docs/concepts/services-networking/network-policies/);
// compile_test.go checks the two agree connection by connection.
//
// Incremental: the Compiler keeps, for every selector peer of every rule, the
// set of pods it matches, and for every policy the pods it selects. When one
// pod changes, only the peer sets and selections that matched it before or
// match it after change, and only the rule sets of the pod itself and of the
// pods selected by a policy with such a peer are rebuilt.

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// CompileInput is what a full compile needs: the namespaces and pods of the
// inventory, the active policies, node addresses (for host peers) and the
// addresses each DNS name resolved to (for DNS-name peers; lower case, no
// trailing dot), and the Services whose addresses egress rules judge by
// their backends (services.go).
type CompileInput struct {
	Namespaces []policies.Namespace
	Pods       []policies.Pod
	Policies   policies.PolicySet
	Hosts      []netip.Addr
	Names      map[string][]netip.Addr
	Services   []model.Service
	// Nodes are the nodes ClusterNetworkPolicy nodes peers select by
	// label (none: such a peer matches nothing, as in policies.Evaluate
	// over a world without nodes).
	Nodes []policies.Node
}

// peerRef names one peer of one rule of one policy.
type peerRef struct {
	policy int
	dir    model.Direction
	rule   int
	peer   int
}

// ruleRef names one rule of one policy.
type ruleRef struct {
	policy int
	dir    model.Direction
	rule   int
}

// Compiler holds the compiled state: rule sets by pod key, and the indexes
// that make a one-pod change cheap. Not safe for concurrent use.
type Compiler struct {
	namespaces map[string]policies.Namespace
	pods       map[string]policies.Pod
	podsByNS   map[string]map[string]bool
	policies   []*policies.Policy
	hosts      []netip.Addr
	names      map[string][]netip.Addr
	nodes      []policies.Node
	// cluster holds the ClusterNetworkPolicies of the Admin (0) and
	// Baseline (1) tiers in evaluation order (cluster.go).
	cluster [2][]*policies.ClusterPolicy
	podKeys []string // every pod key, sorted; nil when stale

	byNS        map[string][]int            // namespace -> indexes of its policies
	namedEgress []bool                      // policy has egress named ports to address peers
	selected    []map[string]bool           // policy index -> selected pod keys
	peerPods    map[peerRef]map[string]bool // selector peer -> matching pod keys
	selectorP   []peerRef                   // every selector peer
	ruleSets    map[string]dataplane.RuleSet
	defaults    map[string][]policies.PolicyRef // default id -> isolating policies
	warnings    map[string]bool
	targets     map[ruleRef][]peerTarget // cached peer addresses of a rule
	// clusterTargets caches the peers of ClusterNetworkPolicy rules, by
	// policy and {direction index, rule index} (cluster.go).
	clusterTargets map[*policies.ClusterPolicy]map[[2]int]clusterPeers

	services  map[string]model.Service // by key "namespace/name"
	svcKeys   []string                 // keys of services, sorted
	svcCache  map[string]*svcCache     // egress policy set -> derived Service entries
	egressKey map[string]string        // pod key -> its egress policy set (pods with isolated egress only)

	backendSvcs  map[netip.Addr][]string // backend address -> keys of the Services it backs
	backendAddrs []netip.Addr            // keys of backendSvcs, sorted

	svcAddrs        []netip.Addr                    // every Service address, sorted, unique
	svcAddrsChanged []netip.Addr                    // of the last setServices: addresses added or removed
	svcSplit        map[netip.Prefix][]netip.Prefix // address-block prefix minus svcAddrs (cache)
	egressBlock     map[string][]netip.Prefix       // pod key -> the address blocks of its egress rules
}

// NewCompiler compiles in fully: one rule set per participating pod, with
// the ClusterNetworkPolicy tiers of the policy set (cluster.go).
func NewCompiler(in CompileInput) (*Compiler, error) {
	c := &Compiler{
		namespaces:     map[string]policies.Namespace{},
		pods:           map[string]policies.Pod{},
		podsByNS:       map[string]map[string]bool{},
		policies:       in.Policies.Policies(),
		hosts:          slices.Clone(in.Hosts),
		names:          in.Names,
		nodes:          slices.Clone(in.Nodes),
		peerPods:       map[peerRef]map[string]bool{},
		ruleSets:       map[string]dataplane.RuleSet{},
		defaults:       map[string][]policies.PolicyRef{},
		warnings:       map[string]bool{},
		targets:        map[ruleRef][]peerTarget{},
		clusterTargets: map[*policies.ClusterPolicy]map[[2]int]clusterPeers{},
		services:       map[string]model.Service{},
		svcCache:       map[string]*svcCache{},
		egressKey:      map[string]string{},
		svcSplit:       map[netip.Prefix][]netip.Prefix{},
		egressBlock:    map[string][]netip.Prefix{},
	}
	for _, cp := range in.Policies.ClusterPolicies() {
		i := tierIndex(cp.Tier)
		c.cluster[i] = append(c.cluster[i], cp)
		// A verdict record of a ClusterNetworkPolicy rule carries its
		// rule id: the table names the policy, as for default ids.
		for _, rules := range cp.Rules {
			for _, r := range rules {
				c.defaults[cp.RuleID(r.ID)] = []policies.PolicyRef{cp.Ref}
			}
		}
	}
	c.setServices(in.Services)
	for _, ns := range in.Namespaces {
		c.namespaces[ns.Name] = ns
	}
	for _, p := range in.Pods {
		if _, ok := c.namespaces[p.Namespace]; !ok {
			return nil, fmt.Errorf("compile: pod %s: namespace %s: %w", p.Key(), p.Namespace, policies.ErrNotFound)
		}
		c.pods[p.Key()] = p
		if c.podsByNS[p.Namespace] == nil {
			c.podsByNS[p.Namespace] = map[string]bool{}
		}
		c.podsByNS[p.Namespace][p.Key()] = true
	}
	c.selected = make([]map[string]bool, len(c.policies))
	c.byNS = map[string][]int{}
	memo := map[string]map[string]bool{}
	for i, pol := range c.policies {
		c.byNS[pol.Namespace] = append(c.byNS[pol.Namespace], i)
		c.namedEgress = append(c.namedEgress, hasNamedEgressToAddresses(pol))
		c.selected[i] = map[string]bool{}
		for k := range c.podsByNS[pol.Namespace] {
			if p := c.pods[k]; p.Participates() && pol.Selector.Matches(labelsOf(p.Labels)) {
				c.selected[i][k] = true
			}
		}
		for d := range 2 {
			for ri, r := range pol.Rules[d] {
				for pi, peer := range r.Peers {
					if !peer.IsSelector() {
						continue
					}
					ref := peerRef{i, model.Directions[d], ri, pi}
					c.selectorP = append(c.selectorP, ref)
					memoKey := selectorString(peer.PodSelector) + "\x00" + selectorString(peer.NamespaceSelector)
					if peer.NamespaceSelector == nil {
						memoKey += "\x00" + pol.Namespace
					}
					set, ok := memo[memoKey]
					if !ok {
						set = map[string]bool{}
						for _, ns := range c.peerNamespaces(pol, peer) {
							for k := range c.podsByNS[ns] {
								if p := c.pods[k]; p.Participates() && (peer.PodSelector == nil || peer.PodSelector.Matches(labelsOf(p.Labels))) {
									set[k] = true
								}
							}
						}
						memo[memoKey] = set
					}
					set = maps.Clone(set)
					c.peerPods[ref] = set
				}
			}
		}
	}
	for k := range c.pods {
		c.rebuild(k)
	}
	return c, nil
}

// peerNamespaces returns the namespaces a selector peer of pol looks in.
func (c *Compiler) peerNamespaces(pol *policies.Policy, peer policies.CompiledPeer) []string {
	if peer.NamespaceSelector == nil {
		return []string{pol.Namespace}
	}
	var out []string
	for name, ns := range c.namespaces {
		if peer.NamespaceSelector.Matches(labelsOf(ns.Labels)) {
			out = append(out, name)
		}
	}
	return out
}

func (c *Compiler) peerMatches(ref peerRef, p policies.Pod) bool {
	if !p.Participates() {
		return false
	}
	pol := c.policies[ref.policy]
	peer := pol.Rules[ref.dir.Index()][ref.rule].Peers[ref.peer]
	if peer.NamespaceSelector == nil {
		if p.Namespace != pol.Namespace {
			return false
		}
	} else if !peer.NamespaceSelector.Matches(labelsOf(c.namespaces[p.Namespace].Labels)) {
		return false
	}
	return peer.PodSelector == nil || peer.PodSelector.Matches(labelsOf(p.Labels))
}

// RuleSets returns every rule set by pod key ("namespace/name").
func (c *Compiler) RuleSets() map[string]dataplane.RuleSet { return c.ruleSets }

// RuleSet returns the rule set of pod key.
func (c *Compiler) RuleSet(key string) (dataplane.RuleSet, bool) {
	rs, ok := c.ruleSets[key]
	return rs, ok
}

// Selected reports whether a policy in force, of any mode (observe
// included), selects pod key: whether the policies decide its rule set.
// A pod no policy selects gets the observe rule set by default, not by
// anyone's decision (the node then keeps an enforcing table it finds
// there, see node.Node).
func (c *Compiler) Selected(key string) bool {
	if p, ok := c.pods[key]; ok && c.clusterSelects(p) {
		return true
	}
	for _, sel := range c.selected {
		if sel[key] {
			return true
		}
	}
	return false
}

// Warnings lists what the compile could not express exactly (sorted, no
// duplicates): unresolved DNS names, ICMP types widened to all ICMP, modes
// mixed on one endpoint.
func (c *Compiler) Warnings() []string {
	return slices.Sorted(maps.Keys(c.warnings))
}

// UpdatePod adds pod p or replaces the pod of its key (labels, addresses,
// phase, ports) and rebuilds only the rule sets it affects, which it returns
// sorted. p's namespace must exist.
func (c *Compiler) UpdatePod(p policies.Pod) ([]string, error) {
	if _, ok := c.namespaces[p.Namespace]; !ok {
		return nil, fmt.Errorf("update pod %s: namespace %s: %w", p.Key(), p.Namespace, policies.ErrNotFound)
	}
	old, had := c.pods[p.Key()]
	c.pods[p.Key()] = p
	if c.podsByNS[p.Namespace] == nil {
		c.podsByNS[p.Namespace] = map[string]bool{}
	}
	c.podsByNS[p.Namespace][p.Key()] = true
	return c.changed(p.Key(), old, had, &p), nil
}

// DeletePod removes pod key and rebuilds the rule sets it affected.
func (c *Compiler) DeletePod(key string) ([]string, error) {
	old, ok := c.pods[key]
	if !ok {
		return nil, fmt.Errorf("delete pod %s: %w", key, policies.ErrNotFound)
	}
	delete(c.pods, key)
	delete(c.podsByNS[old.Namespace], key)
	return c.changed(key, old, true, nil), nil
}

func (c *Compiler) changed(key string, old policies.Pod, had bool, now *policies.Pod) []string {
	affected := map[string]bool{key: true}
	if !had || now == nil {
		c.podKeys = nil
	}
	// The subjects of every ClusterNetworkPolicy whose peers reach the
	// pod, before or after the change (clusterReached); the pod's own
	// tiers come with its own rebuild.
	for _, tier := range c.cluster {
		for _, cp := range tier {
			if (had && c.clusterReaches(cp, old)) || (now != nil && c.clusterReaches(cp, *now)) {
				delete(c.clusterTargets, cp)
				for k, q := range c.pods {
					if q.Participates() && cp.Subject.Matches(c.namespaces[q.Namespace].Labels, q.Labels) {
						affected[k] = true
					}
				}
			}
		}
	}
	touch := func(pi int) {
		for k := range c.selected[pi] {
			affected[k] = true
		}
	}
	for i, pol := range c.policies {
		if pol.Namespace == old.Namespace || (now != nil && pol.Namespace == now.Namespace) {
			if now != nil && now.Participates() && now.Namespace == pol.Namespace && pol.Selector.Matches(labelsOf(now.Labels)) {
				c.selected[i][key] = true
			} else {
				delete(c.selected[i], key)
			}
		}
		// Address-based peers (ipBlock, every peer) that could hold the pod's
		// addresses matter only for named ports, resolved at the destination.
		if c.namedEgress[i] {
			touch(i)
			for ri := range pol.Rules[model.Egress.Index()] {
				delete(c.targets, ruleRef{i, model.Egress, ri})
			}
		}
	}
	for _, ref := range c.selectorP {
		was := had && c.peerPods[ref][key]
		is := now != nil && c.peerMatches(ref, *now)
		if is {
			c.peerPods[ref][key] = true
		} else {
			delete(c.peerPods[ref], key)
		}
		if was || is {
			// Membership, addresses or named ports may have changed.
			delete(c.targets, ruleRef{ref.policy, ref.dir, ref.rule})
			touch(ref.policy)
		}
	}
	if now == nil {
		delete(c.ruleSets, key)
		delete(c.egressKey, key)
		delete(c.egressBlock, key)
		delete(affected, key)
	}
	out := slices.Sorted(maps.Keys(affected))
	for _, k := range out {
		c.rebuild(k)
	}
	return out
}

func hasNamedEgressToAddresses(pol *policies.Policy) bool {
	for _, r := range pol.Rules[model.Egress.Index()] {
		named := false
		for _, p := range r.Ports {
			named = named || p.Name != ""
		}
		if !named {
			continue
		}
		if r.AllPeers {
			return true
		}
		for _, p := range r.Peers {
			if p.IPBlock != nil {
				return true
			}
		}
	}
	return false
}

var modeRank = map[model.Mode]int{model.ModeObserve: 0, model.ModeAudit: 1, model.ModeEnforce: 2}

// rebuild compiles the rule set of pod key from the indexes.
//
// The rule set's mode is the strongest mode among the policies that isolate
// the pod. A direction isolated by policies of that mode gets the union of
// their rules; a direction isolated only by weaker policies, or by none, gets
// an allow-everything entry (a rule set has one mode, so a weaker direction
// is not filtered; a warning says so).
func (c *Compiler) rebuild(key string) {
	p, ok := c.pods[key]
	if !ok {
		return
	}
	rs := dataplane.RuleSet{Name: key, Mode: model.ModeObserve}
	delete(c.egressKey, key)
	delete(c.egressBlock, key)
	if !p.Participates() {
		c.ruleSets[key] = rs
		return
	}
	best := -1
	var isolating [2][]int
	var isolated [2]bool // by a policy of any mode but observe
	mine := c.byNS[p.Namespace]
	for _, i := range mine {
		pol := c.policies[i]
		if !c.selected[i][key] || pol.Mode == model.ModeObserve {
			continue
		}
		best = max(best, modeRank[pol.Mode])
		for d := range 2 {
			isolated[d] = isolated[d] || pol.Isolates[d]
		}
	}
	defer c.addTiers(key, p, isolated)
	if best < 0 {
		c.ruleSets[key] = rs
		return
	}
	for _, i := range mine {
		pol := c.policies[i]
		if !c.selected[i][key] || modeRank[pol.Mode] != best {
			if c.selected[i][key] && pol.Mode != model.ModeObserve && modeRank[pol.Mode] < best {
				c.warnings[fmt.Sprintf("%s: %s is %s but a stronger policy selects the pod; its rules are not applied", key, pol.Ref, pol.Mode)] = true
			}
			continue
		}
		for d := range 2 {
			if pol.Isolates[d] {
				isolating[d] = append(isolating[d], i)
			}
		}
	}
	if best == modeRank[model.ModeEnforce] {
		rs.Mode = model.ModeEnforce
	} else {
		rs.Mode = model.ModeAudit
	}
	for d := range 2 {
		dir := model.Directions[d]
		var entries []dataplane.Entry
		if len(isolating[d]) == 0 {
			entries = allowAll("not-isolated")
		} else {
			refs := make([]policies.PolicyRef, len(isolating[d]))
			for j, pi := range isolating[d] {
				refs[j] = c.policies[pi].Ref
			}
			id := DefaultID(dir, refs)
			c.defaults[id] = sortedRefs(refs)
			if dir == model.Ingress {
				rs.IngressDefault = id
			} else {
				rs.EgressDefault = id
			}
		}
		for _, pi := range isolating[d] {
			pol := c.policies[pi]
			for ri, r := range pol.Rules[d] {
				entries = append(entries, c.ruleEntries(pi, dir, ri, r, p)...)
			}
		}
		if dir == model.Egress && len(isolating[d]) > 0 {
			// Service addresses, judged by their backends (services.go);
			// the address blocks above left them out (ruleEntries).
			c.egressKey[key] = policySetKey(isolating[d])
			if blocks := c.egressBlocks(isolating[d]); len(blocks) > 0 {
				c.egressBlock[key] = blocks
			}
			entries = append(entries, c.serviceEntriesFor(isolating[d], entries, nil)...)
		}
		// Entries stay in policy and rule order; overlaps between rules are
		// left to the dataplane, which keeps the earlier entry's rule id.
		if dir == model.Ingress {
			rs.Ingress = entries
		} else {
			rs.Egress = entries
		}
	}
	c.ruleSets[key] = rs
}

func allowAll(id string) []dataplane.Entry {
	return []dataplane.Entry{
		{Peer: netip.MustParsePrefix("0.0.0.0/0"), RuleID: id},
		{Peer: netip.MustParsePrefix("::/0"), RuleID: id},
	}
}

// RuleID returns the dataplane rule id of rule of pol: "np/<ns>/<name>/<rule>"
// for a NetworkPolicy, "seg/<ns>/<name>/<rule>" for a NanoSegment, shortened
// with a hash when longer than verdictlog.MaxIDLen.
func RuleID(pol policies.PolicyRef, rule string) string {
	kind := "seg"
	if pol.Kind == "NetworkPolicy" {
		kind = "np"
	}
	id := kind + "/" + pol.Namespace + "/" + pol.Name + "/" + rule
	if len(id) > verdictlog.MaxIDLen {
		h := fnv32(id)
		id = fmt.Sprintf("%s-%08x", id[:verdictlog.MaxIDLen-9], h)
	}
	return id
}

// DefaultID returns the rule id of the default verdict (audit-deny or
// deny) of direction dir of an endpoint that the policies isolating
// isolate in that direction (those of the rule set's mode; order does not
// matter):
//
//   - one policy: RuleID(policy, "default.ingress") or "default.egress",
//     such as "np/shop/default-deny/default.ingress" (rule ids of
//     nanosegments and NetworkPolicies never contain a dot, so this names
//     no rule);
//   - several: "default/<namespace>/<ingress|egress>.<8 hex digits>", the
//     FNV-1a hash of the sorted policy names; the compiler's Defaults
//     table expands it to the list.
//
// Every id obeys verdictlog.ValidID (at most 100 bytes).
func DefaultID(dir model.Direction, isolating []policies.PolicyRef) string {
	d := strings.ToLower(string(dir))
	refs := sortedRefs(isolating)
	if len(refs) == 1 {
		return RuleID(refs[0], "default."+d)
	}
	names := make([]string, len(refs))
	ns := ""
	for i, r := range refs {
		names[i] = r.String()
		ns = r.Namespace
	}
	return fmt.Sprintf("default/%s/%s.%08x", ns, d, fnv32(strings.Join(names, "\n")))
}

// sortedRefs returns a sorted copy of refs without duplicates.
func sortedRefs(refs []policies.PolicyRef) []policies.PolicyRef {
	out := slices.Clone(refs)
	slices.SortFunc(out, func(a, b policies.PolicyRef) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return slices.Compact(out)
}

// Defaults returns the table of every default id (DefaultID) the compiler
// put into a rule set so far, with the policies it stands for, sorted,
// and of every ClusterNetworkPolicy rule id (ClusterRuleID) with its
// policy: the ids a verdict record names other than a nanosegment's or a
// NetworkPolicy's own rule.
// Readers of the verdict log (status, verdicts, evidence) expand ids with
// it. The table only grows: an id keeps its meaning, since it is derived
// from the policies.
func (c *Compiler) Defaults() map[string][]policies.PolicyRef {
	out := make(map[string][]policies.PolicyRef, len(c.defaults))
	for id, refs := range c.defaults {
		out[id] = slices.Clone(refs)
	}
	return out
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// peerTarget is one address of a peer and, when it is a pod's, its named
// ports. block marks an address block (an ipBlock, or every address for
// a rule without peers), which in egress never allows a Service address
// (services.go).
type peerTarget struct {
	prefix netip.Prefix
	pod    *policies.Pod
	block  bool
}

func (c *Compiler) ruleEntries(pi int, dir model.Direction, ri int, r policies.CompiledRule, self policies.Pod) []dataplane.Entry {
	pol := c.policies[pi]
	id := RuleID(pol.Ref, r.ID)
	rr := ruleRef{pi, dir, ri}
	targets, ok := c.targets[rr]
	if !ok {
		targets = c.ruleTargets(pi, dir, ri, r)
		c.targets[rr] = targets
	}
	n := len(r.Ports)
	if n == 0 {
		n = 1
	}
	out := make([]dataplane.Entry, 0, len(targets)*n)
	var expanded []peerTarget
	for _, t := range targets {
		if !t.block || dir != model.Egress {
			expanded = append(expanded, t)
			continue
		}
		// An egress address block never contains a Service address: that
		// is judged by its backends only (services.go).
		for _, pre := range c.withoutServices(t.prefix) {
			expanded = append(expanded, peerTarget{prefix: pre, block: true})
		}
	}
	for _, t := range expanded {
		if r.AllPorts {
			out = append(out, dataplane.Entry{Peer: t.prefix, RuleID: id})
			continue
		}
		for _, port := range r.Ports {
			e := dataplane.Entry{Peer: t.prefix, RuleID: id}
			switch port.Protocol {
			case model.ProtocolTCP:
				e.Protocol = model.ProtocolTCP
			case model.ProtocolUDP:
				e.Protocol = model.ProtocolUDP
			case model.ProtocolSCTP:
				e.Protocol = model.ProtocolSCTP
			case model.ProtocolICMP:
				e.Protocol = model.ProtocolICMP
				if t.prefix.Addr().Is6() {
					e.Protocol = model.ProtocolICMPv6
				}
				if !port.Any {
					c.warnings[fmt.Sprintf("%s rule %s: ICMP type %d compiled as every ICMP type (rule sets carry no ICMP type)", pol.Ref, r.ID, port.Port)] = true
				}
				out = append(out, e)
				continue
			}
			switch {
			case port.Any:
			case port.Name != "":
				// Named ports resolve at the destination pod: self for
				// ingress, the peer pod for egress.
				dst := &self
				if dir == model.Egress {
					dst = t.pod
				}
				if dst == nil {
					continue
				}
				n, ok := port.ResolveNamed(dst.Ports)
				if !ok {
					continue
				}
				e.Port = int(n)
			default:
				e.Port = int(port.Port)
				if port.EndPort != port.Port {
					e.EndPort = int(port.EndPort)
				}
			}
			out = append(out, e)
		}
	}
	return out
}

// ruleTargets returns the peer addresses of rule r (with the pod holding
// each, when there is one), sorted and without duplicates.
func (c *Compiler) ruleTargets(pi int, dir model.Direction, ri int, r policies.CompiledRule) []peerTarget {
	pol := c.policies[pi]
	var targets []peerTarget
	needPods := false
	for _, port := range r.Ports {
		needPods = needPods || (port.Name != "" && dir == model.Egress)
	}
	addPod := func(k string) {
		p := c.pods[k]
		pp := &p
		for _, a := range p.IPs {
			targets = append(targets, peerTarget{prefix: netip.PrefixFrom(a, a.BitLen()), pod: pp})
		}
	}
	if r.AllPeers {
		if needPods {
			for _, k := range slices.Sorted(maps.Keys(c.pods)) {
				if c.pods[k].Participates() {
					addPod(k)
				}
			}
		} else {
			targets = append(targets, peerTarget{prefix: netip.MustParsePrefix("0.0.0.0/0"), block: true}, peerTarget{prefix: netip.MustParsePrefix("::/0"), block: true})
		}
	}
	for pe, peer := range r.Peers {
		switch {
		case peer.IsSelector():
			for _, k := range slices.Sorted(maps.Keys(c.peerPods[peerRef{pi, dir, ri, pe}])) {
				addPod(k)
			}
		case peer.IPBlock != nil:
			if needPods {
				for _, k := range slices.Sorted(maps.Keys(c.pods)) {
					p := c.pods[k]
					for _, a := range p.IPs {
						if p.Participates() && peer.IPBlock.Contains(a) {
							targets = append(targets, peerTarget{prefix: netip.PrefixFrom(a, a.BitLen()), pod: &p})
						}
					}
				}
				continue
			}
			for _, pre := range subtractPrefixes(peer.IPBlock.CIDR, peer.IPBlock.Except) {
				targets = append(targets, peerTarget{prefix: pre, block: true})
			}
		case peer.DNSName != "":
			found := false
			for name, addrs := range c.names {
				if policies.MatchDNSName(peer.DNSName, name) {
					found = true
					for _, a := range addrs {
						targets = append(targets, peerTarget{prefix: netip.PrefixFrom(a, a.BitLen())})
					}
				}
			}
			if !found {
				c.warnings[fmt.Sprintf("%s rule %s: DNS name %s not resolved yet; it allows nothing until it is", pol.Ref, r.ID, peer.DNSName)] = true
			}
		case peer.Host:
			for _, a := range c.hosts {
				targets = append(targets, peerTarget{prefix: netip.PrefixFrom(a, a.BitLen())})
			}
		}
	}
	slices.SortFunc(targets, func(a, b peerTarget) int {
		return cmp.Or(a.prefix.Addr().Compare(b.prefix.Addr()), cmp.Compare(a.prefix.Bits(), b.prefix.Bits()), boolCmp(a.block, b.block))
	})
	// Of two targets with one prefix the first is kept: one that is not a
	// block (a pod's, a DNS name's or a host's address is named, not
	// merely contained) sorts first.
	return slices.CompactFunc(targets, func(a, b peerTarget) bool { return a.prefix == b.prefix })
}

// subtractPrefixes returns p minus every prefix of except, as a list of
// prefixes (splitting p in halves around each exception).
func subtractPrefixes(p netip.Prefix, except []netip.Prefix) []netip.Prefix {
	overlap := false
	for _, e := range except {
		if e.Bits() <= p.Bits() && e.Contains(p.Addr()) {
			return nil
		}
		if p.Overlaps(e) {
			overlap = true
		}
	}
	if !overlap || p.Bits() == p.Addr().BitLen() {
		return []netip.Prefix{p}
	}
	lo, hi := halves(p)
	return append(subtractPrefixes(lo, except), subtractPrefixes(hi, except)...)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// halves splits masked prefix p (shorter than its address) in two.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	hiAddr := p.Addr().As16()
	bit := p.Bits()
	if p.Addr().Is4() {
		bit += 96
	}
	hiAddr[bit/8] |= 0x80 >> (bit % 8)
	ha := netip.AddrFrom16(hiAddr)
	if p.Addr().Is4() {
		ha = ha.Unmap()
	}
	return lo, netip.PrefixFrom(ha, p.Bits()+1)
}

func labelsOf(m map[string]string) labels.Set { return labels.Set(m) }

func selectorString(s labels.Selector) string {
	if s == nil {
		return "<nil>"
	}
	return s.String()
}
