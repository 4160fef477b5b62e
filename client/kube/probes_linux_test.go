//go:build linux

package kube

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// TestProberWithoutAgent: a probe from a pod of a node no agent answers
// for fails after its timeout and the grace, naming the node; the next
// probe from that node fails at once; every probe object is deleted, and
// a probe left by an old run is swept.
func TestProberWithoutAgent(t *testing.T) {
	c := kubetest.New(t, kubetest.Options{CRDDirs: []string{filepath.Join("..", "..", "manifests", "crds")}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := c.Namespace(t, nil)
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{NodeName: "ghost", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(c.Config)
	// A probe an old run left: the sweep deletes it only when older than
	// ProbeTTL, so this one stays; labelled, it shows the sweep's
	// selector works.
	left := &unstructured.Unstructured{Object: map[string]any{"apiVersion": v1alpha1.APIVersion, "kind": v1alpha1.KindProbe,
		"metadata": map[string]any{"name": "left", "labels": map[string]any{v1alpha1.LabelProbeRun: "old"}},
		"spec":     map[string]any{"node": "ghost", "pod": "web", "address": "198.18.0.2", "port": int64(80), "protocol": "TCP"}}}
	if _, err := dyn.Resource(Probes).Namespace(ns).Create(ctx, left, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := newProber(c.Client, dyn)
	p.grace = 300 * time.Millisecond
	src := model.Endpoint{Netns: ns + "_web", Namespace: ns, Workload: "web"}
	dst := netip.MustParseAddrPort("198.18.0.2:80")
	start := time.Now()
	o := p.probe(ctx, src, "TCP", dst, 200*time.Millisecond)
	if o.Outcome != v1alpha1.ProbeError || !strings.Contains(o.Detail, "no node agent answered within 500ms: is nanoseg node running on node ghost, with the rights") {
		t.Errorf("first probe: %+v", o)
	}
	t.Logf("first probe: %s after %s", o.Detail, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	o = p.probe(ctx, src, "TCP", dst, 200*time.Millisecond)
	if o.Outcome != v1alpha1.ProbeError || !strings.HasPrefix(o.Detail, "not asked: no node agent answered") || time.Since(start) > 100*time.Millisecond {
		t.Errorf("second probe: %+v after %s", o, time.Since(start))
	}
	l, err := dyn.Resource(Probes).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 1 || l.Items[0].GetName() != "left" {
		t.Errorf("probes after the run: %v %v", l, err)
	}
}
