//go:build linux

package nodeagent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/vishvananda/netlink"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/lab/kubelab"
)

// benchLab returns the plan of a lab of pods replicas on node
// "bench-node", in namespace "bench-<pods>", 50 replicas per workload
// (lab.MaxReplicas is 64), every pod labelled app=bench, and the lab's DNS
// pod on node "elsewhere".
func benchLab(b *testing.B, pods int) *lab.Plan {
	b.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "kind: LabTopology\nname: bench%d\ndns: bench-%d/dns\nnamespaces:\n  - name: bench-%d\n    labels: {team: bench}\nworkloads:\n", pods, pods, pods)
	// The lab's DNS workload (every lab has one), on another node: the
	// agent leaves it alone.
	fmt.Fprintf(&sb, "  - name: dns\n    namespace: bench-%d\n    labels: {app: dns}\n    node: elsewhere\n    ports:\n      - {name: dns, port: 53, protocol: UDP}\n", pods)
	for w := 0; w*50 < pods; w++ {
		fmt.Fprintf(&sb, "  - name: w%d\n    namespace: bench-%d\n    labels: {app: bench, group: w%d}\n    replicas: %d\n    node: bench-node\n    ports:\n      - {name: http, port: 8080}\n",
			w, pods, w, min(50, pods-w*50))
	}
	raw := []byte(sb.String())
	top, err := lab.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	p, err := lab.NewPlan(top, raw)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchNetns gives every endpoint of p a network namespace of this host
// holding its addresses on lo (what the netns finder looks for: every
// global address of the namespace; no traffic flows in this benchmark), removed at cleanup; endpoints
// of other nodes get none. It
// returns the namespaces by pod key ("<namespace>_<pod>").
func benchNetns(b *testing.B, p *lab.Plan) map[string]*nettest.Netns {
	b.Helper()
	out := map[string]*nettest.Netns{}
	for _, e := range p.Endpoints {
		if e.Node != "bench-node" {
			continue
		}
		n := nettest.New(b)
		h, err := netlink.NewHandleAt(n.Handle)
		if err != nil {
			b.Fatal(err)
		}
		link, err := h.LinkByName("lo")
		for _, a := range []netip.Addr{e.IPv4, e.IPv6} {
			if err == nil && a.IsValid() {
				err = h.AddrAdd(link, nettest.Addr(netip.PrefixFrom(a, a.BitLen())))
			}
		}
		h.Close()
		if err != nil {
			b.Fatalf("netns of %s: %v", e.ID(), err)
		}
		out[e.Namespace+"_"+kubelab.PodName(e)] = n
	}
	return out
}

