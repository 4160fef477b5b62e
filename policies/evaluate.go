package policies

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// ConnEnd is one end of a connection being evaluated (not an inventory
// endpoint, see model.Endpoint): a pod by "namespace/name", or an
// address (which may belong to a pod). DNSName, when set, is the name the
// other side resolved the address from; Host marks a node address.
type ConnEnd struct {
	Pod     string     `json:"pod,omitempty"`
	IP      netip.Addr `json:"ip,omitzero"`
	DNSName string     `json:"dnsName,omitempty"`
	Host    bool       `json:"host,omitempty"`
}

// String returns the pod key or the address.
func (e ConnEnd) String() string {
	if e.Pod != "" {
		return e.Pod
	}
	if e.DNSName != "" {
		return e.DNSName + "(" + e.IP.String() + ")"
	}
	return e.IP.String()
}

// ParseConnEnd parses "namespace/name" or an IPv4/IPv6 address.
func ParseConnEnd(s string) (ConnEnd, error) {
	if addr, err := netip.ParseAddr(s); err == nil {
		return ConnEnd{IP: addr}, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return ConnEnd{}, fmt.Errorf("parse endpoint %q: want namespace/name or an IP address: %w", s, ErrInvalid)
	}
	return ConnEnd{Pod: s}, nil
}

// Connection is one connection attempt: From opens it to To's Port over
// Protocol (an ICMP type for ICMP).
type Connection struct {
	From     ConnEnd        `json:"from"`
	To       ConnEnd        `json:"to"`
	Protocol model.Protocol `json:"protocol"`
	Port     int32          `json:"port"`
}

// String returns "from -> to port/PROTO".
func (c Connection) String() string {
	return fmt.Sprintf("%s -> %s %d/%s", c.From, c.To, c.Port, c.Protocol)
}

// EdgeConnection returns the connection that an observed edge of proto
// and port between from and to stands for in Evaluate: TCP, UDP and SCTP
// with the port; ICMP and ICMPv6 as ICMP without a port (the edges carry
// no ICMP type). ok is false for any other protocol, which Evaluate does
// not judge. `nanoseg graph` and controller.EdgeDecisions mark edges with it.
func EdgeConnection(from, to ConnEnd, proto model.Protocol, port uint16) (c Connection, ok bool) {
	c = Connection{From: from, To: to, Protocol: proto, Port: int32(port)}
	switch proto {
	case model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP:
	case model.ProtocolICMP, model.ProtocolICMPv6:
		c.Protocol, c.Port = model.ProtocolICMP, 0
	default:
		return c, false
	}
	return c, true
}

// DirectionEvaluation is the outcome of one direction: egress at the source, or
// ingress at the destination.
type DirectionEvaluation struct {
	Direction model.Direction `json:"direction"`
	// Subject is the pod whose policies were consulted, or empty when the
	// endpoint is not a participating pod.
	Subject string        `json:"subject,omitempty"`
	Action  model.Verdict `json:"action"`
	// Isolating lists the enforcing and auditing policies that select the
	// subject in this direction; empty means no policy isolates it.
	Isolating []PolicyRef `json:"isolating,omitempty"`
	// Allowing lists every rule that allows the connection.
	Allowing []RuleRef `json:"allowing,omitempty"`
	// Tier is the tier that decided (TierAdmin, TierNetworkPolicy,
	// TierBaseline), or empty when none did and the default allowed.
	Tier string `json:"tier,omitempty"`
	// ClusterRule is the ClusterNetworkPolicy rule (Accept or Deny) that
	// decided, when an Admin or Baseline rule did.
	ClusterRule *ClusterRuleRef `json:"clusterRule,omitempty"`
	// Passed lists the Pass rules that handed the direction on to the next
	// tier (at most one per tier).
	Passed []ClusterRuleRef `json:"passed,omitempty"`
	// Mode is the subject's mode (SubjectMode): observe when no enforcing
	// or auditing policy selects it, else the strongest of those. In audit
	// mode a ClusterNetworkPolicy Deny that decides is audit-deny.
	Mode model.Mode `json:"mode,omitempty"`
}

