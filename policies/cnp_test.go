package policies

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// cnpWorld is the world of the ClusterNetworkPolicy unit tests: a client
// in namespace a, a server in namespace b with named ports, a host-network
// pod on node n1, and an outside address resolved from api.example.com.
func cnpWorld(t *testing.T) *MemWorld {
	t.Helper()
	w, err := NewMemWorld([]Namespace{
		{Name: "a", Labels: map[string]string{"team": "a", "kubernetes.io/metadata.name": "a"}},
		{Name: "b", Labels: map[string]string{"team": "b", "kubernetes.io/metadata.name": "b"}},
		{Name: "kube-system", Labels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.AddNode(Node{Name: "n1", Labels: map[string]string{"role": "worker"}, IPs: []netip.Addr{netip.MustParseAddr("198.19.18.11")}}))
	must(w.AddPod(Pod{Namespace: "a", Name: "client", Labels: map[string]string{"app": "client"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.1.1")}, Node: "n1"}))
	must(w.AddPod(Pod{Namespace: "b", Name: "server", Labels: map[string]string{"app": "server"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.2.1")}, Node: "n1",
		Ports: []model.ContainerPort{{Name: "http", Port: 8080, Protocol: model.ProtocolTCP}, {Name: "assoc", Port: 9000, Protocol: model.ProtocolSCTP}}}))
	must(w.AddPod(Pod{Namespace: "kube-system", Name: "agent", Labels: map[string]string{"app": "agent"}, IPs: []netip.Addr{netip.MustParseAddr("198.19.18.11")}, HostNetwork: true, Node: "n1"}))
	w.AddName(netip.MustParseAddr("198.19.5.5"), "api.example.com")
	return w
}

// cnpSet parses YAML documents (ClusterNetworkPolicies, NetworkPolicies,
// NanoSegments) into a set.
func cnpSet(t *testing.T, docs ...string) PolicySet {
	t.Helper()
	objs, err := ParseObjects("test.yaml", []byte(strings.Join(docs, "\n---\n")))
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewObjectSet(objs)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func cnpDoc(name string, tier cnpv1alpha2.Tier, priority int32, subject, dir, rules string) string {
	return fmt.Sprintf(`apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: %s}
spec:
  tier: %s
  priority: %d
  subject: %s
  %s: %s`, name, tier, priority, subject, dir, rules)
}

func cconn(t *testing.T, from, to string, port int32, proto model.Protocol) Connection {
	t.Helper()
	f, err := ParseConnEnd(from)
	if err != nil {
		t.Fatal(err)
	}
	tt, err := ParseConnEnd(to)
	if err != nil {
		t.Fatal(err)
	}
	return Connection{From: f, To: tt, Port: port, Protocol: proto}
}

// TestClusterTiersActionsPeers evaluates every action in every tier for
// every peer kind, against each state of the NetworkPolicy tier (no policy,
// a policy that allows, one that isolates and allows nothing), and checks
// the verdict, the deciding tier and rule, and the Pass hand-over against
// the reference's order: Admin (Accept and Deny final, Pass goes on), the
// NetworkPolicy tier (final when it isolates the pod), Baseline (same as
// Admin, Pass reaches the default), the default allow.
func TestClusterTiersActionsPeers(t *testing.T) {
	w := cnpWorld(t)
	type peerKind struct {
		name, dir, peer, from, to string
		port                      int32
		npNamespace, npSelector   string // the NetworkPolicy that may isolate the subject
	}
	kinds := []peerKind{
		{"egress namespaces", "egress", `{namespaces: {matchLabels: {team: b}}}`, "a/client", "b/server", 8080, "a", "client"},
		{"egress pods", "egress", `{pods: {namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: server}}}}`, "a/client", "b/server", 8080, "a", "client"},
		{"egress nodes", "egress", `{nodes: {matchLabels: {role: worker}}}`, "a/client", "198.19.18.11", 10250, "a", "client"},
		{"egress nodes (a host-network pod)", "egress", `{nodes: {}}`, "a/client", "kube-system/agent", 10250, "a", "client"},
		{"egress networks", "egress", `{networks: [198.19.0.0/16]}`, "a/client", "198.19.5.5", 443, "a", "client"},
		{"egress networks (a pod address)", "egress", `{networks: [198.18.2.0/24]}`, "a/client", "b/server", 8080, "a", "client"},
		{"egress domainNames", "egress", `{domainNames: ["*.example.com"]}`, "a/client", "198.19.5.5", 443, "a", "client"},
		{"ingress namespaces", "ingress", `{namespaces: {matchLabels: {team: a}}}`, "a/client", "b/server", 8080, "b", "server"},
		{"ingress pods", "ingress", `{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}`, "a/client", "b/server", 8080, "b", "server"},
	}
	nps := map[string]func(ns, app, dir string) string{
		"no NetworkPolicy": nil,
		"NetworkPolicy allows": func(ns, app, dir string) string {
			peer := "to"
			if dir == "ingress" {
				peer = "from"
			}
			return fmt.Sprintf(`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: np, namespace: %s}, spec: {podSelector: {matchLabels: {app: %s}}, policyTypes: [%s], %s: [{%s: [{ipBlock: {cidr: 0.0.0.0/0}}, {namespaceSelector: {}}]}]}}`,
				ns, app, strings.ToUpper(dir[:1])+dir[1:], dir, peer)
		},
		"NetworkPolicy isolates": func(ns, app, dir string) string {
			return fmt.Sprintf(`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: np, namespace: %s}, spec: {podSelector: {matchLabels: {app: %s}}, policyTypes: [%s]}}`,
				ns, app, strings.ToUpper(dir[:1])+dir[1:])
		},
	}
	for _, k := range kinds {
		for _, tier := range []cnpv1alpha2.Tier{cnpv1alpha2.TierAdmin, cnpv1alpha2.TierBaseline} {
			for _, action := range []cnpv1alpha2.Action{cnpv1alpha2.ActionAccept, cnpv1alpha2.ActionDeny, cnpv1alpha2.ActionPass} {
				if strings.Contains(k.peer, "domainNames") && action != cnpv1alpha2.ActionAccept {
					continue // domainNames only in Accept rules
				}
				for npName, np := range nps {
					t.Run(fmt.Sprintf("%s/%s/%s/%s", k.name, tier, action, npName), func(t *testing.T) {
						subject := `{pods: {namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: client}}}}`
						peerField := "to"
						if k.dir == "ingress" {
							subject = `{namespaces: {matchLabels: {team: b}}}`
							peerField = "from"
						}
						docs := []string{cnpDoc("p", tier, 5, subject, k.dir, fmt.Sprintf("[{name: r, action: %s, %s: [%s]}]", action, peerField, k.peer))}
						if np != nil {
							docs = append(docs, np(k.npNamespace, k.npSelector, k.dir))
						}
						set := cnpSet(t, docs...)
						v := Evaluate(w, set, cconn(t, k.from, k.to, k.port, model.ProtocolTCP))
						if v.Err != "" {
							t.Fatal(v.Err)
						}
						d := v.Egress
						if k.dir == "ingress" {
							d = v.Ingress
						}
						// The oracle: the reference's order of tiers.
						npVerdict := map[string]model.Verdict{"NetworkPolicy allows": model.VerdictAllow, "NetworkPolicy isolates": model.VerdictDeny}[npName]
						wantTier, wantRule, wantPassed := "", false, false
						want := model.VerdictAllow
						switch {
						case tier == cnpv1alpha2.TierAdmin && action != cnpv1alpha2.ActionPass:
							wantTier, wantRule = TierAdmin, true
							want = map[cnpv1alpha2.Action]model.Verdict{cnpv1alpha2.ActionAccept: model.VerdictAllow, cnpv1alpha2.ActionDeny: model.VerdictDeny}[action]
						case npVerdict != "":
							wantTier, want = TierNetworkPolicy, npVerdict
							wantPassed = action == cnpv1alpha2.ActionPass && tier == cnpv1alpha2.TierAdmin
						case tier == cnpv1alpha2.TierBaseline && action != cnpv1alpha2.ActionPass:
							wantTier, wantRule = TierBaseline, true
							want = map[cnpv1alpha2.Action]model.Verdict{cnpv1alpha2.ActionAccept: model.VerdictAllow, cnpv1alpha2.ActionDeny: model.VerdictDeny}[action]
						default:
							wantPassed = action == cnpv1alpha2.ActionPass
						}
						if d.Action != want || v.Action != want || d.Tier != wantTier || (d.ClusterRule != nil) != wantRule || (len(d.Passed) > 0) != wantPassed {
							t.Fatalf("got %s (direction %s, tier %q, rule %v, passed %v), want %s (tier %q, rule %v, passed %v)\n%s",
								v.Action, d.Action, d.Tier, d.ClusterRule, d.Passed, want, wantTier, wantRule, wantPassed, v.Reason())
						}
						if wantRule && (d.ClusterRule.Policy.Name != "p" || d.ClusterRule.Rule != k.dir+"-0" || d.ClusterRule.Name != "r" || d.ClusterRule.Priority != 5) {
							t.Errorf("rule %+v", d.ClusterRule)
						}
						if wantRule && !strings.Contains(v.Reason(), fmt.Sprintf(`ClusterNetworkPolicy p (%s, priority 5) rule %s-0 "r"`, tier, k.dir)) {
							t.Errorf("reason %q", v.Reason())
						}
						if got := v.DecidedByCluster(); (got != "") != wantRule || wantRule && got != string(tier) {
							t.Errorf("DecidedByCluster %q", got)
						}
					})
				}
			}
		}
	}
}

// TestClusterNoMatch checks that a rule whose peer or protocols do not
// match the connection leaves it to the next rule, policy and tier.
func TestClusterNoMatch(t *testing.T) {
	w := cnpWorld(t)
	subject := `{namespaces: {matchLabels: {team: a}}}`
	set := cnpSet(t, cnpDoc("p", cnpv1alpha2.TierAdmin, 1, subject, "egress", `[
    {action: Deny, to: [{namespaces: {matchLabels: {team: nobody}}}]},
    {action: Deny, to: [{namespaces: {}}], protocols: [{udp: {destinationPort: {number: 8080}}}]},
    {action: Deny, to: [{networks: [198.19.0.0/16]}]},
    {action: Deny, to: [{nodes: {matchLabels: {role: control-plane}}}]},
    {action: Deny, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: other}}}}]}]`))
	v := Evaluate(w, set, cconn(t, "a/client", "b/server", 8080, model.ProtocolTCP))
	if v.Action != model.VerdictAllow || v.Egress.Tier != "" || v.Egress.ClusterRule != nil {
		t.Fatalf("got %s: %s", v.Action, v.Reason())
	}
	// A policy whose subject selects other pods does not apply.
	set = cnpSet(t, cnpDoc("p", cnpv1alpha2.TierAdmin, 1, `{namespaces: {matchLabels: {team: b}}}`, "egress", `[{action: Deny, to: [{namespaces: {}}]}]`))
	if v := Evaluate(w, set, cconn(t, "a/client", "b/server", 8080, model.ProtocolTCP)); v.Action != model.VerdictAllow {
		t.Fatalf("subject b decided a's egress: %s", v.Reason())
	}
}

// TestClusterOrder checks priorities (lower first, whatever the names),
// equal priorities by name, written order within a policy, and a Pass that
// skips the rest of its tier only.
func TestClusterOrder(t *testing.T) {
	w := cnpWorld(t)
	subject := `{namespaces: {matchLabels: {team: a}}}`
	all := `[{namespaces: {}}]`
	c := cconn(t, "a/client", "b/server", 8080, model.ProtocolTCP)
	tests := []struct {
		name     string
		docs     []string
		want     model.Verdict
		decided  string // policy/rule, "" for none
		passedBy string
	}{
		{"lower priority number first", []string{
			cnpDoc("a-deny", cnpv1alpha2.TierAdmin, 20, subject, "egress", "[{action: Deny, to: "+all+"}]"),
			cnpDoc("z-accept", cnpv1alpha2.TierAdmin, 10, subject, "egress", "[{action: Accept, to: "+all+"}]"),
		}, model.VerdictAllow, "z-accept/egress-0", ""},
		{"equal priority: by name", []string{
			cnpDoc("b-accept", cnpv1alpha2.TierAdmin, 10, subject, "egress", "[{action: Accept, to: "+all+"}]"),
			cnpDoc("a-deny", cnpv1alpha2.TierAdmin, 10, subject, "egress", "[{action: Deny, to: "+all+"}]"),
		}, model.VerdictDeny, "a-deny/egress-0", ""},
		{"first rule of a policy wins", []string{
			cnpDoc("p", cnpv1alpha2.TierAdmin, 10, subject, "egress", "[{action: Accept, to: "+all+"}, {action: Deny, to: "+all+"}]"),
		}, model.VerdictAllow, "p/egress-0", ""},
		{"admin pass skips lower admin deny, baseline deny applies", []string{
			cnpDoc("pass", cnpv1alpha2.TierAdmin, 1, subject, "egress", "[{action: Pass, to: "+all+"}]"),
			cnpDoc("deny", cnpv1alpha2.TierAdmin, 2, subject, "egress", "[{action: Deny, to: "+all+"}]"),
			cnpDoc("floor", cnpv1alpha2.TierBaseline, 0, subject, "egress", "[{action: Deny, to: "+all+"}]"),
		}, model.VerdictDeny, "floor/egress-0", "pass/egress-0"},
		{"baseline pass skips lower baseline deny", []string{
			cnpDoc("pass", cnpv1alpha2.TierBaseline, 1, subject, "egress", "[{action: Pass, to: "+all+"}]"),
			cnpDoc("deny", cnpv1alpha2.TierBaseline, 2, subject, "egress", "[{action: Deny, to: "+all+"}]"),
		}, model.VerdictAllow, "", "pass/egress-0"},
		{"admin accept before a baseline deny", []string{
			cnpDoc("floor", cnpv1alpha2.TierBaseline, 0, subject, "egress", "[{action: Deny, to: "+all+"}]"),
			cnpDoc("open", cnpv1alpha2.TierAdmin, 1000, subject, "egress", "[{action: Accept, to: "+all+"}]"),
		}, model.VerdictAllow, "open/egress-0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Evaluate(w, cnpSet(t, tt.docs...), c)
			got := ""
			if r := v.Egress.ClusterRule; r != nil {
				got = r.Policy.Name + "/" + r.Rule
			}
			passed := ""
			for _, p := range v.Egress.Passed {
				passed += p.Policy.Name + "/" + p.Rule
			}
			if v.Action != tt.want || got != tt.decided || passed != tt.passedBy {
				t.Fatalf("got %s by %q passed %q, want %s by %q passed %q: %s", v.Action, got, passed, tt.want, tt.decided, tt.passedBy, v.Reason())
			}
		})
	}
}

// TestClusterBothDirections checks that an egress Accept does not decide
// the destination's ingress, and that the connection needs both.
func TestClusterBothDirections(t *testing.T) {
	w := cnpWorld(t)
	set := cnpSet(t,
		cnpDoc("out", cnpv1alpha2.TierAdmin, 1, `{namespaces: {matchLabels: {team: a}}}`, "egress", `[{action: Accept, to: [{namespaces: {}}]}]`),
		cnpDoc("in", cnpv1alpha2.TierAdmin, 2, `{namespaces: {matchLabels: {team: b}}}`, "ingress", `[{action: Deny, from: [{namespaces: {matchLabels: {team: a}}}]}]`),
	)
	v := Evaluate(w, set, cconn(t, "a/client", "b/server", 8080, model.ProtocolTCP))
	if v.Action != model.VerdictDeny || v.Egress.Action != model.VerdictAllow || v.Ingress.Action != model.VerdictDeny || v.DecidedByCluster() != TierAdmin {
		t.Fatalf("got %s: %s", v.Action, v.Reason())
	}
	want := `egress of a/client allowed by ClusterNetworkPolicy out (Admin, priority 1) rule egress-0; ingress of b/server denied by ClusterNetworkPolicy in (Admin, priority 2) rule ingress-0`
	if v.Reason() != want {
		t.Errorf("reason\n got %s\nwant %s", v.Reason(), want)
	}
}

// TestClusterProtocols checks destinationPort numbers and ranges per
// protocol (SCTP included), named ports resolved at the destination pod,
// and that a rule with protocols never matches another protocol (ICMP).
func TestClusterProtocols(t *testing.T) {
	w := cnpWorld(t)
	set := cnpSet(t, cnpDoc("p", cnpv1alpha2.TierAdmin, 1, `{namespaces: {matchLabels: {team: a}}}`, "egress", `[{action: Deny, to: [{namespaces: {}}], protocols: [
    {tcp: {destinationPort: {number: 80}}},
    {udp: {destinationPort: {range: {start: 5000, end: 5010}}}},
    {sctp: {destinationPort: {number: 7000}}},
    {destinationNamedPort: http},
    {destinationNamedPort: assoc}]}]`))
	tests := []struct {
		port  int32
		proto model.Protocol
		to    string
		want  model.Verdict
	}{
		{80, model.ProtocolTCP, "b/server", model.VerdictDeny},
		{80, model.ProtocolUDP, "b/server", model.VerdictAllow},
		{81, model.ProtocolTCP, "b/server", model.VerdictAllow},
		{5000, model.ProtocolUDP, "b/server", model.VerdictDeny},
		{5010, model.ProtocolUDP, "b/server", model.VerdictDeny},
		{5011, model.ProtocolUDP, "b/server", model.VerdictAllow},
		{7000, model.ProtocolSCTP, "b/server", model.VerdictDeny},
		{7000, model.ProtocolTCP, "b/server", model.VerdictAllow},
		{8080, model.ProtocolTCP, "b/server", model.VerdictDeny},  // http at the server
		{8080, model.ProtocolUDP, "b/server", model.VerdictAllow}, // http is TCP
		{8080, model.ProtocolTCP, "a/client", model.VerdictAllow}, // the client declares no http port
		{9000, model.ProtocolSCTP, "b/server", model.VerdictDeny}, // assoc is SCTP
		{9000, model.ProtocolTCP, "b/server", model.VerdictAllow}, // not TCP
		{8, model.ProtocolICMP, "b/server", model.VerdictAllow},   // protocols never match ICMP
	}
	for _, tt := range tests {
		v := Evaluate(w, set, cconn(t, "a/client", tt.to, tt.port, tt.proto))
		if v.Action != tt.want {
			t.Errorf("%d/%s to %s: got %s, want %s: %s", tt.port, tt.proto, tt.to, v.Action, tt.want, v.Reason())
		}
	}
	// An empty named port (the upstream CRD accepts it) names no
	// container port: that entry matches nothing, the others still do.
	set = cnpSet(t, cnpDoc("p", cnpv1alpha2.TierAdmin, 1, `{namespaces: {matchLabels: {team: a}}}`, "egress", `[{action: Deny, to: [{namespaces: {}}], protocols: [
    {destinationNamedPort: ""}, {tcp: {destinationPort: {number: 80}}}]}]`))
	for _, tt := range []struct {
		port int32
		want model.Verdict
	}{{80, model.VerdictDeny}, {8080, model.VerdictAllow}, {81, model.VerdictAllow}} {
		if v := Evaluate(w, set, cconn(t, "a/client", "b/server", tt.port, model.ProtocolTCP)); v.Action != tt.want {
			t.Errorf("empty named port and TCP 80: %d/TCP: got %s, want %s: %s", tt.port, v.Action, tt.want, v.Reason())
		}
	}
	set = cnpSet(t, cnpDoc("p", cnpv1alpha2.TierAdmin, 1, `{namespaces: {matchLabels: {team: a}}}`, "egress", `[{action: Deny, to: [{namespaces: {}}], protocols: [{destinationNamedPort: ""}]}]`))
	for _, port := range []int32{80, 8080} {
		if v := Evaluate(w, set, cconn(t, "a/client", "b/server", port, model.ProtocolTCP)); v.Action != model.VerdictAllow {
			t.Errorf("only an empty named port: %d/TCP: got %s, want allow (the rule matches nothing): %s", port, v.Action, v.Reason())
		}
	}
	// Without protocols a rule matches every protocol, ICMP included.
	set = cnpSet(t, cnpDoc("p", cnpv1alpha2.TierAdmin, 1, `{namespaces: {matchLabels: {team: a}}}`, "egress", `[{action: Deny, to: [{namespaces: {}}]}]`))
	if v := Evaluate(w, set, cconn(t, "a/client", "b/server", 8, model.ProtocolICMP)); v.Action != model.VerdictDeny {
		t.Errorf("ICMP without protocols: %s", v.Reason())
	}
}

// TestClusterSelection checks who the tiers apply to: host-network pods
// are neither subjects nor matched by namespaces/pods peers, a pod
// connecting to itself is exempt, and a finished pod is not a subject.
func TestClusterSelection(t *testing.T) {
	w := cnpWorld(t)
	set := cnpSet(t,
		cnpDoc("all-out", cnpv1alpha2.TierAdmin, 1, `{namespaces: {}}`, "egress", `[{action: Deny, to: [{namespaces: {}}]}]`),
	)
	// The host-network pod is no subject: its egress is not denied.
	if v := Evaluate(w, set, cconn(t, "kube-system/agent", "b/server", 8080, model.ProtocolTCP)); v.Action != model.VerdictAllow {
		t.Errorf("host-network subject: %s", v.Reason())
	}
	// Nor is it a namespaces peer.
	if v := Evaluate(w, set, cconn(t, "a/client", "kube-system/agent", 10250, model.ProtocolTCP)); v.Action != model.VerdictAllow {
		t.Errorf("host-network peer: %s", v.Reason())
	}
	// Hairpin: a pod to its own address.
	if v := Evaluate(w, set, cconn(t, "a/client", "198.18.1.1", 8080, model.ProtocolTCP)); v.Action != model.VerdictAllow {
		t.Errorf("hairpin: %s", v.Reason())
	}
	if v := Evaluate(w, set, cconn(t, "a/client", "b/server", 8080, model.ProtocolTCP)); v.Action != model.VerdictDeny {
		t.Errorf("pod to pod: %s", v.Reason())
	}
}

// TestClusterWithNanoSegments checks that nanosegments are in the
// NetworkPolicy tier: an Admin Deny beats an enforcing nanosegment's allow,
// an audit nanosegment that isolates decides (audit-deny) before a Baseline
// Accept, and an observing one leaves the decision to the Baseline tier.
func TestClusterWithNanoSegments(t *testing.T) {
	w := cnpWorld(t)
	seg := func(mode string) string {
		return `{apiVersion: nanoseg.io/v1alpha1, kind: NanoSegment, metadata: {name: client, namespace: a}, spec: {selector: {matchLabels: {app: client}}, mode: ` + mode + `, policyTypes: [Egress], egress: [{id: web, peers: [{namespaceSelector: {}}], ports: [{protocol: TCP, port: 8080}]}]}}`
	}
	subject := `{namespaces: {matchLabels: {team: a}}}`
	c := cconn(t, "a/client", "b/server", 8080, model.ProtocolTCP)
	c9 := cconn(t, "a/client", "b/server", 9090, model.ProtocolTCP)
	if v := Evaluate(w, cnpSet(t, seg("enforce"), cnpDoc("deny", cnpv1alpha2.TierAdmin, 1, subject, "egress", `[{action: Deny, to: [{namespaces: {}}]}]`)), c); v.Action != model.VerdictDeny {
		t.Errorf("admin deny vs enforce allow: %s", v.Reason())
	}
	floor := cnpDoc("floor", cnpv1alpha2.TierBaseline, 1, subject, "egress", `[{action: Accept, to: [{namespaces: {}}]}]`)
	if v := Evaluate(w, cnpSet(t, seg("audit"), floor), c9); v.Action != model.VerdictAuditDeny || v.Egress.Tier != TierNetworkPolicy {
		t.Errorf("audit nanosegment before baseline accept: %s (%s)", v.Action, v.Reason())
	}
	floorDeny := cnpDoc("floor", cnpv1alpha2.TierBaseline, 1, subject, "egress", `[{action: Deny, to: [{namespaces: {}}]}]`)
	if v := Evaluate(w, cnpSet(t, seg("observe"), floorDeny), c); v.Action != model.VerdictDeny || v.Egress.Tier != TierBaseline {
		t.Errorf("observe nanosegment, baseline deny: %s (%s)", v.Action, v.Reason())
	}
}

// TestSamePriority checks the warning for equal priorities in one tier
// that select a pod in common, and its absence otherwise.
func TestSamePriority(t *testing.T) {
	w := cnpWorld(t)
	set := cnpSet(t,
		cnpDoc("pa", cnpv1alpha2.TierAdmin, 5, `{namespaces: {}}`, "egress", `[{action: Deny, to: [{namespaces: {}}]}]`),
		cnpDoc("pb", cnpv1alpha2.TierAdmin, 5, `{namespaces: {matchLabels: {team: a}}}`, "egress", `[{action: Accept, to: [{namespaces: {}}]}]`),
		cnpDoc("z", cnpv1alpha2.TierBaseline, 5, `{namespaces: {}}`, "egress", `[{action: Accept, to: [{namespaces: {}}]}]`),
		cnpDoc("q", cnpv1alpha2.TierAdmin, 5, `{namespaces: {matchLabels: {team: nobody}}}`, "egress", `[{action: Accept, to: [{namespaces: {}}]}]`),
	)
	warns := SamePriority(w, set)
	if len(warns) != 1 || !strings.Contains(warns[0], "ClusterNetworkPolicy pa and ClusterNetworkPolicy pb share tier Admin and priority 5 and both select a/client") {
		t.Fatalf("warnings %q", warns)
	}
}

// TestClusterNetworkPolicyRoundTrip checks that the types decode the
// upstream JSON form and encode it back unchanged.
func TestClusterNetworkPolicyRoundTrip(t *testing.T) {
	in := `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: guard
spec:
  egress:
  - action: Deny
    name: no-db
    protocols:
    - tcp:
        destinationPort:
          range:
            end: 5440
            start: 5432
    - destinationNamedPort: pg
    to:
    - pods:
        namespaceSelector: {}
        podSelector:
          matchLabels:
            app: db
  priority: 3
  subject:
    namespaces: {}
  tier: Admin
`
	var p cnpv1alpha2.ClusterNetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	if errs := ValidateClusterNetworkPolicy(&p); len(errs) > 0 {
		t.Fatal(errs)
	}
	out, err := yaml.Marshal(&p)
	if err != nil {
		t.Fatal(err)
	}
	// metadata.creationTimestamp and status are written as null/{}: strip
	// the lines the input leaves out.
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "creationTimestamp") || l == "status: {}" {
			continue
		}
		got = append(got, l)
	}
	if strings.Join(got, "\n") != in {
		t.Errorf("round trip:\n%s\nwant:\n%s", strings.Join(got, "\n"), in)
	}
}

// TestClusterDenyFollowsMode: issue 15, "audit mode logs an Admin Deny as
// audit-deny like any other would-be denial". For each mode of the
// subject (no policy, an observe-, audit- or enforce-mode nanosegment, a
// NetworkPolicy), each tier and each action: Accept allows and Pass hands
// on in every mode; a Deny is audit-deny, named with its rule, only when
// the subject is in audit mode, and deny otherwise (observe: upstream
// semantics). The nanosegments isolate ingress only, so the egress
// connection also reaches the Baseline tier.
func TestClusterDenyFollowsMode(t *testing.T) {
	w := cnpWorld(t)
	seg := func(mode string) string {
		return `{apiVersion: nanoseg.io/v1alpha1, kind: NanoSegment, metadata: {name: client, namespace: a}, spec: {selector: {matchLabels: {app: client}}, mode: ` + mode + `, policyTypes: [Ingress], ingress: [{id: none, peers: [{ipBlock: {cidr: 198.19.99.0/24}}]}]}}`
	}
	np := `{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: client, namespace: a}, spec: {podSelector: {matchLabels: {app: client}}, policyTypes: [Ingress]}}`
	subject := `{namespaces: {matchLabels: {team: a}}}`
	c := cconn(t, "a/client", "b/server", 8080, model.ProtocolTCP)
	for _, m := range []struct {
		name string
		docs []string
		mode model.Mode
	}{
		{"no policy", nil, model.ModeObserve},
		{"observe nanosegment", []string{seg("observe")}, model.ModeObserve},
		{"audit nanosegment", []string{seg("audit")}, model.ModeAudit},
		{"enforce nanosegment", []string{seg("enforce")}, model.ModeEnforce},
		{"NetworkPolicy", []string{np}, model.ModeEnforce},
		{"audit nanosegment and NetworkPolicy", []string{seg("audit"), np}, model.ModeEnforce},
	} {
		for _, tier := range []cnpv1alpha2.Tier{cnpv1alpha2.TierAdmin, cnpv1alpha2.TierBaseline} {
			for _, action := range []cnpv1alpha2.Action{cnpv1alpha2.ActionAccept, cnpv1alpha2.ActionDeny, cnpv1alpha2.ActionPass} {
				name := fmt.Sprintf("%s/%s/%s", m.name, tier, action)
				doc := cnpDoc("guard", tier, 1, subject, "egress", `[{name: r, action: `+string(action)+`, to: [{namespaces: {}}]}]`)
				set := cnpSet(t, append(slices.Clone(m.docs), doc)...)
				v := Evaluate(w, set, c)
				pod, _ := w.Pod("a", "client")
				ns, _ := w.Namespace("a")
				if ad := set.AuditedDenies(ns.Labels, pod); len(ad) != map[bool]int{true: 1}[action == cnpv1alpha2.ActionDeny && m.mode == model.ModeAudit] {
					t.Errorf("%s: AuditedDenies = %+v", name, ad)
				}
				want := model.VerdictAllow
				if action == cnpv1alpha2.ActionDeny {
					want = model.VerdictDeny
					if m.mode == model.ModeAudit {
						want = model.VerdictAuditDeny
					}
				}
				if v.Action != want || v.Egress.Mode != m.mode {
					t.Errorf("%s: %s, egress mode %q; want %s, mode %q (%s)", name, v.Action, v.Egress.Mode, want, m.mode, v.Reason())
				}
				if action == cnpv1alpha2.ActionPass {
					if v.Egress.ClusterRule != nil || len(v.Egress.Passed) != 1 {
						t.Errorf("%s: a Pass decided: %s", name, v.Reason())
					}
					continue
				}
				r := v.Egress.ClusterRule
				if r == nil || r.Rule != "egress-0" || r.Tier != tier || string(v.Egress.Tier) != string(tier) {
					t.Errorf("%s: deciding rule %+v in tier %q, want guard egress-0 in %s", name, r, v.Egress.Tier, tier)
				}
				audited := want == model.VerdictAuditDeny
				if v.Egress.AuditedClusterDeny() != audited || strings.Contains(v.Reason(), "in audit mode") != audited {
					t.Errorf("%s: AuditedClusterDeny %v, reason %q; want audited %v", name, v.Egress.AuditedClusterDeny(), v.Reason(), audited)
				}
				if got := v.DecidingClusterRule(); got == nil || got.Rule != "egress-0" {
					t.Errorf("%s: DecidingClusterRule = %+v", name, got)
				}
				if ad, _ := v.AdminDeny(); (ad != nil) != (tier == cnpv1alpha2.TierAdmin && action == cnpv1alpha2.ActionDeny) {
					t.Errorf("%s: AdminDeny = %+v", name, ad)
				}
			}
		}
	}

	// A Baseline Deny in a direction an audit nanosegment isolates never
	// decides, so it is not listed.
	egressSeg := `{apiVersion: nanoseg.io/v1alpha1, kind: NanoSegment, metadata: {name: client, namespace: a}, spec: {selector: {matchLabels: {app: client}}, mode: audit, policyTypes: [Egress]}}`
	set := cnpSet(t, egressSeg, cnpDoc("floor", cnpv1alpha2.TierBaseline, 1, subject, "egress", `[{action: Deny, to: [{namespaces: {}}]}]`))
	pod, _ := w.Pod("a", "client")
	ns, _ := w.Namespace("a")
	if ad := set.AuditedDenies(ns.Labels, pod); len(ad) != 0 {
		t.Errorf("Baseline Deny in an isolated direction listed: %+v", ad)
	}
}
