//go:build linux

package manifests_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/manifests"
	"github.com/nanoseg/nanoseg/transport"
)

// One API server for the package, enforcing Pod Security's restricted
// level by default (testdata/admission.yaml); the tests apply the CRDs
// themselves, from the manifests.
func TestMain(m *testing.M) {
	admission, err := filepath.Abs("testdata/admission.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kubetest.Main(m, kubetest.Options{APIServerArgs: []string{"--admission-control-config-file=" + admission}})
}

var nanosegments = schema.GroupVersionResource{Group: "nanoseg.io", Version: "v1alpha1", Resource: "nanosegments"}

const fieldManager = "nanoseg-manifests-test"

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// applier applies unstructured objects by server-side apply with strict
// field validation, as `kubectl apply --server-side` does.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

func (a *applier) apply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) { // a kind whose CRD was just created
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", manifests.Ref(o), err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	body, err := o.MarshalJSON()
	if err != nil {
		return nil, err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: &force, FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	got, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
	if err != nil {
		return nil, fmt.Errorf("apply %s: %w", manifests.Ref(o), err)
	}
	return got, nil
}

// waitEstablished waits until every CRD among objs is Established.
func waitEstablished(ctx context.Context, a *applier, objs []*unstructured.Unstructured) error {
	crds := a.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		for {
			got, err := crds.Get(ctx, o.GetName(), metav1.GetOptions{})
			if err == nil {
				conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
				if slices.ContainsFunc(conds, func(c any) bool {
					m, _ := c.(map[string]any)
					return m["type"] == "Established" && m["status"] == "True"
				}) {
					break
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not Established: %w (last error %v)", o.GetName(), ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	a.mapper.Reset()
	return nil
}

// TestKustomizeAgrees renders the kustomization with kubectl's kustomize
// and compares the objects with manifests.Objects, so tools that deploy
// with client-go get what `kubectl apply -k manifests` applies.
func TestKustomizeAgrees(t *testing.T) {
	kubectl := kubectlPath(t)
	out, err := exec.Command(kubectl, "kustomize", ".").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v %s", err, stderrOf(err))
	}
	theirs, err := manifests.Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	ours := objects(t)
	byRef := map[string]*unstructured.Unstructured{}
	for _, o := range ours {
		byRef[manifests.Ref(o)] = o
	}
	if len(theirs) != len(ours) {
		t.Errorf("kubectl kustomize gives %d objects, manifests.Objects %d", len(theirs), len(ours))
	}
	for _, o := range theirs {
		mine, ok := byRef[manifests.Ref(o)]
		if !ok {
			t.Errorf("kubectl kustomize gives %s, manifests.Objects does not", manifests.Ref(o))
			continue
		}
		if d := cmp.Diff(mine.Object, o.Object); d != "" {
			t.Errorf("%s differs (-manifests.Objects +kubectl kustomize):\n%s", manifests.Ref(o), d)
		}
	}
}

// kubectlPath returns the kubectl of the harness's Kubernetes version, or
// skips t (fails it when the harness is required).
func kubectlPath(t *testing.T) string {
	p := filepath.Join(kubetest.Bin(), "kubectl")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv(kubetest.EnvRequired) == "1" {
			t.Fatalf("no kubectl in %s: run hack/kube-bins.sh kubectl", kubetest.Bin())
		}
		t.Skipf("no kubectl in %s (hack/kube-bins.sh kubectl builds it): %v", kubetest.Bin(), err)
	}
	return p
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestManifestsOnAPIServer applies the manifests to a real API server and
// checks each component's rights by acting as its ServiceAccount. The
// subtests run in order: each needs what the one before applied.
func TestManifestsOnAPIServer(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := ctxFor(t, 3*time.Minute)
	a := newApplier(t, c.Config)
	objs := objects(t)

	// Namespaced objects can be dry-run only in a namespace that exists,
	// and objects of a CRD's kind only once it is Established: apply the
	// Namespace and the CRDs first (as `kubectl apply` orders them).
	var first []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			first = append(first, o)
		}
	}
	for _, o := range first {
		if _, err := a.apply(ctx, o, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitEstablished(ctx, a, first); err != nil {
		t.Fatal(err)
	}

	t.Run("dry-run/client-go", func(t *testing.T) {
		for _, o := range objs {
			if _, err := a.apply(ctx, o, true); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("dry-run/kubectl", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, kubectlPath(t), "--kubeconfig", c.Kubeconfig, "apply", "--dry-run=server", "--validate=strict", "-k", ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply --dry-run=server -k manifests: %v\n%s", err, out)
		}
		if n := strings.Count(string(out), "(server dry run)"); n != len(objs) {
			t.Errorf("kubectl dry-ran %d objects, want %d:\n%s", n, len(objs), out)
		}
	})

	t.Run("apply", func(t *testing.T) {
		applied := map[string]string{} // ref -> resourceVersion
		for _, o := range objs {
			got, err := a.apply(ctx, o, false)
			if err != nil {
				t.Fatal(err)
			}
			applied[manifests.Ref(o)] = got.GetResourceVersion()
		}
		// Applying again changes nothing: no field the manifests set is
		// rewritten by defaulting or admission.
		for _, o := range objs {
			got, err := a.apply(ctx, o, false)
			if err != nil {
				t.Fatal(err)
			}
			if rv := got.GetResourceVersion(); rv != applied[manifests.Ref(o)] {
				t.Errorf("%s changed when applied again (resourceVersion %s -> %s)", manifests.Ref(o), applied[manifests.Ref(o)], rv)
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("pod-security", func(t *testing.T) { testPodSecurity(t, c) })
	t.Run("node-agent-rbac", func(t *testing.T) { testNodeAgentRBAC(t, c) })
	t.Run("controller-rbac", func(t *testing.T) { testControllerRBAC(t, c) })
}

// testPodSecurity creates (dry-run) a pod of the node agent's template in
// nanoseg-system, which Pod Security Admission lets in because the
// namespace is labelled privileged, and in a namespace without the label,
// which the cluster's default level (restricted here) refuses, and at the
// baseline level: the label is needed and enough. A controller pod passes
// the restricted level.
func testPodSecurity(t *testing.T, c *kubetest.Cluster) {
	ctx := ctxFor(t, time.Minute)
	ds, err := c.Client.AppsV1().DaemonSets(manifests.Namespace).Get(ctx, manifests.NodeAgent, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(ns string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: *ds.Spec.Template.ObjectMeta.DeepCopy(), Spec: *ds.Spec.Template.Spec.DeepCopy()}
		p.Name, p.Namespace, p.Spec.NodeName = "nanoseg-node-test", ns, "node-a"
		return p
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if _, err := c.Client.CoreV1().Pods(manifests.Namespace).Create(ctx, pod(manifests.Namespace), dry); err != nil {
		t.Errorf("a node agent pod in %s: %v", manifests.Namespace, err)
	}
	// The controller needs no privilege: its pods pass the restricted level.
	restricted := c.Namespace(t, nil)
	d, err := c.Client.AppsV1().Deployments(manifests.Namespace).Get(ctx, manifests.Controller, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cp := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nanoseg-controller-test", Labels: d.Spec.Template.Labels}, Spec: *d.Spec.Template.Spec.DeepCopy()}
	if _, err := c.Client.CoreV1().Pods(restricted).Create(ctx, cp, dry); err != nil {
		t.Errorf("a controller pod at the restricted level: %v", err)
	}
	for _, labels := range []map[string]string{nil, {"pod-security.kubernetes.io/enforce": "baseline"}} {
		ns := c.Namespace(t, labels)
		_, err = c.Client.CoreV1().Pods(ns).Create(ctx, pod(ns), dry)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Errorf("a node agent pod in a namespace labelled %v: got %v, want refused by PodSecurity", labels, err)
		}
	}
}

// check is one request made as a component's ServiceAccount.
type check struct {
	what string
	do   func(ctx context.Context) error
}

// expectAllowed fails t for each check the API server refuses (NotFound
// and AlreadyExists count as allowed: authorization passed).
func expectAllowed(t *testing.T, checks []check) {
	t.Helper()
	for _, ch := range checks {
		err := ch.do(ctxFor(t, 30*time.Second))
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsAlreadyExists(err) {
			t.Errorf("%s: %v, want allowed", ch.what, err)
		}
	}
}

// expectForbidden fails t for each check that is not refused as Forbidden.
func expectForbidden(t *testing.T, checks []check) {
	t.Helper()
	for _, ch := range checks {
		err := ch.do(ctxFor(t, 30*time.Second))
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", ch.what, err)
		}
	}
}

// watchFrom0 starts watches at any resource version: a watch from "now"
// (no resource version) waits up to 3 s for etcd 3.4, which cannot report
// its progress to the API server's watch cache.
var watchFrom0 = metav1.ListOptions{ResourceVersion: "0"}

// watchOnce opens a watch and closes it.
func watchOnce(w interface{ Stop() }, err error) error {
	if err != nil {
		return err
	}
	w.Stop()
	return nil
}

// grantedRules returns what the API server grants client's identity in
// namespace ns (SelfSubjectRulesReview), expanded as expand does, without
// what it grants every ServiceAccount (a ServiceAccount without bindings
// has those: self reviews, discovery, trust bundles).
func grantedRules(t *testing.T, c *kubetest.Cluster, client kubernetes.Interface, ns string) []string {
	t.Helper()
	nobody, _ := clientsFor(t, c, "nanoseg-test-nobody")
	everyone := rulesReview(t, nobody, ns)
	return slices.DeleteFunc(rulesReview(t, client, ns), func(s string) bool { return slices.Contains(everyone, s) })
}

// rulesReview returns what the API server grants client's identity in
// namespace ns, expanded.
func rulesReview(t *testing.T, client kubernetes.Interface, ns string) []string {
	t.Helper()
	r, err := client.AuthorizationV1().SelfSubjectRulesReviews().Create(ctxFor(t, 30*time.Second),
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("rules review in %s: %v", ns, err)
	}
	if r.Status.Incomplete {
		t.Fatalf("rules review in %s incomplete: %s", ns, r.Status.EvaluationError)
	}
	var rules []rbacv1.PolicyRule
	for _, rr := range r.Status.ResourceRules {
		rules = append(rules, rbacv1.PolicyRule{Verbs: rr.Verbs, APIGroups: rr.APIGroups, Resources: rr.Resources, ResourceNames: rr.ResourceNames})
	}
	return expand(rules)
}

// clientsFor returns a clientset and a dynamic client for ServiceAccount
// name of nanoseg-system.
func clientsFor(t *testing.T, c *kubetest.Cluster, name string) (kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	cfg, err := c.ServiceAccountConfig(ctxFor(t, 30*time.Second), manifests.Namespace, name)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, dyn
}

// fixtures creates, as the admin, one object of each kind the tests touch
// in a fresh namespace, and returns the namespace.
func fixtures(t *testing.T, c *kubetest.Cluster) string {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	ns := c.Namespace(t, map[string]string{"team": "a", "pod-security.kubernetes.io/enforce": "privileged"})
	core := c.Client.CoreV1()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(core.Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web:1"}}},
	}, metav1.CreateOptions{}))
	must(core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "key"}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}))
	must(core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf"}}, metav1.CreateOptions{}))
	must(c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, netpol("deny-all"), metav1.CreateOptions{}))
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	must(dyn.Resource(nanosegments).Namespace(ns).Create(ctx, nanosegment("web"), metav1.CreateOptions{}))
	must(dyn.Resource(probes).Namespace(ns).Create(ctx, object("NanoSegmentProbe", "web-probe",
		"{node: node-a, pod: web, address: 198.18.0.9, port: 80, protocol: TCP}"), metav1.CreateOptions{}))
	return ns
}

func netpol(name string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
}

func nanosegment(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "nanoseg.io/v1alpha1", "kind": "NanoSegment",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"app": name}}, "mode": "observe"},
	}}
}