// AuditedClusterDeny reports whether a ClusterNetworkPolicy Deny decided
// the direction but was only logged (audit-deny), because the subject is
// in audit mode: the Deny is not enforced there.
func (d DirectionEvaluation) AuditedClusterDeny() bool {
	return d.ClusterRule != nil && d.ClusterRule.Action == cnpv1alpha2.ActionDeny && d.Action == model.VerdictAuditDeny
}

// DecidedByCluster returns the tier (TierAdmin or TierBaseline) of the
// ClusterNetworkPolicy rule that decided the connection's verdict, or "":
// the rule of a direction that denies (Admin first) when the connection is
// denied, else of either direction (Admin first).
func (v Evaluation) DecidedByCluster() string {
	dirs := []DirectionEvaluation{v.Egress, v.Ingress}
	if v.Action != model.VerdictAllow {
		dirs = slices.DeleteFunc(dirs, func(d DirectionEvaluation) bool { return d.Action != v.Action })
	}
	out := ""
	for _, d := range dirs {
		switch {
		case d.ClusterRule == nil:
		case d.Tier == TierAdmin:
			return TierAdmin
		default:
			out = d.Tier
		}
	}
	return out
}

// Evaluation is the answer of Evaluate: the verdict on a connection (Action)
// and why.
type Evaluation struct {
	Connection Connection          `json:"connection"`
	Action     model.Verdict       `json:"action"`
	Egress     DirectionEvaluation `json:"egress"`
	Ingress    DirectionEvaluation `json:"ingress"`
	// Err is set when the connection names a pod the world does not hold;
	// Action is then deny.
	Err string `json:"error,omitempty"`
}

// Reason says in one line which policy and rule decided, or that no policy
// isolates the pair.
func (v Evaluation) Reason() string {
	if v.Err != "" {
		return "error: " + v.Err
	}
	return v.Egress.reason() + "; " + v.Ingress.reason()
}

func (d DirectionEvaluation) reason() string {
	subj := d.Subject
	dir := strings.ToLower(string(d.Direction)) // prose: "egress of shop/api ..."
	if subj == "" {
		return dir + ": not a pod, no policy applies"
	}
	passed := ""
	for _, p := range d.Passed {
		passed += ", after Pass by " + p.String()
	}
	if r := d.ClusterRule; r != nil {
		verb := "denied"
		if r.Action == cnpv1alpha2.ActionAccept {
			verb = "allowed"
		}
		if d.AuditedClusterDeny() {
			return fmt.Sprintf("%s of %s audit-denied by %s%s (%s is in audit mode: logged as audit-deny, not dropped)", dir, subj, r, passed, subj)
		}
		return fmt.Sprintf("%s of %s %s by %s%s", dir, subj, verb, r, passed)
	}
	if len(d.Isolating) == 0 {
		return fmt.Sprintf("%s: no policy isolates %s%s", dir, subj, passed)
	}
	return d.developerReason(dir, subj) + passed
}

func (d DirectionEvaluation) developerReason(dir, subj string) string {
	allowing := make([]string, len(d.Allowing))
	for i, r := range d.Allowing {
		allowing[i] = r.String()
	}
	if d.Action == model.VerdictAllow {
		return fmt.Sprintf("%s of %s allowed by %s", dir, subj, strings.Join(allowing, ", "))
	}
	names := make([]string, len(d.Isolating))
	for i, r := range d.Isolating {
		names[i] = r.String()
	}
	if len(allowing) > 0 {
		return fmt.Sprintf("%s of %s %s: isolated by %s; only auditing rules allow it (%s)", dir, subj, d.Action, strings.Join(names, ", "), strings.Join(allowing, ", "))
	}
	return fmt.Sprintf("%s of %s %s: isolated by %s and no rule allows it", dir, subj, d.Action, strings.Join(names, ", "))
}

