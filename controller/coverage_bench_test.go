package controller_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
)

// BenchmarkComputeCoverage: n workloads of 3 endpoints each, each with 3
// restarts' spans, and 10 edges per workload (the size of what status,
// propose and the gate read from the store).
func BenchmarkComputeCoverage(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var ws []string
			var spans []model.ObservedSpan
			var edges []model.Edge
			for i := range n {
				w := fmt.Sprintf("w%d", i)
				ws = append(ws, "ns/"+w)
				for ep := range 3 {
					for r := range 3 {
						spans = append(spans, model.ObservedSpan{Endpoint: fmt.Sprintf("%s-%d", w, ep), Workload: "ns/" + w,
							Start: t0.Add(time.Duration(r) * time.Hour), End: t0.Add(time.Duration(r)*time.Hour + 50*time.Minute)})
					}
				}
				for j := range 10 {
					e := tcpEdge(w, fmt.Sprintf("w%d", (i+j+1)%n), uint16(8000+j), time.Minute, 2*time.Hour, 10, 1)
					e.Source.Namespace, e.Destination.Namespace = "ns", "ns"
					edges = append(edges, e)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				controller.ComputeCoverage(ws, spans, edges, 0, time.Time{}, t0.Add(3*time.Hour))
			}
		})
	}
}