func lease(name string) *coordinationv1.Lease {
	holder := "test"
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
}

func event(ns, name string) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web", APIVersion: "v1"},
		Reason:         "Programmed", Message: "test", Type: corev1.EventTypeNormal,
		Source: corev1.EventSource{Component: "nanoseg-node"},
	}
}

// sortedUnion returns the strings of lists, sorted, without duplicates.
func sortedUnion(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var mergePatch = []byte(`{"metadata":{"labels":{"touched":"yes"}}}`)

// testNodeAgentRBAC acts as the node agent's ServiceAccount: it reads and
// watches, cluster-wide, everything it enforces and creates Events, and
// is refused patching Events, Secrets, ConfigMaps, writing Nodes, Leases and every write to
// policies and pods. The rights the API server grants it are exactly the
// ClusterRole's, in any namespace.
func testNodeAgentRBAC(t *testing.T, c *kubetest.Cluster) {
	ns := fixtures(t, c)
	for _, name := range []string{transport.CAConfigMapName, "conf"} {
		_, err := c.Client.CoreV1().ConfigMaps(manifests.Namespace).Create(ctxFor(t, 30*time.Second), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name},
			Data: map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----\n"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	sa, dyn := clientsFor(t, c, manifests.NodeAgent)
	core, all := sa.CoreV1(), metav1.NamespaceAll
	lw := metav1.ListOptions{}
	expectAllowed(t, []check{
		{"list pods in every namespace", func(ctx context.Context) error { _, err := core.Pods(all).List(ctx, lw); return err }},
		{"list pods of its node", func(ctx context.Context) error {
			_, err := core.Pods(all).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-a"})
			return err
		}},
		{"watch pods", func(ctx context.Context) error { return watchOnce(core.Pods(all).Watch(ctx, watchFrom0)) }},
		{"get a pod", func(ctx context.Context) error {
			_, err := core.Pods(ns).Get(ctx, "web", metav1.GetOptions{})
			return err
		}},
		{"list namespaces", func(ctx context.Context) error { _, err := core.Namespaces().List(ctx, lw); return err }},
		{"watch namespaces", func(ctx context.Context) error { return watchOnce(core.Namespaces().Watch(ctx, watchFrom0)) }},
		{"list nodes", func(ctx context.Context) error { _, err := core.Nodes().List(ctx, lw); return err }},
		{"watch nodes", func(ctx context.Context) error { return watchOnce(core.Nodes().Watch(ctx, watchFrom0)) }},
		{"list services", func(ctx context.Context) error { _, err := core.Services(all).List(ctx, lw); return err }},
		{"watch services", func(ctx context.Context) error { return watchOnce(core.Services(all).Watch(ctx, watchFrom0)) }},
		{"list endpointslices", func(ctx context.Context) error {
			_, err := sa.DiscoveryV1().EndpointSlices(all).List(ctx, lw)
			return err
		}},
		{"watch endpointslices", func(ctx context.Context) error {
			return watchOnce(sa.DiscoveryV1().EndpointSlices(all).Watch(ctx, watchFrom0))
		}},
		{"list networkpolicies", func(ctx context.Context) error {
			_, err := sa.NetworkingV1().NetworkPolicies(all).List(ctx, lw)
			return err
		}},
		{"watch networkpolicies", func(ctx context.Context) error {
			return watchOnce(sa.NetworkingV1().NetworkPolicies(all).Watch(ctx, watchFrom0))
		}},
		{"list nanosegments", func(ctx context.Context) error { _, err := dyn.Resource(nanosegments).List(ctx, lw); return err }},
		{"watch nanosegments", func(ctx context.Context) error { return watchOnce(dyn.Resource(nanosegments).Watch(ctx, watchFrom0)) }},
		{"get a nanosegment", func(ctx context.Context) error {
			_, err := dyn.Resource(nanosegments).Namespace(ns).Get(ctx, "web", metav1.GetOptions{})
			return err
		}},
		{"create an event", func(ctx context.Context) error {
			_, err := core.Events(ns).Create(ctx, event(ns, "web.programmed"), metav1.CreateOptions{})
			return err
		}}, {"get the controller's CA", func(ctx context.Context) error {
			_, err := transport.CAConfigMap(sa, manifests.Namespace, transport.CAConfigMapName)(ctx)
			return err
		}},
		{"watch the probes of its node", func(ctx context.Context) error {
			return watchOnce(dyn.Resource(probes).Watch(ctx, metav1.ListOptions{FieldSelector: "spec.node=node-a", ResourceVersion: "0"}))
		}},
		{"answer a probe", func(ctx context.Context) error {
			_, err := dyn.Resource(probes).Namespace(ns).Patch(ctx, "web-probe", types.MergePatchType, []byte(`{"status":{"outcome":"timeout"}}`), metav1.PatchOptions{}, "status")
			return err
		}},
	})
	expectForbidden(t, []check{
		{"patch an event (each Event it records has a name of its own: create is enough)", func(ctx context.Context) error {
			_, err := core.Events(ns).Patch(ctx, "web.programmed", types.MergePatchType, []byte(`{"count":2}`), metav1.PatchOptions{})
			return err
		}},
		{"get another configmap of nanoseg-system", func(ctx context.Context) error {
			_, err := core.ConfigMaps(manifests.Namespace).Get(ctx, "conf", metav1.GetOptions{})
			return err
		}},
		{"list configmaps of nanoseg-system", func(ctx context.Context) error {
			_, err := core.ConfigMaps(manifests.Namespace).List(ctx, lw)
			return err
		}},
		{"update the controller's CA", func(ctx context.Context) error {
			_, err := core.ConfigMaps(manifests.Namespace).Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: transport.CAConfigMapName},
				Data: map[string]string{"ca.crt": "forged"}}, metav1.UpdateOptions{})
			return err
		}},
		{"review a token", func(ctx context.Context) error {
			_, err := sa.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "x"}}, metav1.CreateOptions{})
			return err
		}},
		{"get a secret", func(ctx context.Context) error {
			_, err := core.Secrets(ns).Get(ctx, "key", metav1.GetOptions{})
			return err
		}},
		{"list secrets", func(ctx context.Context) error { _, err := core.Secrets(all).List(ctx, lw); return err }},
		{"list its own namespace's secrets", func(ctx context.Context) error {
			_, err := core.Secrets(manifests.Namespace).List(ctx, lw)
			return err
		}},
		{"get a configmap", func(ctx context.Context) error {
			_, err := core.ConfigMaps(ns).Get(ctx, "conf", metav1.GetOptions{})
			return err
		}},
		{"get a node", func(ctx context.Context) error {
			_, err := core.Nodes().Get(ctx, "node-a", metav1.GetOptions{})
			return err
		}},
		{"patch a node", func(ctx context.Context) error {
			_, err := core.Nodes().Patch(ctx, "node-a", types.MergePatchType, mergePatch, metav1.PatchOptions{})
			return err
		}},
		{"patch a node's status", func(ctx context.Context) error {
			_, err := core.Nodes().Patch(ctx, "node-a", types.MergePatchType, []byte(`{"status":{}}`), metav1.PatchOptions{}, "status")
			return err
		}},
		{"create a networkpolicy", func(ctx context.Context) error {
			_, err := sa.NetworkingV1().NetworkPolicies(ns).Create(ctx, netpol("allow-all"), metav1.CreateOptions{})
			return err
		}},
		{"patch a networkpolicy", func(ctx context.Context) error {
			_, err := sa.NetworkingV1().NetworkPolicies(ns).Patch(ctx, "deny-all", types.MergePatchType, mergePatch, metav1.PatchOptions{})
			return err
		}},
		{"delete a networkpolicy", func(ctx context.Context) error {
			return sa.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "deny-all", metav1.DeleteOptions{})
		}},
		{"create a nanosegment", func(ctx context.Context) error {
			_, err := dyn.Resource(nanosegments).Namespace(ns).Create(ctx, nanosegment("api"), metav1.CreateOptions{})
			return err
		}},
		{"create a probe", func(ctx context.Context) error {
			_, err := dyn.Resource(probes).Namespace(ns).Create(ctx, object("NanoSegmentProbe", "by-agent",
				"{node: node-a, pod: web, address: 198.18.0.9, port: 80, protocol: TCP}"), metav1.CreateOptions{})
			return err
		}},
		{"delete a probe", func(ctx context.Context) error {
			return dyn.Resource(probes).Namespace(ns).Delete(ctx, "web-probe", metav1.DeleteOptions{})
		}},
		{"patch a nanosegment", func(ctx context.Context) error {
			_, err := dyn.Resource(nanosegments).Namespace(ns).Patch(ctx, "web", types.MergePatchType, mergePatch, metav1.PatchOptions{})
			return err
		}},
		{"patch a nanosegment's status", func(ctx context.Context) error {
			_, err := dyn.Resource(nanosegments).Namespace(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"status":{}}`), metav1.PatchOptions{}, "status")
			return err
		}},
		{"delete a nanosegment", func(ctx context.Context) error {
			return dyn.Resource(nanosegments).Namespace(ns).Delete(ctx, "web", metav1.DeleteOptions{})
		}},
		{"create a pod", func(ctx context.Context) error {
			_, err := core.Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{})
			return err
		}},
		{"patch a pod", func(ctx context.Context) error {
			_, err := core.Pods(ns).Patch(ctx, "web", types.MergePatchType, mergePatch, metav1.PatchOptions{})
			return err
		}},
		{"patch a pod's status", func(ctx context.Context) error {
			_, err := core.Pods(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"status":{"podIP":"198.18.9.9"}}`), metav1.PatchOptions{}, "status")
			return err
		}},
		{"delete a pod", func(ctx context.Context) error { return core.Pods(ns).Delete(ctx, "web", metav1.DeleteOptions{}) }},
		{"patch a namespace", func(ctx context.Context) error {
			_, err := core.Namespaces().Patch(ctx, ns, types.MergePatchType, mergePatch, metav1.PatchOptions{})
			return err
		}},
		{"list leases", func(ctx context.Context) error { _, err := sa.CoordinationV1().Leases(all).List(ctx, lw); return err }},
		{"take the controller's lease", func(ctx context.Context) error {
			_, err := sa.CoordinationV1().Leases(manifests.Namespace).Create(ctx, lease(manifests.ControllerLease), metav1.CreateOptions{})
			return err
		}},
		{"request a token for the controller", func(ctx context.Context) error {
			_, err := core.ServiceAccounts(manifests.Namespace).CreateToken(ctx, manifests.Controller, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}},
		{"bind itself a role", func(ctx context.Context) error {
			_, err := sa.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "escalate"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: manifests.NodeAgent, Namespace: manifests.Namespace}},
			}, metav1.CreateOptions{})
			return err
		}},
	})
	for _, n := range []string{ns, manifests.Namespace, metav1.NamespaceSystem} {
		want := nodeAgentRules
		if n == manifests.Namespace {
			want = sortedUnion(nodeAgentRules, nodeAgentNamespaceRules)
		}
		if d := cmp.Diff(want, grantedRules(t, c, sa, n)); d != "" {
			t.Errorf("rights in namespace %s (-ClusterRole and Role +granted):\n%s", n, d)
		}
	}
}

