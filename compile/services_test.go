package compile

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

func mustSet(t testing.TB, docs string) policies.PolicySet {
	t.Helper()
	objs, err := policies.ParseObjects("test.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policies.NewPolicySet(policies.SplitObjects(objs))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// svcWorld: shop/web may reach app=api on the named port http and app=db
// on 5432; api-0 declares http=8080, api-1 http=9090, db-0 5432 unnamed,
// other-0 is selected by no egress rule.
func svcWorld(t testing.TB) CompileInput {
	ns := []policies.Namespace{{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}}
	pod := func(name, app string, ips []string, ports ...model.ContainerPort) policies.Pod {
		var a []netip.Addr
		for _, s := range ips {
			a = append(a, netip.MustParseAddr(s))
		}
		return policies.Pod{Namespace: "shop", Name: name, Labels: map[string]string{"app": app}, IPs: a, Ports: ports}
	}
	pods := []policies.Pod{
		pod("web-0", "web", []string{"198.18.0.1", "2001:db8::1"}),
		pod("api-0", "api", []string{"198.18.0.2", "2001:db8::2"}, model.ContainerPort{Name: "http", Port: 8080, Protocol: "TCP"}),
		pod("api-1", "api", []string{"198.18.0.3"}, model.ContainerPort{Name: "http", Port: 9090, Protocol: "TCP"}),
		pod("db-0", "db", []string{"198.18.0.4"}, model.ContainerPort{Port: 5432, Protocol: "TCP"}),
		pod("other-0", "other", []string{"198.18.0.5"}, model.ContainerPort{Name: "http", Port: 8080, Protocol: "TCP"}),
	}
	set := mustSet(t, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: api}}}]
      ports: [{port: http}]
    - to: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{port: 5432}]
`)
	return CompileInput{Namespaces: ns, Pods: pods, Policies: set}
}

func svc(name string, addrs []string, ports ...model.ServicePort) model.Service {
	s := model.Service{Namespace: "shop", Name: name, Ports: ports}
	for _, a := range addrs {
		s.Addrs = append(s.Addrs, netip.MustParseAddr(a))
	}
	return s
}

func backends(pairs ...any) []model.ServiceBackend {
	var out []model.ServiceBackend
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, model.ServiceBackend{Addr: netip.MustParseAddr(pairs[i].(string)), Port: uint16(pairs[i+1].(int))})
	}
	return out
}

// TestServiceEntries: a Service address is allowed on a port when the
// pod's egress allows one of that port's backends at its resolved port
// (named ports judged at the backend), with the backend rule's id, per
// address family; other ports, Services and pods get nothing.
func TestServiceEntries(t *testing.T) {
	in := svcWorld(t)
	in.Services = []model.Service{
		svc("api", []string{"198.19.128.10", "2001:db8:ffff::10"},
			model.ServicePort{Name: "web", Protocol: "TCP", Port: 80, Backends: backends("198.18.0.2", 8080, "198.18.0.3", 9090, "2001:db8::2", 8080)},
			// The backends do not serve 8443 under the name http: not allowed.
			model.ServicePort{Name: "tls", Protocol: "TCP", Port: 443, Backends: backends("198.18.0.2", 8443)}),
		svc("db", []string{"198.19.128.11"}, model.ServicePort{Protocol: "TCP", Port: 5432, Backends: backends("198.18.0.4", 5432)}),
		// other-0 declares http=8080 but no rule selects it.
		svc("other", []string{"198.19.128.12"}, model.ServicePort{Protocol: "TCP", Port: 80, Backends: backends("198.18.0.5", 8080)}),
		// Only a backend of the other family: never the translation.
		svc("v6only", []string{"198.19.128.13"}, model.ServicePort{Protocol: "TCP", Port: 80, Backends: backends("2001:db8::2", 8080)}),
		// UDP to a TCP-allowed backend port: not allowed.
		svc("udp", []string{"198.19.128.14"}, model.ServicePort{Protocol: "UDP", Port: 53, Backends: backends("198.18.0.4", 5432)}),
		// Headless and backend-less Services: nothing.
		svc("headless", nil, model.ServicePort{Protocol: "TCP", Port: 80, Backends: backends("198.18.0.2", 8080)}),
		svc("empty", []string{"198.19.128.15"}, model.ServicePort{Protocol: "TCP", Port: 80}),
	}
	c, err := NewCompiler(in)
	if err != nil {
		t.Fatal(err)
	}
	rs := c.For("shop/web-0")
	var got []dataplane.Entry
	for _, e := range rs.Egress {
		if netip.MustParsePrefix("198.19.0.0/16").Contains(e.Peer.Addr()) || netip.MustParsePrefix("2001:db8:ffff::/48").Contains(e.Peer.Addr()) {
			got = append(got, e)
		}
	}
	api := RuleID(policies.PolicyRef{Kind: "NetworkPolicy", Namespace: "shop", Name: "web-egress"}, "egress-0")
	db := RuleID(policies.PolicyRef{Kind: "NetworkPolicy", Namespace: "shop", Name: "web-egress"}, "egress-1")
	want := []dataplane.Entry{
		{Peer: netip.MustParsePrefix("198.19.128.10/32"), Protocol: "TCP", Port: 80, RuleID: api},
		{Peer: netip.MustParsePrefix("2001:db8:ffff::10/128"), Protocol: "TCP", Port: 80, RuleID: api},
		{Peer: netip.MustParsePrefix("198.19.128.11/32"), Protocol: "TCP", Port: 5432, RuleID: db},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("web-0's Service entries (-want +got):\n%s\nall egress: %v", d, rs.Egress)
	}
	if err := rs.Validate(); err != nil {
		t.Error(err)
	}
	// Pods whose egress is not isolated allow everything anyway, and get no Service entry.
	for _, e := range c.For("shop/api-0").Egress {
		if e.RuleID != "not-isolated" {
			t.Errorf("api-0 (egress not isolated) has entry %v", e)
		}
	}
}

// TestServiceAuditMode: a Service entry follows the mode of the rule set it
// is in (an audit NanoSegment: audit), with the rule id of the
// NanoSegment's rule.
func TestServiceAuditMode(t *testing.T) {
	in := svcWorld(t)
	in.Policies = mustSet(t, `
apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  mode: audit
  policyTypes: [Egress]
  egress:
    - id: to-db
      peers: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{port: 5432}]
`)
	in.Services = []model.Service{svc("db", []string{"198.19.128.11"}, model.ServicePort{Protocol: "TCP", Port: 5432, Backends: backends("198.18.0.4", 5432)})}
	c, err := NewCompiler(in)
	if err != nil {
		t.Fatal(err)
	}
	rs := c.For("shop/web-0")
	if rs.Mode != model.ModeAudit {
		t.Fatalf("mode %s, want audit", rs.Mode)
	}
	id, ok := rs.Allows(model.Egress, netip.MustParseAddr("198.19.128.11"), 6, 5432)
	if want := RuleID(policies.PolicyRef{Kind: "NanoSegment", Namespace: "shop", Name: "web"}, "to-db"); !ok || id != want {
		t.Errorf("Service address: rule %q allowed %v, want %q", id, ok, want)
	}
}

// TestServicesMatchEvaluate: for every shared case, in every step, with a
// Service in front of every declared port of every pod and one in front
// of all pods of a namespace, a pod's rule set allows a Service address
// and port exactly when policies.Evaluate allows the pod's egress to at
// least one of its backends (or, when its egress is not isolated, to
// anything: an isolated pod's ipBlock that contains the Service address
// does not count).
func TestServicesMatchEvaluate(t *testing.T) {
	files, _ := filepath.Glob("../policies/testdata/cases/*.yaml")
	for _, f := range files {
		c, err := policies.LoadCase(f)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.NewCaseState()
		if err != nil {
			t.Fatal(err)
		}
		for step := -1; step < len(c.Steps); step++ {
			if step >= 0 {
				if err := st.Apply(c.Steps[step]); err != nil {
					t.Fatal(err)
				}
			}
			set, err := st.Set()
			if err != nil {
				t.Fatal(err)
			}
			svcs := servicesOf(st.World.Pods())
			comp, err := NewCompiler(CompileInput{Namespaces: st.World.Namespaces(), Pods: st.World.Pods(), Policies: set, Services: svcs})
			if err != nil {
				t.Fatal(err)
			}
			for _, client := range st.World.Pods() {
				if len(client.IPs) == 0 {
					continue
				}
				rs, ok := comp.RuleSet(client.Key())
				for _, s := range svcs {
					for _, sp := range s.Ports {
						for _, addr := range s.Addrs {
							want := false
							for _, b := range sp.Backends {
								if b.Addr.Is4() != addr.Is4() {
									continue
								}
								want = want || egressAllows(st.World, set, client, b.Addr, sp.Protocol, int32(b.Port))
							}
							if !ok || rs.EgressDefault == "" {
								want = want || egressAllows(st.World, set, client, addr, sp.Protocol, int32(sp.Port))
							}
							got := allows(rs, ok, model.Egress, addr, sp.Protocol, int32(sp.Port))
							if got != want {
								t.Errorf("%s step %d: %s -> service %s %s %d/%s: rule set says %v, backends say %v", filepath.Base(f), step, client.Key(), s.Key(), addr, sp.Port, sp.Protocol, got, want)
							}
						}
					}
				}
			}
		}
	}
}

func egressAllows(w policies.World, set policies.PolicySet, client policies.Pod, to netip.Addr, proto model.Protocol, port int32) bool {
	conn := policies.Connection{From: policies.ConnEnd{Pod: client.Key()}, To: policies.ConnEnd{IP: to}, Protocol: proto, Port: port}
	ev := policies.Evaluate(w, set, conn)
	return ev.Egress.Action == model.VerdictAllow || ev.Egress.Action == model.VerdictObserved
}

// servicesOf returns a Service per declared port of every pod (port 1000+i
// in front of the container port), and per namespace one in front of all
// its pods' first declared port of each protocol.
func servicesOf(pods []policies.Pod) []model.Service {
	var out []model.Service
	byNS := map[string]*model.Service{}
	n := 0
	for _, p := range pods {
		for i, cp := range p.Ports {
			n++
			s := model.Service{Namespace: p.Namespace, Name: fmt.Sprintf("%s-%d", p.Name, i),
				Addrs: []netip.Addr{netip.AddrFrom4([4]byte{198, 19, 250, byte(n)}), netip.MustParseAddr(fmt.Sprintf("2001:db8:fff::%x", n))}}
			sp := model.ServicePort{Protocol: cp.Protocol, Port: uint16(1000 + i)}
			for _, a := range p.IPs {
				sp.Backends = append(sp.Backends, model.ServiceBackend{Addr: a, Port: uint16(cp.Port)})
			}
			s.Ports = []model.ServicePort{sp}
			out = append(out, s)
			all := byNS[p.Namespace]
			if all == nil {
				n++
				all = &model.Service{Namespace: p.Namespace, Name: "all", Addrs: []netip.Addr{netip.AddrFrom4([4]byte{198, 19, 251, byte(n)})}}
				byNS[p.Namespace] = all
			}
			j := slices.IndexFunc(all.Ports, func(x model.ServicePort) bool { return x.Protocol == cp.Protocol })
			if j < 0 {
				all.Ports = append(all.Ports, model.ServicePort{Protocol: cp.Protocol, Port: 80})
				j = len(all.Ports) - 1
			}
			for _, a := range p.IPs {
				all.Ports[j].Backends = append(all.Ports[j].Backends, model.ServiceBackend{Addr: a, Port: uint16(cp.Port)})
			}
		}
	}
	for _, s := range byNS {
		out = append(out, *s)
	}
	return out
}

// TestServicesIncrementalMatchesFull changes pods and Services one at a
// time and checks the incremental rule sets equal a full recompile, and
// that a Service change rebuilds only some rule sets.
func TestServicesIncrementalMatchesFull(t *testing.T) {
	in := synthetic(4, 30, 5)
	// Every app-i of every namespace behind a Service, on the named port's numbers.
	mk := func(pods []policies.Pod, skip map[string]bool) []model.Service {
		byApp := map[string]*model.Service{}
		var keys []string
		for _, p := range pods {
			app := p.Namespace + "/" + p.Labels["app"] + p.Labels["k8s-app"]
			if skip[app] {
				continue
			}
			s := byApp[app]
			if s == nil {
				i := len(keys) + 1
				s = &model.Service{Namespace: p.Namespace, Name: "svc-" + p.Labels["app"] + p.Labels["k8s-app"],
					Addrs: []netip.Addr{netip.AddrFrom4([4]byte{198, 19, 252, byte(i)})},
					Ports: []model.ServicePort{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}}}
				byApp[app] = s
				keys = append(keys, app)
			}
			for _, a := range p.IPs {
				s.Ports[0].Backends = append(s.Ports[0].Backends, model.ServiceBackend{Addr: a, Port: uint16(p.Ports[0].Port)})
				s.Ports[1].Backends = append(s.Ports[1].Backends, model.ServiceBackend{Addr: a, Port: 53})
			}
		}
		var out []model.Service
		for _, k := range keys {
			out = append(out, *byApp[k])
		}
		return out
	}
	in.Services = mk(in.Pods, nil)
	comp, err := NewCompiler(in)
	if err != nil {
		t.Fatal(err)
	}
	withService := 0
	for _, rs := range comp.RuleSets() {
		for _, e := range rs.Egress {
			if netip.MustParsePrefix("198.19.252.0/24").Contains(e.Peer.Addr()) {
				withService++
				break
			}
		}
	}
	if withService == 0 {
		t.Fatal("no rule set has a Service entry: the test tests nothing")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	pods := map[string]policies.Pod{}
	for _, p := range in.Pods {
		pods[p.Key()] = p
	}
	svcs := in.Services
	for step := range 60 {
		if step%4 == 0 {
			// Drop a random app's Service, or bring all back.
			skip := map[string]bool{}
			if step%8 == 0 {
				skip[fmt.Sprintf("ns-%d/app-%d", rng.IntN(4), rng.IntN(5))] = true
			}
			var cur []policies.Pod
			for _, p := range pods {
				cur = append(cur, p)
			}
			slices.SortFunc(cur, func(a, b policies.Pod) int { return cmpKey(a.Key(), b.Key()) })
			svcs = mk(cur, skip)
			changed := comp.SetServices(svcs)
			if len(changed) == len(pods) {
				t.Errorf("step %d: a Service change rebuilt every rule set", step)
			}
		} else {
			randomPodChange(t, comp, in.Pods, pods, rng, step)
		}
		var all []policies.Pod
		for _, p := range pods {
			all = append(all, p)
		}
		full, err := NewCompiler(CompileInput{Namespaces: in.Namespaces, Pods: all, Policies: in.Policies, Services: svcs})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(full.RuleSets(), comp.RuleSets(), cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
			t.Fatalf("step %d: incremental differs from full (-full +incremental):\n%s", step, d)
		}
	}
}

func cmpKey(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestServiceAddressNotInBlock: the two upstream conformance shapes ("should
// enforce except clause while egress access to server in CIDR block",
// "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is
// allowed"). Client a may reach an ipBlock 192.0.0.0/4 that contains the
// server's ClusterIP: with the server pod excepted, the ClusterIP is
// denied (judged by its backend, not by the block containing it); with the
// server allowed, it is allowed, with the rule's id. A rule without peers
// still reaches the Service; one without peers limited to a port the
// backend does not listen on does not.
func TestServiceAddressNotInBlock(t *testing.T) {
	ns := []policies.Namespace{{Name: "x", Labels: map[string]string{"kubernetes.io/metadata.name": "x"}}}
	pods := []policies.Pod{
		{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.1.1")}},
		{Namespace: "x", Name: "b", Labels: map[string]string{"pod": "b"}, IPs: []netip.Addr{netip.MustParseAddr("198.18.1.2")}},
	}
	clusterIP := netip.MustParseAddr("198.19.240.10")
	svcs := []model.Service{{Namespace: "x", Name: "s-b", Addrs: []netip.Addr{clusterIP},
		Ports: []model.ServicePort{{Protocol: "TCP", Port: 80, Backends: backends("198.18.1.2", 80)}}}}
	policy := func(egress string) policies.PolicySet {
		return mustSet(t, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client-a-via-cidr-egress-rule, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
`+egress)
	}
	ref := policies.PolicyRef{Kind: "NetworkPolicy", Namespace: "x", Name: "allow-client-a-via-cidr-egress-rule"}
	for _, tc := range []struct {
		name   string
		egress string
		want   bool
	}{
		{"except server", `    - to: [{ipBlock: {cidr: 192.0.0.0/4, except: [198.18.1.2/32]}}]`, false},
		{"except overlapping, server allowed", `    - to: [{ipBlock: {cidr: 192.0.0.0/4, except: [198.18.1.2/32]}}]
    - to: [{ipBlock: {cidr: 198.18.1.2/32}}]`, true},
		{"block with port", `    - to: [{ipBlock: {cidr: 192.0.0.0/4}}]
      ports: [{port: 80}]`, true},
		{"no peers", `    - {}`, true},
		{"no peers, port 80", `    - ports: [{port: 80}]`, true},
		{"no peers, other port", `    - ports: [{port: 81}]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCompiler(CompileInput{Namespaces: ns, Pods: pods, Policies: policy(tc.egress), Services: svcs})
			if err != nil {
				t.Fatal(err)
			}
			rs := c.For("x/a")
			id, got := rs.Allows(model.Egress, clusterIP, 6, 80)
			if got != tc.want {
				t.Fatalf("a -> ClusterIP %s:80: allowed %v (rule %q), want %v; egress %v", clusterIP, got, id, tc.want, rs.Egress)
			}
			if got && !strings.HasPrefix(id, RuleID(ref, "egress-")) {
				t.Errorf("a -> ClusterIP: rule id %q, want one of %s's rules", id, ref)
			}
			// The block still allows the addresses around the ClusterIP.
			if _, ok := rs.Allows(model.Egress, clusterIP.Next(), 6, 80); !ok && tc.name != "no peers, other port" {
				t.Errorf("a -> %s:80 (next to the ClusterIP): denied", clusterIP.Next())
			}
			if _, ok := rs.Allows(model.Egress, clusterIP.Prev(), 6, 80); !ok && tc.name != "no peers, other port" {
				t.Errorf("a -> %s:80 (before the ClusterIP): denied", clusterIP.Prev())
			}
			// Incremental: the Service going away gives the block its address
			// back; coming back cuts it out again (as a full compile).
			changed := c.SetServices(nil)
			if !slices.Contains(changed, "x/a") && tc.egress != "" {
				t.Errorf("removing the Service did not rebuild x/a (%v)", changed)
			}
			full, _ := NewCompiler(CompileInput{Namespaces: ns, Pods: pods, Policies: policy(tc.egress)})
			if d := cmp.Diff(full.RuleSets(), c.RuleSets(), cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Errorf("without the Service: incremental differs from full:\n%s", d)
			}
			c.SetServices(svcs)
			full, _ = NewCompiler(CompileInput{Namespaces: ns, Pods: pods, Policies: policy(tc.egress), Services: svcs})
			if d := cmp.Diff(full.RuleSets(), c.RuleSets(), cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Errorf("with the Service again: incremental differs from full:\n%s", d)
			}
		})
	}
}

func TestSplitAround(t *testing.T) {
	p := netip.MustParsePrefix("192.0.0.0/4")
	addrs := []netip.Addr{netip.MustParseAddr("198.19.240.10"), netip.MustParseAddr("198.19.240.11"), netip.MustParseAddr("200.0.0.1")}
	got := splitAround(p, addrs)
	for _, a := range []string{"192.0.0.0", "198.19.240.9", "198.19.240.12", "200.0.0.0", "200.0.0.2", "207.255.255.255"} {
		if !slices.ContainsFunc(got, func(q netip.Prefix) bool { return q.Contains(netip.MustParseAddr(a)) }) {
			t.Errorf("%s lost", a)
		}
	}
	for _, a := range addrs {
		if slices.ContainsFunc(got, func(q netip.Prefix) bool { return q.Contains(a) }) {
			t.Errorf("%s kept", a)
		}
	}
	if len(got) > 3*28 {
		t.Errorf("%d prefixes", len(got))
	}
}
