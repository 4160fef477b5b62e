package kube

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

// cnpObject is a ClusterNetworkPolicy as the dynamic client returns it,
// from YAML written by a test.
func cnpObject(t *testing.T, name, spec string) *unstructured.Unstructured {
	t.Helper()
	var s map[string]any
	if err := yaml.Unmarshal([]byte(spec), &s); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
		"metadata": map[string]any{"name": name}, "spec": s,
	}}
}

const denyShop = `{tier: Admin, priority: 10, subject: {namespaces: {matchLabels: {team: shop}}},
  ingress: [{name: no-db, action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}]}`

func (e *fakeEnv) cnps() interface {
	Create(context.Context, *unstructured.Unstructured, metav1.CreateOptions, ...string) (*unstructured.Unstructured, error)
	Update(context.Context, *unstructured.Unstructured, metav1.UpdateOptions, ...string) (*unstructured.Unstructured, error)
	Delete(context.Context, string, metav1.DeleteOptions, ...string) error
} {
	return e.dyn.Resource(ClusterNetworkPolicyResource)
}

// ClusterNetworkPolicies follow the API like the other kinds: created,
// updated, deleted; InForce carries them sorted, with apiVersion and kind.
func TestClusterNetworkPoliciesFollowTheAPI(t *testing.T) {
	e := startFake(t, cnpObject(t, "b-deny", denyShop))
	ctx := context.Background()
	waitFor(t, "b-deny", func() bool { return len(e.w.InForce().ClusterNetworkPolicies) == 1 })
	if _, err := e.cnps().Create(ctx, cnpObject(t, "a-pass", strings.Replace(denyShop, "Deny", "Pass", 1)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a-pass", func() bool { return len(e.w.InForce().ClusterNetworkPolicies) == 2 })
	in := e.w.InForce()
	got := []string{}
	for _, p := range in.ClusterNetworkPolicies {
		got = append(got, p.APIVersion+" "+p.Kind+" "+p.Name+" "+string(p.Spec.Ingress[0].Action))
	}
	want := "policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy a-pass Pass,policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy b-deny Deny"
	if strings.Join(got, ",") != want {
		t.Errorf("in force: %v", got)
	}
	if _, err := in.Set(); err != nil {
		t.Errorf("the policies in force do not compile: %v", err)
	}
	if got := testutil.ToFloat64(e.w.m.policies.WithLabelValues(KindClusterNetworkPolicy)); got != 2 {
		t.Errorf("policies{ClusterNetworkPolicy} = %v", got)
	}
	if err := e.cnps().Delete(ctx, "b-deny", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deletion", func() bool { return len(e.w.InForce().ClusterNetworkPolicies) == 1 })
	if !e.w.ClusterNetworkPoliciesServed() {
		t.Error("served: false with the kind listed")
	}
}

// A ClusterNetworkPolicy the CRD's schema may let through but our
// validation refuses (a label selector's syntax) is never applied; an
// invalid update keeps the last valid version in force. Both are logged,
// counted and listed.
func TestInvalidClusterNetworkPolicy(t *testing.T) {
	e := startFake(t, cnpObject(t, "guard", denyShop))
	ctx := context.Background()
	waitFor(t, "guard", func() bool { return len(e.w.InForce().ClusterNetworkPolicies) == 1 })
	badSel := strings.Replace(denyShop, "{matchLabels: {team: shop}}", "{matchExpressions: [{key: team, operator: In}]}", 1)
	if _, err := e.cnps().Create(ctx, cnpObject(t, "bad", badSel), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An update of guard that lets port 5432 through: refused, the Deny stays.
	u := cnpObject(t, "guard", strings.Replace(denyShop, "Deny", "Allow", 1))
	if _, err := e.cnps().Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two rejections", func() bool { return len(e.w.Rejected()) == 2 })
	rs := e.w.Rejected()
	if rs[0].Key() != "ClusterNetworkPolicy bad" || rs[0].KeptPrevious || !errors.Is(rs[0].Err, policies.ErrInvalid) ||
		!strings.Contains(rs[0].Err.Error(), "spec.subject.namespaces.matchExpressions[0].values") {
		t.Errorf("rejection of bad: %v", rs[0])
	}
	if rs[1].Key() != "ClusterNetworkPolicy guard" || !rs[1].KeptPrevious || !strings.Contains(rs[1].Err.Error(), "spec.ingress[0].action") {
		t.Errorf("rejection of guard: %v", rs[1])
	}
	in := e.w.InForce()
	if len(in.ClusterNetworkPolicies) != 1 || in.ClusterNetworkPolicies[0].Spec.Ingress[0].Action != "Deny" {
		t.Errorf("in force: %+v", in.ClusterNetworkPolicies)
	}
	if got := testutil.ToFloat64(e.w.m.rejections.WithLabelValues(KindClusterNetworkPolicy)); got != 2 {
		t.Errorf("rejections_total{ClusterNetworkPolicy} = %v", got)
	}
	if got := testutil.ToFloat64(e.w.m.rejected.WithLabelValues(KindClusterNetworkPolicy, "previous")); got != 1 {
		t.Errorf("rejected{previous} = %v", got)
	}
	if log := e.log.String(); !strings.Contains(log, "its last valid version stays in force") || !strings.Contains(log, "kind=ClusterNetworkPolicy") {
		t.Errorf("log:\n%s", log)
	}
}

// Without a CRD for ClusterNetworkPolicies (NotFound) the watcher syncs
// with none, says so once, and keeps retrying; any other refusal keeps it
// unsynced.
func TestClusterNetworkPoliciesAbsent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		synced bool
	}{
		{"no CRD", apierrors.NewNotFound(ClusterNetworkPolicyResource.GroupResource(), ""), true},
		{"forbidden", apierrors.NewForbidden(ClusterNetworkPolicyResource.GroupResource(), "", errors.New("RBAC")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dyn := newFakeDynamic()
			lists := make(chan struct{}, 100)
			dyn.PrependReactor("list", ClusterNetworkPolicyResource.Resource, func(k8stesting.Action) (bool, runtime.Object, error) {
				select {
				case lists <- struct{}{}:
				default:
				}
				return true, nil, tc.err
			})
			log := &syncBuffer{}
			w := NewPolicyWatcher(fake.NewClientset(), dyn, slog.New(slog.NewTextHandler(log, nil)))
			if err := w.Register(prometheus.NewRegistry()); err != nil {
				t.Fatal(err)
			}
			// A kept ClusterNetworkPolicy waits for the kind to be served
			// again: the sync does not drop it from the keep file.
			guard, err := ClusterNetworkPolicyFromUnstructured(withUID(cnpObject(t, "guard", denyShop), "uid-guard"))
			if err != nil {
				t.Fatal(err)
			}
			keepPath := filepath.Join(t.TempDir(), "policies-node-a.json")
			raw, _ := json.Marshal(keepFileJSON{Version: keepFileVersion, Policies: []keptVersion{
				{Kind: KindClusterNetworkPolicy, Name: "guard", UID: "uid-guard", ResourceVersion: "3", Cluster: guard}}})
			if err := os.WriteFile(keepPath, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := w.KeepLastValid(keepPath); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			defer func() { cancel(); <-done }()
			// Two lists: the first refused, and a retry.
			for range 2 {
				select {
				case <-lists:
				case <-time.After(10 * time.Second):
					t.Fatal("no list of clusternetworkpolicies")
				}
			}
			waitFor(t, "the other kinds synced", func() bool { return w.npReg.HasSynced() && w.segReg.HasSynced() })
			if w.Synced() != tc.synced {
				t.Errorf("Synced() = %v, want %v", w.Synced(), tc.synced)
			}
			if w.ClusterNetworkPoliciesServed() == tc.synced {
				t.Errorf("served = %v", w.ClusterNetworkPoliciesServed())
			}
			if n := strings.Count(log.String(), "ClusterNetworkPolicies are not served"); tc.synced && n != 1 {
				t.Errorf("%d log lines saying the kind is not served, want 1:\n%s", n, log)
			}
			if tc.synced {
				waitFor(t, "the sync logged", func() bool { return strings.Contains(log.String(), "policies synced") })
				time.Sleep(100 * time.Millisecond)
				if raw, err := os.ReadFile(keepPath); err != nil || !strings.Contains(string(raw), `"uid":"uid-guard"`) {
					t.Errorf("keep file after a sync without the kind served: %v %s, want guard still kept", err, raw)
				}
			}
		})
	}
}

// The cluster store reads the ClusterNetworkPolicies the node agents
// enforce: valid ones, sorted; an invalid one left out and logged once;
// none when the kind is not served; a refused list is an error.
func TestStoreClusterNetworkPolicies(t *testing.T) {
	badSel := strings.Replace(denyShop, "{matchLabels: {team: shop}}", "{matchExpressions: [{key: team, operator: In}]}", 1)
	dyn := newFakeDynamic(cnpObject(t, "b", denyShop), cnpObject(t, "a", denyShop), cnpObject(t, "bad", badSel))
	log := &syncBuffer{}
	st, err := NewStore(fake.NewClientset(), dyn, StoreConfig{Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := st.ClusterNetworkPolicies()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || got[0].Kind != KindClusterNetworkPolicy {
			t.Errorf("got %+v", got)
		}
	}
	if n := strings.Count(log.String(), "ClusterNetworkPolicy invalid"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, log)
	}
	if err := st.PutClusterNetworkPolicy(&cnpv1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "c"}}); !errors.Is(err, policies.ErrInvalid) {
		t.Errorf("put of an invalid one: %v", err)
	}
	if err := st.DeleteClusterNetworkPolicy("a"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteClusterNetworkPolicy("a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}

	for _, tc := range []struct {
		err  error
		want bool // an error
	}{
		{apierrors.NewNotFound(ClusterNetworkPolicyResource.GroupResource(), ""), false},
		{apierrors.NewForbidden(ClusterNetworkPolicyResource.GroupResource(), "", errors.New("RBAC")), true},
	} {
		dyn := newFakeDynamic()
		dyn.PrependReactor("list", ClusterNetworkPolicyResource.Resource, func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
		st, _ := NewStore(fake.NewClientset(), dyn, StoreConfig{})
		got, err := st.ClusterNetworkPolicies()
		if (err != nil) != tc.want || len(got) != 0 {
			t.Errorf("list answered %v: got %v, %v", tc.err, got, err)
		}
	}
}
