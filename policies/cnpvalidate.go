package policies

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// domainNameRe is the schema pattern of a domainNames entry: DNS labels of
// letters, digits, '-' and '_', an optional leading "*." and trailing dot.
var domainNameRe = regexp.MustCompile(`^(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`)

// ValidateClusterNetworkPolicy returns every problem of p with its field
// path, as the API server reports a ClusterNetworkPolicy its CRD schema
// refuses (empty when p is valid). The rules are those of the
// network-policy-api reference
// (https://network-policy-api.sigs.k8s.io/reference/spec/, the v1alpha2
// types): tier Admin or Baseline; priority 0-1000; a subject with exactly
// one of namespaces and pods; at most 25 ingress and 25 egress rules; a rule
// name of at most 100 bytes; action Accept, Deny or Pass; 1-25 peers per
// rule, each with exactly one field; networks of 1-25 CIDRs; 1-25
// protocols entries, each with exactly one of tcp, udp, sctp and
// destinationNamedPort; a tcp/udp/sctp entry with a destinationPort of
// exactly one of number (1-65535) and range (1-65535, start < end); no
// destinationNamedPort in an egress rule with a networks, nodes or
// domainNames peer. domainNames, which the reference supports only in
// Accept rules, are refused elsewhere. A port number or range bound out of
// 1-65535 is Invalid at number (range.start, range.end) with the API
// server's words ("should be greater than or equal to 1"); `number: 0` is
// such a number, not a missing one. metadata.namespace is not checked here,
// as the API server clears it for a cluster-scoped object; Object.Validate
// (policy files and cases) refuses a document that sets it. Like the
// upstream CRD (v1alpha2, 2026-07), this accepts two rules of one direction
// with the same name (ingress and egress are atomic lists, not maps keyed
// by name) and any non-empty destinationNamedPort (upstream sets no pattern
// or length on it; a name that is no valid container port name, such as
// "THIS_IS_BAD_", matches no port).
func ValidateClusterNetworkPolicy(p *cnpv1alpha2.ClusterNetworkPolicy) field.ErrorList {
	var errs field.ErrorList
	if p.APIVersion != "" && p.APIVersion != cnpv1alpha2.APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), p.APIVersion, []string{cnpv1alpha2.APIVersion}))
	}
	if p.Kind != "" && p.Kind != cnpv1alpha2.Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), p.Kind, []string{cnpv1alpha2.Kind}))
	}
	meta := field.NewPath("metadata")
	if p.Name == "" {
		errs = append(errs, field.Required(meta.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(p.Name) {
			errs = append(errs, field.Invalid(meta.Child("name"), p.Name, msg))
		}
	}
	spec := field.NewPath("spec")
	switch p.Spec.Tier {
	case cnpv1alpha2.TierAdmin, cnpv1alpha2.TierBaseline:
	case "":
		errs = append(errs, field.Required(spec.Child("tier"), `supported values: "Admin", "Baseline"`))
	default:
		errs = append(errs, field.NotSupported(spec.Child("tier"), p.Spec.Tier, []cnpv1alpha2.Tier{cnpv1alpha2.TierAdmin, cnpv1alpha2.TierBaseline}))
	}
	switch pr := p.Spec.Priority; {
	case pr < cnpv1alpha2.MinPriority:
		errs = append(errs, field.Invalid(spec.Child("priority"), pr, fmt.Sprintf("should be greater than or equal to %d", cnpv1alpha2.MinPriority)))
	case pr > cnpv1alpha2.MaxPriority:
		errs = append(errs, field.Invalid(spec.Child("priority"), pr, fmt.Sprintf("should be less than or equal to %d", cnpv1alpha2.MaxPriority)))
	}
	errs = append(errs, validateCNPSelection(p.Spec.Subject.Namespaces, p.Spec.Subject.Pods, spec.Child("subject"), "namespaces, pods")...)
	if n := len(p.Spec.Ingress); n > cnpv1alpha2.MaxRules {
		errs = append(errs, field.TooMany(spec.Child("ingress"), n, cnpv1alpha2.MaxRules))
	}
	if n := len(p.Spec.Egress); n > cnpv1alpha2.MaxRules {
		errs = append(errs, field.TooMany(spec.Child("egress"), n, cnpv1alpha2.MaxRules))
	}
	for i, r := range p.Spec.Ingress {
		rp := spec.Child("ingress").Index(i)
		errs = append(errs, validateCNPRuleHead(r.Name, r.Action, r.Protocols, rp)...)
		errs = append(errs, validateCNPPeerCount(r.From == nil, len(r.From), rp.Child("from"))...)
		for j, peer := range r.From {
			errs = append(errs, validateCNPSelection(peer.Namespaces, peer.Pods, rp.Child("from").Index(j), "namespaces, pods")...)
		}
	}
	for i, r := range p.Spec.Egress {
		rp := spec.Child("egress").Index(i)
		errs = append(errs, validateCNPRuleHead(r.Name, r.Action, r.Protocols, rp)...)
		errs = append(errs, validateCNPPeerCount(r.To == nil, len(r.To), rp.Child("to"))...)
		addressPeer := false
		for j, peer := range r.To {
			errs = append(errs, validateCNPEgressPeer(peer, r.Action, rp.Child("to").Index(j))...)
			addressPeer = addressPeer || peer.Nodes != nil || peer.Networks != nil || peer.DomainNames != nil
		}
		if addressPeer && slices.ContainsFunc(r.Protocols, func(pr cnpv1alpha2.Protocol) bool { return pr.DestinationNamedPort != nil }) {
			errs = append(errs, field.Invalid(rp, "", "networks/nodes/domainNames peer cannot be set with destinationNamedPort: they have no named ports"))
		}
	}
	slices.SortStableFunc(errs, func(a, b *field.Error) int { return strings.Compare(a.Field, b.Field) })
	return errs
}

// validateCNPSelection checks a subject or a namespaces/pods peer: exactly
// one of the two set, with valid selectors.
func validateCNPSelection(ns *metav1.LabelSelector, pods *cnpv1alpha2.NamespacedPod, p *field.Path, fields string) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if ns != nil {
		n++
		errs = append(errs, validateSelector(ns, p.Child("namespaces"))...)
	}
	if pods != nil {
		n++
		errs = append(errs, validateSelector(&pods.NamespaceSelector, p.Child("pods", "namespaceSelector"))...)
		errs = append(errs, validateSelector(&pods.PodSelector, p.Child("pods", "podSelector"))...)
	}
	return append(errs, exactlyOne(n, p, fields)...)
}

