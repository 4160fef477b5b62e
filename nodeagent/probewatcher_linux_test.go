//go:build linux

package nodeagent

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// TestProbeWatcher (no kernel): the watcher of a node runs its node's
// probes once each, ignores another node's, and writes what run returns; its
// latency from create to status is logged.
func TestProbeWatcher(t *testing.T) {
	c := kubetest.Shared(t)
	ns := c.Namespace(t, nil)
	dyn := dynamic.NewForConfigOrDie(c.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var runs atomic.Int32
	seen := sync.Map{}
	w := NewProbeWatcher(dyn, "watcher-a", nil) // a node of its own: the shared API server holds other tests' probes
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		_ = w.Run(wctx, func(_ context.Context, req ProbeRequest) v1alpha1.NanoSegmentProbeStatus {
			runs.Add(1)
			if _, dup := seen.LoadOrStore(req.Name, true); dup {
				t.Errorf("probe %s run twice", req.Name)
			}
			return v1alpha1.NanoSegmentProbeStatus{Outcome: v1alpha1.ProbeRefused, Reached: true, Agent: "test " + req.Spec.Pod}
		})
	}()
	defer func() { wcancel(); <-done }()
	res := dyn.Resource(ProbeResource).Namespace(ns)
	create := func(name, node string) time.Time {
		p := &v1alpha1.NanoSegmentProbe{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindProbe},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1alpha1.NanoSegmentProbeSpec{Node: node, Pod: "web", Address: "198.18.0.1", Port: 80, Protocol: model.ProtocolTCP}}
		raw, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
		if _, err := res.Create(ctx, &unstructured.Unstructured{Object: raw}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	outcome := func(name string) string {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		o, _, _ := unstructured.NestedString(u.Object, "status", "outcome")
		return o
	}
	for i, name := range []string{"first", "second", "third"} {
		at := create(name, "watcher-a")
		for outcome(name) == "" {
			if ctx.Err() != nil {
				t.Fatalf("%s: no outcome", name)
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Logf("probe %d answered %s after its create (%s after the watcher started)", i, time.Since(at).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	create("elsewhere", "watcher-b")
	time.Sleep(300 * time.Millisecond)
	if o := outcome("elsewhere"); o != "" || runs.Load() != 3 {
		t.Errorf("node-b's probe: outcome %q, %d runs", o, runs.Load())
	}
}