// resolved is an endpoint looked up in the world.
type resolved struct {
	pod *Pod // nil unless a participating pod
	// podNS and podName name the pod holding the address, participating
	// or not (empty when none does).
	podNS, podName string
	nsLabel        map[string]string
	addr           netip.Addr
	names          []string
	host           bool
	// nodeLabels are the labels of the nodes holding addr (NodeLister).
	nodeLabels []map[string]string
}

func resolve(w World, e ConnEnd) (resolved, error) {
	r := resolved{addr: e.IP, host: e.Host}
	if e.DNSName != "" {
		r.names = []string{normalizeDNS(e.DNSName)}
	}
	var pod Pod
	var ok bool
	if e.Pod != "" {
		ns, name, _ := strings.Cut(e.Pod, "/")
		pod, ok = w.Pod(ns, name)
		if !ok {
			return r, fmt.Errorf("resolve pod %s: %w", e.Pod, ErrNotFound)
		}
		if !r.addr.IsValid() && len(pod.IPs) > 0 {
			r.addr = pod.IPs[0]
		}
	} else if r.addr.IsValid() {
		pod, ok = w.PodByIP(r.addr)
	}
	if ok {
		r.podNS, r.podName = pod.Namespace, pod.Name
	}
	if nl, isNL := w.(NodeLister); isNL && r.addr.IsValid() {
		for _, n := range nl.Nodes() {
			if slices.Contains(n.IPs, r.addr) {
				r.nodeLabels = append(r.nodeLabels, n.Labels)
			}
		}
	}
	if ok && pod.Participates() {
		r.pod = &pod
		if ns, found := w.Namespace(pod.Namespace); found {
			r.nsLabel = ns.Labels
		}
	}
	if res, isRes := w.(Resolver); isRes && r.addr.IsValid() {
		r.names = append(r.names, res.NamesOf(r.addr)...)
		r.host = r.host || res.IsHost(r.addr)
	}
	return r, nil
}

