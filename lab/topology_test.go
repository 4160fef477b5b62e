package lab

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

const base = `kind: LabTopology
name: t
dns: kube-system/dns
namespaces:
  - {name: shop}
  - {name: shop-api}
  - {name: kube-system}
workloads:
  - name: dns
    namespace: kube-system
    ports: [{port: 53, protocol: UDP}]
  - name: api
    namespace: shop
    ports: [{name: http, port: 8080}]
  - name: web
    namespace: shop
    replicas: 2
    talks: [{to: api, port: http}]
externals:
  - {name: pay, dns: pay.example, ports: [{port: 443}]}
`

// TestShopTwoNodes: manifests/lab/shop-two-nodes.yaml (make
// demo-kubernetes) is shop.yaml with its replicas on two nodes, and
// nothing else changed, so the two demos tell the same story.
func TestShopTwoNodes(t *testing.T) {
	parse := func(path string) (*Topology, *Plan) {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		top, err := Parse(raw)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		p, err := NewPlan(top, raw)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return top, p
	}
	shop, _ := parse("../manifests/lab/shop.yaml")
	two, plan := parse("../manifests/lab/shop-two-nodes.yaml")
	nodes := map[string]bool{}
	for _, e := range plan.Endpoints {
		if !e.External {
			nodes[e.Node] = true
		}
	}
	if len(nodes) != 2 || !nodes["node-a"] || !nodes["node-b"] {
		t.Errorf("nodes %v, want node-a and node-b", nodes)
	}
	for i := range two.Workloads {
		two.Workloads[i].Node = nil
	}
	if !reflect.DeepEqual(shop, two) {
		t.Errorf("shop-two-nodes.yaml differs from shop.yaml in more than its nodes:\n%+v\n%+v", shop, two)
	}
}

