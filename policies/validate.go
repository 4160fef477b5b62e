package policies

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

var ruleIDRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateNanoSegment returns every problem of s, each with its field path,
// in the style of the Kubernetes API server (empty when s is valid). The rules
// for selectors, CIDRs and ports are those of NetworkPolicy
// (https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/),
// plus: a peer holds exactly one of {podSelector, namespaceSelector},
// ipBlock, dnsName, host; rule ids are unique; ICMP ports are types 0-255.
func ValidateNanoSegment(s *v1alpha1.NanoSegment) field.ErrorList {
	var errs field.ErrorList
	if s.APIVersion != "" && s.APIVersion != v1alpha1.APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), s.APIVersion, []string{v1alpha1.APIVersion}))
	}
	if s.Kind != "" && s.Kind != v1alpha1.Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), s.Kind, []string{v1alpha1.Kind}))
	}
	errs = append(errs, validateMeta(s.ObjectMeta, field.NewPath("metadata"))...)
	spec := field.NewPath("spec")
	errs = append(errs, validateSelector(&s.Spec.Selector, spec.Child("selector"))...)
	switch s.Spec.Mode {
	case "", model.ModeObserve, model.ModeAudit, model.ModeEnforce:
	default:
		errs = append(errs, field.NotSupported(spec.Child("mode"), s.Spec.Mode, []model.Mode{model.ModeObserve, model.ModeAudit, model.ModeEnforce}))
	}
	errs = append(errs, validatePolicyTypes(s.Spec.PolicyTypes, spec.Child("policyTypes"))...)
	ids := map[string]*field.Path{}
	for _, dir := range []struct {
		name  string
		rules []v1alpha1.Rule
	}{{"ingress", s.Spec.Ingress}, {"egress", s.Spec.Egress}} { // ingress first: an id in both is a duplicate in egress, as the schema says
		for i, r := range dir.rules {
			p := spec.Child(dir.name).Index(i)
			switch {
			case r.ID == "":
				errs = append(errs, field.Required(p.Child("id"), "every rule needs a stable id"))
			case !ruleIDRe.MatchString(r.ID):
				errs = append(errs, field.Invalid(p.Child("id"), r.ID, "must be 1-63 characters of [a-z0-9-], starting and ending with [a-z0-9]"))
			case ids[r.ID] != nil:
				errs = append(errs, field.Duplicate(p.Child("id"), r.ID))
			default:
				ids[r.ID] = p
			}
			for j, peer := range r.Peers {
				errs = append(errs, validatePeer(peer, p.Child("peers").Index(j))...)
			}
			for j, port := range r.Ports {
				errs = append(errs, validatePort(port, p.Child("ports").Index(j))...)
			}
		}
	}
	slices.SortStableFunc(errs, func(a, b *field.Error) int { return strings.Compare(a.Field, b.Field) })
	return errs
}

func validateMeta(m metav1.ObjectMeta, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if m.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(m.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), m.Name, msg))
		}
	}
	if m.Namespace == "" {
		errs = append(errs, field.Required(p.Child("namespace"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Label(m.Namespace) {
			errs = append(errs, field.Invalid(p.Child("namespace"), m.Namespace, msg))
		}
	}
	return errs
}

func validateSelector(s *metav1.LabelSelector, p *field.Path) field.ErrorList {
	return metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, p)
}

func validatePolicyTypes(types []networkingv1.PolicyType, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[networkingv1.PolicyType]bool{}
	for i, t := range types {
		switch {
		case t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress:
			errs = append(errs, field.NotSupported(p.Index(i), t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}))
		case seen[t]:
			errs = append(errs, field.Duplicate(p.Index(i), t))
		}
		seen[t] = true
	}
	return errs
}

func validatePeer(peer v1alpha1.Peer, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if peer.PodSelector != nil || peer.NamespaceSelector != nil {
		n++
		errs = append(errs, validateSelector(peer.PodSelector, p.Child("podSelector"))...)
		errs = append(errs, validateSelector(peer.NamespaceSelector, p.Child("namespaceSelector"))...)
	}
	if peer.IPBlock != nil {
		n++
		errs = append(errs, validateIPBlock(peer.IPBlock.CIDR, peer.IPBlock.Except, p.Child("ipBlock"))...)
	}
	if peer.DNSName != "" {
		n++
		errs = append(errs, validateDNSName(peer.DNSName, p.Child("dnsName"))...)
	}
	if peer.Host {
		n++
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(p, "must set one of podSelector/namespaceSelector, ipBlock, dnsName, host"))
	case n > 1:
		errs = append(errs, field.Forbidden(p, "may set only one of podSelector/namespaceSelector, ipBlock, dnsName, host"))
	}
	return errs
}

