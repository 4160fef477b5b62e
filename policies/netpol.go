package policies

import (
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// AnnotationImportedFrom marks a NanoSegment imported from a NetworkPolicy;
// its value is "NetworkPolicy <namespace>/<name>".
const AnnotationImportedFrom = "nanoseg.io/imported-from"

// Problem is something an export could not express, or a difference of
// meaning it had to make. Field is the path in the source object.
type Problem struct {
	Policy string `json:"policy"`
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// String returns "policy: field: detail".
func (p Problem) String() string { return p.Policy + ": " + p.Field + ": " + p.Detail }

// ImportNetworkPolicy converts a NetworkPolicy into a NanoSegment of the
// same namespace and name whose rules mean the same, in observe mode: a
// nanosegment's mode is decided by promotions, so an imported policy
// filters nothing until someone promotes it (to enforce it as the
// NetworkPolicy would be, promote it to enforce; to enforce the
// NetworkPolicy itself at once, apply it as a NetworkPolicy). The podSelector becomes
// the selector, policyTypes are written out after defaulting (Ingress always,
// Egress when egress rules exist), each ingress (egress) rule i becomes rule
// "ingress-<i>" ("egress-<i>") declared by "NetworkPolicy <ns>/<name>", peers
// and ports carry over unchanged (protocol defaulted to TCP). Every
// NetworkPolicy is expressible; np is not validated here (see
// ValidateNetworkPolicy) and the error is for a nil np.
func ImportNetworkPolicy(np *networkingv1.NetworkPolicy) (*v1alpha1.NanoSegment, error) {
	if np == nil {
		return nil, fmt.Errorf("import NetworkPolicy: %w: nil", ErrInvalid)
	}
	by := "NetworkPolicy " + np.Namespace + "/" + np.Name
	s := &v1alpha1.NanoSegment{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{
			Name:        np.Name,
			Namespace:   np.Namespace,
			Labels:      maps.Clone(np.Labels),
			Annotations: map[string]string{AnnotationImportedFrom: by},
		},
	}
	s.Spec.Selector = *np.Spec.PodSelector.DeepCopy()
	s.Spec.Mode = model.ModeObserve
	iso := EffectivePolicyTypes(np.Spec.PolicyTypes, len(np.Spec.Egress))
	if iso[model.Ingress.Index()] {
		s.Spec.PolicyTypes = append(s.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
	}
	if iso[model.Egress.Index()] {
		s.Spec.PolicyTypes = append(s.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}
	prov := v1alpha1.Provenance{Declared: &v1alpha1.Declared{By: by}}
	for i, r := range np.Spec.Ingress {
		s.Spec.Ingress = append(s.Spec.Ingress, v1alpha1.Rule{
			ID: fmt.Sprintf("ingress-%d", i), Peers: importPeers(r.From), Ports: importPorts(r.Ports), Provenance: *prov.DeepCopy(),
		})
	}
	for i, r := range np.Spec.Egress {
		s.Spec.Egress = append(s.Spec.Egress, v1alpha1.Rule{
			ID: fmt.Sprintf("egress-%d", i), Peers: importPeers(r.To), Ports: importPorts(r.Ports), Provenance: *prov.DeepCopy(),
		})
	}
	return s, nil
}

func importPeers(in []networkingv1.NetworkPolicyPeer) []v1alpha1.Peer {
	var out []v1alpha1.Peer
	for _, p := range in {
		var q v1alpha1.Peer
		q.PodSelector = p.PodSelector.DeepCopy()
		q.NamespaceSelector = p.NamespaceSelector.DeepCopy()
		if p.IPBlock != nil {
			q.IPBlock = &v1alpha1.IPBlock{CIDR: p.IPBlock.CIDR, Except: append([]string(nil), p.IPBlock.Except...)}
		}
		out = append(out, q)
	}
	return out
}

func importPorts(in []networkingv1.NetworkPolicyPort) []v1alpha1.Port {
	var out []v1alpha1.Port
	for _, p := range in {
		q := v1alpha1.Port{Protocol: model.ProtocolTCP}
		if p.Protocol != nil {
			q.Protocol = model.Protocol(*p.Protocol)
		}
		q.Port, q.EndPort = copyPortRange(p.Port, p.EndPort)
		out = append(out, q)
	}
	return out
}

// ExportNetworkPolicy converts a NanoSegment into a NetworkPolicy of the same
// namespace and name with policyTypes written out. What NetworkPolicy cannot
// express is reported as a Problem and left out, never silently: DNS-name and
// host peers, ICMP ports, and a non-enforcing mode (the NetworkPolicy
// enforces). A rule whose every peer (or every port) was left out is left out
// whole, since an empty list would widen it to everything.
func ExportNetworkPolicy(s *v1alpha1.NanoSegment) (*networkingv1.NetworkPolicy, []Problem) {
	ref := v1alpha1.Kind + " " + s.Namespace + "/" + s.Name
	var probs []Problem
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: maps.Clone(s.Labels)},
	}
	np.Spec.PodSelector = *s.Spec.Selector.DeepCopy()
	if s.Spec.Mode != model.ModeEnforce {
		mode := s.Spec.Mode
		if mode == "" {
			mode = model.ModeObserve
		}
		probs = append(probs, Problem{ref, "spec.mode", fmt.Sprintf("mode %s has no NetworkPolicy equivalent; the exported policy enforces", mode)})
	}
	iso := EffectivePolicyTypes(s.Spec.PolicyTypes, len(s.Spec.Egress))
	if iso[model.Ingress.Index()] {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
	}
	if iso[model.Egress.Index()] {
		np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
	}
	for d, rules := range [2][]v1alpha1.Rule{s.Spec.Ingress, s.Spec.Egress} {
		dir := strings.ToLower(string(model.Directions[d]))
		for i, r := range rules {
			path := fmt.Sprintf("spec.%s[%d]", dir, i)
			peers, ports, ok, p := exportRule(ref, path, r)
			probs = append(probs, p...)
			if !ok {
				continue
			}
			if d == model.Ingress.Index() {
				np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
			} else {
				np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
			}
		}
	}
	return np, probs
}

func exportRule(ref, path string, r v1alpha1.Rule) ([]networkingv1.NetworkPolicyPeer, []networkingv1.NetworkPolicyPort, bool, []Problem) {
	var probs []Problem
	var peers []networkingv1.NetworkPolicyPeer
	for j, p := range r.Peers {
		pp := fmt.Sprintf("%s.peers[%d]", path, j)
		switch {
		case p.DNSName != "":
			probs = append(probs, Problem{ref, pp + ".dnsName", fmt.Sprintf("rule %s: DNS name %s cannot be expressed in a NetworkPolicy; peer left out", r.ID, p.DNSName)})
		case p.Host:
			probs = append(probs, Problem{ref, pp + ".host", fmt.Sprintf("rule %s: the host peer cannot be expressed in a NetworkPolicy; peer left out", r.ID)})
		default:
			q := networkingv1.NetworkPolicyPeer{PodSelector: p.PodSelector.DeepCopy(), NamespaceSelector: p.NamespaceSelector.DeepCopy()}
			if p.IPBlock != nil {
				q.IPBlock = &networkingv1.IPBlock{CIDR: p.IPBlock.CIDR, Except: append([]string(nil), p.IPBlock.Except...)}
			}
			peers = append(peers, q)
		}
	}
	var ports []networkingv1.NetworkPolicyPort
	for j, p := range r.Ports {
		if p.Protocol == model.ProtocolICMP {
			probs = append(probs, Problem{ref, fmt.Sprintf("%s.ports[%d]", path, j), fmt.Sprintf("rule %s: ICMP cannot be expressed in a NetworkPolicy; port left out", r.ID)})
			continue
		}
		proto := corev1.ProtocolTCP
		if p.Protocol != "" {
			proto = corev1.Protocol(p.Protocol)
		}
		q := networkingv1.NetworkPolicyPort{Protocol: &proto}
		q.Port, q.EndPort = copyPortRange(p.Port, p.EndPort)
		ports = append(ports, q)
	}
	if (len(r.Peers) > 0 && len(peers) == 0) || (len(r.Ports) > 0 && len(ports) == 0) {
		probs = append(probs, Problem{ref, path, fmt.Sprintf("rule %s left out: nothing of it is expressible, and an empty list would allow everything", r.ID)})
		return nil, nil, false, probs
	}
	return peers, ports, true, probs
}

// intOrStringPtr is a helper for tests and inference.
func intOrStringPtr(v intstr.IntOrString) *intstr.IntOrString { return &v }

// copyPortRange returns copies of a port (number or name) and an end port,
// nil where the input is nil, so that converted policies share no memory
// with their source.
func copyPortRange(port *intstr.IntOrString, end *int32) (*intstr.IntOrString, *int32) {
	var p *intstr.IntOrString
	var e *int32
	if port != nil {
		v := *port
		p = &v
	}
	if end != nil {
		v := *end
		e = &v
	}
	return p, e
}
