package policies

// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) in the form
// evaluation uses, and the evaluation of its two tiers. Semantics:
// https://network-policy-api.sigs.k8s.io/reference/spec/ and
// https://network-policy-api.sigs.k8s.io/api-overview/ (tiers, actions,
// priorities, rules), with the types of kubernetes-sigs/network-policy-api
// apis/v1alpha2.

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// Tiers of evaluation, in order: the Admin tier of ClusterNetworkPolicies,
// the NetworkPolicy tier (NetworkPolicies and nanosegments: the namespace
// owners' policies), the Baseline tier of ClusterNetworkPolicies; a
// connection none of them decides is allowed (Kubernetes' default).
const (
	TierAdmin         = string(cnpv1alpha2.TierAdmin)
	TierNetworkPolicy = "NetworkPolicy"
	TierBaseline      = string(cnpv1alpha2.TierBaseline)
)

// ClusterPolicy is a ClusterNetworkPolicy compiled for evaluation: its
// selectors parsed, its CIDRs parsed, its rules numbered. Build it with
// CompileClusterNetworkPolicy.
type ClusterPolicy struct {
	Ref      PolicyRef
	Tier     cnpv1alpha2.Tier
	Priority int32
	Subject  PodSelection
	// Rules holds, per direction (model.Direction.Index), the rules in
	// their written order, which is their precedence.
	Rules [2][]ClusterRule
}

// PodSelection selects the participating pods (see Pod.Participates) whose
// namespace's labels match Namespace and whose labels match Pod (nil: every
// pod of those namespaces).
type PodSelection struct {
	Namespace labels.Selector
	Pod       labels.Selector
}

// Matches reports whether s selects a participating pod with labels
// podLabels in a namespace with labels nsLabels (the caller checks that
// the pod participates).
func (s PodSelection) Matches(nsLabels, podLabels map[string]string) bool {
	return s.matches(nsLabels, podLabels)
}

func (s PodSelection) matches(nsLabels, podLabels map[string]string) bool {
	return s.Namespace.Matches(labelSet(nsLabels)) && (s.Pod == nil || s.Pod.Matches(labelSet(podLabels)))
}

// ClusterRule is one rule of a ClusterPolicy: connections with any of Peers
// on any of Ports (all when AllPorts) get Action.
type ClusterRule struct {
	// ID is "ingress-<i>" or "egress-<i>", i the rule's index in its list.
	ID string
	// Name is the rule's optional name.
	Name     string
	Action   cnpv1alpha2.Action
	Peers    []ClusterPeer
	AllPorts bool
	Ports    []ClusterPort
}

// ClusterPeer is one peer; exactly one field is set.
type ClusterPeer struct {
	// Pods matches participating pods (namespaces and pods peers).
	Pods *PodSelection
	// Nodes matches the addresses of the nodes it selects.
	Nodes labels.Selector
	// Networks matches addresses in any prefix (masked).
	Networks []netip.Prefix
	// DomainNames matches addresses resolved from a name (lower case, no
	// trailing dot; "*." prefix for one or more labels).
	DomainNames []string
}

// ClusterPort is one protocols entry: a protocol with every port (Any), a
// port or range [Port, EndPort], or a named port of the destination pod
// (Name; any protocol the pod declares it with).
type ClusterPort struct {
	Protocol model.Protocol
	Any      bool
	Port     int32
	EndPort  int32
	Name     string
}

// Matches reports whether the entry matches proto/port at a destination
// declaring dstPorts (nil when the destination is not a participating pod:
// a named port then matches nothing).
func (p ClusterPort) Matches(proto model.Protocol, port int32, dstPorts []model.ContainerPort) bool {
	if p.Name != "" {
		return slices.ContainsFunc(dstPorts, func(cp model.ContainerPort) bool {
			return cp.Name == p.Name && cp.Protocol == proto && cp.Port == port
		})
	}
	return p.Protocol == proto && (p.Any || (port >= p.Port && port <= p.EndPort))
}

