package graph

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// syntheticEdges returns about n edges among n/5 workloads in 8 namespaces
// and a few external peers, deterministically.
func syntheticEdges(n int) []model.Edge {
	workloads := max(n/5, 2)
	peer := func(i int) model.Peer {
		if i%17 == 16 {
			return model.Peer{External: true, Name: fmt.Sprintf("ext%d.example", i%5)}
		}
		return model.Peer{Namespace: fmt.Sprintf("ns%d", i%8), Workload: fmt.Sprintf("w%d", i)}
	}
	es := make([]model.Edge, 0, n)
	for i := range n {
		src := i % workloads
		if src%17 == 16 {
			src--
		}
		dst := (src*7 + i*13 + 1) % workloads
		es = append(es, model.Edge{Source: peer(src), Destination: peer(dst), Protocol: model.ProtocolTCP, Port: uint16(8000 + i%50), Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0.Add(time.Duration(i) * time.Second), Flows: uint64(i + 1), Verdicts: model.VerdictCounts{Observed: uint64(i + 1)}}})
	}
	return es
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{100, 1000, 100000} {
		edges := syntheticEdges(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Build(edges, Filter{})
			}
		})
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, n := range []int{100, 1000} {
		g := Build(syntheticEdges(n), Filter{})
		for _, f := range Formats {
			b.Run(fmt.Sprintf("%s/%d", f, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := Write(io.Discard, f, g); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
