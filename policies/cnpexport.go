package policies

// Export of a nanosegment (or a NetworkPolicy, through ImportNetworkPolicy)
// as ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2) or as a
// CiliumClusterwideNetworkPolicy, with every difference reported as a
// Problem, as ExportNetworkPolicy and ExportCilium do.
//
// The faithful tier is Baseline. A nanosegment, like a NetworkPolicy, is a
// namespace owner's policy: the allows of every policy selecting a pod add
// up, and what none allows is denied in a direction some policy isolates.
// The Baseline tier is consulted exactly where no NetworkPolicy isolates the
// pod (https://network-policy-api.sigs.k8s.io/api-overview/, "Tiers"), so a
// Baseline export means the same as the nanosegment for pods no remaining
// NetworkPolicy selects, and never overrides a namespace owner's policy.
// The Admin tier would: its Deny beats every NetworkPolicy allow, which is
// not what an allow-list means.
//
// To keep the union of allows within first-match-wins tiers, each policy
// becomes two ClusterNetworkPolicies: "<namespace>.<name>" at priority
// ExportAllowPriority with one Accept rule per allow rule (in rule order),
// and, for the directions the policy isolates, "<namespace>.<name>.isolate"
// at ExportIsolatePriority with one Deny rule for everything: every Accept
// of every exported policy is consulted before any isolation Deny, so the
// allows of several policies selecting one pod still add up.

import (
	"fmt"
	"maps"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// Baseline priorities of exported ClusterNetworkPolicies: every allow
// policy before every isolation policy.
const (
	ExportAllowPriority   int32 = 500
	ExportIsolatePriority int32 = 501
)

// cnpAccept is one Accept rule being built.
type cnpAccept struct {
	name      string
	from      []cnpv1alpha2.IngressPeer
	to        []cnpv1alpha2.EgressPeer
	protocols []cnpv1alpha2.Protocol
}

// ExportClusterNetworkPolicy converts a NanoSegment into Baseline
// ClusterNetworkPolicies (see cnpexport.go for why Baseline and why two
// policies): the subject is the selector in the nanosegment's namespace;
// each rule becomes an Accept named after its id (split into several when
// it has more peers or ports than a ClusterNetworkPolicy rule may hold, and
// its policy into "-2", "-3", ... beyond 25 rules); podSelector and
// namespaceSelector peers become pods or namespaces peers (a podSelector
// alone: of the nanosegment's namespace), egress ipBlocks networks, egress
// DNS names domainNames, the egress host peer nodes; ports become
// protocols (named ports destinationNamedPort). Differences are reported:
// ingress ipBlock, DNS-name and host peers cannot be expressed (left out:
// the export allows less), an ipBlock except cannot be expressed (the peer
// is left out), a "*." DNS wildcard matches one label in a nanosegment but
// one or more in a ClusterNetworkPolicy (wider), the host peer becomes every
// node (wider), ICMP ports cannot be expressed (the rule is left out), the
// ingress isolation cannot deny sources outside the cluster (ingress peers
// are pods only), a non-enforcing mode exports as enforcing, and Baseline is
// not consulted for a pod a NetworkPolicy isolates.
func ExportClusterNetworkPolicy(s *v1alpha1.NanoSegment) ([]*cnpv1alpha2.ClusterNetworkPolicy, []Problem) {
	ref := v1alpha1.Kind + " " + s.Namespace + "/" + s.Name
	probs := []Problem{{ref, "spec", "exported to the Baseline tier: consulted only for pods no NetworkPolicy isolates (a nanosegment joins the union of those NetworkPolicies instead), and not for a pod connecting to itself"}}
	if s.Spec.Mode != model.ModeEnforce {
		probs = append(probs, Problem{ref, "spec.mode", "mode " + string(modeOr(s.Spec.Mode)) + " has no ClusterNetworkPolicy equivalent; the exported policy enforces"})
	}
	subject := cnpv1alpha2.Subject{Pods: &cnpv1alpha2.NamespacedPod{
		NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelNamespaceName: s.Namespace}},
		PodSelector:       *s.Spec.Selector.DeepCopy()}}
	iso := EffectivePolicyTypes(s.Spec.PolicyTypes, len(s.Spec.Egress))
	var accepts [2][]cnpAccept
	for d, rules := range [2][]v1alpha1.Rule{s.Spec.Ingress, s.Spec.Egress} {
		dir := model.Directions[d]
		if !iso[d] {
			if len(rules) > 0 {
				probs = append(probs, Problem{ref, "spec." + strings.ToLower(string(dir)), "left out: policyTypes does not include " + string(dir) + ", so these rules have no effect"})
			}
			continue
		}
		for i, r := range rules {
			path := fmt.Sprintf("spec.%s[%d]", strings.ToLower(string(dir)), i)
			a, p := cnpAcceptOf(ref, path, s.Namespace, dir, r)
			probs = append(probs, p...)
			accepts[d] = append(accepts[d], a...)
		}
	}
	name := s.Namespace + "." + s.Name
	var out []*cnpv1alpha2.ClusterNetworkPolicy
	for k := 0; k == 0 || k*cnpv1alpha2.MaxRules < max(len(accepts[0]), len(accepts[1])); k++ {
		p := newExportedCNP(name, s.Labels, ExportAllowPriority, subject)
		if k > 0 {
			p.Name = fmt.Sprintf("%s-%d", name, k+1)
		}
		for _, a := range chunk(accepts[0], k) {
			p.Spec.Ingress = append(p.Spec.Ingress, cnpv1alpha2.IngressRule{Name: a.name, Action: cnpv1alpha2.ActionAccept, From: a.from, Protocols: a.protocols})
		}
		for _, a := range chunk(accepts[1], k) {
			p.Spec.Egress = append(p.Spec.Egress, cnpv1alpha2.EgressRule{Name: a.name, Action: cnpv1alpha2.ActionAccept, To: a.to, Protocols: a.protocols})
		}
		if len(p.Spec.Ingress)+len(p.Spec.Egress) > 0 {
			out = append(out, p)
		}
	}
	if iso[0] || iso[1] {
		p := newExportedCNP(name+".isolate", s.Labels, ExportIsolatePriority, subject)
		if iso[model.Ingress.Index()] {
			p.Spec.Ingress = []cnpv1alpha2.IngressRule{{Name: "isolate", Action: cnpv1alpha2.ActionDeny, From: []cnpv1alpha2.IngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}
			probs = append(probs, Problem{ref, "spec.policyTypes", "the ingress isolation denies pods only: ClusterNetworkPolicy ingress peers cannot name sources outside the cluster, which the export lets in"})
		}
		if iso[model.Egress.Index()] {
			p.Spec.Egress = []cnpv1alpha2.EgressRule{{Name: "isolate", Action: cnpv1alpha2.ActionDeny, To: []cnpv1alpha2.EgressPeer{{Networks: []cnpv1alpha2.CIDR{"0.0.0.0/0", "::/0"}}}}}
		}
		out = append(out, p)
	}
	return out, probs
}