// testControllerRBAC acts as the controller's ServiceAccount: it may
// create its Lease, get and update that one, read the inventory and record
// Events anywhere (manifests/controller/rbac.yaml gives every rule with its
// reason); it is refused other Leases, Leases elsewhere, Secrets, writes of
// pods and NetworkPolicies, and deleting NanoSegments.
func testControllerRBAC(t *testing.T, c *kubetest.Cluster) {
	ns := fixtures(t, c)
	if _, err := c.Client.CoordinationV1().Leases(manifests.Namespace).Create(ctxFor(t, 30*time.Second), lease("someone-else"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa, dyn := clientsFor(t, c, manifests.Controller)
	leases := sa.CoordinationV1().Leases(manifests.Namespace)
	lw := metav1.ListOptions{}
	expectAllowed(t, []check{
		{"create its lease", func(ctx context.Context) error {
			_, err := leases.Create(ctx, lease(manifests.ControllerLease), metav1.CreateOptions{})
			return err
		}},
		{"get and update its lease", func(ctx context.Context) error {
			l, err := leases.Get(ctx, manifests.ControllerLease, metav1.GetOptions{})
			if err != nil {
				return err
			}
			holder := "nanoseg-controller-1"
			l.Spec.HolderIdentity = &holder
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			return err
		}},
		{"create an event in its namespace", func(ctx context.Context) error {
			_, err := sa.CoreV1().Events(manifests.Namespace).Create(ctx, event(manifests.Namespace, "lease.acquired"), metav1.CreateOptions{})
			return err
		}},
		{"create an event in another namespace", func(ctx context.Context) error {
			_, err := sa.CoreV1().Events(ns).Create(ctx, event(ns, "x"), metav1.CreateOptions{})
			return err
		}},
		{"list pods", func(ctx context.Context) error {
			_, err := sa.CoreV1().Pods(metav1.NamespaceAll).List(ctx, lw)
			return err
		}},
		{"create a nanosegment", func(ctx context.Context) error {
			_, err := dyn.Resource(nanosegments).Namespace(ns).Create(ctx, nanosegment("api"), metav1.CreateOptions{})
			return err
		}},
		{"make its serving certificate and publish the CA (twice: create, then get and update)", func(ctx context.Context) error {
			if _, err := transport.EnsureServingCert(ctx, sa, manifests.Namespace, transport.CertOptions{}); err != nil {
				return err
			}
			_, err := transport.EnsureServingCert(ctx, sa, manifests.Namespace, transport.CertOptions{DNSNames: []string{"ingest.example"}})
			return err
		}},
		{"review a node agent's token", func(ctx context.Context) error {
			tr, err := c.Client.CoreV1().ServiceAccounts(manifests.Namespace).CreateToken(ctx, manifests.NodeAgent, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{Audiences: []string{transport.Audience}}}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("as the admin: %w", err)
			}
			id, err := transport.NewTokenReviewer(sa, "").Authenticate(ctx, tr.Status.Token)
			if err == nil && id.User != transport.NodeAgentUser {
				err = fmt.Errorf("authenticated as %q, want %q", id.User, transport.NodeAgentUser)
			}
			return err
		}},
	})
	expectForbidden(t, []check{
		{"get another lease", func(ctx context.Context) error {
			_, err := leases.Get(ctx, "someone-else", metav1.GetOptions{})
			return err
		}},
		{"update another lease", func(ctx context.Context) error {
			_, err := leases.Update(ctx, lease("someone-else"), metav1.UpdateOptions{})
			return err
		}},
		{"list leases", func(ctx context.Context) error { _, err := leases.List(ctx, lw); return err }},
		{"delete its lease", func(ctx context.Context) error {
			return leases.Delete(ctx, manifests.ControllerLease, metav1.DeleteOptions{})
		}},
		{"create a lease in another namespace", func(ctx context.Context) error {
			_, err := sa.CoordinationV1().Leases(ns).Create(ctx, lease(manifests.ControllerLease), metav1.CreateOptions{})
			return err
		}},
		{"get a lease of kube-system", func(ctx context.Context) error {
			_, err := sa.CoordinationV1().Leases(metav1.NamespaceSystem).Get(ctx, "kube-scheduler", metav1.GetOptions{})
			return err
		}},
		{"list secrets of its namespace", func(ctx context.Context) error {
			_, err := sa.CoreV1().Secrets(manifests.Namespace).List(ctx, lw)
			return err
		}},
		{"get a secret", func(ctx context.Context) error {
			_, err := sa.CoreV1().Secrets(ns).Get(ctx, "key", metav1.GetOptions{})
			return err
		}},
		{"delete a nanosegment", func(ctx context.Context) error {
			return dyn.Resource(nanosegments).Namespace(ns).Delete(ctx, "api", metav1.DeleteOptions{})
		}},
		{"delete a pod", func(ctx context.Context) error {
			return sa.CoreV1().Pods(ns).Delete(ctx, "web", metav1.DeleteOptions{})
		}},
		{"delete a networkpolicy", func(ctx context.Context) error {
			return sa.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "deny-all", metav1.DeleteOptions{})
		}},
	})
	if d := cmp.Diff(sortedUnion(controllerRules, controllerTransportRules, controllerClusterRules, controllerClusterRoleRules), grantedRules(t, c, sa, manifests.Namespace)); d != "" {
		t.Errorf("rights in %s (-Roles and ClusterRoles +granted):\n%s", manifests.Namespace, d)
	}
	if d := cmp.Diff(sortedUnion(controllerClusterRules, controllerClusterRoleRules), grantedRules(t, c, sa, ns)); d != "" {
		t.Errorf("rights in namespace %s, want only the cluster-wide ones (-want +granted):\n%s", ns, d)
	}
}
