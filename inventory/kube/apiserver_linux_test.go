//go:build linux

package kube

import (
	"context"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
)

func TestMain(m *testing.M) { kubetest.Main(m, kubetest.Options{}) }

// createRunning creates pod p and sets its status (phase Running and its
// addresses) through the status subresource, as a kubelet would.
func createRunning(t *testing.T, c kubernetes.Interface, p *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	st := p.Status
	p = p.DeepCopy()
	p.Status = corev1.PodStatus{}
	p.Annotations, p.ManagedFields, p.UID = nil, nil, ""
	got, err := c.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	got.Status = st
	if _, err := c.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set status of pod %s: %v", p.Name, err)
	}
}

// TestSourceOnAPIServer runs the source against a real API server: the
// pod field selector is accepted, pods of this node and of another,
// workloads from a ReplicaSet owner, namespace labels, a Service with its
// EndpointSlice, a label change seen through Watch, and a pod that ends
// (Succeeded) leaving the snapshot.
func TestSourceOnAPIServer(t *testing.T) {
	c := kubetest.Shared(t)
	ns := c.Namespace(t, map[string]string{"team": "a"})
	client := c.Client
	web := pod(ns, "web-5c6d7-x1", node, []string{"198.18.0.2", "2001:db8::2"},
		labels("pod-template-hash", "5c6d7"), ports(corev1.ContainerPort{Name: "http", ContainerPort: 8080}))
	web.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5c6d7",
		UID: types.UID("0b6f3a52-5a9e-4c4e-9b1e-000000000001"), Controller: ptr(true)}}
	createRunning(t, client, web)
	createRunning(t, client, pod(ns, "db-0", "node-b", []string{"198.18.1.5"}))
	createRunning(t, client, pod(ns, "job-0", "node-b", []string{"198.18.1.6"}))

	ctx := context.Background()
	if _, err := client.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sl := slice(ns, "web-1", "web", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
		sliceEP(ptr(true), "198.18.0.2"), sliceEP(ptr(false), "198.18.0.3"))
	sl.Namespace = ""
	if _, err := client.DiscoveryV1().EndpointSlices(ns).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	fin := &fakeFinder{nss: []nsInfo{{inode: 31, path: "/run/netns/cni-web", addrs: addrs("198.18.0.2", "2001:db8::2")}}}
	s, err := New(client, Config{NodeName: node, Finder: fin})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := s.WaitForSync(wctx); err != nil {
		t.Fatal(err)
	}
	var notified atomic.Int32
	go func() { _ = s.Watch(rctx, func() { notified.Add(1) }) }()

	mine := func(snap inventory.Snapshot) []model.Endpoint {
		var out []model.Endpoint
		for _, e := range snap.Endpoints {
			if e.Namespace == ns {
				out = append(out, e)
			}
		}
		return out
	}
	snap := eventually(t, s, "three pods", func(snap inventory.Snapshot) bool { return len(mine(snap)) == 3 })
	eps := mine(snap)
	wantWeb := model.Endpoint{Netns: NetnsKey(ns, "web-5c6d7-x1"), Path: "/run/netns/cni-web", NetnsInode: 31, Namespace: ns, Workload: "web",
		Labels: map[string]string{"app": "web-5c6d7-x1", "pod-template-hash": "5c6d7"}, Addrs: addrs("198.18.0.2", "2001:db8::2"),
		Ports: []model.ContainerPort{{Name: "http", Port: 8080, Protocol: model.ProtocolTCP}}}
	if d := cmp.Diff(wantWeb, eps[2], cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("web endpoint (-want +got):\n%s", d)
	}
	if eps[0].Netns != NetnsKey(ns, "db-0") || eps[0].Path != "" || eps[0].Workload != "db-0" {
		t.Errorf("pod of another node: %+v, want a peer without path", eps[0])
	}
	if got := snap.Namespaces[ns]; got["team"] != "a" || got["kubernetes.io/metadata.name"] != ns {
		t.Errorf("namespace labels = %v", got)
	}
	i := slices.IndexFunc(snap.Services, func(s model.Service) bool { return s.Namespace == ns && s.Name == "web" })
	if i < 0 {
		t.Fatalf("service web missing from %+v", snap.Services)
	}
	svc := snap.Services[i]
	if len(svc.Addrs) == 0 || len(svc.Ports) != 1 || svc.Ports[0].Port != 80 ||
		!slices.Equal(svc.Ports[0].Backends, []model.ServiceBackend{{Addr: netip.MustParseAddr("198.18.0.2"), Port: 8080}}) {
		t.Errorf("service = %+v, want a ClusterIP and port 80 → 198.18.0.2:8080 (the unready backend left out)", svc)
	}

	// A label change reaches List (and Watch).
	before := notified.Load()
	p, err := client.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["role"] = "primary"
	if _, err := client.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, "label change", func(snap inventory.Snapshot) bool {
		e, ok := endpoint(snap, NetnsKey(ns, "db-0"))
		return ok && e.Labels["role"] == "primary"
	})
	if notified.Load() == before {
		t.Error("a label change notified no watcher")
	}

	// A pod that ends leaves the snapshot (the field selector's deletion).
	p, err = client.CoreV1().Pods(ns).Get(ctx, "job-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodSucceeded
	if _, err := client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, "ended pod gone", func(snap inventory.Snapshot) bool {
		_, ok := endpoint(snap, NetnsKey(ns, "job-0"))
		return !ok
	})
}
