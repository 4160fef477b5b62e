package policies

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// wl is a workload for the shape tests: namespace/name with labels.
func wl(ns, name string, kv ...string) model.Identity {
	l := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return model.Identity{Namespace: ns, Workload: name, Labels: l}
}

func peerOf(i model.Identity) model.Peer {
	return model.Peer{Namespace: i.Namespace, Workload: i.Workload, Labels: i.Labels}
}

var t0 = time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)

func edge(src, dst model.Identity, proto model.Protocol, port uint16) model.Edge {
	return model.Edge{Source: peerOf(src), Destination: peerOf(dst), Protocol: proto, Port: port,
		Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0.Add(time.Minute), Flows: 1}}
}

func selects(t *testing.T, sel metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(&sel)
	if err != nil {
		t.Fatal(err)
	}
	return s.Matches(labels.Set(l))
}

// TestSelectorLayouts checks the selector of each workload of common label
// layouts: it keeps the naming labels, selects its own workload and no
// sibling, and never selects a later workload of another application that
// shares its other labels.
func TestSelectorLayouts(t *testing.T) {
	type want struct {
		workload string // ns/name
		sel      string // the selector as metav1.FormatLabelSelector prints it
	}
	cases := []struct {
		name      string
		workloads []model.Identity
		later     []model.Identity // must never be selected by any selector
		want      []want
	}{
		{
			name: "versions",
			workloads: []model.Identity{
				wl("shop", "web-v1", "app", "web", "version", "v1"),
				wl("shop", "web-v2", "app", "web", "version", "v2"),
			},
			later: []model.Identity{wl("shop", "api-v1", "app", "api", "version", "v1"), wl("shop", "x", "version", "v2")},
			want:  []want{{"shop/web-v1", "app=web,version=v1"}, {"shop/web-v2", "app=web,version=v2"}},
		},
		{
			name: "one version only: the version label is not needed",
			workloads: []model.Identity{
				wl("shop", "web", "app", "web", "version", "v1", "team", "a"),
			},
			later: []model.Identity{wl("shop", "api", "app", "api", "version", "v1", "team", "a")},
			want:  []want{{"shop/web", "app=web"}},
		},
		{
			name: "canary beside stable (one more label)",
			workloads: []model.Identity{
				wl("shop", "web", "app", "web"),
				wl("shop", "web-canary", "app", "web", "track", "canary"),
			},
			later: []model.Identity{wl("shop", "api-canary", "app", "api", "track", "canary")},
			want:  []want{{"shop/web", "app=web,!track"}, {"shop/web-canary", "app=web,track=canary"}},
		},
		{
			name: "canary and stable both tracked",
			workloads: []model.Identity{
				wl("shop", "web", "app", "web", "track", "stable", "pod-template-hash", "abc"),
				wl("shop", "web-canary", "app", "web", "track", "canary", "pod-template-hash", "def"),
			},
			want: []want{{"shop/web", "app=web,track=stable"}, {"shop/web-canary", "app=web,track=canary"}},
		},
		{
			name: "StatefulSet ordinals are noise",
			workloads: []model.Identity{
				wl("data", "pg", "app", "pg", "statefulset.kubernetes.io/pod-name", "pg-0", "apps.kubernetes.io/pod-index", "0", "controller-revision-hash", "pg-5d"),
				wl("data", "pg", "app", "pg", "statefulset.kubernetes.io/pod-name", "pg-1", "apps.kubernetes.io/pod-index", "1", "controller-revision-hash", "pg-5d"),
			},
			want: []want{{"data/pg", "app=pg"}},
		},
		{
			name: "Helm: two releases of one chart, chart versions differ",
			workloads: []model.Identity{
				wl("web", "blue-web", "app.kubernetes.io/name", "web", "app.kubernetes.io/instance", "blue", "helm.sh/chart", "web-1.2.0", "app.kubernetes.io/managed-by", "Helm", "app.kubernetes.io/version", "2.0"),
				wl("web", "green-web", "app.kubernetes.io/name", "web", "app.kubernetes.io/instance", "green", "helm.sh/chart", "web-1.3.0", "app.kubernetes.io/managed-by", "Helm", "app.kubernetes.io/version", "2.1"),
			},
			later: []model.Identity{wl("web", "blue-api", "app.kubernetes.io/name", "api", "app.kubernetes.io/instance", "blue", "helm.sh/chart", "web-1.2.0")},
			want: []want{
				{"web/blue-web", "app.kubernetes.io/instance=blue,app.kubernetes.io/name=web"},
				{"web/green-web", "app.kubernetes.io/instance=green,app.kubernetes.io/name=web"},
			},
		},
		{
			name: "Helm: components of one release",
			workloads: []model.Identity{
				wl("mon", "prom-server", "app.kubernetes.io/name", "prometheus", "app.kubernetes.io/instance", "prom", "app.kubernetes.io/component", "server"),
				wl("mon", "prom-alertmanager", "app.kubernetes.io/name", "prometheus", "app.kubernetes.io/instance", "prom", "app.kubernetes.io/component", "alertmanager"),
			},
			want: []want{
				{"mon/prom-server", "app.kubernetes.io/component=server,app.kubernetes.io/instance=prom,app.kubernetes.io/name=prometheus"},
				{"mon/prom-alertmanager", "app.kubernetes.io/component=alertmanager,app.kubernetes.io/instance=prom,app.kubernetes.io/name=prometheus"},
			},
		},
		{
			name: "Kustomize overlays: common labels and variants",
			workloads: []model.Identity{
				wl("apps", "prod-web", "app", "web", "env", "prod", "app.kubernetes.io/part-of", "shop", "variant", "blue"),
				wl("apps", "staging-web", "app", "web", "env", "staging", "app.kubernetes.io/part-of", "shop", "variant", "blue"),
			},
			later: []model.Identity{wl("apps", "prod-api", "app", "api", "env", "prod", "app.kubernetes.io/part-of", "shop", "variant", "blue")},
			want:  []want{{"apps/prod-web", "app=web,env=prod"}, {"apps/staging-web", "app=web,env=staging"}},
		},
		{
			name: "k8s-app and app together",
			workloads: []model.Identity{
				wl("kube-system", "coredns", "k8s-app", "kube-dns", "app", "dns"),
			},
			later: []model.Identity{wl("kube-system", "metrics", "k8s-app", "metrics-server", "app", "dns")},
			want:  []want{{"kube-system/coredns", "app=dns,k8s-app=kube-dns"}},
		},
		{
			name: "no naming label: the label carrying the workload's name",
			workloads: []model.Identity{
				wl("ops", "backup", "run", "backup", "tier", "ops"),
				wl("ops", "report", "run", "report", "tier", "ops"),
			},
			later: []model.Identity{wl("ops", "cleanup", "run", "cleanup", "tier", "ops")},
			want:  []want{{"ops/backup", "run=backup"}, {"ops/report", "run=report"}},
		},
		{
			name: "no naming label and no name label: every label",
			workloads: []model.Identity{
				wl("ops", "job", "tier", "ops", "team", "a"),
			},
			later: []model.Identity{wl("ops", "other", "tier", "ops")},
			want:  []want{{"ops/job", "team=a,tier=ops"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newIdentityIndex()
			for _, i := range c.workloads {
				x.add(i)
			}
			for _, w := range c.want {
				var id model.Identity
				for _, i := range c.workloads {
					if i.Namespace+"/"+i.Workload == w.workload {
						id = i
					}
				}
				sel, ok := x.selector(id)
				if got := metav1.FormatLabelSelector(&sel); got != w.sel || !ok {
					t.Errorf("selector of %s = %s (ok %v), want %s", w.workload, got, ok, w.sel)
				}
				for _, k := range NamingLabels {
					if v, has := id.Labels[k]; has && sel.MatchLabels[k] != v {
						t.Errorf("selector of %s drops naming label %s", w.workload, k)
					}
				}
				for _, o := range c.workloads {
					if m := selects(t, sel, o.Labels); m != (o.NormalKey() == id.NormalKey()) {
						t.Errorf("selector %s of %s selects %s/%s: %v", w.sel, w.workload, o.Namespace, o.Workload, m)
					}
				}
				for _, o := range c.later {
					if selects(t, sel, o.Labels) {
						t.Errorf("selector %s of %s captures the later workload %s/%s %v", w.sel, w.workload, o.Namespace, o.Workload, o.Labels)
					}
				}
				if name := x.segmentName(id, sel); name != sanitizeID(id.Workload) {
					t.Errorf("policy of %s named %q, want the workload's name", w.workload, name)
				}
			}
		})
	}
}

// TestProposeNamesAfterWorkload is the case: two versions of web,
// proposed while only they exist; a later {app: api, version: v1} is not
// selected by web-v1's policy, which is named web-v1, not v1.
func TestProposeNamesAfterWorkload(t *testing.T) {
	v1, v2 := wl("shop", "web-v1", "app", "web", "version", "v1"), wl("shop", "web-v2", "app", "web", "version", "v2")
	client := wl("shop", "client", "app", "client")
	segs := ProposeWith([]model.Edge{edge(client, v1, model.ProtocolTCP, 80), edge(client, v2, model.ProtocolTCP, 80)}, Known{}, ProposeOptions{})
	later := map[string]string{"app": "api", "version": "v1"}
	var names []string
	for _, s := range segs {
		names = append(names, s.Name)
		if selects(t, s.Spec.Selector, later) {
			t.Errorf("%s selects the later workload %v", s.Name, later)
		}
		for _, r := range s.Spec.Egress {
			if selects(t, *r.Peers[0].PodSelector, later) {
				t.Errorf("%s egress %s selects the later workload %v", s.Name, r.ID, later)
			}
		}
	}
	if want := []string{"client", "web-v1", "web-v2"}; !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
}

// ruleByID returns the rule of segment name with id, or fails.
func ruleByID(t *testing.T, segs []v1alpha1.NanoSegment, ns, name string, dir model.Direction, id string) v1alpha1.Rule {
	t.Helper()
	for _, s := range segs {
		if s.Namespace != ns || s.Name != name {
			continue
		}
		rules := s.Spec.Ingress
		if dir == model.Egress {
			rules = s.Spec.Egress
		}
		var ids []string
		for _, r := range rules {
			if r.ID == id {
				return r
			}
			ids = append(ids, r.ID)
		}
		t.Fatalf("%s/%s has no %s rule %s (has %v)", ns, name, dir, id, ids)
	}
	t.Fatalf("no segment %s/%s", ns, name)
	return v1alpha1.Rule{}
}

func portsString(ps []v1alpha1.Port) string {
	var out []string
	for _, p := range ps {
		s := string(p.Protocol) + "/"
		if p.Port != nil {
			s += p.Port.String()
		}
		if p.EndPort != nil {
			s += fmt.Sprintf("-%d", *p.EndPort)
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// TestProposeSharedServer checks that a server port with clients from
// several namespaces gets one broad rule with the clients as evidence,
// scoped to a namespace label the clients share, or to the cluster; that a
// port with few clients keeps one rule per client; and that, enforced, a
// workload never seen reaches the shared port and not the others.
func TestProposeSharedServer(t *testing.T) {
	gw := wl("monitoring", "gateway", "app", "gateway")
	a, b, c := wl("team-a", "a", "app", "a"), wl("team-b", "b", "app", "b"), wl("team-c", "c", "app", "c")
	edges := []model.Edge{
		edge(a, gw, model.ProtocolTCP, 9091), edge(b, gw, model.ProtocolTCP, 9091), edge(c, gw, model.ProtocolTCP, 9091),
		edge(a, gw, model.ProtocolTCP, 9100), // an admin port, one client
	}
	nss := func(lc string) []Namespace {
		var out []Namespace
		for _, n := range []string{"team-a", "team-b", "team-c", "monitoring"} {
			l := map[string]string{LabelNamespaceName: n}
			if n != "monitoring" && lc != "" {
				l["kind"] = lc
			}
			out = append(out, Namespace{Name: n, Labels: l})
		}
		return out
	}
	// Clients' namespaces share kind=tenant: namespaces by that label.
	segs := ProposeWith(edges, Known{Namespaces: nss("tenant")}, ProposeOptions{})
	r := ruleByID(t, segs, "monitoring", "gateway", model.Ingress, "from-namespaces-kind-tenant")
	if w := r.Provenance.Widened; w == nil || !slices.Equal(w.Kinds, []v1alpha1.Widening{v1alpha1.WideningSharedServer}) ||
		!slices.Equal(w.Clients, []string{"team-a/a", "team-b/b", "team-c/c"}) {
		t.Errorf("shared rule provenance: %+v", r.Provenance.Widened)
	}
	if got := portsString(r.Ports); got != "TCP/9091" {
		t.Errorf("shared rule ports %s", got)
	}
	if sel := r.Peers[0].NamespaceSelector; sel == nil || metav1.FormatLabelSelector(sel) != "kind=tenant" || r.Peers[0].PodSelector != nil {
		t.Errorf("shared rule peer %+v", r.Peers[0])
	}
	if got := portsString(ruleByID(t, segs, "monitoring", "gateway", model.Ingress, "from-team-a-a").Ports); got != "TCP/9100" {
		t.Errorf("one-client port rule: %s", got)
	}
	for _, s := range segs {
		if s.Name == "gateway" && !strings.Contains(s.Annotations[AnnotationReview], "from-namespaces-kind-tenant: shared-server") {
			t.Errorf("review annotation %q", s.Annotations[AnnotationReview])
		}
	}

	// Nothing shared between their namespaces: any namespace. Enforced, a
	// new client reaches 9091, not 9100.
	segs = ProposeWith(edges, Known{Namespaces: nss("")}, ProposeOptions{})
	r = ruleByID(t, segs, "monitoring", "gateway", model.Ingress, "from-any-namespace")
	if sel := r.Peers[0].NamespaceSelector; sel == nil || len(sel.MatchLabels)+len(sel.MatchExpressions) != 0 {
		t.Errorf("cluster-wide rule peer %+v", r.Peers[0])
	}
	w := &MemWorld{}
	for _, n := range nss("") {
		_ = w.AddNamespace(n)
	}
	_ = w.AddNamespace(Namespace{Name: "new", Labels: map[string]string{LabelNamespaceName: "new"}})
	pods := map[string]model.Identity{"gw": gw, "new": wl("new", "newcomer", "app", "newcomer")}
	for n, i := range pods {
		if err := w.AddPod(Pod{Namespace: i.Namespace, Name: n, Labels: i.Labels}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range segs {
		segs[i].Spec.Mode = model.ModeEnforce
	}
	set, err := NewPolicySet(nil, segs)
	if err != nil {
		t.Fatal(err)
	}
	for port, want := range map[int32]model.Verdict{9091: model.VerdictAllow, 9100: model.VerdictDeny} {
		conn := Connection{From: ConnEnd{Pod: "new/new"}, To: ConnEnd{Pod: "monitoring/gw"}, Protocol: model.ProtocolTCP, Port: port}
		if v := Evaluate(w, set, conn); v.Action != want {
			t.Errorf("newcomer -> gateway %d: %s, want %s (%s)", port, v.Action, want, v.Reason())
		}
	}

	// Two clients only: below the threshold, one rule per client; a
	// higher threshold too.
	for _, c := range []struct {
		edges []model.Edge
		opts  ProposeOptions
	}{{edges[:2], ProposeOptions{}}, {edges, ProposeOptions{SharedMinClients: 4}}} {
		for _, s := range ProposeWith(c.edges, Known{}, c.opts) {
			for _, r := range s.Spec.Ingress {
				if r.Provenance.Widened != nil {
					t.Errorf("%s: rule %s widened below the threshold: %+v", s.Name, r.ID, r.Provenance.Widened)
				}
			}
		}
	}

	// Clients all in the server's namespace, most of its workloads: any
	// pod of the namespace.
	x, y, z, srv := wl("ns", "x", "app", "x"), wl("ns", "y", "app", "y"), wl("ns", "z", "app", "z"), wl("ns", "log", "app", "log")
	segs = ProposeWith([]model.Edge{edge(x, srv, model.ProtocolUDP, 514), edge(y, srv, model.ProtocolUDP, 514), edge(z, srv, model.ProtocolUDP, 514)}, Known{}, ProposeOptions{})
	r = ruleByID(t, segs, "ns", "log", model.Ingress, "from-namespace")
	if r.Peers[0].NamespaceSelector != nil || r.Peers[0].PodSelector == nil || len(r.Peers[0].PodSelector.MatchLabels) != 0 {
		t.Errorf("namespace-wide rule peer %+v", r.Peers[0])
	}
}

// TestProposeDNS checks that DNS is reachable by every proposed workload
// on UDP and TCP 53, and from any pod, though one client resolved.
func TestProposeDNS(t *testing.T) {
	dns := wl("kube-system", "coredns", "k8s-app", "kube-dns")
	a, b := wl("shop", "a", "app", "a"), wl("shop", "b", "app", "b")
	edges := []model.Edge{edge(a, dns, model.ProtocolUDP, 53), edge(a, b, model.ProtocolTCP, 80)}
	segs := ProposeWith(edges, Known{}, ProposeOptions{})
	r := ruleByID(t, segs, "kube-system", "coredns", model.Ingress, "from-any-namespace-dns")
	if got := portsString(r.Ports); got != "TCP/53,UDP/53" || r.Peers[0].NamespaceSelector == nil || !slices.Equal(r.Provenance.Widened.Clients, []string{"shop/a"}) {
		t.Errorf("dns ingress %s %+v %+v", got, r.Peers[0], r.Provenance.Widened)
	}
	for _, name := range []string{"a", "b"} {
		r := ruleByID(t, segs, "shop", name, model.Egress, "to-kube-system-coredns")
		if got := portsString(r.Ports); got != "TCP/53,UDP/53" || r.Provenance.Widened == nil || r.Provenance.Widened.Kinds[0] != v1alpha1.WideningDNS {
			t.Errorf("%s egress to dns: %s %+v", name, got, r.Provenance.Widened)
		}
	}
	// A DNS server found by its declared port; NoWidening proposes exactly
	// what was seen.
	resolver := wl("infra", "unbound", "app", "unbound")
	segs = ProposeWith([]model.Edge{edge(a, b, model.ProtocolTCP, 80)},
		Known{Workloads: []KnownWorkload{{Identity: resolver, Ports: []model.ContainerPort{{Name: "dns", Port: 53, Protocol: model.ProtocolUDP}}}}}, ProposeOptions{})
	ruleByID(t, segs, "shop", "b", model.Egress, "to-infra-unbound")
	for _, s := range ProposeWith(edges, Known{}, ProposeOptions{NoWidening: true}) {
		for _, r := range append(s.Spec.Ingress, s.Spec.Egress...) {
			if r.Provenance.Widened != nil || strings.Contains(portsString(r.Ports), "TCP/53") {
				t.Errorf("NoWidening: %s %s widened: %s %+v", s.Name, r.ID, portsString(r.Ports), r.Provenance.Widened)
			}
		}
	}
}

// TestProposePortRanges checks ranges: over declared ports only where the
// server declares ports, with small gaps where it declares none, single
// ports below the minimum, never beyond the lowest and highest seen.
func TestProposePortRanges(t *testing.T) {
	cl, srv := wl("a", "client", "app", "client"), wl("a", "server", "app", "server")
	ports := func(ns ...int) []model.Edge {
		var out []model.Edge
		for _, n := range ns {
			out = append(out, edge(cl, srv, model.ProtocolTCP, uint16(n)))
		}
		return out
	}
	declare := func(lo, hi int, more ...int) Known {
		var ps []model.ContainerPort
		for n := lo; n <= hi; n++ {
			ps = append(ps, model.ContainerPort{Port: int32(n), Protocol: model.ProtocolTCP})
		}
		for _, n := range more {
			ps = append(ps, model.ContainerPort{Port: int32(n), Protocol: model.ProtocolTCP})
		}
		return Known{Workloads: []KnownWorkload{{Identity: srv, Ports: ps}}}
	}
	var spread []int
	for n := 8000; n < 8100; n += 3 { // 34 ports
		spread = append(spread, n)
	}
	cases := []struct {
		name  string
		edges []model.Edge
		known Known
		want  string
	}{
		{"34 spread ports, server declares 8000-8099", ports(spread...), declare(8000, 8099), "TCP/8000-8099"},
		{"declared ports with a hole: two ranges", ports(8000, 8001, 8002, 8010, 8011, 8012), declare(8000, 8005, 8010, 8011, 8012), "TCP/8000-8002,TCP/8010-8012"},
		{"declared but seen ports outside them stay single", ports(8000, 8001, 8002, 9000), declare(8000, 8002), "TCP/8000-8002,TCP/9000"},
		{"no declared ports: gaps up to 4", ports(8000, 8003, 8008, 8020), Known{}, "TCP/8000-8008,TCP/8020"},
		{"two ports stay single", ports(8000, 8001), Known{}, "TCP/8000,TCP/8001"},
		{"no declared ports, far apart", ports(1000, 2000, 3000), Known{}, "TCP/1000,TCP/2000,TCP/3000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			segs := ProposeWith(c.edges, c.known, ProposeOptions{})
			for _, r := range []v1alpha1.Rule{ruleByID(t, segs, "a", "server", model.Ingress, "from-client"), ruleByID(t, segs, "a", "client", model.Egress, "to-server")} {
				if got := portsString(r.Ports); got != c.want {
					t.Errorf("rule %s ports %s, want %s", r.ID, got, c.want)
				}
				ranged := strings.Contains(c.want, "-")
				if w := r.Provenance.Widened; ranged != (w != nil) || (ranged && (!slices.Contains(w.Kinds, v1alpha1.WideningPortRange) || len(w.SeenPorts) != len(c.edges))) {
					t.Errorf("rule %s widened %+v", r.ID, w)
				}
			}
			if _, err := ParseObjects("proposal", marshalSegments(t, segs)); err != nil {
				t.Errorf("proposal does not validate: %v", err)
			}
		})
	}
}

// TestProposeRangesSkipRefused: ports whose connections only failed (a
// scan of a server that declares nothing) are never learned and never
// inside a range: the range stops at them.
func TestProposeRangesSkipRefused(t *testing.T) {
	cl, srv := wl("a", "client", "app", "client"), wl("a", "server", "app", "server")
	var edges, failed []model.Edge
	for _, n := range []uint16{8000, 8001, 8002, 8006, 8007, 8008} {
		edges = append(edges, edge(cl, srv, model.ProtocolTCP, n))
	}
	for _, n := range []uint16{8004, 8005} {
		e := edge(cl, srv, model.ProtocolTCP, n)
		e.Failed, e.Reset = e.Flows, e.Flows
		failed = append(failed, e)
	}
	// The failed edges reach the proposer too (offline use): never learned.
	segs := ProposeWith(append(edges, failed...), Known{Failed: failed}, ProposeOptions{})
	if got := portsString(ruleByID(t, segs, "a", "server", model.Ingress, "from-client").Ports); got != "TCP/8000-8002,TCP/8006-8008" {
		t.Errorf("ports %s, want two ranges around the refused 8004-8005", got)
	}
	// Handed in only as observed edges (Propose, offline `policy propose
	// --edges`), they stop the ranges just the same.
	segs = Propose(append(edges, failed...), nil)
	if got := portsString(ruleByID(t, segs, "a", "server", model.Ingress, "from-client").Ports); got != "TCP/8000-8002,TCP/8006-8008" {
		t.Errorf("Propose: ports %s, want two ranges around the refused 8004-8005", got)
	}
	// Without knowing them, the gap rule joins everything.
	segs = ProposeWith(edges, Known{}, ProposeOptions{})
	if got := portsString(ruleByID(t, segs, "a", "server", model.Ingress, "from-client").Ports); got != "TCP/8000-8008" {
		t.Errorf("ports %s", got)
	}
}

// TestProposeOptionsValidate names every bad field.
func TestProposeOptionsValidate(t *testing.T) {
	err := ProposeOptions{SharedMinClients: -1, SharedMinShare: 2, RangeMinPorts: 1, RangeMaxGap: -3, DNSLabels: []map[string]string{{}}}.Validate()
	for _, f := range []string{"sharedMinClients", "sharedMinShare", "rangeMinPorts", "rangeMaxGap", "dnsLabels[0]"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("Validate: %v; want %s named", err, f)
		}
	}
	if err := DefaultProposeOptions().Validate(); err != nil {
		t.Error(err)
	}
	// NaN compares false with everything: it would make no port shared
	// while config show prints it as if it were a setting.
	if err := (ProposeOptions{SharedMinShare: math.NaN()}).Validate(); err == nil || !strings.Contains(err.Error(), "sharedMinShare") {
		t.Errorf("Validate(sharedMinShare NaN): %v; want sharedMinShare named", err)
	}
}
