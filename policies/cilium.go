package policies

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// Cilium label keys for the pod's namespace and the namespace's labels in
// endpoint selectors (Cilium "Kubernetes" policy docs: "Namespaces").
const (
	ciliumNamespaceKey      = "k8s:io.kubernetes.pod.namespace"
	ciliumNamespaceLabelPfx = "k8s:io.cilium.k8s.namespace.labels."
)

// CiliumNetworkPolicy is the subset of Cilium's cilium.io/v2
// CiliumNetworkPolicy that an export writes, written from Cilium's documented
// policy language (https://docs.cilium.io/en/stable/security/policy/language/)
// without depending on Cilium's code.
type CiliumNetworkPolicy struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       CiliumSpec        `json:"spec"`
}

// CiliumSpec is a Cilium rule: the endpoints it selects, default-deny per
// direction, and allow rules.
type CiliumSpec struct {
	EndpointSelector  metav1.LabelSelector `json:"endpointSelector"`
	EnableDefaultDeny CiliumDefaultDeny    `json:"enableDefaultDeny"`
	Ingress           []CiliumRule         `json:"ingress,omitempty"`
	Egress            []CiliumRule         `json:"egress,omitempty"`
}

// CiliumDefaultDeny says per direction whether selected endpoints deny what
// no rule allows (policyTypes in NetworkPolicy terms).
type CiliumDefaultDeny struct {
	Ingress bool `json:"ingress"`
	Egress  bool `json:"egress"`
}

// CiliumRule is one ingress or egress rule: one L3 peer kind and L4 ports.
type CiliumRule struct {
	FromEndpoints []metav1.LabelSelector `json:"fromEndpoints,omitempty"`
	FromCIDRSet   []CiliumCIDR           `json:"fromCIDRSet,omitempty"`
	FromEntities  []string               `json:"fromEntities,omitempty"`
	ToEndpoints   []metav1.LabelSelector `json:"toEndpoints,omitempty"`
	ToCIDRSet     []CiliumCIDR           `json:"toCIDRSet,omitempty"`
	ToEntities    []string               `json:"toEntities,omitempty"`
	ToFQDNs       []CiliumFQDN           `json:"toFQDNs,omitempty"`
	ToPorts       []CiliumPortRule       `json:"toPorts,omitempty"`
	ICMPs         []CiliumICMPRule       `json:"icmps,omitempty"`
}

// CiliumCIDR is a CIDR with exceptions.
type CiliumCIDR struct {
	CIDR   string   `json:"cidr"`
	Except []string `json:"except,omitempty"`
}

// CiliumFQDN matches a DNS name exactly (MatchName) or by pattern.
type CiliumFQDN struct {
	MatchName    string `json:"matchName,omitempty"`
	MatchPattern string `json:"matchPattern,omitempty"`
}

// CiliumPortRule lists ports.
type CiliumPortRule struct {
	Ports []CiliumPort `json:"ports"`
}

// CiliumPort is a port ("0" for all), a port name, or a range up to EndPort.
type CiliumPort struct {
	Port     string `json:"port"`
	EndPort  int32  `json:"endPort,omitempty"`
	Protocol string `json:"protocol"`
}

// CiliumICMPRule lists ICMP types.
type CiliumICMPRule struct {
	Fields []CiliumICMPField `json:"fields"`
}

// CiliumICMPField is one ICMP type of one family (IPv4 or IPv6).
type CiliumICMPField struct {
	Type   int32  `json:"type"`
	Family string `json:"family"`
}

