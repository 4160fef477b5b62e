package compile

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

func protoNumber(p model.Protocol) uint8 {
	switch p {
	case "UDP":
		return 17
	case "SCTP":
		return 132
	}
	return 6
}

// allows is the dataplane's answer for one direction of a rule set.
func allows(rs dataplane.RuleSet, ok bool, dir model.Direction, peer netip.Addr, proto model.Protocol, port int32) bool {
	if !ok || rs.Mode == model.ModeObserve {
		return true
	}
	_, allowed := rs.Allows(dir, peer, protoNumber(proto), uint16(port))
	return allowed
}

func addrOf(w policies.World, ep string) (netip.Addr, string) {
	if a, err := netip.ParseAddr(ep); err == nil {
		if p, ok := w.PodByIP(a); ok {
			return a, p.Key()
		}
		return a, ""
	}
	e, _ := policies.ParseConnEnd(ep)
	ns, name, _ := stringsCut(e.Pod)
	p, _ := w.Pod(ns, name)
	return p.IPs[0], p.Key()
}

func stringsCut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// TestCompileMatchesEvaluate compiles every shared case, in every step, and
// checks that the rule sets decide every connection between its pods and
// some outside addresses exactly as policies.Evaluate does.
func TestCompileMatchesEvaluate(t *testing.T) {
	files, _ := filepath.Glob("../policies/testdata/cases/*.yaml")
	if len(files) < 5 {
		t.Fatalf("found %d cases", len(files))
	}
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
			comp, err := NewCompiler(CompileInput{Namespaces: st.World.Namespaces(), Pods: st.World.Pods(), Policies: set})
			if err != nil {
				t.Fatal(err)
			}
			for _, rs := range comp.RuleSets() {
				if err := rs.Validate(); err != nil {
					t.Errorf("%s: invalid rule set: %v", f, err)
				}
			}
			var eps []string
			for _, p := range st.World.Pods() {
				if len(p.IPs) > 0 {
					eps = append(eps, p.Key())
				}
			}
			eps = append(eps, "198.19.0.10", "198.18.2.7")
			for _, from := range eps {
				for _, to := range eps {
					for _, port := range []int32{53, 80, 666, 3868, 5432, 7999, 8000, 8010, 8011, 8080} {
						for _, proto := range []model.Protocol{"TCP", "UDP", "SCTP"} {
							fa, fk := addrOf(st.World, from)
							ta, tk := addrOf(st.World, to)
							conn := policies.Connection{From: policies.ConnEnd{IP: fa}, To: policies.ConnEnd{IP: ta}, Protocol: proto, Port: port}
							want := policies.Evaluate(st.World, set, conn).Action == model.VerdictAllow
							srs, sok := comp.RuleSet(fk)
							drs, dok := comp.RuleSet(tk)
							got := allows(srs, sok, model.Egress, ta, proto, port) && allows(drs, dok, model.Ingress, fa, proto, port)
							if got != want {
								t.Errorf("%s step %d: %s: rule sets say %v, Evaluate %v", filepath.Base(f), step, conn, got, want)
							}
						}
					}
				}
			}
		}
	}
}

// synthetic builds nsCount namespaces of podsPerNS pods each, and per
// namespace policiesPerNS NetworkPolicies: app-i accepts app-(i+1) on a
// named port and TCP 8000-8010, and may reach kube-dns in any namespace.
func synthetic(nsCount, podsPerNS, policiesPerNS int) CompileInput {
	var in CompileInput
	var nps []string
	_ = nps
	var objs []policies.Object
	for n := range nsCount {
		ns := fmt.Sprintf("ns-%d", n)
		in.Namespaces = append(in.Namespaces, policies.Namespace{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns, "team": fmt.Sprintf("t%d", n%10)}})
		for i := range podsPerNS {
			app := fmt.Sprintf("app-%d", i%policiesPerNS)
			labels := map[string]string{"app": app}
			if i == 0 {
				labels = map[string]string{"k8s-app": "kube-dns"}
			}
			a := netip.AddrFrom4([4]byte{198, 18, byte(n), byte(i)})
			in.Pods = append(in.Pods, policies.Pod{Namespace: ns, Name: fmt.Sprintf("p-%d", i), Labels: labels, IPs: []netip.Addr{a},
				Ports: []model.ContainerPort{{Name: "http", Port: int32(8080 + i%3), Protocol: "TCP"}}})
		}
		for i := range policiesPerNS {
			doc := fmt.Sprintf(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np-%d, namespace: %s}
spec:
  podSelector: {matchLabels: {app: app-%d}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: app-%d}}}, {namespaceSelector: {matchLabels: {team: t1}}, podSelector: {matchLabels: {app: app-%d}}}]
      ports: [{port: http}, {port: 8000, endPort: 8010}]
  egress:
    - to: [{namespaceSelector: {}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
      ports: [{protocol: UDP, port: 53}]
    - to: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.3.0/24]}}]