func TestParseShop(t *testing.T) {
	raw, err := os.ReadFile("../manifests/lab/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	top, err := Parse(raw)
	if err != nil {
		t.Fatalf("shop.yaml: %v", err)
	}
	p, err := NewPlan(top, raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(p.Find("shop/frontend")); got != 2 {
		t.Errorf("shop/frontend has %d endpoints, want 2", got)
	}
	seen := map[string]bool{}
	for _, e := range p.Endpoints {
		for _, a := range []string{e.IPv4.String(), e.IPv6.String()} {
			if seen[a] {
				t.Errorf("address %s given twice", a)
			}
			seen[a] = true
		}
		if !AllowedV4.Contains(e.IPv4) || !AllowedV6.Contains(e.IPv6) {
			t.Errorf("%s has %s, %s outside the lab ranges", e.ID(), e.IPv4, e.IPv6)
		}
		if e.External != ExternalV4.Contains(e.IPv4) {
			t.Errorf("%s: external=%v but IPv4 %s", e.ID(), e.External, e.IPv4)
		}
	}
	if !p.DNSv4.IsValid() || p.DNSv4 != p.Find("kube-system/dns")[0].IPv4 {
		t.Errorf("DNS server address %s is not the dns workload's", p.DNSv4)
	}
	if e, ok := p.Lookup(p.Find("shop/db")[0].IPv6); !ok || e.Key() != "shop/db" {
		t.Errorf("Lookup(db's IPv6) = %v, %v", e.Key(), ok)
	}
	api := p.Find("shop/api")[0]
	tt, err := p.resolveTalk("shop", top.Workloads[1].Talks[0])
	if err != nil || tt.port != 8080 || tt.name != api.FQDN() {
		t.Errorf("frontend's talk resolves to %+v, %v; want %s:8080 (named port http at api)", tt, err, api.FQDN())
	}
}

// TestParseRefusesBadInput checks that each kind of bad topology is refused
// with the field path and the problem named.
func TestParseRefusesBadInput(t *testing.T) {
	cases := []struct {
		name, old, new string
		want           []string
	}{
		{"unknown field", "replicas: 2", "replicas: 2\n    colour: blue", []string{"workloads[", "].colour: unknown field (line"}},
		{"duplicate workload", "  - name: web\n", "  - name: api\n", []string{"workloads[2].name", `duplicate workload "shop/api"`}},
		{"port out of range", "port: 8080", "port: 70000", []string{"workloads[1].ports[0].port", "70000 is out of range"}},
		{"bad protocol", "{port: 443}", "{port: 443, protocol: ICMP}", []string{"externals[0].ports[0].protocol", `"ICMP" is not TCP or UDP`}},
		{"unknown peer", "to: api,", "to: nosuch,", []string{"workloads[2].talks[0].to", `peer "nosuch" does not exist`}},
		{"unknown named port", "port: http}", "port: https}", []string{"workloads[2].talks[0].port", `named port "https"`}},
		{"address collision", "ports: [{name: http, port: 8080}]",
			"ports: [{name: http, port: 8080}]\n    ipv4: [198.18.0.50]\n  - name: db\n    namespace: shop\n    ipv4: [198.18.0.50]",
			[]string{"workloads[2].ipv4[0]", "address collision: 198.18.0.50"}},
		{"address outside lab", "ports: [{name: http, port: 8080}]", "ports: [{name: http, port: 8080}]\n    ipv4: [10.0.0.1]",
			[]string{"workloads[1].ipv4[0]", "outside the range 198.18.0.0/16"}},
		{"workload in the externals' range", "ports: [{name: http, port: 8080}]", "ports: [{name: http, port: 8080}]\n    ipv4: 198.19.0.10",
			[]string{"workloads[1].ipv4[0]", "198.19.0.10 is outside the range 198.18.0.0/16"}},
		{"netns name collision", "externals:", "  - {name: api-x, namespace: shop}\n  - {name: x, namespace: shop-api}\nexternals:",
			[]string{"is also the one of"}},
		{"undeclared namespace", "namespace: shop\n    ports", "namespace: shoop\n    ports", []string{"workloads[1].namespace", `"shoop" is not declared`}},
		{"bad interval", "port: http}", "port: http, every: 1ms}", []string{"workloads[2].talks[0].every"}},
		{"missing dns", "dns: kube-system/dns", "dns: kube-system/nodns", []string{"dns:", "does not exist"}},
		{"wrong kind", "kind: LabTopology", "kind: Topology", []string{"kind:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.old) {
				t.Fatalf("test bug: %q not in base", c.old)
			}
			_, err := Parse([]byte(strings.Replace(base, c.old, c.new, 1)))
			if err == nil {
				t.Fatal("bad topology accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := Parse([]byte(base)); err != nil {
		t.Fatalf("base topology refused: %v", err)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	bad := strings.Replace(strings.Replace(base, "port: 8080", "port: 0", 1), "to: api,", "to: nosuch,", 1)
	_, err := Parse([]byte(bad))
	if err == nil || !strings.Contains(err.Error(), "ports[0].port") || !strings.Contains(err.Error(), "talks[0].to") {
		t.Fatalf("want both problems reported, got %v", err)
	}
}

// TestParseReportsUnknownFieldsWithTheRest: an unknown field is named by its
// field path and line, beside the file's other problems, not instead of
// them.
func TestParseReportsUnknownFieldsWithTheRest(t *testing.T) {
	bad := strings.Replace(strings.Replace(base, "replicas: 2", "replicas: 2\n    portz: [1]", 1), "to: api,", "to: nosuch,", 1)
	_, err := Parse([]byte(bad))
	if err == nil || !strings.Contains(err.Error(), "].portz: unknown field (line ") || !strings.Contains(err.Error(), `peer "nosuch" does not exist`) {
		t.Fatalf("want the unknown field with its path and the unknown peer, got %v", err)
	}
	if strings.Contains(err.Error(), "lab.Workload") {
		t.Errorf("the message names a Go type: %v", err)
	}
}

// TestParseReportsEveryAddressProblem is issue 11 item 12: a replica given
// two addresses, one of them outside the workloads' range, is refused with
// both problems named, next to the file's other problems.
func TestParseReportsEveryAddressProblem(t *testing.T) {
	bad := strings.Replace(base, "ports: [{name: http, port: 8080}]",
		"ports: [{name: http, port: 8080}]\n    ipv4: [198.18.0.10, 10.0.0.1]\n    ipv6: [2001:db8:18::10, 2001:db8:18::10, nonsense]", 1)
	bad = strings.Replace(bad, "to: api,", "to: nosuch,", 1)
	bad = strings.Replace(bad, "ports: [{port: 443}]}", "ports: [{port: 443}], ipv4: [198.18.0.10]}", 1)
	_, err := Parse([]byte(bad))
	if err == nil {
		t.Fatal("bad topology accepted")
	}
	for _, w := range []string{
		"workloads[1].ipv4: 2 addresses for 1 replicas",
		"workloads[1].ipv4[1]: 10.0.0.1 is outside the range 198.18.0.0/16",
		"workloads[1].ipv6: 3 addresses for 1 replicas",
		"workloads[1].ipv6[1]: address collision: 2001:db8:18::10 is also workloads[1].ipv6[0]",
		`workloads[1].ipv6[2]: "nonsense" is not an IP address`,
		"externals[0].ipv4[0]: 198.18.0.10 is outside the range 198.19.0.0/16",
		"workloads[2].talks[0].to",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, err)
		}
	}
}

// TestParseNodes: `node` gives every replica one node, or each its own;
// by default every replica runs on a node named after the lab; a list of
// the wrong length and a name that is no node name are refused.
func TestParseNodes(t *testing.T) {
	withWorkloads := func(w string) []byte { return []byte(strings.Replace(base, "externals:\n", w+"externals:\n", 1)) }
	top, err := Parse(withWorkloads(`  - name: pinned
    namespace: shop
    replicas: 2
    node: [node-a, node-b.lab]
  - name: one
    namespace: shop
    replicas: 2
    node: node-c
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(top, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range p.Endpoints {
		got[e.ID()] = e.NodeName(p.Lab)
	}
	for id, want := range map[string]string{
		"shop/pinned-0": "node-a", "shop/pinned-1": "node-b.lab",
		"shop/one-0": "node-c", "shop/one-1": "node-c",
		"shop/web-1": "t", "external/pay": "",
	} {
		if got[id] != want {
			t.Errorf("node of %s = %q, want %q", id, got[id], want)
		}
	}
	if n := p.Nodes(); strings.Join(n, ",") != "node-a,node-b.lab,node-c,t" {
		t.Errorf("Nodes() = %v", n)
	}
	_, err = Parse(withWorkloads(`  - name: bad
    namespace: shop
    replicas: 3
    node: [a, b]
  - name: worse
    namespace: shop
    node: Node_1
`))
	for _, want := range []string{"workloads[3].node: 2 nodes for 3 replicas", `workloads[4].node[0]: "Node_1" must be a lowercase DNS name`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
}