// ExportCilium converts a NanoSegment into a CiliumNetworkPolicy: the selector
// plus the namespace label becomes endpointSelector; policyTypes become
// enableDefaultDeny; each peer becomes its own rule (fromEndpoints /
// fromCIDRSet / fromEntities: host, or toFQDNs for DNS names), with the
// rule's ports. Differences are reported, never hidden: Cilium CIDR rules do
// not match cluster endpoints (NetworkPolicy ipBlock matches pod addresses),
// ingress DNS-name peers cannot be expressed, toFQDNs needs the DNS proxy, and
// a non-enforcing mode exports as enforcing. Rules of a direction the
// NanoSegment does not isolate are left out (they have no effect).
func ExportCilium(s *v1alpha1.NanoSegment) (*CiliumNetworkPolicy, []Problem) {
	ref := v1alpha1.Kind + " " + s.Namespace + "/" + s.Name
	var probs []Problem
	c := &CiliumNetworkPolicy{
		APIVersion: "cilium.io/v2",
		Kind:       "CiliumNetworkPolicy",
		Metadata:   metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: maps.Clone(s.Labels)},
	}
	c.Spec.EndpointSelector = withNamespace(&s.Spec.Selector, s.Namespace)
	if s.Spec.Mode != model.ModeEnforce {
		probs = append(probs, Problem{ref, "spec.mode", "mode " + string(modeOr(s.Spec.Mode)) + " has no CiliumNetworkPolicy equivalent; the exported policy enforces"})
	}
	iso := EffectivePolicyTypes(s.Spec.PolicyTypes, len(s.Spec.Egress))
	c.Spec.EnableDefaultDeny = CiliumDefaultDeny{Ingress: iso[model.Ingress.Index()], Egress: iso[model.Egress.Index()]}
	for d, rules := range [2][]v1alpha1.Rule{s.Spec.Ingress, s.Spec.Egress} {
		dir := model.Directions[d]
		if !iso[dir.Index()] {
			if len(rules) > 0 {
				probs = append(probs, Problem{ref, "spec." + strings.ToLower(string(dir)), "left out: policyTypes does not include " + string(dir) + ", so these rules have no effect"})
			}
			continue
		}
		for i, r := range rules {
			path := fmt.Sprintf("spec.%s[%d]", strings.ToLower(string(dir)), i)
			l4, icmps := ciliumPorts(r.Ports)
			base := CiliumRule{ToPorts: l4, ICMPs: icmps}
			var out []CiliumRule
			if len(r.Peers) == 0 {
				cr := base
				if dir == model.Ingress {
					cr.FromEntities = []string{"all"}
				} else {
					cr.ToEntities = []string{"all"}
				}
				out = append(out, cr)
			}
			for j, p := range r.Peers {
				pp := fmt.Sprintf("%s.peers[%d]", path, j)
				cr := base
				switch {
				case p.PodSelector != nil || p.NamespaceSelector != nil:
					sel := ciliumPeerSelector(p, s.Namespace)
					if dir == model.Ingress {
						cr.FromEndpoints = []metav1.LabelSelector{sel}
					} else {
						cr.ToEndpoints = []metav1.LabelSelector{sel}
					}
				case p.IPBlock != nil:
					cidr := CiliumCIDR{CIDR: p.IPBlock.CIDR, Except: p.IPBlock.Except}
					if dir == model.Ingress {
						cr.FromCIDRSet = []CiliumCIDR{cidr}
					} else {
						cr.ToCIDRSet = []CiliumCIDR{cidr}
					}
					probs = append(probs, Problem{ref, pp + ".ipBlock", "rule " + r.ID + ": Cilium CIDR rules do not match pod addresses, NetworkPolicy ipBlock does"})
				case p.Host:
					if dir == model.Ingress {
						cr.FromEntities = []string{"host"}
					} else {
						cr.ToEntities = []string{"host"}
					}
				case p.DNSName != "":
					if dir == model.Ingress {
						probs = append(probs, Problem{ref, pp + ".dnsName", "rule " + r.ID + ": Cilium cannot match ingress peers by DNS name; peer left out"})
						continue
					}
					f := CiliumFQDN{MatchName: p.DNSName}
					if len(p.DNSName) > 2 && p.DNSName[:2] == "*." {
						f = CiliumFQDN{MatchPattern: p.DNSName}
					}
					cr.ToFQDNs = []CiliumFQDN{f}
					probs = append(probs, Problem{ref, pp + ".dnsName", "rule " + r.ID + ": toFQDNs needs Cilium's DNS proxy: allow DNS to the resolver with a toPorts rules.dns section"})
				}
				out = append(out, cr)
			}
			if len(r.Peers) > 0 && len(out) == 0 {
				probs = append(probs, Problem{ref, path, "rule " + r.ID + " left out: none of its peers is expressible"})
			}
			if dir == model.Ingress {
				c.Spec.Ingress = append(c.Spec.Ingress, out...)
			} else {
				c.Spec.Egress = append(c.Spec.Egress, out...)
			}
		}
	}
	return c, probs
}

