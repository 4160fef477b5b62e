package kube

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// fakeEnv is a watcher over fake clientsets, its log and its metrics.
type fakeEnv struct {
	w      *PolicyWatcher
	client *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	reg    *prometheus.Registry
	log    *syncBuffer
	notes  chan struct{}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{NanoSegmentResource: v1alpha1.Kind + "List",
			ClusterNetworkPolicyResource: cnpv1alpha2.Kind + "List"}, objs...)
}

// startFake starts a synced watcher over fake clientsets holding objs
// (typed objects go to the clientset, unstructured ones to the dynamic
// client).
func startFake(t *testing.T, objs ...runtime.Object) *fakeEnv {
	t.Helper()
	return startFakeWith(t, nil, objs...)
}

// startFakeWith is startFake with setup called on the watcher before it
// runs (nil: none).
func startFakeWith(t *testing.T, setup func(*PolicyWatcher), objs ...runtime.Object) *fakeEnv {
	t.Helper()
	var typed, dyn []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*unstructured.Unstructured); ok {
			dyn = append(dyn, o)
		} else {
			typed = append(typed, o)
		}
	}
	e := &fakeEnv{client: fake.NewClientset(typed...), dyn: newFakeDynamic(dyn...), reg: prometheus.NewRegistry(),
		log: &syncBuffer{}, notes: make(chan struct{}, 100)}
	e.w = NewPolicyWatcher(e.client, e.dyn, slog.New(slog.NewTextHandler(e.log, nil)))
	if err := e.w.Register(e.reg); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(e.w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	e.w.Watch(ctx, func() { e.notes <- struct{}{} })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := e.w.WaitForSync(wctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// waitFor polls cond until it holds; the 10 s bound only keeps a broken
// test from hanging (no test asserts a duration).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func netpol(ns, name string, port int32) *networkingv1.NetworkPolicy {
	p := intstr.FromInt32(port)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &p}}}},
		},
	}
}

func segment(ns, name string, mode model.Mode, port int32) *v1alpha1.NanoSegment {
	p := intstr.FromInt32(port)
	return &v1alpha1.NanoSegment{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.NanoSegmentSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Mode:     mode,
			Ingress: []v1alpha1.Rule{{ID: "web", Ports: []v1alpha1.Port{{Protocol: model.ProtocolTCP, Port: &p}},
				Peers: []v1alpha1.Peer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}}},
		},
	}
}

func toUnstructured(t *testing.T, s *v1alpha1.NanoSegment) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

func names(in policies.InForce) []string {
	var out []string
	for _, np := range in.NetworkPolicies {
		out = append(out, "np "+np.Namespace+"/"+np.Name)
	}
	for _, s := range in.NanoSegments {
		out = append(out, "seg "+s.Namespace+"/"+s.Name+" "+string(s.Spec.Mode))
	}
	return out
}

func (e *fakeEnv) segs() dynamicResource { return dynamicResource{e.dyn} }

type dynamicResource struct {
	dyn *dynamicfake.FakeDynamicClient
}

func (d dynamicResource) create(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	if _, err := d.dyn.Resource(NanoSegmentResource).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (d dynamicResource) update(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	if _, err := d.dyn.Resource(NanoSegmentResource).Namespace(u.GetNamespace()).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestNetworkPoliciesFollowTheAPI(t *testing.T) {
	ctx := context.Background()
	e := startFake(t, netpol("shop", "db", 5432))
	if got := names(e.w.InForce()); !slices.Equal(got, []string{"np shop/db"}) {
		t.Fatalf("after sync: %v", got)
	}
	in := e.w.InForce()
	if np := in.NetworkPolicies[0]; np.APIVersion != "networking.k8s.io/v1" || np.Kind != "NetworkPolicy" {
		t.Errorf("type meta = %q %q", np.APIVersion, np.Kind)
	}
	nps := e.client.NetworkingV1().NetworkPolicies("shop")
	if _, err := nps.Create(ctx, netpol("shop", "api", 8080), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "api in force", func() bool { return len(e.w.InForce().NetworkPolicies) == 2 })
	<-e.notes

	upd := netpol("shop", "api", 9090)
	if _, err := nps.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "api updated", func() bool {
		for _, np := range e.w.InForce().NetworkPolicies {
			if np.Name == "api" {
				return np.Spec.Ingress[0].Ports[0].Port.IntVal == 9090
			}
		}
		return false
	})
	if err := nps.Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "db gone", func() bool { return slices.Equal(names(e.w.InForce()), []string{"np shop/api"}) })
	if got := testutil.ToFloat64(e.w.m.policies.WithLabelValues(KindNetworkPolicy)); got != 1 {
		t.Errorf("policies gauge = %v, want 1", got)
	}
	if r := e.w.Rejected(); len(r) != 0 {
		t.Errorf("rejected: %v", r)
	}
}