// Evaluate answers whether conn is allowed, with the exact semantics of
// Kubernetes NetworkPolicy
// (https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/,
// https://kubernetes.io/docs/concepts/services-networking/network-policies/):
//
//   - A pod is isolated for egress (ingress) when some policy of its
//     namespace selects it and has Egress (Ingress) among its policyTypes,
//     defaulted when absent. A non-isolated direction allows everything.
//   - An isolated direction allows a connection when any rule of any policy
//     selecting the pod for that direction allows it (the union of allows;
//     policies never deny, order does not matter).
//   - The connection is allowed only if the egress of the source and the
//     ingress of the destination both allow it.
//   - A rule with no peers matches every peer; with no ports every port. A
//     peer's podSelector alone selects pods of the policy's namespace, its
//     namespaceSelector alone every pod of the selected namespaces, both
//     together pods matching both; an empty selector selects everything of
//     its kind. ipBlock matches the connection's address, pod or not, minus
//     except.
//   - A port matches its protocol (default TCP) and number, the range
//     [port, endPort], or a named port resolved at the destination pod.
//   - Pods that finished or use the host network are not selected and not
//     matched by selectors.
//
// NanoSegments join the union by mode: enforce as a NetworkPolicy; audit
// turns what only it would deny into audit-deny and never widens what the
// enforcing policies allow (what they deny stays denied); observe takes no
// part. The
// verdict names every isolating policy and every allowing rule.
//
// ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2;
// https://network-policy-api.sigs.k8s.io/api-overview/,
// https://network-policy-api.sigs.k8s.io/reference/spec/) put tiers around
// that union, per direction: first the Admin tier, its policies by
// priority (lower first; equal priorities by name, which the reference
// leaves to the implementation), each policy's rules in written order, for
// the policies whose subject selects the pod; the first rule whose peers
// and protocols match decides: Accept allows, Deny denies, Pass skips the
// rest of the tier. Then the NetworkPolicies and nanosegments above (the
// NetworkPolicy tier), which decide whenever one isolates the pod; then the
// Baseline tier in the same way (a Pass there reaches the default); then
// the default, allow. Namespaces and pods peers match participating pods
// only, nodes peers the addresses of the selected nodes (NodeLister),
// networks any address in their CIDRs, domainNames the names the address
// was resolved from; destinationNamedPort the destination pod's declared
// port of that name. A pod connecting to its own address is not subject to
// ClusterNetworkPolicy. The verdict names the tier and the rule that
// decided, and every Pass on the way.
//
// A ClusterNetworkPolicy Deny (Admin or Baseline) follows the subject's
// mode (SubjectMode), as the issue asks ("audit mode logs an Admin Deny as
// audit-deny like any other would-be denial"): a subject in audit mode
// gets audit-deny, named with the rule; one in enforce mode deny; one that
// no enforcing or auditing policy selects (observe) deny, the upstream
// semantics. Accept and Pass are the same in every mode.
func Evaluate(world World, set PolicySet, conn Connection) Evaluation {
	v := Evaluation{Connection: conn, Action: model.VerdictDeny}
	v.Egress.Direction, v.Ingress.Direction = model.Egress, model.Ingress
	src, err := resolve(world, conn.From)
	if err != nil {
		v.Err = err.Error()
		return v
	}
	dst, err := resolve(world, conn.To)
	if err != nil {
		v.Err = err.Error()
		return v
	}
	var dstPorts []model.ContainerPort
	if dst.pod != nil {
		dstPorts = dst.pod.Ports
	}
	// A pod connecting to its own address is not subject to
	// ClusterNetworkPolicy (api-overview, "hairpin" traffic).
	hairpin := src.podName != "" && src.podNS == dst.podNS && src.podName == dst.podName
	v.Egress = evalDirection(set, model.Egress, src, dst, conn, dstPorts, hairpin)
	v.Ingress = evalDirection(set, model.Ingress, dst, src, conn, dstPorts, hairpin)
	switch {
	case v.Egress.Action == model.VerdictDeny || v.Ingress.Action == model.VerdictDeny:
		v.Action = model.VerdictDeny
	case v.Egress.Action == model.VerdictAuditDeny || v.Ingress.Action == model.VerdictAuditDeny:
		v.Action = model.VerdictAuditDeny
	default:
		v.Action = model.VerdictAllow
	}
	return v
}

// evalDirection decides one direction tier by tier: the Admin tier, the
// NetworkPolicy tier (NetworkPolicies and nanosegments), the Baseline tier,
// then the default (allow). Within a ClusterNetworkPolicy tier the first
// matching rule decides: Accept allows, Deny denies, Pass goes on to the
// next tier. The NetworkPolicy tier decides whenever a policy isolates the
// subject in the direction. Hairpin connections skip both
// ClusterNetworkPolicy tiers.
func evalDirection(set PolicySet, dir model.Direction, subject, peer resolved, conn Connection, dstPorts []model.ContainerPort, hairpin bool) DirectionEvaluation {
	dv := DirectionEvaluation{Direction: dir, Action: model.VerdictAllow}
	if subject.pod == nil {
		return dv
	}
	dv.Subject = subject.pod.Key()
	dv.Mode = SubjectMode(set, *subject.pod)
	decide := func(tier []*ClusterPolicy) bool {
		if hairpin {
			return false
		}
		r := evalClusterTier(tier, dir, subject, peer, conn, dstPorts)
		switch {
		case r == nil:
			return false
		case r.Action == cnpv1alpha2.ActionPass:
			dv.Passed = append(dv.Passed, *r)
			return false
		case r.Action == cnpv1alpha2.ActionAccept:
			dv.Action = model.VerdictAllow
		case dv.Mode == model.ModeAudit:
			dv.Action = model.VerdictAuditDeny
		default:
			dv.Action = model.VerdictDeny
		}
		dv.Tier, dv.ClusterRule = string(r.Tier), r
		return true
	}
	if decide(set.cluster[0]) {
		return dv
	}
	evalNetworkPolicyTier(set, dir, subject, peer, conn, dstPorts, &dv)
	if len(dv.Isolating) > 0 {
		dv.Tier = TierNetworkPolicy
		return dv
	}
	decide(set.cluster[1])
	return dv
}

