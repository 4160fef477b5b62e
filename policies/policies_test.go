package policies

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

func TestParseCaseBadInput(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"malformed yaml", "name: x\npods: [", []string{"bad.yaml"}},
		{"unknown top-level and nested fields", `
name: x
colour: red
pods:
  - {namespace: a, name: p, lables: {app: x}}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: p, namespace: a}
    spec:
      podSelector: {}
      ingress: [{form: []}]
steps:
  - apply: {kind: NetworkPolicy, metadata: {name: q, namespace: a}, spec: {podSelector: {}, egres: []}}
`, []string{"bad.yaml", "colour: Forbidden: unknown field", "pods[0].lables", "policies[0].spec.ingress[0].form", "steps[0].apply.spec.egres"}},
		{"invalid values", `
name: x
pods:
  - {namespace: a, name: p, ips: [300.1.1.1], ports: [{name: h, port: 70000}]}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: p, namespace: a}
    spec:
      podSelector: {matchExpressions: [{key: app, operator: Sideways}]}
      ingress:
        - from: [{ipBlock: {cidr: 10.0.0.0/33}}, {ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]
          ports: [{protocol: TCP, port: 0}, {protocol: TCP, port: 90, endPort: 80}, {protocol: ICMP}]
connections:
  - {from: a/p, to: nowhere, port: 80, expect: maybe}
`, []string{"pods[0].ips[0]", "pods[0].ports[0].port", "policies[0].spec.podSelector.matchExpressions[0].operator",
			"policies[0].spec.ingress[0].from[0].ipBlock.cidr", "policies[0].spec.ingress[0].from[1].ipBlock.except[0]",
			"policies[0].spec.ingress[0].ports[0].port", "policies[0].spec.ingress[0].ports[1].endPort",
			"policies[0].spec.ingress[0].ports[2].protocol", "connections[0].to", "connections[0].expect"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCase("bad.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestValidateNanoSegment(t *testing.T) {
	objs, err := ParseObjects("bad.yaml", []byte(`
apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: Bad_Name, namespace: a}
spec:
  selector: {matchLabels: {app: "x y"}}
  mode: yolo
  ingress:
    - id: r1
      peers: [{dnsName: "a.*.example.com"}, {host: true, dnsName: x.example.com}, {}]
    - id: r1
      ports: [{protocol: ICMP, port: 300}, {protocol: UDP, port: http, endPort: 90}]
  egress:
    - peers: [{ipBlock: {cidr: 2001:db8::/64, except: [198.18.0.0/24]}}]
    - id: r1
      peers: [{ipBlock: {cidr: 198.18.0.1/16}}, {ipBlock: {cidr: "::ffff:198.18.0.0/120"}}, {ipBlock: {cidr: 198.18.0.0/16, except: [198.18.1.1/24]}}]
`))
	if err == nil {
		t.Fatalf("no error: %+v", objs)
	}
	for _, w := range []string{"metadata.name", "spec.selector.matchLabels", "spec.mode", "spec.ingress[0].peers[0].dnsName",
		"spec.ingress[0].peers[1]: Forbidden", "spec.ingress[0].peers[2]: Required", "spec.ingress[1].id: Duplicate",
		"spec.ingress[1].ports[0].port", "spec.ingress[1].ports[1].endPort", "spec.egress[0].id: Required", "spec.egress[0].peers[0].ipBlock.except[0]",
		// Strict CIDRs, as the schema's CEL rules and a new NetworkPolicy's validation.
		"spec.egress[1].peers[0].ipBlock.cidr", "spec.egress[1].peers[1].ipBlock.cidr", "spec.egress[1].peers[2].ipBlock.except[0]",
		// An id in both directions is a duplicate in egress.
		"spec.egress[1].id: Duplicate"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error is not ErrInvalid: %v", err)
	}
}

func mustObjects(t testing.TB, doc string) PolicySet {
	t.Helper()
	objs, err := ParseObjects("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewPolicySet(SplitObjects(objs))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func testWorld(t testing.TB) *MemWorld {
	t.Helper()
	w, err := NewMemWorld(
		[]Namespace{{Name: "a", Labels: map[string]string{"kubernetes.io/metadata.name": "a"}}},
		[]Pod{
			{Namespace: "a", Name: "web", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.1.1")}},
			{Namespace: "a", Name: "db", Labels: map[string]string{"app": "db"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.1.2")}},
		})
	if err != nil {
		t.Fatal(err)
	}
	w.AddName(netip.MustParseAddr("198.19.0.1"), "api.example.com.")
	w.AddName(netip.MustParseAddr("198.19.0.2"), "a.b.example.com")
	w.AddHost(netip.MustParseAddr("198.18.255.1"))
	return w
}

func conn(from, to string, proto model.Protocol, port int32) Connection {
	f, _ := ParseConnEnd(from)
	tt, _ := ParseConnEnd(to)
	return Connection{From: f, To: tt, Protocol: proto, Port: port}
}

// TestModesAndNanoSegmentPeers covers what NetworkPolicy lacks: modes, DNS
// names (exact and one-label wildcard), the host peer and ICMP.
func TestModesAndNanoSegmentPeers(t *testing.T) {
	w := testWorld(t)
	seg := func(mode string) string {
		return `
apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: web, namespace: a}
spec:
  selector: {matchLabels: {app: web}}
  mode: ` + mode + `
  policyTypes: [Ingress, Egress]
  egress:
    - id: api
      peers: [{dnsName: "*.example.com"}]
      ports: [{protocol: TCP, port: 443}]
    - id: host
      peers: [{host: true}]
      ports: [{protocol: ICMP, port: 8}]
`
	}
	tests := []struct {
		mode string
		c    Connection
		want model.Verdict
	}{
		{"enforce", conn("a/web", "198.19.0.1", "TCP", 443), model.VerdictAllow},
		{"enforce", conn("a/web", "198.19.0.2", "TCP", 443), model.VerdictDeny}, // a.b.example.com: two labels
		{"enforce", conn("a/web", "198.19.0.1", "TCP", 80), model.VerdictDeny},
		{"enforce", conn("a/web", "198.18.255.1", "ICMP", 8), model.VerdictAllow},
		{"enforce", conn("a/web", "198.18.255.1", "ICMP", 0), model.VerdictDeny},
		{"enforce", conn("a/db", "a/web", "TCP", 80), model.VerdictDeny},
		{"audit", conn("a/web", "198.19.0.2", "TCP", 443), model.VerdictAuditDeny},
		{"audit", conn("a/web", "198.19.0.1", "TCP", 443), model.VerdictAllow},
		{"observe", conn("a/web", "198.19.0.2", "TCP", 443), model.VerdictAllow},
	}
	for _, tt := range tests {
		set := mustObjects(t, seg(tt.mode))
		v := Evaluate(w, set, tt.c)
		if v.Action != tt.want {
			t.Errorf("%s %s: got %s, want %s (%s)", tt.mode, tt.c, v.Action, tt.want, v.Reason())
		}
	}
	// An enforcing NetworkPolicy and an auditing NanoSegment: the union.
	set := mustObjects(t, seg("audit")+`---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  egress: [{to: [{ipBlock: {cidr: 198.19.0.2/32}}]}]
`)
	for _, tt := range []struct {
		c    Connection
		want model.Verdict
	}{
		{conn("a/web", "198.19.0.2", "TCP", 443), model.VerdictAllow},  // allowed by the NetworkPolicy
		{conn("a/web", "198.19.0.1", "TCP", 443), model.VerdictDeny},   // an auditing NanoSegment never widens enforcement
		{conn("a/web", "198.19.0.3", "TCP", 443), model.VerdictDeny},   // the enforcing policy denies
		{conn("a/web", "198.18.255.1", "ICMP", 8), model.VerdictDeny},  // likewise
		{conn("a/web", "198.18.255.1", "ICMP", 3), model.VerdictDeny},  // enforced isolation
		{conn("a/web", "a/db", "TCP", 5432), model.VerdictDeny},        // not in any rule
		{conn("a/db", "198.19.0.3", "TCP", 5432), model.VerdictAllow},  // db not isolated
		{conn("a/nope", "198.19.0.3", "TCP", 5432), model.VerdictDeny}, // unknown pod
	} {
		v := Evaluate(w, set, tt.c)
		if v.Action != tt.want {
			t.Errorf("union %s: got %s, want %s (%s)", tt.c, v.Action, tt.want, v.Reason())
		}
	}
}

func TestMatchDNSName(t *testing.T) {
	for _, tt := range []struct {
		p, n string
		want bool
	}{
		{"api.example.com", "API.example.com.", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"api.example.com", "x.api.example.com", false},
	} {
		if got := MatchDNSName(tt.p, tt.n); got != tt.want {
			t.Errorf("MatchDNSName(%q, %q) = %v", tt.p, tt.n, got)
		}
	}
}

func TestVerdictReason(t *testing.T) {
	w := testWorld(t)
	set := mustObjects(t, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
`)
	v := Evaluate(w, set, conn("a/web", "a/db", "TCP", 5432))
	want := "egress: no policy isolates a/web; ingress of a/db allowed by NetworkPolicy a/db rule ingress-0"
	if v.Action != model.VerdictAllow || v.Reason() != want {
		t.Errorf("got %s %q, want allow %q", v.Action, v.Reason(), want)
	}
	v = Evaluate(w, set, conn("a/web", "a/db", "TCP", 80))
	want = "egress: no policy isolates a/web; ingress of a/db deny: isolated by NetworkPolicy a/db and no rule allows it"
	if v.Action != model.VerdictDeny || v.Reason() != want {
		t.Errorf("got %s %q, want deny %q", v.Action, v.Reason(), want)
	}
	if ws := SelectsNothing(w, mustObjects(t, strings.ReplaceAll(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x, namespace: a}
spec: {podSelector: {matchLabels: {app: nothing}}}
`, "\t", ""))); len(ws) != 1 || ws[0] != "NetworkPolicy a/x selects no pod" {
		t.Errorf("SelectsNothing = %q", ws)
	}
}
