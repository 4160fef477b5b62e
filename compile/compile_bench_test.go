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
