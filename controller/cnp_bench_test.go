package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// BenchmarkInferAdminDeny: Infer over 1000 observed edges of the shop
// inventory (web, intruder -> db on 500 ports each), without any
// ClusterNetworkPolicy ("none": leaveOutForbidden returns at once) and
// with ten Admin policies in force ("admin": every edge evaluated once
// more; none of these edges is on the guarded port, so both infer the
// same proposals). Compare the two in the same run.
func BenchmarkInferAdminDeny(b *testing.B) {
	for _, admin := range []bool{false, true} {
		name := "none"
		if admin {
			name = "admin"
		}
		b.Run(name, func(b *testing.B) {
			mem := store.NewMem()
			svc := controller.New(controller.Config{EvidenceDir: b.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
			if admin {
				var docs []string
				for i := range 10 {
					docs = append(docs, strings.Replace(strings.Replace(guard("Admin", "Deny"), "name: guard-db", fmt.Sprintf("name: guard-%d", i), 1), "priority: 7", fmt.Sprintf("priority: %d", 10+i), 1))
				}
				if _, err := svc.Apply(context.Background(), "cnp.yaml", []byte(strings.Join(docs, "---\n")), "bench"); err != nil {
					b.Fatal(err)
				}
			}
			var edges []model.Edge
			for p := range 500 {
				edges = append(edges, recent("web", "db", uint16(10000+p), model.VerdictCounts{Observed: 1}), recent("intruder", "db", uint16(10000+p), model.VerdictCounts{Observed: 1}))
			}
			if err := mem.MergeEdges(edges); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := svc.Infer(0, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