func TestInForceIsACopy(t *testing.T) {
	e := startFake(t, netpol("shop", "db", 5432), toUnstructured(t, segment("shop", "web", model.ModeEnforce, 80)))
	in := e.w.InForce()
	in.NetworkPolicies[0].Spec.PodSelector.MatchLabels["app"] = "changed"
	in.NanoSegments[0].Spec.Ingress[0].ID = "changed"
	again := e.w.InForce()
	if again.NetworkPolicies[0].Spec.PodSelector.MatchLabels["app"] != "db" || again.NanoSegments[0].Spec.Ingress[0].ID != "web" {
		t.Fatalf("InForce shares memory with the watcher: %+v", again)
	}
	if _, err := again.Set(); err != nil {
		t.Fatalf("the set in force does not compile: %v", err)
	}
}

func TestNanoSegmentsFollowTheAPI(t *testing.T) {
	e := startFake(t, toUnstructured(t, segment("shop", "db", model.ModeEnforce, 5432)))
	if got := names(e.w.InForce()); !slices.Equal(got, []string{"seg shop/db enforce"}) {
		t.Fatalf("after sync: %v", got)
	}
	e.segs().create(t, toUnstructured(t, segment("shop", "api", model.ModeAudit, 8080)))
	waitFor(t, "api in force", func() bool {
		return slices.Equal(names(e.w.InForce()), []string{"seg shop/api audit", "seg shop/db enforce"})
	})
	e.segs().update(t, toUnstructured(t, segment("shop", "api", model.ModeEnforce, 8080)))
	waitFor(t, "api enforcing", func() bool {
		return slices.Equal(names(e.w.InForce()), []string{"seg shop/api enforce", "seg shop/db enforce"})
	})
	if err := e.dyn.Resource(NanoSegmentResource).Namespace("shop").Delete(context.Background(), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "db gone", func() bool { return slices.Equal(names(e.w.InForce()), []string{"seg shop/api enforce"}) })
}

// An invalid first version is not applied, is reported in Rejected, the
// log and the metrics, and is applied once fixed.
func TestInvalidNewNanoSegmentIsNotApplied(t *testing.T) {
	e := startFake(t)
	bad := segment("shop", "db", model.ModeEnforce, 5432)
	bad.Spec.Ingress[0].ID = "Not_An_ID"
	e.segs().create(t, toUnstructured(t, bad))
	waitFor(t, "rejection", func() bool { return len(e.w.Rejected()) == 1 })
	r := e.w.Rejected()[0]
	if r.Key() != "NanoSegment shop/db" || r.KeptPrevious || !errors.Is(r.Err, policies.ErrInvalid) ||
		!strings.Contains(r.Err.Error(), "spec.ingress[0].id") {
		t.Errorf("rejection = %v", r)
	}
	if got := e.w.InForce(); len(got.NanoSegments) != 0 {
		t.Errorf("invalid segment applied: %v", names(got))
	}
	if got := testutil.ToFloat64(e.w.m.rejected.WithLabelValues(KindNanoSegment, "none")); got != 1 {
		t.Errorf("rejected{none} = %v", got)
	}
	if got := testutil.ToFloat64(e.w.m.rejections.WithLabelValues(KindNanoSegment)); got != 1 {
		t.Errorf("rejections_total = %v", got)
	}
	if log := e.log.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "not applied") || !strings.Contains(log, "spec.ingress[0].id") {
		t.Errorf("log:\n%s", log)
	}

	e.segs().update(t, toUnstructured(t, segment("shop", "db", model.ModeEnforce, 5432)))
	waitFor(t, "fixed version applied", func() bool { return len(e.w.InForce().NanoSegments) == 1 })
	if r := e.w.Rejected(); len(r) != 0 {
		t.Errorf("still rejected: %v", r)
	}
	if got := testutil.ToFloat64(e.w.m.rejected.WithLabelValues(KindNanoSegment, "none")); got != 0 {
		t.Errorf("rejected{none} = %v after the fix", got)
	}
}

