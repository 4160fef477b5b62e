package transport_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
	"github.com/nanoseg/nanoseg/transport"
)

// BenchmarkIngest measures edges ingested per second through the
// receiver's handler (authentication from its cache, reading, JSON
// decoding, validation, sequence check, the Graph) against merging the
// same edges straight into store.Mem, in the same run: x-store.Mem is how
// many times longer the handler takes. Batches of 1000 edges cycle over
// 100k distinct edges, as a node agent's deltas would.
func BenchmarkIngest(b *testing.B) {
	const per, distinct = 1000, 100_000
	batches := make([][]model.Edge, distinct/per)
	bodies := make([][]byte, len(batches))
	for i := range batches {
		for j := range per {
			n := i*per + j
			e := edge(fmt.Sprint(n%500), n, uint64(n%13+1))
			e.Destination.Labels = map[string]string{"app": e.Destination.Workload}
			batches[i] = append(batches[i], e)
		}
		raw, err := json.Marshal(transport.Batch{Node: "node-a", Epoch: "bench", Edges: batches[i]})
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = raw[:len(raw)-1] // ",\"seq\":N}" is appended per request (the last key wins)
	}
	g := transport.NewGraph(2*distinct, 1000)
	recv, err := transport.NewReceiver(transport.ReceiverConfig{}, fakeAuth{"tok": agentID}, g, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	first := append(bytes.Clone(bodies[0]), []byte(`,"seq":1,"full":true}`)...)
	if code := serve(recv, first); code != http.StatusOK {
		b.Fatalf("first batch: %d", code)
	}
	mem := store.NewMem()
	var handler, baseline time.Duration
	var wire int
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := (i + 1) % len(batches)
		body := append(bytes.Clone(bodies[k]), fmt.Sprintf(`,"seq":%d}`, i+2)...)
		wire += len(body)
		start := time.Now()
		code := serve(recv, body)
		handler += time.Since(start)
		if code != http.StatusOK {
			b.Fatalf("batch %d: %d", i+2, code)
		}
		start = time.Now()
		if err := mem.MergeEdges(batches[k]); err != nil {
			b.Fatal(err)
		}
		baseline += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(per*b.N)/handler.Seconds(), "edges/s")
	b.ReportMetric(float64(per*b.N)/baseline.Seconds(), "mem-edges/s")
	b.ReportMetric(float64(handler)/float64(baseline), "x-store.Mem")
	b.ReportMetric(float64(wire)/float64(per*b.N), "B/edge-on-wire")
}

func serve(h http.Handler, body []byte) int {
	req := httptest.NewRequest(http.MethodPost, transport.Path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}
