package controller

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// verifyWorld: shop/web (2 replicas, 80/TCP), shop/api (8080/TCP,
// 9090/TCP), shop/dns (53/UDP); api admits only web on 8080, in enforce.
func verifyWorld(t *testing.T) ([]model.Endpoint, *policies.MemWorld, policies.PolicySet) {
	t.Helper()
	ep := func(netns, w string, last byte, ports ...model.ContainerPort) model.Endpoint {
		return model.Endpoint{Netns: netns, Path: "/run/netns/" + netns, Namespace: "shop", Workload: w, Labels: map[string]string{"app": w},
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 0, last}), netip.MustParseAddr("2001:db8::" + string('a'+rune(last)))}, Ports: ports}
	}
	eps := []model.Endpoint{
		ep("web-0", "web", 1, model.ContainerPort{Port: 80, Protocol: "TCP"}),
		ep("web-1", "web", 2, model.ContainerPort{Port: 80, Protocol: "TCP"}),
		ep("api-0", "api", 3, model.ContainerPort{Port: 8080, Protocol: "TCP"}, model.ContainerPort{Port: 9090, Protocol: "TCP"}),
		ep("dns-0", "dns", 4, model.ContainerPort{Port: 53, Protocol: "UDP"}),
	}
	inv := inventory.NewIndex(eps, map[string]map[string]string{"shop": {"kubernetes.io/metadata.name": "shop"}}, nil)
	w, err := inv.World(nil)
	if err != nil {
		t.Fatal(err)
	}
	port := intstr.FromInt32(8080)
	set, err := policies.NewPolicySet(nil, []v1alpha1.NanoSegment{{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "shop"},
		Spec: v1alpha1.NanoSegmentSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}, Mode: model.ModeEnforce,
			Ingress: []v1alpha1.Rule{{ID: "from-web", Peers: []v1alpha1.Peer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []v1alpha1.Port{{Protocol: "TCP", Port: &port}}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return eps, w, set
}

func TestPlanProbesMatrix(t *testing.T) {
	eps, w, set := verifyWorld(t)
	plans, matrix, _ := planProbes(eps, w, set, "", 100)
	// sources web, api, dns × destination ports: web 80 (web→web replica to
	// replica), api 8080 and 9090, dns 53; api→api and dns→dns skipped.
	if want := 3*1 + 2*2 + 2*1; matrix != want || len(plans) != want {
		t.Fatalf("matrix %d, plans %d, want %d", matrix, len(plans), want)
	}
	for _, p := range plans {
		if p.Source == p.Destination && p.SourceNetns == p.DestNetns {
			t.Errorf("probe from an endpoint to itself: %+v", p.Probe)
		}
	}
	allowed, denied := 0, 0
	for _, p := range plans {
		if p.ExpectReach {
			allowed++
		} else {
			denied++
			if p.Destination != "shop/api" || (p.Source == "shop/web" && p.Port == 8080) {
				t.Errorf("unexpected denial %+v", p.Probe)
			}
		}
	}
	// Denied: web→api:9090, dns→api:8080, dns→api:9090.
	if denied != 3 || allowed != 6 {
		t.Errorf("allowed %d, denied %d; want 6 and 3", allowed, denied)
	}
	again, _, _ := planProbes(eps, w, set, "", 100)
	if diff := cmp.Diff(probesOf(plans), probesOf(again)); diff != "" {
		t.Errorf("planning is not deterministic (-first +second):\n%s", diff)
	}
	scoped, m, _ := planProbes(eps, w, set, "shop/dns", 100)
	for _, p := range scoped {
		if p.Source != "shop/dns" && p.Destination != "shop/dns" {
			t.Errorf("out-of-scope probe %+v", p.Probe)
		}
	}
	// dns → web:80, api:8080, api:9090; web → dns:53; api → dns:53.
	if m != 5 {
		t.Errorf("scoped matrix %d, want 5", m)
	}
}

func TestPlanProbesSamplesBothClasses(t *testing.T) {
	eps, w, set := verifyWorld(t)
	plans, matrix, _ := planProbes(eps, w, set, "", 4)
	if matrix != 9 || len(plans) != 4 {
		t.Fatalf("matrix %d, plans %d", matrix, len(plans))
	}
	allowed := 0
	for _, p := range plans {
		if p.ExpectReach {
			allowed++
		}
	}
	if allowed != 2 {
		t.Errorf("sample has %d allowed of 4, want 2", allowed)
	}
	// With a budget larger than one class, the other takes the rest.
	plans, _, _ = planProbes(eps, w, set, "", 8)
	denied := 0
	for _, p := range plans {
		if !p.ExpectReach {
			denied++
		}
	}
	if len(plans) != 8 || denied != 3 {
		t.Errorf("budget 8: %d plans, %d denied; want 8 and 3", len(plans), denied)
	}
}

func TestVerifyRequestBounds(t *testing.T) {
	r := VerifyRequest{}
	if err := r.normalize(); err != nil || r.MaxProbes != DefaultMaxProbes || r.TimeoutMS != 1000 || r.Parallel != DefaultParallel {
		t.Fatalf("defaults %+v %v", r, err)
	}
	for _, bad := range []VerifyRequest{{MaxProbes: -1}, {MaxProbes: MaxMaxProbes + 1}, {TimeoutMS: 5}, {Parallel: 100}} {
		if err := bad.normalize(); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
	if !inScope("shop", "shop/api") || inScope("shop", "shopping/api") || !inScope("shop/api", "shop/api") || inScope("shop/api", "shop/db") {
		t.Error("inScope")
	}
}

func probesOf(ps []probePlan) []evidence.Probe {
	out := make([]evidence.Probe, len(ps))
	for i, p := range ps {
		out[i] = p.Probe
	}
	return out
}
