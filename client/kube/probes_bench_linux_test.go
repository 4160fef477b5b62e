//go:build linux

package kube

import (
	"context"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/nodeagent"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// BenchmarkProbeRoundTrip: one live probe through the API server (the
// CLI's prober creates the NanoSegmentProbe and watches it, a node agent's
// ProbeWatcher answers at once, the prober deletes it), against the
// baseline of creating, reading and deleting a ConfigMap in the same run:
// the ratio is what the probe's object costs over the plainest API round
// trip. "parallel" runs 8 at a time, as verify does by default.
func BenchmarkProbeRoundTrip(b *testing.B) {
	c := kubetest.New(b, kubetest.Options{CRDDirs: []string{filepath.Join("..", "..", "manifests", "crds")}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := "bench"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(c.Config)
	w := nodeagent.NewProbeWatcher(dyn, "node-a", nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = w.Run(ctx, func(context.Context, nodeagent.ProbeRequest) v1alpha1.NanoSegmentProbeStatus {
			return v1alpha1.NanoSegmentProbeStatus{Outcome: v1alpha1.ProbeConnected, Reached: true}
		})
	})
	defer wg.Wait()
	defer cancel()
	p := newProber(c.Client, dyn)
	src := model.Endpoint{Netns: ns + "_web", Namespace: ns, Workload: "web"}
	dst := netip.MustParseAddrPort("198.18.0.2:80")
	probe := func() {
		if o := p.probe(ctx, src, "TCP", dst, time.Second); o.Outcome != v1alpha1.ProbeConnected {
			b.Fatalf("probe: %+v", o)
		}
	}
	probe() // warm: the watcher's informer, the pod's node
	baseline := func() {
		cm, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := c.Client.CoreV1().ConfigMaps(ns).Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, parallel int, f func()) time.Duration {
		start := time.Now()
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		for b.Loop() {
			sem <- struct{}{}
			wg.Go(func() { defer func() { <-sem }(); f() })
		}
		wg.Wait()
		return time.Since(start)
	}
	for _, par := range []int{1, 8} {
		name := "serial"
		if par > 1 {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			var base, probes time.Duration
			var n int
			b.Run("configmap", func(b *testing.B) { base = run(b, par, baseline); n = b.N })
			perBase := base / time.Duration(max(n, 1))
			b.Run("probe", func(b *testing.B) {
				probes = run(b, par, probe)
				per := probes / time.Duration(max(b.N, 1))
				b.ReportMetric(float64(per)/float64(max(perBase, 1)), "x-configmap")
				b.ReportMetric(float64(b.N)/probes.Seconds(), "probes/s")
			})
		})
	}
}
