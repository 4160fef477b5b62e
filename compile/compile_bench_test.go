package compile

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// BenchmarkCompile compiles 10k pods (100 namespaces × 100) and 1k
// NetworkPolicies (10 per namespace) into rule sets. Target: under 1 s.
func BenchmarkCompile(b *testing.B) {
	in := synthetic(100, 100, 10)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := NewCompiler(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/compile")
}

// BenchmarkRecompileOnePod changes one pod's labels in the same world and
// rebuilds only the affected rule sets. Target: under 10 ms.
func BenchmarkRecompileOnePod(b *testing.B) {
	in := synthetic(100, 100, 10)
	c, err := NewCompiler(in)
	if err != nil {
		b.Fatal(err)
	}
	p := in.Pods[555]
	b.ReportAllocs()
	b.ResetTimer()
	var changed int
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		p.Labels = map[string]string{"app": fmt.Sprintf("app-%d", i%10)}
		ch, err := c.UpdatePod(p)
		if err != nil {
			b.Fatal(err)
		}
		changed += len(ch)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N)/1000, "ms/pod-change")
	b.ReportMetric(float64(changed)/float64(b.N), "rulesets/change")
}

// BenchmarkRecompileOnePodClusterPolicies is BenchmarkRecompileOnePod
// with three ClusterNetworkPolicies in force (an Admin Deny of pods app-2
// to pods app-1 of team t0 namespaces, an Admin Pass of every pod to app-4
// on TCP 8080, a Baseline Deny from team t2 namespaces to app-3 pods), the
// pod moving among apps 0-9: a change rebuilds the pod's rule set and
// those of the subjects of the policies whose peers select it before or
// after (all 10k pods when it joins or leaves app-4, as it must; before,
// every change rebuilt all). It reports the time against the same changes
// without the policies, measured in the same run ("÷ without").
func BenchmarkRecompileOnePodClusterPolicies(b *testing.B) {
	cnp := func(name, tier string, prio int, subject, rules string) string {
		return fmt.Sprintf("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: %s}\nspec: {tier: %s, priority: %d, subject: %s, %s}\n", name, tier, prio, subject, rules)
	}
	without := synthetic(100, 100, 10)
	with := synthetic(100, 100, 10,
		cnp("deny-app2", "Admin", 1, `{pods: {namespaceSelector: {matchLabels: {team: t0}}, podSelector: {matchLabels: {app: app-1}}}}`,
			`ingress: [{action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: app-2}}}}]}]`),
		cnp("pass-app4", "Admin", 2, `{namespaces: {}}`,
			`egress: [{action: Pass, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: app-4}}}}], protocols: [{tcp: {destinationPort: {number: 8080}}}]}]`),
		cnp("floor", "Baseline", 3, `{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: app-3}}}}`,
			`ingress: [{action: Deny, from: [{namespaces: {matchLabels: {team: t2}}}]}]`),
	)
	run := func(in CompileInput, n int) ([]time.Duration, int) {
		c, err := NewCompiler(in)
		if err != nil {
			b.Fatal(err)
		}
		p := in.Pods[555]
		changed := 0
		var took []time.Duration
		for i := range n {
			p.Labels = map[string]string{"app": fmt.Sprintf("app-%d", i%10)}
			start := time.Now()
			ch, err := c.UpdatePod(p)
			took = append(took, time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			changed += len(ch)
		}
		return took, changed
	}
	const n = 20
	b.ResetTimer()
	var base, cost []time.Duration
	var changed int
	for b.Loop() {
		d, _ := run(without, n)
		base = append(base, d...)
		d, c := run(with, n)
		cost = append(cost, d...)
		changed += c
	}
	sum := func(ds []time.Duration) (t time.Duration) {
		for _, d := range ds {
			t += d
		}
		return t
	}
	median := func(ds []time.Duration) time.Duration {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	b.ReportMetric(float64(sum(cost).Microseconds())/float64(len(cost))/1000, "ms/pod-change")
	b.ReportMetric(float64(median(cost).Microseconds())/1000, "ms/median-change")
	b.ReportMetric(float64(changed)/float64(len(cost)), "rulesets/change")
	b.ReportMetric(float64(sum(cost))/float64(sum(base)), "÷without")
	b.ReportMetric(float64(median(cost))/float64(median(base)), "median÷without")
}

// syntheticServices puts a Service in front of every app of every
// namespace of synthetic's world (TCP 80 → the pods' http port, UDP 53 →
// 53), addresses in 198.18.128.0/17.
func syntheticServices(in CompileInput) []model.Service {
	byApp := map[string]*model.Service{}
	var keys []string
	for _, p := range in.Pods {
		app := p.Labels["app"] + p.Labels["k8s-app"]
		k := p.Namespace + "/" + app
		s := byApp[k]
		if s == nil {
			i := len(keys)
			s = &model.Service{Namespace: p.Namespace, Name: app, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(128 + i/256), byte(i % 256)})},
				Ports: []model.ServicePort{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}}}
			byApp[k] = s
			keys = append(keys, k)
		}
		for _, a := range p.IPs {
			s.Ports[0].Backends = append(s.Ports[0].Backends, model.ServiceBackend{Addr: a, Port: uint16(p.Ports[0].Port)})
			s.Ports[1].Backends = append(s.Ports[1].Backends, model.ServiceBackend{Addr: a, Port: 53})
		}
	}
	out := make([]model.Service, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byApp[k])
	}
	return out
}

// BenchmarkCompileWithServices is BenchmarkCompile with a Service in front
// of every app (1,100 Services, 10k backends).
func BenchmarkCompileWithServices(b *testing.B) {
	in := synthetic(100, 100, 10)
	in.Services = syntheticServices(in)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := NewCompiler(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/compile")
}

// BenchmarkServiceChange empties the ready backends of one Service port
// and restores them (an EndpointSlice change), in the world of
// BenchmarkCompileWithServices: only the rule sets whose Service entries
// change are rebuilt. "dns": a kube-dns Service every pod may reach (every
// rule set changes); "app": an app Service no egress rule reaches (none
// does).
func BenchmarkServiceChange(b *testing.B) {
	in := synthetic(100, 100, 10)
	in.Services = syntheticServices(in)
	c, err := NewCompiler(in)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, key string }{{"dns", "ns-5/kube-dns"}, {"app", "ns-5/app-3"}} {
		b.Run(tc.name, func(b *testing.B) {
			smaller := slices.Clone(in.Services)
			i := slices.IndexFunc(smaller, func(s model.Service) bool { return s.Key() == tc.key })
			s := smaller[i]
			s.Ports = []model.ServicePort{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}} // no ready backend
			smaller[i] = s
			b.ReportAllocs()
			b.ResetTimer()
			var changed int
			for n := 0; b.Loop(); n++ {
				svcs := in.Services
				if n%2 == 0 {
					svcs = smaller
				}
				changed += len(c.SetServices(svcs))
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/service-change")
			b.ReportMetric(float64(changed)/float64(b.N), "rulesets/change")
		})
	}
}
