package kube

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
)

const node = "node-a"

// fakeFinder matches pods against a settable list of namespaces with the
// real matching rule.
type fakeFinder struct {
	mu        sync.Mutex
	nss       []nsInfo
	refreshes atomic.Int32
	changed   func()
}

func (f *fakeFinder) set(nss ...nsInfo) {
	f.mu.Lock()
	f.nss = nss
	ch := f.changed
	f.mu.Unlock()
	if ch != nil {
		ch()
	}
}

func (f *fakeFinder) Find(pods map[string][]netip.Addr) map[string]Found {
	f.mu.Lock()
	defer f.mu.Unlock()
	return match(f.nss, pods)
}
func (f *fakeFinder) Refresh() { f.refreshes.Add(1) }
func (f *fakeFinder) Run(ctx context.Context, changed func()) error {
	f.mu.Lock()
	f.changed = changed
	f.mu.Unlock()
	<-ctx.Done()
	return nil
}
func (f *fakeFinder) HasSynced() bool { return true }

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

type podOpt func(*corev1.Pod)

func pod(ns, name, nodeName string, ips []string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name),
			CreationTimestamp: metav1.NewTime(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)),
			Labels:            map[string]string{"app": name},
			Annotations:       map[string]string{"big": strings.Repeat("x", 1000)},
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}},
		Spec:   corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func ownedBy(kind, name string) podOpt {
	return func(p *corev1.Pod) {
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: "u", Controller: ptr(true)})
	}
}

func labels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func created(t time.Time) podOpt {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t) }
}

func ports(ps ...corev1.ContainerPort) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Ports = ps }
}

func ptr[T any](v T) *T { return &v }

func namespace(name string, l map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

// start runs a source over a fake clientset holding objs and waits for it
// to sync.
func start(t *testing.T, f Finder, reg prometheus.Registerer, objs ...runtime.Object) (*Source, kubernetes.Interface) {
	t.Helper()
	client := fake.NewClientset(objs...)
	s, err := New(client, Config{NodeName: node, Finder: f, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := s.WaitForSync(wctx); err != nil {
		t.Fatal(err)
	}
	return s, client
}

// eventually lists until check passes (the informers see API writes
// asynchronously) and returns the last snapshot.
func eventually(t *testing.T, s *Source, what string, check func(inventory.Snapshot) bool) inventory.Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, err := s.List(context.Background())
		if err == nil && check(snap) {
			return snap
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 10s; last snapshot %+v, err %v", what, snap, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func endpoint(snap inventory.Snapshot, key string) (model.Endpoint, bool) {
	for _, e := range snap.Endpoints {
		if e.Netns == key {
			return e, true
		}
	}
	return model.Endpoint{}, false
}

func TestWorkload(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []podOpt
		want string
	}{
		{"deployment", []podOpt{ownedBy("ReplicaSet", "web-7d9f8"), labels("pod-template-hash", "7d9f8")}, "web"},
		{"lab replica", []podOpt{ownedBy("ReplicaSet", "api-lab"), labels("pod-template-hash", "lab")}, "api"},
		{"replicaset of its own", []podOpt{ownedBy("ReplicaSet", "rs1"), labels("pod-template-hash", "zz")}, "rs1"},
		{"replicaset without hash label", []podOpt{ownedBy("ReplicaSet", "web-7d9f8")}, "web-7d9f8"},
		{"statefulset", []podOpt{ownedBy("StatefulSet", "db")}, "db"},
		{"daemonset", []podOpt{ownedBy("DaemonSet", "agent")}, "agent"},
		{"job", []podOpt{ownedBy("Job", "migrate-29")}, "migrate-29"},
		{"replicationcontroller", []podOpt{ownedBy("ReplicationController", "old")}, "old"},
		{"no owner", nil, "solo-0"},
		{"owner that is no controller", []podOpt{func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "StatefulSet", Name: "db"}}
		}}, "solo-0"},
	} {
		p := pod("shop", "solo-0", node, nil, tc.opts...)
		if got := Workload(p); got != tc.want {
			t.Errorf("%s: Workload = %q, want %q", tc.name, got, tc.want)
		}
		if got := Workload(trimPod(p)); got != tc.want {
			t.Errorf("%s: Workload of the trimmed pod = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func svc(ns, name string, clusterIPs []string, ps ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIPs: clusterIPs, Ports: ps}}
	if len(clusterIPs) > 0 {
		s.Spec.ClusterIP = clusterIPs[0]
	}
	return s
}

func slice(ns, name, service string, at discoveryv1.AddressType, ps []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: service, "endpointslice.kubernetes.io/managed-by": "x"}},
		AddressType: at, Ports: ps, Endpoints: eps}
}

