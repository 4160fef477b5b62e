package policies

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// benchSet makes n NanoSegments in namespace "a", each selecting app=w<i%50>
// and allowing ingress from app=w<(i+1)%50> on TCP 8000+i.
func benchSet(b *testing.B, n int) (*MemWorld, PolicySet) {
	b.Helper()
	w := &MemWorld{}
	_ = w.AddNamespace(Namespace{Name: "a", Labels: map[string]string{LabelNamespaceName: "a"}})
	for i := range 500 {
		_ = w.AddPod(Pod{Namespace: "a", Name: fmt.Sprintf("p%d", i), Labels: map[string]string{"app": fmt.Sprintf("w%d", i%50), "pod-template-hash": "x"},
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})}})
	}
	segs := make([]v1alpha1.NanoSegment, n)
	for i := range segs {
		port := intstr.FromInt32(int32(8000 + i%1000))
		segs[i] = v1alpha1.NanoSegment{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", i), Namespace: "a"},
			Spec: v1alpha1.NanoSegmentSpec{
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("w%d", i%50)}},
				Mode:     model.ModeEnforce,
				Ingress: []v1alpha1.Rule{{ID: "r", Peers: []v1alpha1.Peer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("w%d", (i+1)%50)}}}},
					Ports: []v1alpha1.Port{{Protocol: "TCP", Port: &port}}}},
			},
		}
	}
	set, err := NewPolicySet(nil, segs)
	if err != nil {
		b.Fatal(err)
	}
	return w, set
}

// BenchmarkEvaluate evaluates one connection against 100 and 1000 policies,
// all in the destination's namespace.
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			w, set := benchSet(b, n)
			c := Connection{From: ConnEnd{Pod: "a/p1"}, To: ConnEnd{Pod: "a/p0"}, Protocol: "TCP", Port: 8000}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if v := Evaluate(w, set, c); v.Action != model.VerdictAllow {
					b.Fatal(v.Reason())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/conn")
		})
	}
}

// BenchmarkEvaluateClusterTiers evaluates the connection of
// BenchmarkEvaluate (1000 nanosegments) with ClusterNetworkPolicies in
// front: 40 Admin policies of 25 rules each (1000 rules, none matching)
// selecting both pods, a last Admin Pass, and 40 Baseline policies behind.
// Compare with the baseline (no cluster policies) of the same run.
func BenchmarkEvaluateClusterTiers(b *testing.B) {
	for _, admin := range []int{0, 40} {
		b.Run(fmt.Sprintf("policies=1000/adminPolicies=%d", admin), func(b *testing.B) {
			w, set := benchSet(b, 1000)
			var cps []*ClusterPolicy
			for i := range admin {
				p := &cnpv1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("admin-%d", i)},
					Spec: cnpv1alpha2.Spec{Tier: cnpv1alpha2.TierAdmin, Priority: int32(i), Subject: cnpv1alpha2.Subject{Namespaces: &metav1.LabelSelector{}}}}
				for r := range 25 {
					p.Spec.Ingress = append(p.Spec.Ingress, cnpv1alpha2.IngressRule{Action: cnpv1alpha2.ActionDeny,
						From: []cnpv1alpha2.IngressPeer{{Pods: &cnpv1alpha2.NamespacedPod{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("none-%d", r)}}}}}})
					p.Spec.Egress = append(p.Spec.Egress, cnpv1alpha2.EgressRule{Action: cnpv1alpha2.ActionDeny,
						To: []cnpv1alpha2.EgressPeer{{Networks: []cnpv1alpha2.CIDR{cnpv1alpha2.CIDR(fmt.Sprintf("198.19.%d.0/24", r))}}}})
				}
				base := p.DeepCopy()
				base.Name, base.Spec.Tier = fmt.Sprintf("baseline-%d", i), cnpv1alpha2.TierBaseline
				for _, x := range []*cnpv1alpha2.ClusterNetworkPolicy{p, base} {
					cp, err := CompileClusterNetworkPolicy(x)
					if err != nil {
						b.Fatal(err)
					}
					cps = append(cps, cp)
				}
			}
			if admin > 0 {
				pass, err := CompileClusterNetworkPolicy(&cnpv1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "pass"},
					Spec: cnpv1alpha2.Spec{Tier: cnpv1alpha2.TierAdmin, Priority: 1000, Subject: cnpv1alpha2.Subject{Namespaces: &metav1.LabelSelector{}},
						Ingress: []cnpv1alpha2.IngressRule{{Action: cnpv1alpha2.ActionPass, From: []cnpv1alpha2.IngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}}})
				if err != nil {
					b.Fatal(err)
				}
				cps = append(cps, pass)
			}
			set = set.WithClusterPolicies(cps)
			c := Connection{From: ConnEnd{Pod: "a/p1"}, To: ConnEnd{Pod: "a/p0"}, Protocol: "TCP", Port: 8000}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if v := Evaluate(w, set, c); v.Action != model.VerdictAllow {
					b.Fatal(v.Reason())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/conn")
		})
	}
}

// benchEdges makes n edges among 1000 identities in 10 namespaces, with
// replicas (pod-template-hash) and externals.
func benchEdges(n int) []model.Edge {
	t0 := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	edges := make([]model.Edge, n)
	for i := range edges {
		src := model.Peer{Namespace: fmt.Sprintf("ns%d", i%10), Workload: fmt.Sprintf("a%d", i%100), Labels: map[string]string{"app": fmt.Sprintf("a%d", i%100), "tier": fmt.Sprintf("t%d", i%3), "pod-template-hash": fmt.Sprintf("h%d", i%7)}}
		e := model.Edge{Source: src, Protocol: model.ProtocolTCP, Port: uint16(1000 + i%50), Traffic: model.Traffic{FirstSeen: t0.Add(time.Duration(i) * time.Second), LastSeen: t0.Add(time.Duration(i+60) * time.Second), Flows: 3, BytesOut: 1000}}
		if i%5 == 0 {
			e.Destination = model.Peer{External: true, Addr: netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})}
		} else {
			e.Destination = model.Peer{Namespace: fmt.Sprintf("ns%d", (i/10)%10), Workload: fmt.Sprintf("a%d", (i/7)%100), Labels: map[string]string{"app": fmt.Sprintf("a%d", (i/7)%100)}}
		}
		edges[i] = e
	}
	return edges
}

// BenchmarkPropose infers policy from 100k edges.
func BenchmarkPropose(b *testing.B) {
	edges := benchEdges(100_000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if segs := Propose(edges, nil); len(segs) == 0 {
			b.Fatal("no proposal")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/propose")
}