// RuleID returns the dataplane rule id of rule (its ID, "ingress-<i>" or
// "egress-<i>") of p: "cnp/admin/<name>/<rule>" or
// "cnp/baseline/<name>/<rule>", so that every kernel counter and
// verdict-log record names the tier, the policy and the rule; an id
// longer than verdictlog.MaxIDLen is cut and ends in "-" and the 8 hex
// digits of the FNV-1a hash of the whole id. compile programs rules under
// this id; evidence finds their counters by it.
func (p *ClusterPolicy) RuleID(rule string) string {
	id := "cnp/" + strings.ToLower(string(p.Tier)) + "/" + p.Ref.Name + "/" + rule
	if len(id) > verdictlog.MaxIDLen {
		h := fnv.New32a()
		_, _ = h.Write([]byte(id))
		id = fmt.Sprintf("%s-%08x", id[:verdictlog.MaxIDLen-9], h.Sum32())
	}
	return id
}

// ClusterRuleRef names the rule of a ClusterNetworkPolicy that decided a
// direction, or that passed it on.
type ClusterRuleRef struct {
	Policy   PolicyRef          `json:"policy"`
	Tier     cnpv1alpha2.Tier   `json:"tier"`
	Priority int32              `json:"priority"`
	Rule     string             `json:"rule"`
	Name     string             `json:"name,omitempty"`
	Action   cnpv1alpha2.Action `json:"action"`
}

// String returns `ClusterNetworkPolicy NAME (TIER, priority N) rule ID
// "NAME"`.
func (r ClusterRuleRef) String() string {
	s := fmt.Sprintf("%s (%s, priority %d) rule %s", r.Policy, r.Tier, r.Priority, r.Rule)
	if r.Name != "" {
		s += fmt.Sprintf(" %q", r.Name)
	}
	return s
}

// CompileClusterNetworkPolicy turns a ClusterNetworkPolicy into a
// ClusterPolicy. It fails with ErrInvalid listing every problem
// (ValidateClusterNetworkPolicy).
func CompileClusterNetworkPolicy(p *cnpv1alpha2.ClusterNetworkPolicy) (*ClusterPolicy, error) {
	if errs := ValidateClusterNetworkPolicy(p); len(errs) > 0 {
		return nil, fmt.Errorf("compile ClusterNetworkPolicy %s: %w: %w", p.Name, ErrInvalid, errs.ToAggregate())
	}
	cp := &ClusterPolicy{
		Ref:      PolicyRef{Kind: cnpv1alpha2.Kind, Name: p.Name},
		Tier:     p.Spec.Tier,
		Priority: p.Spec.Priority,
	}
	var err error
	if cp.Subject, err = compileSelection(p.Spec.Subject.Namespaces, p.Spec.Subject.Pods); err != nil {
		return nil, fmt.Errorf("compile ClusterNetworkPolicy %s: subject: %w", p.Name, err)
	}
	for i, r := range p.Spec.Ingress {
		rule := ClusterRule{ID: fmt.Sprintf("ingress-%d", i), Name: r.Name, Action: r.Action}
		for _, peer := range r.From {
			sel, err := compileSelection(peer.Namespaces, peer.Pods)
			if err != nil {
				return nil, fmt.Errorf("compile ClusterNetworkPolicy %s: rule %s: %w", p.Name, rule.ID, err)
			}
			rule.Peers = append(rule.Peers, ClusterPeer{Pods: &sel})
		}
		rule.AllPorts, rule.Ports = compileProtocols(r.Protocols)
		cp.Rules[model.Ingress.Index()] = append(cp.Rules[model.Ingress.Index()], rule)
	}
	for i, r := range p.Spec.Egress {
		rule := ClusterRule{ID: fmt.Sprintf("egress-%d", i), Name: r.Name, Action: r.Action}
		for _, peer := range r.To {
			cpeer, err := compileEgressPeer(peer)
			if err != nil {
				return nil, fmt.Errorf("compile ClusterNetworkPolicy %s: rule %s: %w", p.Name, rule.ID, err)
			}
			rule.Peers = append(rule.Peers, cpeer)
		}
		rule.AllPorts, rule.Ports = compileProtocols(r.Protocols)
		cp.Rules[model.Egress.Index()] = append(cp.Rules[model.Egress.Index()], rule)
	}
	return cp, nil
}