func sliceEP(ready *bool, as ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: as, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
}

// TestSnapshot checks the whole snapshot of a small cluster: which pods
// count, local pods with their netns and remote pods as peers, workloads,
// ports, namespaces with their name label, and Services with their ready
// backends per port.
func TestSnapshot(t *testing.T) {
	fin := &fakeFinder{nss: []nsInfo{{inode: 11, path: "/run/netns/cni-web", addrs: addrs("198.18.0.2", "2001:db8::2")}}}
	del := metav1.NewTime(time.Now())
	objs := []runtime.Object{
		namespace("shop", map[string]string{"team": "a"}),
		namespace("kube-system", nil),
		pod("shop", "web-7d9f8-abcde", node, []string{"198.18.0.2", "2001:db8::2"},
			ownedBy("ReplicaSet", "web-7d9f8"), labels("pod-template-hash", "7d9f8"),
			ports(corev1.ContainerPort{Name: "http", ContainerPort: 8080}, corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP})),
		pod("shop", "db-0", "node-b", []string{"198.18.1.5"}, ownedBy("StatefulSet", "db"),
			ports(corev1.ContainerPort{ContainerPort: 5432, Protocol: corev1.ProtocolSCTP})),
		pod("shop", "gone-0", node, []string{"198.18.0.9"}, func(p *corev1.Pod) { p.DeletionTimestamp = &del }),
		pod("shop", "lost-0", node, []string{"198.18.0.7"}),
		pod("shop", "pending-0", node, nil, func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }),
		pod("shop", "done-0", node, []string{"198.18.0.3"}, func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("shop", "failed-0", "node-b", []string{"198.18.1.3"}, func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }),
		pod("kube-system", "proxy-x", node, []string{"198.18.200.1"}, func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		svc("shop", "web", []string{"198.19.0.10", "2001:db8:f::10"},
			corev1.ServicePort{Name: "http", Port: 80}, corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
		slice("shop", "web-v4", "web", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}, {Name: ptr("dns"), Port: ptr(int32(5353)), Protocol: ptr(corev1.ProtocolUDP)}},
			sliceEP(ptr(true), "198.18.0.2"), sliceEP(nil, "198.18.1.9"), sliceEP(ptr(false), "198.18.0.99")),
		slice("shop", "web-v6", "web", discoveryv1.AddressTypeIPv6,
			[]discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
			sliceEP(ptr(true), "2001:db8::2")),
		slice("shop", "web-fqdn", "web", discoveryv1.AddressTypeFQDN,
			[]discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}}, sliceEP(ptr(true), "web.example")),
		svc("shop", "db", []string{"198.19.0.11"}, corev1.ServicePort{Port: 5432, Protocol: corev1.ProtocolSCTP}),
		slice("shop", "db-x", "db", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{{Port: ptr(int32(5432)), Protocol: ptr(corev1.ProtocolSCTP)}}, sliceEP(ptr(true), "198.18.1.5")),
		svc("shop", "empty", []string{"198.19.0.12"}, corev1.ServicePort{Name: "http", Port: 80}),
		svc("shop", "headless", []string{corev1.ClusterIPNone}, corev1.ServicePort{Port: 80}),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "ext"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "pay.example"}},
	}
	reg := prometheus.NewRegistry()
	s, _ := start(t, fin, reg, objs...)
	snap, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := inventory.Snapshot{
		Endpoints: []model.Endpoint{
			{Netns: "shop_db-0", Namespace: "shop", Workload: "db", Labels: map[string]string{"app": "db-0"},
				Addrs: addrs("198.18.1.5"), Ports: []model.ContainerPort{{Port: 5432, Protocol: model.ProtocolSCTP}}},
			{Netns: "shop_gone-0", Namespace: "shop", Workload: "gone-0", Labels: map[string]string{"app": "gone-0"}, Addrs: addrs("198.18.0.9")},
			{Netns: "shop_lost-0", Namespace: "shop", Workload: "lost-0", Labels: map[string]string{"app": "lost-0"}, Addrs: addrs("198.18.0.7")},
			{Netns: "shop_web-7d9f8-abcde", Path: "/run/netns/cni-web", NetnsInode: 11, Namespace: "shop", Workload: "web",
				Labels: map[string]string{"app": "web-7d9f8-abcde", "pod-template-hash": "7d9f8"}, Addrs: addrs("198.18.0.2", "2001:db8::2"),
				Ports: []model.ContainerPort{{Name: "http", Port: 8080, Protocol: model.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: model.ProtocolUDP}}},
		},
		Namespaces: map[string]map[string]string{
			"shop":        {"team": "a", "kubernetes.io/metadata.name": "shop"},
			"kube-system": {"kubernetes.io/metadata.name": "kube-system"},
		},
		Services: []model.Service{
			{Namespace: "shop", Name: "db", Addrs: addrs("198.19.0.11"), Ports: []model.ServicePort{
				{Protocol: model.ProtocolSCTP, Port: 5432, Backends: []model.ServiceBackend{{Addr: netip.MustParseAddr("198.18.1.5"), Port: 5432}}}}},
			{Namespace: "shop", Name: "empty", Addrs: addrs("198.19.0.12"), Ports: []model.ServicePort{{Name: "http", Protocol: model.ProtocolTCP, Port: 80}}},
			{Namespace: "shop", Name: "web", Addrs: addrs("198.19.0.10", "2001:db8:f::10"), Ports: []model.ServicePort{
				{Name: "http", Protocol: model.ProtocolTCP, Port: 80, Backends: []model.ServiceBackend{
					{Addr: netip.MustParseAddr("198.18.0.2"), Port: 8080}, {Addr: netip.MustParseAddr("198.18.1.9"), Port: 8080},
					{Addr: netip.MustParseAddr("2001:db8::2"), Port: 8080}}},
				{Name: "dns", Protocol: model.ProtocolUDP, Port: 53, Backends: []model.ServiceBackend{
					{Addr: netip.MustParseAddr("198.18.0.2"), Port: 5353}, {Addr: netip.MustParseAddr("198.18.1.9"), Port: 5353}}}}},
		},
	}
	if d := cmp.Diff(want, snap, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("snapshot (-want +got):\n%s", d)
	}
	wantUnfound := []Unfound{
		{Pod: "shop/gone-0", Netns: "shop_gone-0", Addrs: addrs("198.18.0.9"), Code: ReasonNotFound, Reason: "no network namespace of this node holds 198.18.0.9"},
		{Pod: "shop/lost-0", Netns: "shop_lost-0", Addrs: addrs("198.18.0.7"), Code: ReasonNotFound, Reason: "no network namespace of this node holds 198.18.0.7"},
	}
	if d := cmp.Diff(wantUnfound, s.Unfound(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("unfound (-want +got):\n%s", d)
	}
	if n := testutil.ToFloat64(s.unfoundG.WithLabelValues(ReasonNotFound)); n != 2 {
		t.Errorf("unfound gauge (not_found) = %v, want 2", n)
	}
	if n, err := testutil.GatherAndCount(reg, "nanoseg_node_pod_netns_unfound"); err != nil || n != 3 {
		t.Errorf("registered unfound series = %d, %v; want 3 (one per reason)", n, err)
	}
	if fin.refreshes.Load() == 0 {
		t.Error("unfound local pods asked the finder for no rescan")
	}
}

