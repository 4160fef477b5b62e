package compile

import (
	"fmt"
	"testing"
	"time"
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