func exactlyOne(n int, p *field.Path, fields string) field.ErrorList {
	switch {
	case n == 0:
		return field.ErrorList{field.Required(p, "must set exactly one of "+fields)}
	case n > 1:
		return field.ErrorList{field.Invalid(p, n, "must set exactly one of "+fields+" (should have at most 1 properties)")}
	}
	return nil
}

func validateCNPPeerCount(absent bool, n int, p *field.Path) field.ErrorList {
	switch {
	case absent || n == 0:
		return field.ErrorList{field.Required(p, "at least one peer")}
	case n > cnpv1alpha2.MaxPeers:
		return field.ErrorList{field.TooMany(p, n, cnpv1alpha2.MaxPeers)}
	}
	return nil
}

func validateCNPRuleHead(name string, action cnpv1alpha2.Action, protos []cnpv1alpha2.Protocol, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if n := utf8.RuneCountInString(name); n > cnpv1alpha2.MaxRuleName {
		errs = append(errs, field.Invalid(p.Child("name"), name, fmt.Sprintf("must be no more than %d characters, not %d", cnpv1alpha2.MaxRuleName, n)))
	}
	switch action {
	case cnpv1alpha2.ActionAccept, cnpv1alpha2.ActionDeny, cnpv1alpha2.ActionPass:
	case "":
		errs = append(errs, field.Required(p.Child("action"), `supported values: "Accept", "Deny", "Pass"`))
	default:
		errs = append(errs, field.NotSupported(p.Child("action"), action, []cnpv1alpha2.Action{cnpv1alpha2.ActionAccept, cnpv1alpha2.ActionDeny, cnpv1alpha2.ActionPass}))
	}
	pp := p.Child("protocols")
	switch {
	case protos != nil && len(protos) == 0:
		errs = append(errs, field.Required(pp, "at least one entry when present"))
	case len(protos) > cnpv1alpha2.MaxProtocols:
		errs = append(errs, field.TooMany(pp, len(protos), cnpv1alpha2.MaxProtocols))
	}
	for i, pr := range protos {
		ip := pp.Index(i)
		n := 0
		for _, pm := range []struct {
			name string
			m    *cnpv1alpha2.PortMatch
		}{{"tcp", pr.TCP}, {"udp", pr.UDP}, {"sctp", pr.SCTP}} {
			if pm.m == nil {
				continue
			}
			n++
			errs = append(errs, validateCNPPort(pm.m.DestinationPort, ip.Child(pm.name))...)
		}
		if pr.DestinationNamedPort != nil {
			n++
		}
		errs = append(errs, exactlyOne(n, ip, "tcp, udp, sctp, destinationNamedPort")...)
	}
	return errs
}