// chunk returns the k-th slice of at most MaxRules of as.
func chunk(as []cnpAccept, k int) []cnpAccept {
	lo := k * cnpv1alpha2.MaxRules
	if lo >= len(as) {
		return nil
	}
	return as[lo:min(len(as), lo+cnpv1alpha2.MaxRules)]
}

func newExportedCNP(name string, lbls map[string]string, prio int32, subject cnpv1alpha2.Subject) *cnpv1alpha2.ClusterNetworkPolicy {
	return &cnpv1alpha2.ClusterNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: cnpv1alpha2.SchemeGroupVersion.String(), Kind: cnpv1alpha2.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: maps.Clone(lbls)},
		Spec:       cnpv1alpha2.Spec{Tier: cnpv1alpha2.TierBaseline, Priority: prio, Subject: subject},
	}
}

// cnpAcceptOf converts rule r (at path) of a nanosegment of namespace ns
// into Accept rules, split to the per-rule limits of peers and protocols.
func cnpAcceptOf(ref, path, ns string, dir model.Direction, r v1alpha1.Rule) ([]cnpAccept, []Problem) {
	var probs []Problem
	left := func(field, detail string) { probs = append(probs, Problem{ref, field, "rule " + r.ID + ": " + detail}) }
	var protos []cnpv1alpha2.Protocol
	for j, p := range r.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", path, j)
		proto := p.Protocol
		if proto == "" {
			proto = model.ProtocolTCP
		}
		if proto == model.ProtocolICMP {
			left(pp, "ICMP cannot be expressed (ClusterNetworkPolicy protocols are TCP, UDP and SCTP); left out")
			continue
		}
		if p.Port != nil && p.Port.Type == intstr.String {
			name := p.Port.StrVal
			protos = append(protos, cnpv1alpha2.Protocol{DestinationNamedPort: &name})
			continue
		}
		// destinationPort is required: every port is the range 1-65535.
		m := &cnpv1alpha2.PortMatch{DestinationPort: &cnpv1alpha2.Port{Range: &cnpv1alpha2.PortRange{Start: 1, End: 65535}}}
		switch {
		case p.Port == nil:
		case p.EndPort != nil:
			m.DestinationPort = &cnpv1alpha2.Port{Range: &cnpv1alpha2.PortRange{Start: p.Port.IntVal, End: *p.EndPort}}
		default:
			n := p.Port.IntVal // a copy: the exported policy does not share the rule's memory
			m.DestinationPort = &cnpv1alpha2.Port{Number: &n}
		}
		var pr cnpv1alpha2.Protocol
		switch proto {
		case model.ProtocolUDP:
			pr.UDP = m
		case model.ProtocolSCTP:
			pr.SCTP = m
		default:
			pr.TCP = m
		}
		protos = append(protos, pr)
	}
	if len(r.Ports) > 0 && len(protos) == 0 {
		left(path, "left out: none of its ports is expressible")
		return nil, probs
	}
	var from []cnpv1alpha2.IngressPeer
	var to []cnpv1alpha2.EgressPeer
	add := func(pods *cnpv1alpha2.NamespacedPod, nss *metav1.LabelSelector) {
		if dir == model.Ingress {
			from = append(from, cnpv1alpha2.IngressPeer{Pods: pods, Namespaces: nss})
		} else {
			to = append(to, cnpv1alpha2.EgressPeer{Pods: pods, Namespaces: nss})
		}
	}
	if len(r.Peers) == 0 {
		if dir == model.Ingress {
			from = []cnpv1alpha2.IngressPeer{{Namespaces: &metav1.LabelSelector{}}}
		} else {
			to = []cnpv1alpha2.EgressPeer{{Networks: []cnpv1alpha2.CIDR{"0.0.0.0/0", "::/0"}}}
		}
	}
	for j, p := range r.Peers {
		pp := fmt.Sprintf("%s.peers[%d]", path, j)
		switch {
		case p.PodSelector != nil && p.NamespaceSelector == nil:
			add(&cnpv1alpha2.NamespacedPod{NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelNamespaceName: ns}}, PodSelector: *p.PodSelector.DeepCopy()}, nil)
		case p.PodSelector != nil:
			add(&cnpv1alpha2.NamespacedPod{NamespaceSelector: *p.NamespaceSelector.DeepCopy(), PodSelector: *p.PodSelector.DeepCopy()}, nil)
		case p.NamespaceSelector != nil:
			add(nil, p.NamespaceSelector.DeepCopy())
		case dir == model.Ingress:
			left(pp, "ClusterNetworkPolicy ingress peers are namespaces and pods only: an ipBlock, DNS-name or host source cannot be expressed; peer left out")
		case p.IPBlock != nil && len(p.IPBlock.Except) > 0:
			left(pp+".ipBlock.except", "networks cannot exclude ranges; peer left out")
		case p.IPBlock != nil:
			to = append(to, cnpv1alpha2.EgressPeer{Networks: []cnpv1alpha2.CIDR{cnpv1alpha2.CIDR(p.IPBlock.CIDR)}})
		case p.DNSName != "":
			name := strings.ToLower(strings.TrimSuffix(p.DNSName, "."))
			if strings.HasPrefix(name, "*.") {
				left(pp+".dnsName", "a \"*.\" wildcard matches one label in a nanosegment, one or more in a ClusterNetworkPolicy: the export allows more")
			}
			to = append(to, cnpv1alpha2.EgressPeer{DomainNames: []cnpv1alpha2.DomainName{cnpv1alpha2.DomainName(name)}})
		case p.Host:
			left(pp+".host", "the host peer becomes every node (nodes: {}): the export allows more")
			to = append(to, cnpv1alpha2.EgressPeer{Nodes: &metav1.LabelSelector{}})
		}
	}
	if len(from)+len(to) == 0 {
		left(path, "left out: none of its peers is expressible")
		return nil, probs
	}
	var out []cnpAccept
	for pi := 0; pi == 0 || pi < max(len(from), len(to)); pi += cnpv1alpha2.MaxPeers {
		for qi := 0; qi == 0 || qi < len(protos); qi += cnpv1alpha2.MaxProtocols {
			a := cnpAccept{name: r.ID}
			if len(from) > 0 {
				a.from = from[pi:min(len(from), pi+cnpv1alpha2.MaxPeers)]
			}
			if len(to) > 0 {
				a.to = to[pi:min(len(to), pi+cnpv1alpha2.MaxPeers)]
			}
			if len(protos) > 0 {
				a.protocols = protos[qi:min(len(protos), qi+cnpv1alpha2.MaxProtocols)]
			}
			out = append(out, a)
		}
	}
	return out, probs
}

// ExportCiliumClusterwide converts a NanoSegment into a
// CiliumClusterwideNetworkPolicy (cilium.io/v2): ExportCilium's policy
// (whose endpoint selectors always name namespaces, so they mean the same
// without a policy namespace), cluster-scoped and named
// "<namespace>.<name>", with ExportCilium's problems.
func ExportCiliumClusterwide(s *v1alpha1.NanoSegment) (*CiliumNetworkPolicy, []Problem) {
	c, probs := ExportCilium(s)
	c.Kind = "CiliumClusterwideNetworkPolicy"
	c.Metadata.Name, c.Metadata.Namespace = s.Namespace+"."+s.Name, ""
	return c, probs
}
