package policies

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/nanoseg/nanoseg/model"
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
	if len(d.Isolating) == 0 {
		return fmt.Sprintf("%s: no policy isolates %s", dir, subj)
	}
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
	pod     *Pod // nil unless a participating pod
	nsLabel map[string]string
	addr    netip.Addr
	names   []string
	host    bool
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
	v.Egress = evalDirection(set, model.Egress, src, dst, conn, dstPorts)
	v.Ingress = evalDirection(set, model.Ingress, dst, src, conn, dstPorts)
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

func evalDirection(set PolicySet, dir model.Direction, subject, peer resolved, conn Connection, dstPorts []model.ContainerPort) DirectionEvaluation {
	dv := DirectionEvaluation{Direction: dir, Action: model.VerdictAllow}
	if subject.pod == nil {
		return dv
	}
	dv.Subject = subject.pod.Key()
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
	return dv
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