`, i, ns, i, (i+1)%policiesPerNS, i)
			o, err := policies.ParseObjects("synthetic", []byte(doc))
			if err != nil {
				panic(err)
			}
			objs = append(objs, o...)
		}
	}
	set, err := policies.NewPolicySet(policies.SplitObjects(objs))
	if err != nil {
		panic(err)
	}
	in.Policies = set
	return in
}

// TestIncrementalMatchesFull changes pods one at a time (labels, address,
// deletion, addition) and checks the incremental rule sets equal a full
// recompile, and that only affected rule sets were rebuilt.
func TestIncrementalMatchesFull(t *testing.T) {
	in := synthetic(4, 30, 5)
	comp, err := NewCompiler(in)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pods := map[string]policies.Pod{}
	for _, p := range in.Pods {
		pods[p.Key()] = p
	}
	for step := range 60 {
		if changed, relabelled := randomPodChange(t, comp, in.Pods, pods, rng, step); relabelled && len(changed) == len(pods) {
			t.Errorf("step %d: every rule set rebuilt", step)
		}
		var all []policies.Pod
		for _, p := range pods {
			all = append(all, p)
		}
		full, err := NewCompiler(CompileInput{Namespaces: in.Namespaces, Pods: all, Policies: in.Policies})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(full.RuleSets(), comp.RuleSets(), cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
			t.Fatalf("step %d: incremental differs from full (-full +incremental):\n%s", step, d)
		}
	}
}

func TestSubtractPrefixes(t *testing.T) {
	got := subtractPrefixes(netip.MustParsePrefix("198.19.0.0/16"), []netip.Prefix{netip.MustParsePrefix("198.19.3.0/24")})
	for _, a := range []string{"198.19.0.1", "198.19.2.255", "198.19.4.0", "198.19.255.255"} {
		in := false
		for _, p := range got {
			in = in || p.Contains(netip.MustParseAddr(a))
		}
		if !in {
			t.Errorf("%s not covered by %v", a, got)
		}
	}
	for _, p := range got {
		if p.Contains(netip.MustParseAddr("198.19.3.7")) {
			t.Errorf("%v covers an excepted address", p)
		}
	}
	if len(got) != 8 {
		t.Errorf("got %d prefixes %v, want 8", len(got), got)
	}
	v6 := subtractPrefixes(netip.MustParsePrefix("2001:db8::/32"), []netip.Prefix{netip.MustParsePrefix("2001:db8::/33")})
	if len(v6) != 1 || v6[0].String() != "2001:db8:8000::/33" {
		t.Errorf("v6 = %v", v6)
	}
}

// TestSelected: a pod is selected by a policy in force of any mode,
// observe included, and stops being selected when its labels change;
// a pod no policy selects is not, although it has a rule set (observe).
func TestSelected(t *testing.T) {
	seg := func(name string, mode model.Mode) v1alpha1.NanoSegment {
		objs, err := policies.ParseObjects("p.yaml", []byte(`apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: `+name+`, namespace: shop}
spec:
  selector: {matchLabels: {app: `+name+`}}
  mode: `+string(mode)+`
  policyTypes: [Ingress]
`))
		if err != nil {
			t.Fatal(err)
		}
		_, segs := policies.SplitObjects(objs)
		return segs[0]
	}
	set, err := policies.ActiveSet([]v1alpha1.NanoSegment{seg("db", model.ModeEnforce), seg("web", model.ModeObserve)})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(name, app string, last byte) policies.Pod {
		return policies.Pod{Namespace: "shop", Name: name, Labels: map[string]string{"app": app}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 0, last})}}
	}
	c, err := NewCompiler(CompileInput{Namespaces: []policies.Namespace{{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}},
		Pods: []policies.Pod{pod("db-0", "db", 1), pod("web-0", "web", 2), pod("cache-0", "cache", 3)}, Policies: set})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"shop/db-0": true, "shop/web-0": true, "shop/cache-0": false, "shop/nosuch": false} {
		if got := c.Selected(key); got != want {
			t.Errorf("Selected(%s) = %v, want %v", key, got, want)
		}
	}
	if rs := c.For("shop/cache-0"); rs.Mode != model.ModeObserve {
		t.Errorf("unselected pod's rule set: %+v", rs)
	}
	if _, err := c.UpdatePod(pod("db-0", "other", 1)); err != nil {
		t.Fatal(err)
	}
	if c.Selected("shop/db-0") {
		t.Errorf("db-0 still selected after its labels changed")
	}
}

// randomPodChange makes one random change to pods (the current pods by
// key) and hands it to comp: a pod of all that is gone comes back, every
// 7th step one is deleted, otherwise one gets a random app label (and
// every 3rd step a new address). It returns the rule sets the compiler
// changed and whether the change was a relabelling (the case that must
// not rebuild every rule set).
func randomPodChange(t *testing.T, comp *Compiler, all []policies.Pod, pods map[string]policies.Pod, rng *rand.Rand, step int) ([]string, bool) {
	t.Helper()
	p := all[rng.IntN(len(all))]
	cur, exists := pods[p.Key()]
	switch {
	case !exists:
		pods[p.Key()] = p
		if _, err := comp.UpdatePod(p); err != nil {
			t.Fatal(err)
		}
	case step%7 == 0:
		delete(pods, p.Key())
		if _, err := comp.DeletePod(p.Key()); err != nil {
			t.Fatal(err)
		}
	default:
		cur.Labels = map[string]string{"app": fmt.Sprintf("app-%d", rng.IntN(6))}
		if step%3 == 0 {
			cur.IPs = []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 200, byte(step)})}
		}
		pods[cur.Key()] = cur
		changed, err := comp.UpdatePod(cur)
		if err != nil {
			t.Fatal(err)
		}
		return changed, true
	}
	return nil, false
}

// TestNewCompilerRefusesClusterPolicies: rule sets do not express
// ClusterNetworkPolicy tiers yet, so a set holding one is refused rather
// than compiled without it.
func TestNewCompilerRefusesClusterPolicies(t *testing.T) {
	objs, err := policies.ParseObjects("cnp.yaml", []byte(`apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policies.NewObjectSet(objs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCompiler(CompileInput{Policies: set}); err == nil || !strings.Contains(err.Error(), "ClusterNetworkPolicy guard: ClusterNetworkPolicies are not compiled into rule sets yet") {
		t.Fatalf("NewCompiler: %v", err)
	}
}