// SubjectMode returns the mode of pod p under set: the strongest mode
// (enforce over audit) of the NetworkPolicies (enforce) and nanosegments
// in set that select p, observe ones left out; observe when none does.
// It is the mode of the pod's rule set (compile), and decides how a
// ClusterNetworkPolicy Deny acts on p (Evaluate).
func SubjectMode(set PolicySet, p Pod) model.Mode {
	mode := model.ModeObserve
	for _, pol := range set.byNS[p.Namespace] {
		if pol.Mode == model.ModeObserve || !pol.Selector.Matches(labelSet(p.Labels)) {
			continue
		}
		if pol.Mode == model.ModeEnforce {
			return model.ModeEnforce
		}
		mode = model.ModeAudit
	}
	return mode
}

// evalNetworkPolicyTier is the NetworkPolicy tier: the union of the
// NetworkPolicies and nanosegments that isolate the subject, by mode.
func evalNetworkPolicyTier(set PolicySet, dir model.Direction, subject, peer resolved, conn Connection, dstPorts []model.ContainerPort, dv *DirectionEvaluation) {
	var enfIso, enfAllow, audIso, audAllow bool
	for _, p := range set.byNS[subject.pod.Namespace] {
		if p.Mode == model.ModeObserve || !p.Isolates[dir.Index()] || !p.Selector.Matches(labelSet(subject.pod.Labels)) {
			continue
		}
		dv.Isolating = append(dv.Isolating, p.Ref)
		enforce := p.Mode == model.ModeEnforce
		if enforce {
			enfIso = true
		} else {
			audIso = true
		}
		for _, r := range p.Rules[dir.Index()] {
			if ruleMatches(p.Namespace, r, peer, conn.Protocol, conn.Port, dstPorts) {
				dv.Allowing = append(dv.Allowing, RuleRef{Policy: p.Ref, Rule: r.ID})
				if enforce {
					enfAllow = true
				} else {
					audAllow = true
				}
			}
		}
	}
	switch {
	case enfIso && !enfAllow:
		dv.Action = model.VerdictDeny
	case (enfIso || audIso) && !enfAllow && !audAllow:
		dv.Action = model.VerdictAuditDeny
	}
}

// ruleMatches reports whether rule r of a policy in namespace policyNS
// allows a connection with peer on proto/port, dstPorts being the named
// ports of the destination pod.
func ruleMatches(policyNS string, r CompiledRule, peer resolved, proto model.Protocol, port int32, dstPorts []model.ContainerPort) bool {
	if !r.AllPorts {
		ok := false
		for _, p := range r.Ports {
			if p.Matches(proto, port, dstPorts) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if r.AllPeers {
		return true
	}
	for _, p := range r.Peers {
		if peerMatches(policyNS, p, peer) {
			return true
		}
	}
	return false
}

func peerMatches(policyNS string, p CompiledPeer, peer resolved) bool {
	switch {
	case p.IsSelector():
		if peer.pod == nil {
			return false
		}
		if p.NamespaceSelector == nil {
			if peer.pod.Namespace != policyNS {
				return false
			}
		} else if !p.NamespaceSelector.Matches(labelSet(peer.nsLabel)) {
			return false
		}
		return p.PodSelector == nil || p.PodSelector.Matches(labelSet(peer.pod.Labels))
	case p.IPBlock != nil:
		return peer.addr.IsValid() && p.IPBlock.Contains(peer.addr)
	case p.DNSName != "":
		for _, n := range peer.names {
			if MatchDNSName(p.DNSName, n) {
				return true
			}
		}
		return false
	case p.Host:
		return peer.host
	}
	return false
}