func compileSelection(ns *metav1.LabelSelector, pods *cnpv1alpha2.NamespacedPod) (PodSelection, error) {
	var s PodSelection
	var err error
	switch {
	case ns != nil:
		s.Namespace, err = metav1.LabelSelectorAsSelector(ns)
	case pods != nil:
		if s.Namespace, err = metav1.LabelSelectorAsSelector(&pods.NamespaceSelector); err == nil {
			s.Pod, err = metav1.LabelSelectorAsSelector(&pods.PodSelector)
		}
	}
	return s, err
}

func compileEgressPeer(peer cnpv1alpha2.EgressPeer) (ClusterPeer, error) {
	var out ClusterPeer
	switch {
	case peer.Namespaces != nil || peer.Pods != nil:
		sel, err := compileSelection(peer.Namespaces, peer.Pods)
		if err != nil {
			return out, err
		}
		out.Pods = &sel
	case peer.Nodes != nil:
		sel, err := metav1.LabelSelectorAsSelector(peer.Nodes)
		if err != nil {
			return out, err
		}
		out.Nodes = sel
	case peer.Networks != nil:
		for _, c := range peer.Networks {
			pre, err := netip.ParsePrefix(string(c))
			if err != nil {
				return out, err
			}
			out.Networks = append(out.Networks, pre.Masked())
		}
	case peer.DomainNames != nil:
		for _, d := range peer.DomainNames {
			out.DomainNames = append(out.DomainNames, normalizeDNS(string(d)))
		}
	}
	return out, nil
}

func compileProtocols(protos []cnpv1alpha2.Protocol) (bool, []ClusterPort) {
	if len(protos) == 0 {
		return true, nil
	}
	var out []ClusterPort
	for _, pr := range protos {
		for _, pm := range []struct {
			proto model.Protocol
			m     *cnpv1alpha2.PortMatch
		}{{model.ProtocolTCP, pr.TCP}, {model.ProtocolUDP, pr.UDP}, {model.ProtocolSCTP, pr.SCTP}} {
			if pm.m == nil {
				continue
			}
			p := ClusterPort{Protocol: pm.proto}
			switch dp := pm.m.DestinationPort; {
			case dp == nil:
				p.Any = true
			case dp.Range != nil:
				p.Port, p.EndPort = dp.Range.Start, dp.Range.End
			case dp.Number != nil:
				p.Port, p.EndPort = *dp.Number, *dp.Number
			default:
				p.Any = true // unreachable: validation requires number or range
			}
			out = append(out, p)
		}
		// An empty name names no container port (Kubernetes port names
		// are never empty): the entry matches nothing.
		if pr.DestinationNamedPort != nil && *pr.DestinationNamedPort != "" {
			out = append(out, ClusterPort{Name: *pr.DestinationNamedPort})
		}
	}
	return false, out
}

// MatchDomainName reports whether name (lower case, no trailing dot)
// matches the domainNames entry pattern (see matchDomainName).
func MatchDomainName(pattern, name string) bool { return matchDomainName(pattern, name) }

// matchDomainName reports whether name matches a domainNames entry: equal,
// or for "*.suffix" one or more whole labels followed by ".suffix"
// (https://network-policy-api.sigs.k8s.io/reference/spec/, DomainName).
func matchDomainName(pattern, name string) bool {
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		head, found := strings.CutSuffix(name, "."+rest)
		return found && head != "" && !strings.HasPrefix(head, ".") && !strings.HasSuffix(head, ".")
	}
	return pattern == name
}

func (r ClusterRule) matches(peer resolved, proto model.Protocol, port int32, dstPorts []model.ContainerPort) bool {
	if !r.AllPorts && !slices.ContainsFunc(r.Ports, func(p ClusterPort) bool { return p.Matches(proto, port, dstPorts) }) {
		return false
	}
	return slices.ContainsFunc(r.Peers, func(p ClusterPeer) bool { return p.matches(peer) })
}

func (p ClusterPeer) matches(peer resolved) bool {
	switch {
	case p.Pods != nil:
		return peer.pod != nil && p.Pods.matches(peer.nsLabel, peer.pod.Labels)
	case p.Nodes != nil:
		return slices.ContainsFunc(peer.nodeLabels, func(l map[string]string) bool { return p.Nodes.Matches(labelSet(l)) })
	case p.Networks != nil:
		return peer.addr.IsValid() && slices.ContainsFunc(p.Networks, func(n netip.Prefix) bool { return n.Contains(peer.addr.Unmap()) })
	case p.DomainNames != nil:
		for _, d := range p.DomainNames {
			if slices.ContainsFunc(peer.names, func(n string) bool { return matchDomainName(d, n) }) {
				return true
			}
		}
	}
	return false
}