// An invalid update of an object in force keeps its last valid version in
// force; deleting the object removes both.
func TestInvalidUpdateKeepsLastValidVersion(t *testing.T) {
	e := startFake(t, toUnstructured(t, segment("shop", "db", model.ModeEnforce, 5432)))
	before := e.w.InForce()
	keptRV := before.NanoSegments[0].ResourceVersion

	bad := segment("shop", "db", model.ModeObserve, 5432)
	bad.Spec.Ingress[0].Peers[0].IPBlock = &v1alpha1.IPBlock{CIDR: "not-a-cidr"} // two kinds of peer, and a bad CIDR
	e.segs().update(t, toUnstructured(t, bad))
	waitFor(t, "rejection", func() bool { return len(e.w.Rejected()) == 1 })
	r := e.w.Rejected()[0]
	if !r.KeptPrevious || r.KeptResourceVersion != keptRV {
		t.Errorf("rejection = %+v, want kept resourceVersion %q", r, keptRV)
	}
	for _, f := range []string{"spec.ingress[0].peers[0].ipBlock.cidr", "spec.ingress[0].peers[0]"} {
		if !strings.Contains(r.Err.Error(), f) {
			t.Errorf("error %q does not name %s", r.Err, f)
		}
	}
	if got := e.w.InForce(); !slices.Equal(names(got), []string{"seg shop/db enforce"}) || got.NanoSegments[0].Spec.Ingress[0].Peers[0].IPBlock != nil {
		t.Errorf("in force after an invalid update: %v", names(got))
	}
	if got := testutil.ToFloat64(e.w.m.rejected.WithLabelValues(KindNanoSegment, "previous")); got != 1 {
		t.Errorf("rejected{previous} = %v", got)
	}
	if log := e.log.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "last valid version stays in force") {
		t.Errorf("log:\n%s", log)
	}

	if err := e.dyn.Resource(NanoSegmentResource).Namespace("shop").Delete(context.Background(), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "db gone", func() bool { return len(e.w.InForce().NanoSegments) == 0 && len(e.w.Rejected()) == 0 })
	if got := testutil.ToFloat64(e.w.m.rejected.WithLabelValues(KindNanoSegment, "previous")); got != 0 {
		t.Errorf("rejected{previous} = %v after delete", got)
	}
}

// The API server validates NetworkPolicies, but the watcher does not rely
// on it (an API server of another version may accept what this build
// cannot enforce): the fake clientset validates nothing.
func TestInvalidNetworkPolicyUpdateKeepsLastValidVersion(t *testing.T) {
	ctx := context.Background()
	e := startFake(t, netpol("shop", "db", 5432))
	bad := netpol("shop", "db", 5432)
	bad.Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "198.18.0.0/15", Except: []string{"10.0.0.0/8"}}}}
	if _, err := e.client.NetworkingV1().NetworkPolicies("shop").Update(ctx, bad, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rejection", func() bool { return len(e.w.Rejected()) == 1 })
	r := e.w.Rejected()[0]
	if r.Key() != "NetworkPolicy shop/db" || !r.KeptPrevious || !strings.Contains(r.Err.Error(), "spec.ingress[0].from[0].ipBlock.except[0]") {
		t.Errorf("rejection = %v", r)
	}
	if got := e.w.InForce(); len(got.NetworkPolicies) != 1 || len(got.NetworkPolicies[0].Spec.Ingress[0].From) != 0 {
		t.Errorf("in force: %+v", got.NetworkPolicies)
	}
	if got := testutil.ToFloat64(e.w.m.rejections.WithLabelValues(KindNetworkPolicy)); got != 1 {
		t.Errorf("rejections_total = %v", got)
	}
}