func TestListBeforeSync(t *testing.T) {
	s, err := New(fake.NewClientset(), Config{NodeName: node})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(context.Background()); !errors.Is(err, ErrNotSynced) {
		t.Errorf("List before Run = %v, want ErrNotSynced", err)
	}
	if s.HasSynced() {
		t.Error("HasSynced before Run")
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{NodeName: "a b", Resync: -time.Second}.Validate()
	if err == nil || !strings.Contains(err.Error(), "resync") || !strings.Contains(err.Error(), "nodeName") {
		t.Errorf("Validate = %v, want both fields named", err)
	}
}

// TestAddressConflict: when two pods claim one address, the newer keeps
// it; the older loses it (and is no endpoint when it has no other).
func TestAddressConflict(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s, _ := start(t, &fakeFinder{}, nil,
		pod("shop", "old-0", "node-b", []string{"198.18.1.4"}, created(t0)),
		pod("shop", "new-0", "node-b", []string{"198.18.1.4"}, created(t0.Add(time.Minute))),
		pod("shop", "dual-0", "node-b", []string{"198.18.1.5", "2001:db8::5"}, created(t0)),
		pod("shop", "v4-0", "node-b", []string{"198.18.1.5"}, created(t0.Add(time.Minute))),
		pod("shop", "tie-a", "node-b", []string{"198.18.1.6"}, created(t0)),
		pod("shop", "tie-b", "node-b", []string{"198.18.1.6"}, created(t0)),
	)
	snap, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range snap.Endpoints {
		got = append(got, e.Netns+"="+addrList(e.Addrs))
	}
	want := "shop_dual-0=2001:db8::5 shop_new-0=198.18.1.4 shop_tie-b=198.18.1.6 shop_v4-0=198.18.1.5"
	if strings.Join(got, " ") != want {
		t.Errorf("endpoints = %s\nwant        %s", strings.Join(got, " "), want)
	}
}

// TestIPReuse: a pod of this node deleted and its address given to a new
// pod: the new pod is a new endpoint (new key, the new namespace's inode),
// with nothing of the old pod; while the old namespace still holds the
// address, the new pod is unfound (ambiguous), never matched to the old
// namespace.
func TestIPReuse(t *testing.T) {
	fin := &fakeFinder{nss: []nsInfo{{inode: 21, path: "/run/netns/cni-old", addrs: addrs("198.18.0.4")}}}
	s, client := start(t, fin, nil, namespace("shop", nil),
		pod("shop", "api-0", node, []string{"198.18.0.4"}, labels("role", "old"), ports(corev1.ContainerPort{Name: "http", ContainerPort: 80})))
	snap := eventually(t, s, "old pod found", func(snap inventory.Snapshot) bool {
		e, ok := endpoint(snap, "shop_api-0")
		return ok && e.NetnsInode == 21
	})
	_ = snap
	ctx := context.Background()
	if err := client.CoreV1().Pods("shop").Delete(ctx, "api-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods("shop").Create(ctx, pod("shop", "api-1", node, []string{"198.18.0.4"}, labels("role", "new")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The old namespace is still there with the address, and so is the new.
	fin.set(nsInfo{inode: 21, path: "/run/netns/cni-old", addrs: addrs("198.18.0.4")}, nsInfo{inode: 22, path: "/run/netns/cni-new", addrs: addrs("198.18.0.4")})
	snap = eventually(t, s, "new pod listed", func(snap inventory.Snapshot) bool {
		_, old := endpoint(snap, "shop_api-0")
		_, ok := endpoint(snap, "shop_api-1")
		return ok && !old
	})
	e, _ := endpoint(snap, "shop_api-1")
	if e.Path != "" || e.NetnsInode != 0 {
		t.Errorf("new pod matched to %s (%d) while two namespaces hold its address", e.Path, e.NetnsInode)
	}
	if u := s.Unfound(); len(u) != 1 || u[0].Code != ReasonAmbiguous {
		t.Errorf("unfound = %+v, want the new pod, ambiguous", u)
	}
	fin.set(nsInfo{inode: 22, path: "/run/netns/cni-new", addrs: addrs("198.18.0.4")})
	snap = eventually(t, s, "new pod found", func(snap inventory.Snapshot) bool {
		e, ok := endpoint(snap, "shop_api-1")
		return ok && e.NetnsInode == 22
	})
	e, _ = endpoint(snap, "shop_api-1")
	want := model.Endpoint{Netns: "shop_api-1", Path: "/run/netns/cni-new", NetnsInode: 22, Namespace: "shop", Workload: "api-1",
		Labels: map[string]string{"app": "api-1", "role": "new"}, Addrs: addrs("198.18.0.4")}
	if d := cmp.Diff(want, e, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("new pod's endpoint (-want +got):\n%s", d)
	}
	if len(snap.Endpoints) != 1 {
		t.Errorf("endpoints = %+v, want the new pod only", snap.Endpoints)
	}
	if u := s.Unfound(); len(u) != 0 {
		t.Errorf("unfound = %+v, want none", u)
	}
}

// TestWatchNotifies: Watch's notify runs on pod, namespace, Service and
// EndpointSlice events and on finder changes, and stops with its context.
func TestWatchNotifies(t *testing.T) {
	fin := &fakeFinder{}
	s, client := start(t, fin, nil, namespace("shop", nil))
	var n atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, func() { n.Add(1) }) }()
	waitFor := func(what string, act func() error) {
		t.Helper()
		before := n.Load()
		if err := act(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for n.Load() == before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no notification", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	bg := context.Background()
	time.Sleep(50 * time.Millisecond) // let Watch register
	waitFor("pod created", func() error {
		_, err := client.CoreV1().Pods("shop").Create(bg, pod("shop", "a-0", node, []string{"198.18.0.5"}), metav1.CreateOptions{})
		return err
	})
	if fin.refreshes.Load() == 0 {
		t.Error("a new pod of this node asked the finder for no rescan")
	}
	waitFor("namespace labelled", func() error {
		_, err := client.CoreV1().Namespaces().Update(bg, namespace("shop", map[string]string{"x": "y"}), metav1.UpdateOptions{})
		return err
	})
	waitFor("service created", func() error {
		_, err := client.CoreV1().Services("shop").Create(bg, svc("shop", "a", []string{"198.19.0.1"}, corev1.ServicePort{Port: 80}), metav1.CreateOptions{})
		return err
	})
	waitFor("slice created", func() error {
		_, err := client.DiscoveryV1().EndpointSlices("shop").Create(bg, slice("shop", "a-x", "a", discoveryv1.AddressTypeIPv4, nil), metav1.CreateOptions{})
		return err
	})
	waitFor("finder changed", func() error { fin.set(); return nil })
	waitFor("pod deleted", func() error { return client.CoreV1().Pods("shop").Delete(bg, "a-0", metav1.DeleteOptions{}) })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch = %v", err)
	}
}

// TestPodsOfOtherNodesArePeers: without a node name nothing is local, and
// no pod is reported unfound.
func TestPodsOfOtherNodesArePeers(t *testing.T) {
	fin := &fakeFinder{nss: []nsInfo{{inode: 5, path: "/run/netns/x", addrs: addrs("198.18.0.2")}}}
	client := fake.NewClientset(pod("shop", "a-0", "", []string{"198.18.0.2"}))
	s, err := New(client, Config{Finder: fin})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	if err := s.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := s.List(ctx)
	if err != nil || len(snap.Endpoints) != 1 || snap.Endpoints[0].Path != "" || len(s.Unfound()) != 0 {
		t.Errorf("snapshot %+v, unfound %+v, err %v; want one peer", snap.Endpoints, s.Unfound(), err)
	}
}
