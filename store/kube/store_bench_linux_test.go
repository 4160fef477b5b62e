//go:build linux

package kube

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// BenchmarkStoreRecord measures one promotion recorded through the cluster
// store against the package's API server: "plain" is Record (the store
// creates the promotion), "request" is ForRequest(...).Record into an
// operator's promotion (created outside the timer). The baseline, measured
// in the same run on the same clients, is one ConfigMap update with a
// known resourceVersion, the least a compare-and-swap on the API server
// costs; x-configmap-update is the ratio. Record reads no list, so its
// cost does not grow with the history.
func BenchmarkStoreRecord(b *testing.B) {
	for _, mode := range []string{"plain", "request"} {
		b.Run(mode, func(b *testing.B) {
			c := storeCluster(b)
			rc := newRequestCounter()
			s, serr := NewStore(kubernetes.NewForConfigOrDie(rc.wrap(c.Config)), dynamic.NewForConfigOrDie(rc.wrap(c.Config)), StoreConfig{})
			if serr != nil {
				b.Fatal(serr)
			}
			addRevisions(b, s, "shop/db")
			ctx := context.Background()
			cms := s.client.CoreV1().ConfigMaps("shop")
			cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}, Data: map[string]string{"n": "0"}}, metav1.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}) })
			start := time.Now()
			for i := range b.N {
				cm.Data["n"] = strconv.Itoa(i)
				if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			baseline := time.Since(start)
			proms := dynamic.NewForConfigOrDie(c.Config).Resource(PromotionResource).Namespace("shop")
			before := requestTotal(rc)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				to := model.ModeAudit
				if i%2 == 1 {
					to = model.ModeEnforce
				}
				p := model.Promotion{At: time.Now(), Who: "bench", Workload: "shop/db", Action: model.ActionPromote, ToMode: to, ToRevision: 1, Reason: "bench"}
				rs := s
				if mode == "request" {
					b.StopTimer()
					name := fmt.Sprintf("req-%d", i)
					req := &unstructured.Unstructured{Object: map[string]any{
						"apiVersion": v1alpha1.APIVersion, "kind": v1alpha1.KindPromotion,
						"metadata": map[string]any{"name": name, "namespace": "shop"},
						"spec":     map[string]any{"workload": "db", "mode": string(to), "revision": int64(1), "reason": "bench"},
					}}
					if _, err := proms.Create(ctx, req, metav1.CreateOptions{}); err != nil {
						b.Fatal(err)
					}
					rs = s.ForRequest("shop", name)
					b.StartTimer()
				}
				if _, err := rs.Record(p, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(requestTotal(rc)-before)/float64(b.N), "requests/op")
			b.ReportMetric(float64(b.Elapsed())/float64(baseline), "x-configmap-update")
			b.ReportMetric(float64(baseline.Microseconds())/float64(b.N)/1000, "ms-configmap-update")
		})
	}
}

// requestTotal is how many requests rc counted.
func requestTotal(rc *requestCounter) int {
	n := 0
	for _, v := range rc.snapshot() {
		n += v
	}
	return n
}
