package kube

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// fatPod is a pod as a real API server returns it: managed fields,
// annotations, volumes, environment, probes, conditions.
func fatPod(i int) *corev1.Pod {
	p := pod("shop", fmt.Sprintf("web-7d9f8-%05d", i), fmt.Sprintf("node-%d", i%100),
		[]string{fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), fmt.Sprintf("2001:db8::%x", i+1)},
		ownedBy("ReplicaSet", "web-7d9f8"), labels("pod-template-hash", "7d9f8", "tier", "front"),
		ports(corev1.ContainerPort{Name: "http", ContainerPort: 8080}))
	p.ManagedFields = append(p.ManagedFields, metav1.ManagedFieldsEntry{Manager: "kubelet", FieldsV1: &metav1.FieldsV1{Raw: make([]byte, 2000)}})
	p.Spec.Volumes = []corev1.Volume{{Name: "token"}, {Name: "config"}}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}}
	p.Spec.Containers[0].Args = []string{"--listen=:8080", "--verbose"}
	p.Spec.InitContainers = []corev1.Container{
		{Name: "init", Ports: []corev1.ContainerPort{{ContainerPort: 1}}},
		{Name: "sidecar", RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways), Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9090}}},
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: "busybox", ImageID: "sha256:abc", ContainerID: "containerd://abc", Ready: true}}
	return p
}

func TestTransformTrims(t *testing.T) {
	p := fatPod(1)
	o, err := transform(p.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	tp := o.(*corev1.Pod)
	if len(tp.ManagedFields) != 0 || len(tp.Annotations) != 0 || len(tp.Spec.Volumes) != 0 || len(tp.Status.Conditions) != 0 || len(tp.Status.ContainerStatuses) != 0 {
		t.Errorf("trimmed pod keeps unused fields: %+v", tp)
	}
	e, ok, _ := podEndpoint(tp)
	full, _, _ := podEndpoint(p)
	if !ok || !sameEndpoint(e, full) {
		t.Errorf("trimmed pod's endpoint %+v differs from the full pod's %+v", e, full)
	}
	if len(e.ep.Ports) != 2 || e.ep.Ports[1].Name != "metrics" {
		t.Errorf("ports = %+v, want the container's and the sidecar's (not the init container's)", e.ep.Ports)
	}
	again, _ := transform(tp.DeepCopy())
	if d := cmp.Diff(tp, again); d != "" {
		t.Errorf("transform is not idempotent (-once +twice):\n%s", d)
	}
	s := svc("shop", "web", []string{"198.19.0.1"}, corev1.ServicePort{Name: "http", Port: 80})
	s.Spec.Selector = map[string]string{"app": "web"}
	ts, _ := transform(s)
	ts2, _ := transform(ts.(*corev1.Service).DeepCopy())
	if d := cmp.Diff(ts, ts2); d != "" || ts.(*corev1.Service).Spec.Selector != nil {
		t.Errorf("service trim: selector kept or not idempotent:\n%s", d)
	}
	sl := slice("shop", "web-x", "web", discoveryv1.AddressTypeIPv4, nil, sliceEP(ptr(true), "198.18.0.1"))
	tsl, _ := transform(sl)
	tsl2, _ := transform(tsl.(*discoveryv1.EndpointSlice).DeepCopy())
	if d := cmp.Diff(tsl, tsl2); d != "" || len(tsl.(*discoveryv1.EndpointSlice).Labels) != 1 {
		t.Errorf("slice trim: labels %v, or not idempotent:\n%s", tsl.(*discoveryv1.EndpointSlice).Labels, d)
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"role": "infra"}, Annotations: map[string]string{"a": "b"}}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "198.18.0.7"},
		{Type: corev1.NodeExternalIP, Address: "2001:db8::7"}, {Type: corev1.NodeInternalDNS, Address: "n1.internal"}}
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"busybox"}}}
	tn, _ := transform(n)
	tn2, _ := transform(tn.(*corev1.Node).DeepCopy())
	want := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.7"}, {Type: corev1.NodeExternalIP, Address: "2001:db8::7"}}
	if d := cmp.Diff(tn, tn2); d != "" || !cmp.Equal(tn.(*corev1.Node).Status.Addresses, want) || tn.(*corev1.Node).Labels["role"] != "infra" ||
		tn.(*corev1.Node).Annotations != nil || tn.(*corev1.Node).Status.Images != nil {
		t.Errorf("node trim: %+v, want labels and the InternalIP and ExternalIP only, idempotent:\n%s", tn, d)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "shop/x", Obj: p}
	if o, _ := transform(tomb); o != tomb {
		t.Error("transform changed a tombstone")
	}
}

func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkPodMemory reports what the source holds per pod of a
// 10,000-pod cluster (the trimmed informer object and its entry), and the
// time of one List over them (no pod of this node).
func BenchmarkPodMemory(b *testing.B) {
	const n = 10000
	s, err := New(fake.NewClientset(), Config{NodeName: "node-x"})
	if err != nil {
		b.Fatal(err)
	}
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	h0 := heap()
	fat := make([]*corev1.Pod, n)
	for i := range fat {
		fat[i] = fatPod(i)
	}
	h1 := heap()
	for _, p := range fat {
		o, _ := transform(p.DeepCopy())
		_ = store.Add(o)
		s.podChanged(o)
	}
	h2 := heap()
	runtime.KeepAlive(fat)
	s.synced.Store(true)
	b.ResetTimer()
	b.ReportAllocs()
	for range b.N {
		if _, err := s.List(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(h2-h1)/n, "B/pod")
	b.ReportMetric(float64(h1-h0)/n, "B/untrimmed-pod")
}