func validateIPBlock(cidr string, except []string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if cidr == "" {
		return append(errs, field.Required(p.Child("cidr"), ""))
	}
	pre, err := parseStrictCIDR(cidr)
	if err != nil {
		return append(errs, field.Invalid(p.Child("cidr"), cidr, "must be a valid CIDR with no bits set beyond the prefix length, such as 198.19.0.0/16 or 2001:db8::/64: "+err.Error()))
	}
	for i, e := range except {
		ep, err := parseStrictCIDR(e)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(p.Child("except").Index(i), e, "must be a valid CIDR with no bits set beyond the prefix length: "+err.Error()))
		case ep.Addr().Is4() != pre.Addr().Is4() || ep.Bits() <= pre.Bits() || !pre.Contains(ep.Addr()):
			errs = append(errs, field.Invalid(p.Child("except").Index(i), e, fmt.Sprintf("must be a strict subset of %s", cidr)))
		}
	}
	return errs
}

// parseStrictCIDR parses a CIDR as the API server validates a new
// NetworkPolicy's (StrictIPCIDRValidation, on by default since Kubernetes
// 1.36) and as the NanoSegment schema's CEL rules do (isCIDR, masked): no
// leading zeros, no IPv4-mapped IPv6 address, no bits set beyond the
// prefix length.
func parseStrictCIDR(s string) (netip.Prefix, error) {
	pre, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return pre, errors.New("not a CIDR")
	case pre.Addr().Is4In6():
		return pre, errors.New("an IPv4-mapped IPv6 address")
	case pre != pre.Masked():
		return pre, fmt.Errorf("bits set beyond the prefix length (%s)", pre.Masked())
	}
	return pre, nil
}

func validateDNSName(name string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	rest := strings.TrimSuffix(strings.ToLower(name), ".")
	if r, ok := strings.CutPrefix(rest, "*."); ok {
		rest = r
	}
	if strings.Contains(rest, "*") {
		return append(errs, field.Invalid(p, name, "only one leading wildcard label is allowed, as in *.example.com"))
	}
	for _, msg := range validation.IsDNS1123Subdomain(rest) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	return errs
}

func validatePort(port v1alpha1.Port, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch port.Protocol {
	case "", model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP:
	case model.ProtocolICMP:
		if port.Port != nil && (port.Port.Type != intstr.Int || port.Port.IntVal < 0 || port.Port.IntVal > 255) {
			errs = append(errs, field.Invalid(p.Child("port"), port.Port.String(), "an ICMP port is an ICMP type, 0-255"))
		}
		if port.EndPort != nil {
			errs = append(errs, field.Forbidden(p.Child("endPort"), "not allowed for ICMP"))
		}
		return errs
	default:
		errs = append(errs, field.NotSupported(p.Child("protocol"), port.Protocol, []model.Protocol{model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP, model.ProtocolICMP}))
	}
	return append(errs, validatePortNumber(port.Port, port.EndPort, p)...)
}

// validatePortNumber checks port and endPort as the API server checks
// NetworkPolicyPort: a number 1-65535 or an IANA_SVC_NAME; endPort only with
// a numeric port, and not below it.
func validatePortNumber(port *intstr.IntOrString, endPort *int32, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port != nil {
		if port.Type == intstr.Int {
			for _, msg := range validation.IsValidPortNum(int(port.IntVal)) {
				errs = append(errs, field.Invalid(p.Child("port"), port.IntVal, msg))
			}
		} else {
			for _, msg := range validation.IsValidPortName(port.StrVal) {
				errs = append(errs, field.Invalid(p.Child("port"), port.StrVal, msg))
			}
		}
	}
	if endPort != nil {
		switch {
		case port == nil:
			errs = append(errs, field.Required(p.Child("port"), "required when endPort is set"))
		case port.Type == intstr.String:
			errs = append(errs, field.Forbidden(p.Child("endPort"), "may not be set with a named port"))
		case *endPort < port.IntVal:
			errs = append(errs, field.Invalid(p.Child("endPort"), *endPort, "must be greater than or equal to port"))
		case *endPort > 65535:
			errs = append(errs, field.Invalid(p.Child("endPort"), *endPort, "must be between 1 and 65535, inclusive"))
		}
	}
	return errs
}

