//go:build linux

// Tests against a real kube-apiserver (internal/kubetest): one cluster for
// the package, started by the first test that needs it.

package kube

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

func TestMain(m *testing.M) {
	// nanoseg's CRDs and its ClusterNetworkPolicy CRD.
	kubetest.Main(m, kubetest.Options{CRDDirs: []string{"../../manifests/crds", "../../manifests/crds/cnp"}})
}

// clusterEnv is a synced watcher on the package's cluster.
type clusterEnv struct {
	c   *kubetest.Cluster
	dyn dynamic.Interface
	w   *PolicyWatcher
}

func startCluster(t *testing.T) *clusterEnv {
	t.Helper()
	c := kubetest.Shared(t)
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	e := &clusterEnv{c: c, dyn: dyn, w: NewPolicyWatcher(c.Client, dyn, nil)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := e.w.WaitForSync(wctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// inNamespace returns the names of the policies in force of namespace ns.
func inNamespace(in policies.InForce, ns string) []string {
	var out []string
	for _, np := range in.NetworkPolicies {
		if np.Namespace == ns {
			out = append(out, "np "+np.Name)
		}
	}
	for _, s := range in.NanoSegments {
		if s.Namespace == ns {
			out = append(out, "seg "+s.Name+" "+string(s.Spec.Mode))
		}
	}
	return out
}

// waitInForce waits until the policies in force of ns are want, and logs
// how long that took after the API call returned (the benchmarks measure
// it; tests assert no durations, and the 10 s bound only keeps a broken
// test from hanging).
func (e *clusterEnv) waitInForce(t *testing.T, ns, what string, since time.Time, want ...string) {
	t.Helper()
	waitFor(t, what, func() bool { return slices.Equal(inNamespace(e.w.InForce(), ns), want) })
	t.Logf("%s: in force %v after the API call returned", what, time.Since(since).Round(time.Millisecond))
}

func (e *clusterEnv) segments(ns string) dynamic.ResourceInterface {
	return e.dyn.Resource(NanoSegmentResource).Namespace(ns)
}

func TestClusterNetworkPolicyCreateUpdateDelete(t *testing.T) {
	ctx := context.Background()
	e := startCluster(t)
	ns := e.c.Namespace(t, nil)
	nps := e.c.Client.NetworkingV1().NetworkPolicies(ns)

	start := time.Now()
	np, err := nps.Create(ctx, netpol(ns, "db", 5432), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.waitInForce(t, ns, "create", start, "np db")

	np.Spec.Ingress[0].Ports[0].Port.IntVal = 6432
	start = time.Now()
	if _, err := nps.Update(ctx, np, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "update", func() bool {
		i := slices.IndexFunc(e.w.InForce().NetworkPolicies, func(p networkingv1.NetworkPolicy) bool { return p.Namespace == ns })
		return i >= 0 && e.w.InForce().NetworkPolicies[i].Spec.Ingress[0].Ports[0].Port.IntVal == 6432
	})
	t.Logf("update: in force %v after the API call returned", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := nps.Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitInForce(t, ns, "delete", start)
}

func TestClusterNanoSegmentCreateUpdateDelete(t *testing.T) {
	ctx := context.Background()
	e := startCluster(t)
	ns := e.c.Namespace(t, nil)

	start := time.Now()
	u, err := e.segments(ns).Create(ctx, toUnstructured(t, segment(ns, "db", model.ModeAudit, 5432)), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.waitInForce(t, ns, "create", start, "seg db audit")

	if err := unstructured.SetNestedField(u.Object, "enforce", "spec", "mode"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := e.segments(ns).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitInForce(t, ns, "update", start, "seg db enforce")

	start = time.Now()
	if err := e.segments(ns).Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitInForce(t, ns, "delete", start)
}

// An update that the CRD's schema accepts but nanoseg's validation refuses
// (a rule id outside [a-z0-9-], a CIDR that does not parse) keeps the
// previous version in force, and is reported.
func TestClusterInvalidNanoSegmentUpdateKeepsPrevious(t *testing.T) {
	ctx := context.Background()
	e := startCluster(t)
	ns := e.c.Namespace(t, nil)
	start := time.Now()
	u, err := e.segments(ns).Create(ctx, toUnstructured(t, segment(ns, "db", model.ModeEnforce, 5432)), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.waitInForce(t, ns, "create", start, "seg db enforce")
	validRV := u.GetResourceVersion()

	// A version the schema allows and the deeper validation refuses
	// (policies.ValidateNanoSegment checks label values; the schema
	// cannot): the API server stores it, the watcher must not apply it.
	bad := segment(ns, "db", model.ModeObserve, 5432)
	bad.Spec.Selector.MatchLabels = map[string]string{"app": "not a label value!"}
	bu := toUnstructured(t, bad)
	bu.SetResourceVersion(validRV)
	updated, err := e.segments(ns).Update(ctx, bu, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("the API server refused an update its schema allows: %v", err)
	}
	waitFor(t, "rejection", func() bool {
		return slices.ContainsFunc(e.w.Rejected(), func(r Rejection) bool { return r.Namespace == ns })
	})
	r := e.w.Rejected()[slices.IndexFunc(e.w.Rejected(), func(r Rejection) bool { return r.Namespace == ns })]
	if r.ResourceVersion != updated.GetResourceVersion() || !r.KeptPrevious || r.KeptResourceVersion != validRV {
		t.Errorf("rejection = %+v; want resourceVersion %s rejected, %s kept", r, updated.GetResourceVersion(), validRV)
	}
	for _, f := range []string{"spec.selector.matchLabels"} {
		if !strings.Contains(r.Err.Error(), f) {
			t.Errorf("error %q does not name %s", r.Err, f)
		}
	}
	in := e.w.InForce()
	if got := inNamespace(in, ns); !slices.Equal(got, []string{"seg db enforce"}) {
		t.Fatalf("in force: %v", got)
	}
	i := slices.IndexFunc(in.NanoSegments, func(s v1alpha1.NanoSegment) bool { return s.Namespace == ns })
	if s := in.NanoSegments[i]; s.ResourceVersion != validRV || s.Spec.Ingress[0].ID != "web" {
		t.Errorf("in force: resourceVersion %s rule %s; want the previous version %s", s.ResourceVersion, s.Spec.Ingress[0].ID, validRV)
	}

	// Fixing it applies the fix and clears the rejection.
	fixed := toUnstructured(t, segment(ns, "db", model.ModeAudit, 5432))
	fixed.SetResourceVersion(updated.GetResourceVersion())
	start = time.Now()
	if _, err := e.segments(ns).Update(ctx, fixed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitInForce(t, ns, "fix", start, "seg db audit")
	if slices.ContainsFunc(e.w.Rejected(), func(r Rejection) bool { return r.Namespace == ns }) {
		t.Errorf("still rejected after the fix: %v", e.w.Rejected())
	}
}

// A NanoSegment the CRD's schema refuses (a mode outside its enum, a rule
// without its required id) is refused by the API server with 422 and never
// reaches the watcher: nothing is stored, so no watch event exists. A
// version the CRD does not serve (nanoseg.io/v1beta1) cannot even be
// written (404). The fake-clientset tests cover what a server that let
// such objects through would do (TestUnknownVersionKindOrFieldRejected).
func TestClusterSchemaRejectedNeverReachesTheWatcher(t *testing.T) {
	ctx := context.Background()
	e := startCluster(t)
	ns := e.c.Namespace(t, nil)

	badMode := toUnstructured(t, segment(ns, "bad-mode", model.ModeEnforce, 80))
	_ = unstructured.SetNestedField(badMode.Object, "bogus", "spec", "mode")
	noID := toUnstructured(t, segment(ns, "no-id", model.ModeEnforce, 80))
	ingress, _, _ := unstructured.NestedSlice(noID.Object, "spec", "ingress")
	delete(ingress[0].(map[string]any), "id")
	_ = unstructured.SetNestedSlice(noID.Object, ingress, "spec", "ingress")
	for _, u := range []*unstructured.Unstructured{badMode, noID} {
		_, err := e.segments(ns).Create(ctx, u, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Errorf("%s: create error %v, want 422 Invalid from the CRD schema", u.GetName(), err)
		} else {
			t.Logf("%s: %v", u.GetName(), err)
		}
	}
	future := toUnstructured(t, segment(ns, "future", model.ModeEnforce, 80))
	future.SetAPIVersion("nanoseg.io/v1beta1")
	if _, err := e.segments(ns).Create(ctx, future, metav1.CreateOptions{}); !apierrors.IsBadRequest(err) {
		t.Errorf("create with apiVersion nanoseg.io/v1beta1 in the body: %v, want 400", err)
	}
	_, err := e.dyn.Resource(NanoSegmentResource.GroupResource().WithVersion("v1beta1")).Namespace(ns).Create(ctx, future, metav1.CreateOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("create through v1beta1: %v, want 404", err)
	}

	// Watch events arrive in order: once a later object is seen, anything
	// stored before it would have been seen too.
	start := time.Now()
	if _, err := e.segments(ns).Create(ctx, toUnstructured(t, segment(ns, "sentinel", model.ModeEnforce, 80)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitInForce(t, ns, "sentinel", start, "seg sentinel enforce")
	for _, r := range e.w.Rejected() {
		if r.Namespace == ns {
			t.Errorf("a schema-refused object reached the watcher: %v", r)
		}
	}
}
