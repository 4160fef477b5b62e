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
	"k8s.io/client-go/rest"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// BenchmarkStoreRecord measures one promotion recorded through the cluster
// store against the package's API server: "plain" is Record (the store
// creates the promotion), "request" is ForRequest(...).Record into an
// operator's promotion (created outside the timer). The baseline is one
// ConfigMap update with a known resourceVersion, the least a
// compare-and-swap on the API server costs, alternating with the records
// in the same loop; x-configmap-update is the ratio of their total times,
// requests/op counts the store's calls to the API server. Record reads no list, so its
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
			plain := rest.CopyConfig(c.Config) // the baseline's client: as the store's, but not counted
			plain.QPS, plain.Burst = 1000, 2000
			cms := kubernetes.NewForConfigOrDie(plain).CoreV1().ConfigMaps("shop")
			cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}, Data: map[string]string{"n": "0"}}, metav1.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}) })
			proms := dynamic.NewForConfigOrDie(c.Config).Resource(PromotionResource).Namespace("shop")
			var baseline, records time.Duration
			before := requestTotal(rc)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				// The baseline and the record alternate, so both see the
				// same load on the shared box.
				b.StopTimer()
				cm.Data["n"] = strconv.Itoa(i)
				start := time.Now()
				if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
					b.Fatal(err)
				}
				baseline += time.Since(start)
				to := model.ModeAudit
				if i%2 == 1 {
					to = model.ModeEnforce
				}
				p := model.Promotion{At: time.Now(), Who: "bench", Workload: "shop/db", Action: model.ActionPromote, ToMode: to, ToRevision: 1, Reason: "bench"}
				rs := s
				if mode == "request" {
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
				}
				b.StartTimer()
				start = time.Now()
				if _, err := rs.Record(p, nil); err != nil {
					b.Fatal(err)
				}
				records += time.Since(start)
			}
			b.StopTimer()
			b.ReportMetric(float64(requestTotal(rc)-before)/float64(b.N), "requests/op")
			b.ReportMetric(float64(records)/float64(baseline), "x-configmap-update")
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