// ValidateNetworkPolicy returns every problem of np with its field path, as
// the API server's NetworkPolicy validation reports them
// (https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/):
// valid selectors; a peer sets podSelector and/or namespaceSelector, or
// ipBlock alone; ipBlock except inside cidr; protocol TCP, UDP or SCTP; port
// 1-65535 or a port name; endPort with a numeric port and not below it;
// policyTypes Ingress and/or Egress.
func ValidateNetworkPolicy(np *networkingv1.NetworkPolicy) field.ErrorList {
	var errs field.ErrorList
	if np.APIVersion != "" && np.APIVersion != "networking.k8s.io/v1" {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), np.APIVersion, []string{"networking.k8s.io/v1"}))
	}
	if np.Kind != "" && np.Kind != "NetworkPolicy" {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), np.Kind, []string{"NetworkPolicy"}))
	}
	errs = append(errs, validateMeta(np.ObjectMeta, field.NewPath("metadata"))...)
	spec := field.NewPath("spec")
	errs = append(errs, validateSelector(&np.Spec.PodSelector, spec.Child("podSelector"))...)
	errs = append(errs, validatePolicyTypes(np.Spec.PolicyTypes, spec.Child("policyTypes"))...)
	for i, r := range np.Spec.Ingress {
		p := spec.Child("ingress").Index(i)
		for j, peer := range r.From {
			errs = append(errs, validateNPPeer(peer, p.Child("from").Index(j))...)
		}
		errs = append(errs, validateNPPorts(r.Ports, p.Child("ports"))...)
	}
	for i, r := range np.Spec.Egress {
		p := spec.Child("egress").Index(i)
		for j, peer := range r.To {
			errs = append(errs, validateNPPeer(peer, p.Child("to").Index(j))...)
		}
		errs = append(errs, validateNPPorts(r.Ports, p.Child("ports"))...)
	}
	return errs
}

func validateNPPeer(peer networkingv1.NetworkPolicyPeer, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	sel := peer.PodSelector != nil || peer.NamespaceSelector != nil
	switch {
	case !sel && peer.IPBlock == nil:
		errs = append(errs, field.Required(p, "must specify a peer"))
	case sel && peer.IPBlock != nil:
		errs = append(errs, field.Forbidden(p, "may not specify more than 1 peer type"))
	}
	errs = append(errs, validateSelector(peer.PodSelector, p.Child("podSelector"))...)
	errs = append(errs, validateSelector(peer.NamespaceSelector, p.Child("namespaceSelector"))...)
	if peer.IPBlock != nil {
		errs = append(errs, validateIPBlock(peer.IPBlock.CIDR, peer.IPBlock.Except, p.Child("ipBlock"))...)
	}
	return errs
}

func validateNPPorts(ports []networkingv1.NetworkPolicyPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, port := range ports {
		pp := p.Index(i)
		if port.Protocol != nil {
			switch *port.Protocol {
			case "TCP", "UDP", "SCTP":
			default:
				errs = append(errs, field.NotSupported(pp.Child("protocol"), *port.Protocol, []string{"TCP", "UDP", "SCTP"}))
			}
		}
		errs = append(errs, validatePortNumber(port.Port, port.EndPort, pp)...)
	}
	return errs
}

// SelectsNothing returns a warning for every enforcing or auditing policy
// (or ClusterNetworkPolicy) of set that selects no pod of world, such as "NetworkPolicy prod/db selects no
// pod". Such a policy is valid but likely a mistake.
func SelectsNothing(world World, set PolicySet) []string {
	var warns []string
	pods := world.Pods()
	for _, p := range set.all {
		found := false
		for i := range pods {
			if pods[i].Namespace == p.Namespace && pods[i].Participates() && p.Selector.Matches(labelSet(pods[i].Labels)) {
				found = true
				break
			}
		}
		if !found {
			warns = append(warns, p.Ref.String()+" selects no pod")
		}
	}
	for _, p := range set.ClusterPolicies() {
		if !slices.ContainsFunc(pods, func(pod Pod) bool {
			ns, _ := world.Namespace(pod.Namespace)
			return pod.Participates() && p.Subject.matches(ns.Labels, pod.Labels)
		}) {
			warns = append(warns, p.Ref.String()+" selects no pod")
		}
	}
	return warns
}
