//go:build linux

package kube

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	runtime2 "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nanoseg/nanoseg/compile"
	"github.com/nanoseg/nanoseg/inventory"
	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/model"
)

// clusterPod is a pod shaped like what the API server returns for a
// Deployment's replica: owner reference, labels, one container with a
// port, node name, addresses and status.
func clusterPod(i int, node string) *corev1.Pod {
	ns := fmt.Sprintf("ns-%d", i%100)
	app := fmt.Sprintf("w%d", (i/100)%20)
	ctrl := true
	ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-5d8f7c9b4-%05d", app, i), ResourceVersion: "1",
			UID:    "00000000-0000-0000-0000-000000000000",
			Labels: map[string]string{"app": app, "tier": "backend", "pod-template-hash": "5d8f7c9b4"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-5d8f7c9b4",
				UID: "00000000-0000-0000-0000-000000000001", Controller: &ctrl}}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}}},
	}
}

// BenchmarkNodeAgentMemory measures the live heap of a node agent's
// Kubernetes side in a cluster of 10,000 pods (100 namespaces, 30 pods on
// this node) and 1,000 policies (500 NetworkPolicies, 500 NanoSegments):
// the inventory/kube Source and the PolicyWatcher synced, then one full
// compile (compile.NewCompiler over every pod as a peer and the 1,000
// policies) kept alive as the node keeps it. The objects reach the
// informers through fake clientsets: creating 10,000 pods and patching
// their status is 20,000 API requests, minutes on this 2-core box per run,
// while the caches hold the same objects either way (both trim managed
// fields, which the fake's objects lack anyway). The baseline, in the same
// run, is the heap before anything starts.
func BenchmarkNodeAgentMemory(b *testing.B) {
	var objs []runtime2.Object
	for i := range 100 {
		ns := fmt.Sprintf("ns-%d", i)
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}})
	}
	for i := range 10000 {
		node := fmt.Sprintf("node-%d", 1+i%333)
		if i < 3000 && i%100 == 0 || i < 30 {
			node = "node-0"
		}
		objs = append(objs, clusterPod(i, node))
	}
	var segObjs []runtime2.Object
	for i := range 500 {
		ns := fmt.Sprintf("ns-%d", i%100)
		np := netpol(ns, fmt.Sprintf("np-%d", i), int32(8000+i))
		np.Spec.PodSelector.MatchLabels["app"] = fmt.Sprintf("w%d", i%20)
		objs = append(objs, np)
		s := segment(ns, fmt.Sprintf("seg-%d", i), model.ModeEnforce, int32(9000+i))
		s.Spec.Selector.MatchLabels["app"] = fmt.Sprintf("w%d", (i+7)%20)
		m, err := runtime2.DefaultUnstructuredConverter.ToUnstructured(s)
		if err != nil {
			b.Fatal(err)
		}
		segObjs = append(segObjs, &unstructured.Unstructured{Object: m})
	}
	var inv, pol, comp, total, ruleSets float64
	for b.Loop() {
		client := fake.NewClientset(objs...)
		dyn := newFakeDynamic(segObjs...)
		h0 := heapAfterGC()
		ctx, cancel := context.WithCancel(context.Background())
		src, err := invkube.New(client, invkube.Config{NodeName: "node-0"})
		if err != nil {
			b.Fatal(err)
		}
		srcDone := make(chan error, 1)
		go func() { srcDone <- src.Run(ctx) }()
		if err := src.WaitForSync(ctx); err != nil {
			b.Fatal(err)
		}
		h1 := heapAfterGC()
		w := NewPolicyWatcher(client, dyn, nil)
		wDone := make(chan error, 1)
		go func() { wDone <- w.Run(ctx) }()
		if err := w.WaitForSync(ctx); err != nil {
			b.Fatal(err)
		}
		h2 := heapAfterGC()
		snap, err := src.List(ctx)
		if err != nil {
			b.Fatal(err)
		}
		world, err := inventory.NewIndex(snap.Endpoints, snap.Namespaces, snap.Externals).World(nil)
		if err != nil {
			b.Fatal(err)
		}
		in, err := compile.Input(world, w.InForce(), nil)
		if err != nil {
			b.Fatal(err)
		}
		c, err := compile.NewCompiler(in)
		if err != nil {
			b.Fatal(err)
		}
		h3 := heapAfterGC()
		if len(snap.Endpoints) != 10000 || len(c.RuleSets()) == 0 {
			b.Fatalf("%d endpoints, %d rule sets", len(snap.Endpoints), len(c.RuleSets()))
		}
		ruleSets = float64(len(c.RuleSets()))
		runtime.KeepAlive(c)
		runtime.KeepAlive(src)
		runtime.KeepAlive(w)
		inv, pol, comp, total = float64(h1-h0), float64(h2-h1), float64(h3-h2), float64(h3-h0)
		cancel()
		<-srcDone
		<-wDone
	}
	const mib = 1 << 20
	b.ReportMetric(inv/mib, "inventory-MiB")
	b.ReportMetric(pol/mib, "policies-MiB")
	b.ReportMetric(comp/mib, "compile-MiB")
	b.ReportMetric(total/mib, "total-MiB")
	b.ReportMetric(ruleSets, "rule-sets")
}
