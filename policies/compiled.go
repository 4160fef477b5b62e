package policies

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// PolicyRef names a policy: its kind (NetworkPolicy, NanoSegment or
// ClusterNetworkPolicy), namespace (empty for a ClusterNetworkPolicy) and
// name.
type PolicyRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// String returns "Kind namespace/name", or "Kind name" without a namespace.
func (r PolicyRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// RuleRef names one rule of one policy.
type RuleRef struct {
	Policy PolicyRef `json:"policy"`
	Rule   string    `json:"rule"`
}

// String returns "Kind namespace/name rule id".
func (r RuleRef) String() string { return r.Policy.String() + " rule " + r.Rule }

// Policy is one policy in the form evaluation and compilation use: selectors
// parsed, CIDRs parsed, policyTypes defaulted. Build it with CompileNanoSegment
// or CompileNetworkPolicy; the zero value selects nothing.
type Policy struct {
	Ref       PolicyRef
	Mode      model.Mode
	Namespace string
	Selector  labels.Selector
	// Isolates says, per direction (model.Direction.Index), whether the policy isolates the selected
	// pods in that direction (policyTypes after defaulting).
	Isolates [2]bool
	// Rules holds, per direction (model.Direction.Index), the allow rules.
	Rules [2][]CompiledRule
}

// CompiledRule is one allow rule: AllPeers or any of Peers, and AllPorts or
// any of Ports.
type CompiledRule struct {
	ID       string
	AllPeers bool
	Peers    []CompiledPeer
	AllPorts bool
	Ports    []CompiledPort
}

// CompiledPeer is one peer. PodSelector and NamespaceSelector are nil when
// absent; a peer with neither, and with no IPBlock, DNSName or Host, matches
// nothing.
type CompiledPeer struct {
	PodSelector       labels.Selector
	NamespaceSelector labels.Selector
	IPBlock           *CompiledIPBlock
	DNSName           string
	Host              bool
}

// IsSelector reports whether the peer selects pods (by pod and/or namespace
// selector).
func (p CompiledPeer) IsSelector() bool { return p.PodSelector != nil || p.NamespaceSelector != nil }

// CompiledIPBlock is a CIDR minus its exceptions.
type CompiledIPBlock struct {
	CIDR   netip.Prefix
	Except []netip.Prefix
}

// Contains reports whether addr is in the CIDR and in none of the exceptions.
func (b CompiledIPBlock) Contains(addr netip.Addr) bool {
	if !b.CIDR.Contains(addr) {
		return false
	}
	for _, e := range b.Except {
		if e.Contains(addr) {
			return false
		}
	}
	return true
}

// CompiledPort is a protocol with all its ports (Any), one numeric port or
// range [Port, EndPort], or a named port.
type CompiledPort struct {
	Protocol model.Protocol
	Any      bool
	Port     int32
	EndPort  int32 // equal to Port for a single port
	Name     string
}

// Matches reports whether the port allows proto/port at a destination pod
// declaring dstPorts (nil when the destination is not a participating pod,
// so a named port matches nothing there).
func (p CompiledPort) Matches(proto model.Protocol, port int32, dstPorts []model.ContainerPort) bool {
	if p.Protocol != proto {
		return false
	}
	switch {
	case p.Any:
		return true
	case p.Name != "":
		for _, cp := range dstPorts {
			if cp.Name == p.Name && cp.Protocol == proto && cp.Port == port {
				return true
			}
		}
		return false
	default:
		return port >= p.Port && port <= p.EndPort
	}
}

// ResolveNamed returns the number a named port has at a destination pod
// declaring dstPorts, and whether it has one.
func (p CompiledPort) ResolveNamed(dstPorts []model.ContainerPort) (int32, bool) {
	for _, cp := range dstPorts {
		if cp.Name == p.Name && cp.Protocol == p.Protocol {
			return cp.Port, true
		}
	}
	return 0, false
}

// CompileNetworkPolicy turns a NetworkPolicy into a Policy, defaulting
// policyTypes as the API server does: Ingress always, Egress when the egress
// list is non-empty
// (https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/,
// NetworkPolicySpec.policyTypes). Rule ids are "ingress-<i>" and "egress-<i>".
// It fails with ErrInvalid listing every problem.
func CompileNetworkPolicy(np *networkingv1.NetworkPolicy) (*Policy, error) {
	if errs := ValidateNetworkPolicy(np); len(errs) > 0 {
		return nil, fmt.Errorf("compile NetworkPolicy %s/%s: %w: %w", np.Namespace, np.Name, ErrInvalid, errs.ToAggregate())
	}
	seg, _ := ImportNetworkPolicy(np)
	seg.Spec.Mode = model.ModeEnforce // a NetworkPolicy enforces
	p, err := compileSegment(seg)
	if err != nil {
		return nil, err
	}
	p.Ref.Kind = "NetworkPolicy"
	return p, nil
}

// CompileNanoSegment turns a NanoSegment into a Policy; policyTypes default as
// for NetworkPolicy and an empty mode means observe. It fails with ErrInvalid
// listing every problem.
func CompileNanoSegment(s *v1alpha1.NanoSegment) (*Policy, error) {
	if errs := ValidateNanoSegment(s); len(errs) > 0 {
		return nil, fmt.Errorf("compile NanoSegment %s/%s: %w: %w", s.Namespace, s.Name, ErrInvalid, errs.ToAggregate())
	}
	return compileSegment(s)
}

// EffectivePolicyTypes returns the directions a spec isolates: policyTypes
// when set, else Ingress, plus Egress when egress rules exist.
func EffectivePolicyTypes(types []networkingv1.PolicyType, egressRules int) [2]bool {
	var iso [2]bool
	if len(types) == 0 {
		iso[model.Ingress.Index()] = true
		iso[model.Egress.Index()] = egressRules > 0
		return iso
	}
	for _, t := range types {
		switch t {
		case networkingv1.PolicyTypeIngress:
			iso[model.Ingress.Index()] = true
		case networkingv1.PolicyTypeEgress:
			iso[model.Egress.Index()] = true
		}
	}
	return iso
}

func compileSegment(s *v1alpha1.NanoSegment) (*Policy, error) {
	sel, err := metav1.LabelSelectorAsSelector(&s.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("compile selector of %s/%s: %w", s.Namespace, s.Name, err)
	}
	mode := s.Spec.Mode
	if mode == "" {
		mode = model.ModeObserve
	}
	p := &Policy{
		Ref:       PolicyRef{Kind: v1alpha1.Kind, Namespace: s.Namespace, Name: s.Name},
		Mode:      mode,
		Namespace: s.Namespace,
		Selector:  sel,
		Isolates:  EffectivePolicyTypes(s.Spec.PolicyTypes, len(s.Spec.Egress)),
	}
	for d, rules := range [2][]v1alpha1.Rule{s.Spec.Ingress, s.Spec.Egress} {
		for _, r := range rules {
			cr, err := compileRule(r)
			if err != nil {
				return nil, fmt.Errorf("compile %s/%s rule %s: %w", s.Namespace, s.Name, r.ID, err)
			}
			p.Rules[d] = append(p.Rules[d], cr)
		}
	}
	return p, nil
}

func compileRule(r v1alpha1.Rule) (CompiledRule, error) {
	cr := CompiledRule{ID: r.ID, AllPeers: len(r.Peers) == 0, AllPorts: len(r.Ports) == 0}
	for _, peer := range r.Peers {
		var cp CompiledPeer
		var err error
		if peer.PodSelector != nil {
			if cp.PodSelector, err = metav1.LabelSelectorAsSelector(peer.PodSelector); err != nil {
				return cr, err
			}
		}
		if peer.NamespaceSelector != nil {
			if cp.NamespaceSelector, err = metav1.LabelSelectorAsSelector(peer.NamespaceSelector); err != nil {
				return cr, err
			}
		}
		if peer.IPBlock != nil {
			b := &CompiledIPBlock{}
			if b.CIDR, err = netip.ParsePrefix(peer.IPBlock.CIDR); err != nil {
				return cr, err
			}
			b.CIDR = b.CIDR.Masked()
			for _, e := range peer.IPBlock.Except {
				ep, err := netip.ParsePrefix(e)
				if err != nil {
					return cr, err
				}
				b.Except = append(b.Except, ep.Masked())
			}
			cp.IPBlock = b
		}
		cp.DNSName = normalizeDNS(peer.DNSName)
		cp.Host = peer.Host
		cr.Peers = append(cr.Peers, cp)
	}
	for _, port := range r.Ports {
		cr.Ports = append(cr.Ports, compilePort(port))
	}
	return cr, nil
}

func compilePort(port v1alpha1.Port) CompiledPort {
	cp := CompiledPort{Protocol: port.Protocol}
	if cp.Protocol == "" {
		cp.Protocol = model.ProtocolTCP
	}
	switch {
	case port.Port == nil:
		cp.Any = true
	case port.Port.Type == intstr.String:
		cp.Name = port.Port.StrVal
	default:
		cp.Port = port.Port.IntVal
		cp.EndPort = cp.Port
		if port.EndPort != nil {
			cp.EndPort = *port.EndPort
		}
	}
	return cp
}

// PolicySet is a set of compiled policies: NetworkPolicies and NanoSegments
// together, indexed by namespace (evaluation treats them as the union of
// their members: the NetworkPolicy tier), and ClusterNetworkPolicies in
// their Admin and Baseline tiers. Build it with NewPolicySet or
// NewObjectSet; the zero value is empty.
type PolicySet struct {
	all  []*Policy
	byNS map[string][]*Policy
	// cluster holds the Admin (0) and Baseline (1) tiers, each in the
	// order evaluation consults them (sortClusterPolicies).
	cluster [2][]*ClusterPolicy
}

// NewPolicySet compiles NetworkPolicies and NanoSegments into one set,
// sorted by kind, namespace and name. It fails with every invalid object's
// problems joined.
func NewPolicySet(nps []networkingv1.NetworkPolicy, segs []v1alpha1.NanoSegment) (PolicySet, error) {
	var ps []*Policy
	var errs []error
	for i := range nps {
		p, err := CompileNetworkPolicy(&nps[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps = append(ps, p)
	}
	for i := range segs {
		p, err := CompileNanoSegment(&segs[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ps = append(ps, p)
	}
	if len(errs) > 0 {
		return PolicySet{}, joinErrors(errs)
	}
	return NewPolicySetOf(ps), nil
}

// NewPolicySetOf makes a set of already compiled policies.
func NewPolicySetOf(ps []*Policy) PolicySet {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b *Policy) int {
		return strings.Compare(a.Ref.Kind+"\x00"+a.Ref.Namespace+"\x00"+a.Ref.Name, b.Ref.Kind+"\x00"+b.Ref.Namespace+"\x00"+b.Ref.Name)
	})
	s := PolicySet{all: ps, byNS: map[string][]*Policy{}}
	for _, p := range ps {
		s.byNS[p.Namespace] = append(s.byNS[p.Namespace], p)
	}
	return s
}

// Policies returns the set's NetworkPolicies and NanoSegments, sorted by
// kind, namespace and name.
func (s PolicySet) Policies() []*Policy { return s.all }

// WithClusterPolicies returns a copy of s holding cps as its
// ClusterNetworkPolicies (replacing any it held).
func (s PolicySet) WithClusterPolicies(cps []*ClusterPolicy) PolicySet {
	s.cluster = [2][]*ClusterPolicy{}
	for _, p := range cps {
		i := 0
		if p.Tier == cnpv1alpha2.TierBaseline {
			i = 1
		}
		s.cluster[i] = append(s.cluster[i], p)
	}
	sortClusterPolicies(s.cluster[0])
	sortClusterPolicies(s.cluster[1])
	return s
}

// ClusterPolicies returns the set's ClusterNetworkPolicies in the order
// evaluation consults them: the Admin tier, then the Baseline tier, each by
// priority and name.
func (s PolicySet) ClusterPolicies() []*ClusterPolicy {
	return append(slices.Clone(s.cluster[0]), s.cluster[1]...)
}

// NewObjectSet compiles policy documents of every kind into one set
// (NewPolicySet, CompileClusterNetworkPolicy). It fails with every invalid
// object's problems joined.
func NewObjectSet(objs []Object) (PolicySet, error) {
	set, err := NewPolicySet(SplitObjects(objs))
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var cps []*ClusterPolicy
	for _, c := range ClusterNetworkPolicies(objs) {
		cp, err := CompileClusterNetworkPolicy(&c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cps = append(cps, cp)
	}
	if len(errs) > 0 {
		return PolicySet{}, joinErrors(errs)
	}
	return set.WithClusterPolicies(cps), nil
}

// InNamespace returns the policies of one namespace.
func (s PolicySet) InNamespace(ns string) []*Policy { return s.byNS[ns] }

// Len returns the number of policies.
func (s PolicySet) Len() int { return len(s.all) }

// InForce is every policy in force: the NetworkPolicies (enforced with
// their own semantics, as Kubernetes does) and the nanosegments (each with
// its promoted mode). The standalone agent reads both from its store; a
// Kubernetes node will receive the NetworkPolicies from the API server.
type InForce struct {
	NetworkPolicies []networkingv1.NetworkPolicy `json:"networkPolicies,omitempty"`
	NanoSegments    []v1alpha1.NanoSegment       `json:"nanoSegments,omitempty"`
	// ClusterNetworkPolicies are the cluster administrator's tiers
	// around them (the standalone agent's store holds them).
	ClusterNetworkPolicies []cnpv1alpha2.ClusterNetworkPolicy `json:"clusterNetworkPolicies,omitempty"`
}

// Set compiles f into the policy set that evaluation, compile and diff
// use (NewPolicySet, CompileClusterNetworkPolicy).
func (f InForce) Set() (PolicySet, error) {
	set, err := NewPolicySet(f.NetworkPolicies, f.NanoSegments)
	if err != nil {
		return PolicySet{}, fmt.Errorf("compile active policies: %w", err)
	}
	if len(f.ClusterNetworkPolicies) == 0 {
		return set, nil
	}
	cps := make([]*ClusterPolicy, 0, len(f.ClusterNetworkPolicies))
	for i := range f.ClusterNetworkPolicies {
		cp, err := CompileClusterNetworkPolicy(&f.ClusterNetworkPolicies[i])
		if err != nil {
			return PolicySet{}, fmt.Errorf("compile active policies: %w", err)
		}
		cps = append(cps, cp)
	}
	return set.WithClusterPolicies(cps), nil
}

// ActiveSet compiles the nanosegments in force (each with its promoted
// mode) into a policy set: InForce{NanoSegments: segs}.Set().
func ActiveSet(segs []v1alpha1.NanoSegment) (PolicySet, error) {
	return InForce{NanoSegments: segs}.Set()
}