// A NanoSegment of an apiVersion or kind this build does not know, or with
// a field its type lacks, is rejected with an error that says so.
func TestUnknownVersionKindOrFieldRejected(t *testing.T) {
	e := startFake(t)
	for _, c := range []struct {
		name, apiVersion, kind string
		extra                  func(u *unstructured.Unstructured)
		want                   error
		wantText               string
	}{
		{"future-version", "nanoseg.io/v1beta1", v1alpha1.Kind, nil, policies.ErrInvalid, `apiVersion "nanoseg.io/v1beta1"`},
		{"other-kind", v1alpha1.APIVersion, "NanoSegmentPolicy", nil, policies.ErrInvalid, `kind "NanoSegmentPolicy"`},
		{"new-field", v1alpha1.APIVersion, v1alpha1.Kind, func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "deny", "spec", "defaultAction")
		}, policies.ErrUnknownField, "spec.defaultAction"},
	} {
		u := toUnstructured(t, segment("shop", c.name, model.ModeEnforce, 80))
		u.SetAPIVersion(c.apiVersion)
		u.SetKind(c.kind)
		if c.extra != nil {
			c.extra(u)
		}
		e.segs().create(t, u)
		waitFor(t, c.name+" rejected", func() bool {
			return slices.ContainsFunc(e.w.Rejected(), func(r Rejection) bool { return r.Name == c.name })
		})
		i := slices.IndexFunc(e.w.Rejected(), func(r Rejection) bool { return r.Name == c.name })
		r := e.w.Rejected()[i]
		if !errors.Is(r.Err, c.want) || !strings.Contains(r.Err.Error(), c.wantText) {
			t.Errorf("%s: error %v, want %v naming %s", c.name, r.Err, c.want, c.wantText)
		}
	}
	if got := e.w.InForce(); len(got.NanoSegments) != 0 {
		t.Errorf("applied: %v", names(got))
	}
}

// A status written by a controller is ignored, also when it holds fields
// this build does not know.
func TestStatusIgnored(t *testing.T) {
	u := toUnstructured(t, segment("shop", "db", model.ModeEnforce, 5432))
	_ = unstructured.SetNestedField(u.Object, "from the future", "status", "newField")
	e := startFake(t, u)
	if got := names(e.w.InForce()); !slices.Equal(got, []string{"seg shop/db enforce"}) {
		t.Fatalf("in force: %v; rejected: %v", got, e.w.Rejected())
	}
}

// Watch is called on every change; a change of labels alone, which
// enforces nothing new, is not one.
func TestWatchNotifiesOnChanges(t *testing.T) {
	ctx := context.Background()
	e := startFake(t, netpol("shop", "db", 5432))
	drain := func() {
		for {
			select {
			case <-e.notes:
			default:
				return
			}
		}
	}
	drain()
	nps := e.client.NetworkingV1().NetworkPolicies("shop")
	relabelled := netpol("shop", "db", 5432)
	relabelled.Labels = map[string]string{"team": "a"}
	if _, err := nps.Update(ctx, relabelled, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nps.Create(ctx, netpol("shop", "api", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "api", func() bool { return len(e.w.InForce().NetworkPolicies) == 2 })
	select {
	case <-e.notes:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification for a new NetworkPolicy")
	}
	if got := e.w.InForce().NetworkPolicies[1]; got.Name != "db" || got.Labels["team"] != "a" {
		t.Errorf("the relabelled version is not the one kept: %+v", got.ObjectMeta)
	}
}

// Synced is false before Run and until both informers listed.
func TestNotSyncedBeforeRun(t *testing.T) {
	w := NewPolicyWatcher(fake.NewClientset(), newFakeDynamic(), nil)
	if w.Synced() {
		t.Fatal("synced before Run")
	}
}

// NanoSegmentResource is what the CRD serves.
func TestResourceMatchesCRD(t *testing.T) {
	b, err := os.ReadFile("../../manifests/crds/nanoseg.io_nanosegments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Group string `json:"group"`
			Names struct {
				Plural string `json:"plural"`
				Kind   string `json:"kind"`
			} `json:"names"`
			Scope    string `json:"scope"`
			Versions []struct {
				Name    string `json:"name"`
				Served  bool   `json:"served"`
				Storage bool   `json:"storage"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	s := crd.Spec
	if s.Group != NanoSegmentResource.Group || s.Names.Plural != NanoSegmentResource.Resource || s.Names.Kind != v1alpha1.Kind || s.Scope != "Namespaced" {
		t.Errorf("CRD %s/%s kind %s scope %s; watcher %v", s.Group, s.Names.Plural, s.Names.Kind, s.Scope, NanoSegmentResource)
	}
	if !slices.ContainsFunc(s.Versions, func(v struct {
		Name    string `json:"name"`
		Served  bool   `json:"served"`
		Storage bool   `json:"storage"`
	}) bool {
		return v.Name == NanoSegmentResource.Version && v.Served
	}) {
		t.Errorf("CRD does not serve %s: %+v", NanoSegmentResource.Version, s.Versions)
	}
}
