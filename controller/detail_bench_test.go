package controller_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// BenchmarkPanes: the web UI's panes (edge details, workload details, a
// namespace's matrix) against Status, the page's own periodic read, on n
// workloads in 10 namespaces with 10 observed edges each (10,000 edges at
// 1,000), every workload proposed and one promoted to audit. Compare the
// panes' ns/op with Status's in the same run.
func BenchmarkPanes(b *testing.B) {
	for _, n := range []int{100, 1000} {
		mem := store.NewMem()
		var eps []model.Endpoint
		nss := map[string]map[string]string{}
		for i := range n {
			ns := fmt.Sprintf("ns%d", i%10)
			nss[ns] = map[string]string{"kubernetes.io/metadata.name": ns}
			w := fmt.Sprintf("w%d", i)
			eps = append(eps, model.Endpoint{Netns: w + "-0", Path: "/run/netns/" + w + "-0", Namespace: ns, Workload: w, Labels: map[string]string{"app": w},
				Addrs: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})}, Ports: []model.ContainerPort{{Port: 8080, Protocol: model.ProtocolTCP}}})
		}
		now := time.Now()
		var edges []model.Edge
		for i := range n {
			for j := range 10 {
				d := (i + 10*(j+1)) % n // same namespace
				edges = append(edges, model.Edge{Source: model.Peer{Namespace: eps[i].Namespace, Workload: eps[i].Workload, Labels: eps[i].Labels},
					Destination: model.Peer{Namespace: eps[d].Namespace, Workload: eps[d].Workload, Labels: eps[d].Labels}, Protocol: model.ProtocolTCP, Port: 8080,
					Traffic: model.Traffic{FirstSeen: now.Add(-time.Hour), LastSeen: now, Flows: 5, Verdicts: model.VerdictCounts{Observed: 5}}})
			}
		}
		if err := mem.MergeEdges(edges); err != nil {
			b.Fatal(err)
		}
		svc := controller.New(controller.Config{EvidenceDir: b.TempDir(), ConvergeTimeout: time.Second}, mem, mem, inventory.NewIndex(eps, nss, nil), &controllertest.Node{}, nil)
		if _, err := svc.Propose(0, false, "bench"); err != nil {
			b.Fatal(err)
		}
		if _, err := svc.Promote(context.Background(), controller.PromoteRequest{Workload: "ns0/w0", To: model.ModeAudit, Reason: "bench"}, "bench"); err != nil {
			b.Fatal(err)
		}
		src, dst := "ns0/w0", edges[0].Destination.String()
		for _, c := range []struct {
			name string
			f    func() error
		}{
			{"status", func() error { _, err := svc.Status(); return err }},
			{"edge-detail", func() error { _, err := svc.EdgeDetail(src, dst, "8080/TCP", 0); return err }},
			{"workload-detail", func() error { _, err := svc.WorkloadDetail(src); return err }},
			{"matrix-namespace", func() error { _, err := svc.Matrix("ns0", nil, []string{"8080/TCP"}); return err }},
		} {
			b.Run(fmt.Sprintf("%s/%d", c.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					if err := c.f(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