// BenchmarkPolicyToLastPodProgrammed measures, on a real API server with
// lab pods (lab/kubelab) and a real node agent (New: the inventory source
// with its netns finder, the policy watcher, the node with the real
// dataplane), the time from a NetworkPolicy Create call to the last pod it
// selects having its new rule set applied in its network namespace (the
// reconciler's status, set only after the kernel took the nftables
// transaction). Every pod of the lab is on the agent's node and every one
// is selected, so each policy reprograms them all; it is deleted (and the
// tables restored) before the next. The baseline, measured on the same
// creates, is a bare client-go informer's add handler: the least any
// informer-based agent can take. Sub-benchmarks with 100 and 1,000 pods,
// each pod in its own network namespace of this host (root). The 1,000-pod
// case creates 1,000 namespaces and registers 1,000 pods (2,000 requests)
// before it starts: about a minute of setup.
func BenchmarkPolicyToLastPodProgrammed(b *testing.B) {
	nettest.RequireRoot(b)
	c := kubetest.Shared(b)
	for _, pods := range []int{100, 1000} {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := benchLab(b, pods)
			setup := time.Now()
			nets := benchNetns(b, p)
			if err := kubelab.Register(ctx, c.Client, p); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = kubelab.Unregister(context.Background(), c.Client, p.Lab) })
			ns := p.Endpoints[0].Namespace

			// Baseline: a bare informer on NetworkPolicies.
			arrived := make(chan time.Time, 1)
			f := informers.NewSharedInformerFactory(c.Client, 0)
			inf := f.Networking().V1().NetworkPolicies().Informer()
			if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
				if np := obj.(*networkingv1.NetworkPolicy); np.Namespace == ns {
					select {
					case arrived <- time.Now():
					default:
					}
				}
			}}); err != nil {
				b.Fatal(err)
			}
			f.Start(ctx.Done())
			defer func() { cancel(); f.Shutdown() }() // Shutdown waits for the informer, which stops on cancel
			cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)

			dir, err := os.MkdirTemp("", "nanoseg-owners-")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
			a, err := New(Config{NodeName: "bench-node", Listen: "127.0.0.1:0", OwnerDir: dir, FlushInterval: time.Minute, DriftInterval: 10 * time.Minute},
				c.Config, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			actx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); _ = a.Run(actx) }()
			defer func() { stop(); <-done }()

			// Every pod programmed with the no-policy rule set.
			keys := make([]string, 0, len(nets))
			for k := range nets {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			current := func(k string) (dataplane.RuleSet, bool) { return a.Node().Desired(k) }
			initial := map[string]dataplane.RuleSet{}
			waitAll := func(what string, ok func(k string, rs dataplane.RuleSet) bool) (first, last time.Time) {
				left := slices.Clone(keys)
				deadline := time.Now().Add(3 * time.Minute)
				for len(left) > 0 {
					left = slices.DeleteFunc(left, func(k string) bool {
						rs, have := current(k)
						if have && ok(k, rs) {
							last = time.Now()
							if first.IsZero() {
								first = last
							}
							return true
						}
						return false
					})
					if len(left) == 0 {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("%s: %d of %d pods not programmed after 3m, e.g. %s", what, len(left), len(keys), left[0])
					}
					time.Sleep(time.Millisecond)
				}
				return first, last
			}
			waitAll("start", func(k string, rs dataplane.RuleSet) bool { initial[k] = rs; return true })
			b.Logf("%d pods: netns created, registered and programmed in %s", pods, time.Since(setup).Round(time.Millisecond))

			port := intstr.FromInt32(8080)
			var ours, firsts, base []time.Duration
			enforce := func() (sum float64, count uint64) {
				h := &dto.Metric{}
				if err := a.mEnforce.Write(h); err != nil {
					b.Fatal(err)
				}
				return h.GetHistogram().GetSampleSum(), h.GetHistogram().GetSampleCount()
			}
			sum0, count0 := enforce()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i), Namespace: ns},
					Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
						Ingress: []networkingv1.NetworkPolicyIngressRule{{
							From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"group": fmt.Sprintf("w%d", i%(pods/50))}}}},
							Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}}}}
				start := time.Now()
				if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
				first, last := waitAll("policy created", func(k string, rs dataplane.RuleSet) bool { return !rs.Equal(initial[k]) })
				ours, firsts = append(ours, last.Sub(start)), append(firsts, first.Sub(start))
				select {
				case t := <-arrived:
					base = append(base, t.Sub(start))
				case <-time.After(30 * time.Second):
					b.Fatalf("%s never reached the bare informer", np.Name)
				}
				b.StopTimer()
				if err := c.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil {
					b.Fatal(err)
				}
				waitAll("policy deleted", func(k string, rs dataplane.RuleSet) bool { return rs.Equal(initial[k]) })
				b.StartTimer()
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
			b.ReportMetric(ms(percentile(ours, 0.5)), "p50-ms")
			b.ReportMetric(ms(percentile(ours, 0.99)), "p99-ms")
			b.ReportMetric(ms(percentile(base, 0.5)), "bare-informer-p50-ms")
			b.ReportMetric(ms(percentile(base, 0.99)), "bare-informer-p99-ms")
			b.ReportMetric(float64(percentile(ours, 0.5))/float64(percentile(base, 0.5)), "p50/bare")
			b.ReportMetric(ms(percentile(firsts, 0.5)), "first-pod-p50-ms")
			// The agent's Enforce (full recompile, then the changed tables
			// applied, 8 at a time), mean over the creates and the deletes.
			sum1, count1 := enforce()
			b.ReportMetric((sum1-sum0)*1e3/float64(count1-count0), "enforce-mean-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// percentile returns the p-quantile (0..1) of d, nearest rank below.
func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}