// evalClusterTier runs one tier for one direction: its policies in order
// (by priority, then name), those whose subject selects the subject pod,
// each policy's rules of the direction in written order; the first rule
// that matches decides. It returns that rule (nil when none matched).
func evalClusterTier(tier []*ClusterPolicy, dir model.Direction, subject, peer resolved, conn Connection, dstPorts []model.ContainerPort) *ClusterRuleRef {
	for _, p := range tier {
		if !p.Subject.matches(subject.nsLabel, subject.pod.Labels) {
			continue
		}
		for _, r := range p.Rules[dir.Index()] {
			if r.matches(peer, conn.Protocol, conn.Port, dstPorts) {
				return &ClusterRuleRef{Policy: p.Ref, Tier: p.Tier, Priority: p.Priority, Rule: r.ID, Name: r.Name, Action: r.Action}
			}
		}
	}
	return nil
}

// sortClusterPolicies orders a tier's policies as evaluation consults
// them: by priority (lower first), then by name. The reference leaves the
// order of equal priorities to the implementation; by name is nanoseg's
// choice, so the answer never depends on the order policies were read in.
func sortClusterPolicies(ps []*ClusterPolicy) {
	slices.SortFunc(ps, func(a, b *ClusterPolicy) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), strings.Compare(a.Ref.Name, b.Ref.Name))
	})
}

// SamePriority returns a warning for each pair of ClusterNetworkPolicies of
// one tier that share a priority and select a pod in common in world: the
// reference leaves their order undefined (nanoseg consults them by name).
func SamePriority(world World, set PolicySet) []string {
	var warns []string
	pods := world.Pods()
	for _, tier := range set.cluster {
		for i := 0; i < len(tier); i++ {
			for j := i + 1; j < len(tier) && tier[j].Priority == tier[i].Priority; j++ {
				a, b := tier[i], tier[j]
				for _, pod := range pods {
					ns, _ := world.Namespace(pod.Namespace)
					if pod.Participates() && a.Subject.matches(ns.Labels, pod.Labels) && b.Subject.matches(ns.Labels, pod.Labels) {
						warns = append(warns, fmt.Sprintf("%s and %s share tier %s and priority %d and both select %s: the order of equal priorities is undefined upstream; nanoseg consults them by name", a.Ref, b.Ref, a.Tier, a.Priority, pod.Key()))
						break
					}
				}
			}
		}
	}
	return warns
}

// AuditedDenies returns the Deny rules (Admin, then Baseline, in
// evaluation order) of the ClusterNetworkPolicies in s whose subject
// selects pod p, in a namespace with labels nsLabels, when p is in audit
// mode (SubjectMode): on p they are logged as audit-deny, not dropped,
// until p's policies are promoted to enforce (issue 15). It returns nil
// when p is in another mode or does not participate. A Baseline Deny
// counts only in a direction no policy isolates, where it can decide.
func (s PolicySet) AuditedDenies(nsLabels map[string]string, p Pod) []ClusterRuleRef {
	if !p.Participates() || SubjectMode(s, p) != model.ModeAudit {
		return nil
	}
	var isolated [2]bool
	for _, pol := range s.byNS[p.Namespace] {
		if pol.Mode != model.ModeObserve && pol.Selector.Matches(labelSet(p.Labels)) {
			isolated[0] = isolated[0] || pol.Isolates[0]
			isolated[1] = isolated[1] || pol.Isolates[1]
		}
	}
	var out []ClusterRuleRef
	for t, tier := range s.cluster {
		for _, cp := range tier {
			if !cp.Subject.Matches(nsLabels, p.Labels) {
				continue
			}
			for d := range 2 {
				if t == 1 && isolated[d] {
					continue
				}
				for _, r := range cp.Rules[d] {
					if r.Action == cnpv1alpha2.ActionDeny {
						out = append(out, ClusterRuleRef{Policy: cp.Ref, Tier: cp.Tier, Priority: cp.Priority, Rule: r.ID, Name: r.Name, Action: r.Action})
					}
				}
			}
		}
	}
	return out
}
