package controller

import (
	networkingv1 "k8s.io/api/networking/v1"

	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// Explain evaluates one connection against the active policies with the
// semantics of policies.Evaluate (Kubernetes NetworkPolicy). from and to
// are a workload ("shop/api", its first endpoint), an endpoint
// ("namespace/netns") or an address; port is "5432/TCP".
func (s *Service) Explain(from, to, port string) (policies.Evaluation, error) {
	f, err := s.endpointRef("from", from)
	if err != nil {
		return policies.Evaluation{}, err
	}
	t, err := s.endpointRef("to", to)
	if err != nil {
		return policies.Evaluation{}, err
	}
	num, proto, ok := strings.Cut(port, "/")
	n, perr := strconv.Atoi(num)
	if !ok || perr != nil || n < 0 || n > 65535 {
		return policies.Evaluation{}, fmt.Errorf("%w: port: %q is not PORT/PROTOCOL such as 5432/TCP", ErrInvalid, Clip(port))
	}
	p := model.Protocol(strings.ToUpper(proto))
	switch p {
	case model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP, model.ProtocolICMP:
	default:
		return policies.Evaluation{}, fmt.Errorf("%w: port: protocol %q is not TCP, UDP, SCTP or ICMP", ErrInvalid, Clip(proto))
	}
	world, set, err := s.policyWorld()
	if err != nil {
		return policies.Evaluation{}, err
	}
	return policies.Evaluate(world, set, policies.Connection{From: f, To: t, Protocol: p, Port: int32(n)}), nil
}

// endpointRef turns a workload key into its first endpoint's pod, and
// passes anything else to policies.ParseConnEnd. A pod that is no
// endpoint of the inventory is refused: it would evaluate to an
// answer ("deny") for a connection that cannot exist.
func (s *Service) endpointRef(field, ref string) (policies.ConnEnd, error) {
	if eps := s.inv.Workload(ref); len(eps) > 0 {
		return policies.ParseConnEnd(eps[0].Namespace + "/" + eps[0].Netns)
	}
	e, err := policies.ParseConnEnd(ref)
	if err != nil {
		return e, fmt.Errorf("%w: %s: %v (known workloads: %v)", ErrInvalid, field, err, Names(s.inv.Workloads()))
	}
	if e.Pod != "" && !slices.ContainsFunc(s.inv.Endpoints(), func(ep model.Endpoint) bool { return ep.Namespace+"/"+ep.Netns == e.Pod }) {
		return e, fmt.Errorf("%w: %s: %q is neither a workload nor an endpoint (namespace/netns) of the inventory (known workloads: %v)",
			ErrInvalid, field, Clip(ref), Names(s.inv.Workloads()))
	}
	return e, nil
}

// AgentWorld is the agent's world in the shape of a verdict case file:
// namespaces, one pod per endpoint (named "<workload>-<n>" in netns order),
// the nodes, the active nanosegments with their promoted modes, and the
// NetworkPolicies and ClusterNetworkPolicies in force.
type AgentWorld struct {
	Namespaces   []policies.CaseNamespace `json:"namespaces"`
	Pods         []policies.CasePod       `json:"pods"`
	NanoSegments []v1alpha1.NanoSegment   `json:"nanosegments"`
	// NetworkPolicies are the NetworkPolicies in force.
	NetworkPolicies []networkingv1.NetworkPolicy `json:"networkPolicies"`
	// ClusterNetworkPolicies are the ClusterNetworkPolicies in force.
	ClusterNetworkPolicies []cnpv1alpha2.ClusterNetworkPolicy `json:"clusterNetworkPolicies"`
	// Nodes are the inventory's nodes (labels and addresses, for the
	// nodes peers of ClusterNetworkPolicies); none where it knows none.
	Nodes []policies.CaseNode `json:"nodes,omitempty"`
}

// World returns the agent's inventory and active policies as an AgentWorld.
func (s *Service) World() (AgentWorld, error) {
	w := AgentWorld{Namespaces: []policies.CaseNamespace{}, Pods: []policies.CasePod{}, NanoSegments: []v1alpha1.NanoSegment{}}
	world, err := s.inv.World(nil)
	if err != nil {
		return w, err
	}
	for _, ns := range world.Namespaces() {
		w.Namespaces = append(w.Namespaces, policies.CaseNamespace{Name: ns.Name, Labels: ns.Labels})
	}
	n := map[string]int{}
	for _, e := range s.inv.Endpoints() {
		p := policies.CasePod{Namespace: e.Namespace, Name: fmt.Sprintf("%s-%d", e.Workload, n[e.Key()]), Labels: e.Labels}
		n[e.Key()]++
		for _, ip := range e.Addrs {
			p.IPs = append(p.IPs, ip.String())
		}
		for _, pt := range e.Ports {
			p.Ports = append(p.Ports, policies.CasePort{Name: pt.Name, Port: pt.Port, Protocol: pt.Protocol})
		}
		w.Pods = append(w.Pods, p)
	}
	in, err := s.InForce()
	if err != nil {
		return w, err
	}
	w.NanoSegments = in.NanoSegments
	w.NetworkPolicies = in.NetworkPolicies
	if w.NanoSegments == nil {
		w.NanoSegments = []v1alpha1.NanoSegment{}
	}
	if w.NetworkPolicies == nil {
		w.NetworkPolicies = []networkingv1.NetworkPolicy{}
	}
	w.ClusterNetworkPolicies = append([]cnpv1alpha2.ClusterNetworkPolicy{}, in.ClusterNetworkPolicies...)
	for _, n := range world.Nodes() {
		cn := policies.CaseNode{Name: n.Name, Labels: n.Labels}
		for _, ip := range n.IPs {
			cn.IPs = append(cn.IPs, ip.String())
		}
		w.Nodes = append(w.Nodes, cn)
	}
	return w, nil
}