func modeOr(m model.Mode) model.Mode {
	if m == "" {
		return model.ModeObserve
	}
	return m
}

// withNamespace returns sel restricted to pods of namespace ns.
func withNamespace(sel *metav1.LabelSelector, ns string) metav1.LabelSelector {
	out := *sel.DeepCopy()
	if out.MatchLabels == nil {
		out.MatchLabels = map[string]string{}
	}
	out.MatchLabels[ciliumNamespaceKey] = ns
	return out
}

// ciliumPeerSelector turns a pod and/or namespace selector into one Cilium
// endpoint selector: pod labels as they are, namespace labels prefixed, and
// the policy's own namespace when there is no namespace selector.
func ciliumPeerSelector(p v1alpha1.Peer, policyNS string) metav1.LabelSelector {
	var out metav1.LabelSelector
	if p.PodSelector != nil {
		out = *p.PodSelector.DeepCopy()
	}
	if out.MatchLabels == nil {
		out.MatchLabels = map[string]string{}
	}
	if p.NamespaceSelector == nil {
		out.MatchLabels[ciliumNamespaceKey] = policyNS
		return out
	}
	for k, v := range p.NamespaceSelector.MatchLabels {
		out.MatchLabels[ciliumNamespaceLabelPfx+k] = v
	}
	for _, e := range p.NamespaceSelector.MatchExpressions {
		e = *e.DeepCopy()
		e.Key = ciliumNamespaceLabelPfx + e.Key
		out.MatchExpressions = append(out.MatchExpressions, e)
	}
	if len(p.NamespaceSelector.MatchLabels) == 0 && len(p.NamespaceSelector.MatchExpressions) == 0 {
		// Every namespace: any endpoint that has a namespace, i.e. a pod.
		out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{Key: ciliumNamespaceKey, Operator: metav1.LabelSelectorOpExists})
	}
	return out
}

func ciliumPorts(ports []v1alpha1.Port) ([]CiliumPortRule, []CiliumICMPRule) {
	var l4 []CiliumPort
	var icmp []CiliumICMPField
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = model.ProtocolTCP
		}
		if proto == model.ProtocolICMP {
			if p.Port == nil {
				// Cilium's icmps fields name one type each: list them all.
				for t := range int32(256) {
					icmp = append(icmp, CiliumICMPField{Type: t, Family: "IPv4"})
				}
				continue
			}
			icmp = append(icmp, CiliumICMPField{Type: p.Port.IntVal, Family: "IPv4"}, CiliumICMPField{Type: p.Port.IntVal, Family: "IPv6"})
			continue
		}
		cp := CiliumPort{Port: "0", Protocol: string(proto)}
		if p.Port != nil {
			if p.Port.Type == intstr.Int {
				cp.Port = strconv.Itoa(int(p.Port.IntVal))
			} else {
				cp.Port = p.Port.StrVal
			}
		}
		if p.EndPort != nil {
			cp.EndPort = *p.EndPort
		}
		l4 = append(l4, cp)
	}
	var rules []CiliumPortRule
	if len(l4) > 0 {
		rules = []CiliumPortRule{{Ports: l4}}
	}
	var icmps []CiliumICMPRule
	if len(icmp) > 0 {
		icmps = []CiliumICMPRule{{Fields: icmp}}
	}
	return rules, icmps
}