func validateCNPPort(port *cnpv1alpha2.Port, p *field.Path) field.ErrorList {
	if port == nil {
		return field.ErrorList{field.Required(p.Child("destinationPort"), "")}
	}
	p = p.Child("destinationPort")
	var errs field.ErrorList
	// The schema's minimum and maximum, worded as the API server words them.
	inRange := func(v int32, fp *field.Path) {
		switch {
		case v < 1:
			errs = append(errs, field.Invalid(fp, v, "should be greater than or equal to 1"))
		case v > 65535:
			errs = append(errs, field.Invalid(fp, v, "should be less than or equal to 65535"))
		}
	}
	switch {
	case port.Number != nil && port.Range != nil:
		errs = append(errs, field.Invalid(p, 2, "must set exactly one of number, range (should have at most 1 properties)"))
	case port.Range != nil:
		inRange(port.Range.Start, p.Child("range", "start"))
		inRange(port.Range.End, p.Child("range", "end"))
		if port.Range.Start >= port.Range.End {
			errs = append(errs, field.Invalid(p.Child("range"), fmt.Sprintf("%d-%d", port.Range.Start, port.Range.End), "Start port must be less than End port"))
		}
	case port.Number != nil:
		inRange(*port.Number, p.Child("number"))
	default:
		errs = append(errs, field.Required(p, "must set exactly one of number, range"))
	}
	return errs
}

func validateCNPEgressPeer(peer cnpv1alpha2.EgressPeer, action cnpv1alpha2.Action, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if peer.Namespaces != nil {
		n++
		errs = append(errs, validateSelector(peer.Namespaces, p.Child("namespaces"))...)
	}
	if peer.Pods != nil {
		n++
		errs = append(errs, validateSelector(&peer.Pods.NamespaceSelector, p.Child("pods", "namespaceSelector"))...)
		errs = append(errs, validateSelector(&peer.Pods.PodSelector, p.Child("pods", "podSelector"))...)
	}
	if peer.Nodes != nil {
		n++
		errs = append(errs, validateSelector(peer.Nodes, p.Child("nodes"))...)
	}
	if peer.Networks != nil {
		n++
		np := p.Child("networks")
		switch l := len(peer.Networks); {
		case l == 0:
			errs = append(errs, field.Required(np, "at least one CIDR when present"))
		case l > cnpv1alpha2.MaxNetworks:
			errs = append(errs, field.TooMany(np, l, cnpv1alpha2.MaxNetworks))
		}
		seen := map[cnpv1alpha2.CIDR]bool{}
		for i, c := range peer.Networks {
			switch {
			case len(c) > cnpv1alpha2.MaxCIDR:
				errs = append(errs, field.TooLong(np.Index(i), string(c), cnpv1alpha2.MaxCIDR))
			case !isCIDR(string(c)):
				errs = append(errs, field.Invalid(np.Index(i), string(c), "Invalid CIDR format provided"))
			case seen[c]:
				errs = append(errs, field.Duplicate(np.Index(i), string(c)))
			}
			seen[c] = true
		}
	}
	if peer.DomainNames != nil {
		n++
		dp := p.Child("domainNames")
		switch l := len(peer.DomainNames); {
		case l == 0:
			errs = append(errs, field.Required(dp, "at least one name when present"))
		case l > cnpv1alpha2.MaxDomainNames:
			errs = append(errs, field.TooMany(dp, l, cnpv1alpha2.MaxDomainNames))
		}
		if action != cnpv1alpha2.ActionAccept && action != "" {
			errs = append(errs, field.Forbidden(dp, fmt.Sprintf("domainNames are supported only in Accept rules, not in a %s rule", action)))
		}
		seen := map[cnpv1alpha2.DomainName]bool{}
		for i, d := range peer.DomainNames {
			switch {
			case !domainNameRe.MatchString(string(d)):
				errs = append(errs, field.Invalid(dp.Index(i), string(d), "must be a DNS name such as example.com, optionally with a leading *."))
			case seen[d]:
				errs = append(errs, field.Duplicate(dp.Index(i), string(d)))
			}
			seen[d] = true
		}
	}
	return append(errs, exactlyOne(n, p, "namespaces, pods, nodes, networks, domainNames")...)
}

// isCIDR reports whether s is a CIDR as the schema's isCIDR accepts it
// (an address and a prefix length; bits beyond the prefix are allowed and
// ignored).
func isCIDR(s string) bool {
	_, err := netip.ParsePrefix(s)
	return err == nil
}
