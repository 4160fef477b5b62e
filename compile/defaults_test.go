package compile

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// shopWithNetworkPolicies is the namespace shop (api, db, web) with a
// default-deny NetworkPolicy (podSelector: {}, ingress), one that lets api
// reach db on 5432 and one that isolates db's egress; monitoring has
// prometheus and no policy.
func shopWithNetworkPolicies(t *testing.T) CompileInput {
	t.Helper()
	pod := func(ns, name, ip string) policies.Pod {
		return policies.Pod{Namespace: ns, Name: name, Labels: map[string]string{"app": name}, IPs: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	tcp := networkingv1.NetworkPolicyPort{Port: ptrIntStr(5432)}
	nps := []networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default-deny"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-to-db"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}}}, Ports: []networkingv1.NetworkPolicyPort{tcp}}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-no-egress"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}}},
	}
	set, err := policies.InForce{NetworkPolicies: nps}.Set()
	if err != nil {
		t.Fatal(err)
	}
	return CompileInput{
		Namespaces: []policies.Namespace{{Name: "shop"}, {Name: "monitoring"}},
		Pods:       []policies.Pod{pod("shop", "api", "198.18.0.2"), pod("shop", "db", "198.18.0.3"), pod("shop", "web", "198.18.0.4"), pod("monitoring", "prometheus", "198.18.0.5")},
		Policies:   set,
	}
}

func npRef(ns, name string) policies.PolicyRef {
	return policies.PolicyRef{Kind: "NetworkPolicy", Namespace: ns, Name: name}
}

// TestDefaultDenyNetworkPolicy: a NetworkPolicy that selects every pod of
// a namespace (podSelector: {}) isolates each of them; pods of other
// namespaces keep observe rule sets.
func TestDefaultDenyNetworkPolicy(t *testing.T) {
	c, err := NewCompiler(shopWithNetworkPolicies(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"shop/api", "shop/db", "shop/web"} {
		rs := c.For(k)
		if rs.Mode != model.ModeEnforce {
			t.Errorf("%s: mode %s, want enforce", k, rs.Mode)
		}
		if err := rs.Validate(); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if got := c.For("shop/web").Ingress; len(got) != 0 {
		t.Errorf("shop/web ingress under a default deny = %v, want no entry", got)
	}
	db := c.For("shop/db")
	if len(db.Ingress) != 1 || db.Ingress[0].Peer != netip.MustParsePrefix("198.18.0.2/32") || db.Ingress[0].Port != 5432 || db.Ingress[0].RuleID != "np/shop/api-to-db/ingress-0" {
		t.Errorf("shop/db ingress = %v, want api on 5432 by np/shop/api-to-db/ingress-0", db.Ingress)
	}
	if len(db.Egress) != 0 {
		t.Errorf("shop/db egress = %v, want none (isolated by db-no-egress)", db.Egress)
	}
	if rs := c.For("monitoring/prometheus"); rs.Mode != model.ModeObserve {
		t.Errorf("monitoring/prometheus: mode %s, want observe", rs.Mode)
	}
}

// TestDefaultIDsNameTheIsolatingPolicies: the default verdict of an
// isolated direction carries an id that names the policies that isolated
// it: the policy's own id for one, a short id the table expands for
// several; a direction no policy isolates keeps the rule set's name.
func TestDefaultIDsNameTheIsolatingPolicies(t *testing.T) {
	c, err := NewCompiler(shopWithNetworkPolicies(t))
	if err != nil {
		t.Fatal(err)
	}
	web := c.For("shop/web")
	if got, want := web.DefaultID(model.Ingress), "np/shop/default-deny/default.ingress"; got != want {
		t.Errorf("shop/web ingress default = %q, want %q", got, want)
	}
	if got := web.DefaultID(model.Egress); got != "shop/web" {
		t.Errorf("shop/web egress (not isolated) default = %q, want the rule set name", got)
	}
	db := c.For("shop/db")
	multi := db.DefaultID(model.Ingress)
	if !strings.HasPrefix(multi, "default/shop/ingress.") {
		t.Errorf("shop/db ingress default = %q, want default/shop/ingress.<hash>", multi)
	}
	if got, want := db.DefaultID(model.Egress), "np/shop/db-no-egress/default.egress"; got != want {
		t.Errorf("shop/db egress default = %q, want %q", got, want)
	}
	table := c.Defaults()
	want := map[string][]policies.PolicyRef{
		"np/shop/default-deny/default.ingress": {npRef("shop", "default-deny")},
		"np/shop/db-no-egress/default.egress":  {npRef("shop", "db-no-egress")},
		multi:                                  {npRef("shop", "api-to-db"), npRef("shop", "default-deny")},
	}
	if d := cmp.Diff(want, table); d != "" {
		t.Errorf("defaults table (-want +got):\n%s", d)
	}
	if got := DefaultID(model.Ingress, []policies.PolicyRef{npRef("shop", "default-deny"), npRef("shop", "api-to-db")}); got != multi {
		t.Errorf("DefaultID depends on order: %q vs %q", got, multi)
	}
}

// TestDefaultIDsRoundTripVerdictLog checks every shape of default id over
// the longest names the API admits: one NetworkPolicy, one NanoSegment,
// several policies, both directions; each obeys the verdict-log alphabet
// and comes back from Parse(Format(verdict, id)) unchanged.
func TestDefaultIDsRoundTripVerdictLog(t *testing.T) {
	label63 := "a" + strings.Repeat("-z9", 20) + "b"
	subdomain := strings.Repeat(label63+".", 3) + label63[:61]
	var ids []string
	for _, dir := range model.Directions {
		for _, ns := range []string{"a", "shop", label63} {
			for _, name := range []string{"a", "default-deny", subdomain} {
				np := npRef(ns, name)
				seg := policies.PolicyRef{Kind: v1alpha1.Kind, Namespace: ns, Name: name}
				ids = append(ids, DefaultID(dir, []policies.PolicyRef{np}), DefaultID(dir, []policies.PolicyRef{seg}),
					DefaultID(dir, []policies.PolicyRef{np, seg}), DefaultID(dir, []policies.PolicyRef{np, seg, npRef(ns, "x")}))
			}
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
		if err := verdictlog.ValidID(id); err != nil {
			t.Errorf("default id %q: %v", id, err)
			continue
		}
		for _, v := range model.Verdicts {
			gv, gid, err := verdictlog.Parse(verdictlog.Format(v, id) + "\x00")
			if err != nil || gv != v || gid != id {
				t.Errorf("Parse(Format(%s, %q)) = %q, %q, %v", v, id, gv, gid, err)
			}
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("%d default ids, %d distinct: different policies share an id", len(ids), len(seen))
	}
}

func ptrIntStr(n int) *intstr.IntOrString {
	v := intstr.FromInt32(int32(n))
	return &v
}
