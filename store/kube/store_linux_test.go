//go:build linux

// The cluster store against the package's real kube-apiserver: the store
// contract suite, two leaders recording at once, a writer that stops
// between the commit and the rest, and a record edited after the fact.

package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/manifests"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
	"github.com/nanoseg/nanoseg/store/storetest"
)

// storeCluster is the package's cluster prepared for stores: the
// namespaces the contract suite names exist, and every object a store
// keeps is gone (the history is the cluster's, so each test starts from
// an empty one; the package's tests do not run in parallel).
func storeCluster(t testing.TB) *kubetest.Cluster {
	t.Helper()
	c := kubetest.Shared(t)
	ctx := context.Background()
	for _, ns := range []string{DefaultNamespace, "shop", "monitoring"} {
		_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	wipeStore(t, c)
	return c
}

// wipeStore deletes the head, every promotion, every NanoSegment and
// ControllerRevision the store labels (and every NanoSegment of the
// namespaces the tests name), every ClusterNetworkPolicy and every
// NetworkPolicy.
func wipeStore(t testing.TB, c *kubetest.Cluster) {
	t.Helper()
	ctx := context.Background()
	dyn := dynamic.NewForConfigOrDie(c.Config)
	if err := c.Client.CoreV1().ConfigMaps(DefaultNamespace).Delete(ctx, HeadConfigMap, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	for _, r := range []struct {
		res      dynamic.NamespaceableResourceInterface
		selector string
	}{
		{dyn.Resource(PromotionResource), ""},
		{dyn.Resource(NanoSegmentResource), v1alpha1.LabelWorkload},
	} {
		list, err := r.res.List(ctx, metav1.ListOptions{LabelSelector: r.selector})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			if err := r.res.Namespace(u.GetNamespace()).Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
	}
	// ClusterNetworkPolicies: the contract starts with none in force.
	if err := dyn.Resource(ClusterNetworkPolicyResource).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	for _, ns := range []string{"shop", "monitoring"} { // hand-written ones too
		if err := dyn.Resource(NanoSegmentResource).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	crs, err := c.Client.AppsV1().ControllerRevisions("").List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelWorkload})
	if err != nil {
		t.Fatal(err)
	}
	for _, cr := range crs.Items {
		if err := c.Client.AppsV1().ControllerRevisions(cr.Namespace).Delete(ctx, cr.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	nps, err := c.Client.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, np := range nps.Items {
		if err := c.Client.NetworkingV1().NetworkPolicies(np.Namespace).Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
}

// newStore returns a Store with clients of its own (as another process
// would have) on c, with the metadata client as the controller has it.
func newStore(t testing.TB, c *kubetest.Cluster) *Store {
	t.Helper()
	cfg := *c.Config
	cfg.QPS, cfg.Burst = 500, 1000
	client := kubernetes.NewForConfigOrDie(&cfg)
	dyn := dynamic.NewForConfigOrDie(&cfg)
	s, err := NewStore(client, dyn, StoreConfig{Metadata: metadata.NewForConfigOrDie(&cfg)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreContract(t *testing.T) {
	c := storeCluster(t)
	storetest.RunPolicyStore(t, func(t *testing.T) store.PolicyStore {
		wipeStore(t, c)
		return newStore(t, c)
	}, func(t *testing.T, _ store.PolicyStore) store.PolicyStore {
		return newStore(t, c) // another process on the same API server
	}, storetest.Options{
		NetworkPolicyHistory:        "the cluster store keeps NetworkPolicies as the API objects themselves: only the current version of each exists (AddNetworkPolicyRecord)",
		ClusterNetworkPolicyHistory: "the cluster store keeps ClusterNetworkPolicies as the API objects themselves: only the current version of each exists (AddClusterNetworkPolicyRecord)",
	})
}

// addRevisions gives each workload one revision with one ingress rule.
func addRevisions(t testing.TB, s *Store, workloads ...string) {
	t.Helper()
	for _, w := range workloads {
		pol := &v1alpha1.NanoSegment{Spec: v1alpha1.NanoSegmentSpec{Ingress: []v1alpha1.Rule{{ID: "from-web"}}}}
		if _, err := s.AddRevision(store.Revision{Workload: w, Origin: store.OriginDeclared, CreatedBy: "test", CreatedAt: time.Now(), Policy: pol}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStoreRevisionsRaceForNumbers(t *testing.T) {
	c := storeCluster(t)
	a, b := newStore(t, c), newStore(t, c)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			_, err := s.AddRevision(store.Revision{Workload: "shop/api", Origin: store.OriginProposed, Policy: &v1alpha1.NanoSegment{}, Window: time.Duration(i) * time.Second})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rs, err := a.Revisions("shop/api")
	if err != nil || len(rs) != 20 {
		t.Fatalf("revisions: %d, %v; want 20", len(rs), err)
	}
	for i, r := range rs {
		if r.Number != i+1 {
			t.Fatalf("revision %d has number %d", i, r.Number)
		}
	}
	if _, err := a.AddRevision(store.Revision{Workload: "shop/api", Policy: &v1alpha1.NanoSegment{Spec: v1alpha1.NanoSegmentSpec{Ingress: []v1alpha1.Rule{{ID: "Bad_ID"}}}}}); err == nil || !strings.Contains(err.Error(), "spec.ingress[0].id") {
		t.Errorf("invalid policy: %v, want an error naming spec.ingress[0].id", err)
	}
	if _, err := a.AddRevision(store.Revision{Workload: "no-namespace", Policy: &v1alpha1.NanoSegment{}}); err == nil {
		t.Errorf("workload without a namespace was stored")
	}
}

// TestStoreTwoLeadersRecordAtOnce: two Stores (a leader and one that
// believes it leads) record many promotions at once, some with expected
// states; every success is one record, no seq is taken twice, the chain
// verifies, and each workload's state is its latest record.
func TestStoreTwoLeadersRecordAtOnce(t *testing.T) {
	c := storeCluster(t)
	a, b := newStore(t, c), newStore(t, c)
	workloads := []string{"shop/api", "shop/db", "shop/web", "monitoring/prom"}
	addRevisions(t, a, workloads...)
	const writers, each = 8, 8
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		successes int
		conflicts int
		seqs      = map[uint64]bool{}
	)
	for g := range writers {
		s := a
		if g%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range each {
				w := workloads[(g+i)%len(workloads)]
				mode := model.ModeAudit
				if (g+i)%2 == 0 {
					mode = model.ModeEnforce
				}
				var expect *store.WorkloadState
				if g%4 >= 2 { // half the writers check the state they read
					st, err := s.State(w)
					if err != nil {
						t.Error(err)
						return
					}
					expect = &st
				}
				p, err := s.Record(model.Promotion{At: time.Now(), Who: fmt.Sprintf("writer-%d", g), Workload: w, Action: model.ActionPromote, ToMode: mode, ToRevision: 1, Reason: "load"}, expect)
				mu.Lock()
				switch {
				case err == nil:
					successes++
					if seqs[p.Seq] {
						t.Errorf("seq %d returned twice", p.Seq)
					}
					seqs[p.Seq] = true
				case errors.Is(err, store.ErrConflict) && expect != nil:
					conflicts++
				default:
					t.Errorf("record: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d records, %d refused as stale", successes, conflicts)
	hist, err := b.History("")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != successes {
		t.Errorf("history holds %d records, %d Records succeeded", len(hist), successes)
	}
	if err := model.VerifyPromotions(hist); err != nil {
		t.Fatal(err)
	}
	latest := map[string]model.Promotion{}
	for _, p := range hist {
		latest[p.Workload] = p
	}
	for _, w := range workloads {
		st, err := a.State(w)
		if err != nil {
			t.Fatal(err)
		}
		want := stateOf(latest[w])
		if st.Seq != want.Seq || st.Mode != want.Mode || st.Revision != want.Revision {
			t.Errorf("state of %s = %+v, want %+v (its latest record)", w, st, want)
		}
		ns, name, _ := strings.Cut(w, "/")
		seg := getSegment(t, a, ns, name)
		if seg.Spec.Mode != want.Mode || seg.Labels[v1alpha1.LabelRevision] != "1" {
			t.Errorf("NanoSegment %s: mode %s, labels %v; want %s at revision 1", w, seg.Spec.Mode, seg.Labels, want.Mode)
		}
	}
}

func getSegment(t testing.TB, s *Store, ns, name string) *v1alpha1.NanoSegment {
	t.Helper()
	u, err := s.segments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var seg v1alpha1.NanoSegment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &seg); err != nil {
		t.Fatal(err)
	}
	return &seg
}

func getPromotion(t testing.TB, s *Store, ns, name string) *v1alpha1.NanoSegmentPromotion {
	t.Helper()
	u, err := s.promotions(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pr v1alpha1.NanoSegmentPromotion
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &pr); err != nil {
		t.Fatal(err)
	}
	return &pr
}

var errCrash = errors.New("crashed after the head moved")

// TestStoreStopAfterCommitIsRepaired: a writer stops right after the
// head's compare-and-swap (its record is committed, its promotion and
// NanoSegment are not written). The history already shows the record; a
// new leader's Repair writes both, once; a second Repair changes nothing.
func TestStoreStopAfterCommitIsRepaired(t *testing.T) {
	c := storeCluster(t)
	a, b := newStore(t, c), newStore(t, c)
	addRevisions(t, a, "shop/db")
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	if _, err := a.Record(model.Promotion{At: at, Who: "ops", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeAudit, ToRevision: 1, Reason: "try"}, nil); err != nil {
		t.Fatal(err)
	}
	a.afterHead = func(model.Promotion) error { return errCrash }
	p2, err := a.Record(model.Promotion{At: at.Add(time.Minute), Who: "ops", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 1, Reason: "go"}, nil)
	if !errors.Is(err, errCrash) || p2.Seq != 2 {
		t.Fatalf("record = %+v, %v; want seq 2 and the crash", p2, err)
	}
	// Committed: the history and the state say so before any repair.
	if hist, _ := b.History(""); len(hist) != 2 || hist[1].Hash != p2.Hash {
		t.Errorf("history before repair = %+v, want the committed record 2 last", hist)
	}
	if st, _ := b.State("shop/db"); st.Seq != 2 || st.Mode != model.ModeEnforce {
		t.Errorf("state before repair = %+v, want record 2's", st)
	}
	if seg := getSegment(t, b, "shop", "db"); seg.Spec.Mode != model.ModeAudit {
		t.Errorf("NanoSegment mode %s before repair, want audit (record 2 not written yet)", seg.Spec.Mode)
	}
	if err := b.Repair(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second Repair changes nothing
		pr := getPromotion(t, b, "shop", "db-2")
		if pr.Status.Phase != v1alpha1.PromotionSucceeded || pr.Status.Record == nil || pr.Status.Record.Hash != p2.Hash {
			t.Fatalf("promotion db-2 after repair: %+v", pr.Status)
		}
		if seg := getSegment(t, b, "shop", "db"); seg.Spec.Mode != model.ModeEnforce || seg.Status.Revision != 1 {
			t.Errorf("NanoSegment after repair: mode %s, status.revision %d", seg.Spec.Mode, seg.Status.Revision)
		}
		hist, _ := b.History("")
		if len(hist) != 2 {
			t.Errorf("history after repair has %d records, want 2", len(hist))
		}
		if err := model.VerifyPromotions(hist); err != nil {
			t.Fatal(err)
		}
		if err := b.Repair(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// The next record links to the repaired one.
	a.afterHead = nil
	p3, err := a.Record(model.Promotion{At: at.Add(2 * time.Minute), Who: "ops", Workload: "shop/db", Action: model.ActionRollback, ToMode: model.ModeAudit, ToRevision: 1, Undoes: 2, Reason: "back"}, nil)
	if err != nil || p3.Seq != 3 || p3.PrevHash != p2.Hash || p3.FromMode != model.ModeEnforce {
		t.Fatalf("record after repair = %+v, %v", p3, err)
	}
}

// TestStoreStopAfterCommitRolledForward: without Repair, the next Record
// by anyone completes the stopped one first: nothing lost, nothing twice;
// and a request carried out by a stopped leader is not recorded again by
// the next.
func TestStoreStopAfterCommitRolledForward(t *testing.T) {
	c := storeCluster(t)
	a, b := newStore(t, c), newStore(t, c)
	addRevisions(t, a, "shop/db", "shop/api")
	dyn := dynamic.NewForConfigOrDie(c.Config)
	req := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.APIVersion, "kind": v1alpha1.KindPromotion,
		"metadata": map[string]any{"name": "db-to-audit", "namespace": "shop"},
		"spec":     map[string]any{"workload": "db", "mode": "audit", "revision": int64(1), "reason": "first look"},
	}}
	if _, err := dyn.Resource(PromotionResource).Namespace("shop").Create(context.Background(), req, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a.afterHead = func(model.Promotion) error { return errCrash }
	ev := model.Promotion{At: time.Now(), Who: "alice", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeAudit, ToRevision: 1, Reason: "first look"}
	p1, err := a.ForRequest("shop", "db-to-audit").Record(ev, nil)
	if !errors.Is(err, errCrash) {
		t.Fatalf("record = %v, want the crash", err)
	}
	// The next leader carries out the same request: refused as recorded.
	got, err := b.ForRequest("shop", "db-to-audit").Record(ev, nil)
	if !errors.Is(err, ErrAlreadyRecorded) || got.Hash != p1.Hash {
		t.Fatalf("second record of one request = %+v, %v; want ErrAlreadyRecorded with record 1", got, err)
	}
	if pr := getPromotion(t, b, "shop", "db-to-audit"); pr.Status.Record == nil || pr.Status.Record.Seq != 1 {
		t.Errorf("request after roll-forward: %+v", pr.Status)
	}
	// A stop again, then another workload's record completes it first.
	a.afterHead = func(model.Promotion) error { return errCrash }
	p2, err := a.Record(model.Promotion{At: time.Now(), Who: "ops", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 1, Reason: "go"}, nil)
	if !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	p3, err := b.Record(model.Promotion{At: time.Now(), Who: "ops", Workload: "shop/api", Action: model.ActionPromote, ToMode: model.ModeAudit, ToRevision: 1, Reason: "next"}, nil)
	if err != nil || p3.Seq != 3 || p3.PrevHash != p2.Hash {
		t.Fatalf("record after a stop = %+v, %v", p3, err)
	}
	if seg := getSegment(t, b, "shop", "db"); seg.Spec.Mode != model.ModeEnforce {
		t.Errorf("NanoSegment shop/db mode %s, want enforce (record 2 completed)", seg.Spec.Mode)
	}
	hist, _ := b.History("")
	if len(hist) != 3 {
		t.Errorf("history has %d records, want 3", len(hist))
	}
	if err := model.VerifyPromotions(hist); err != nil {
		t.Fatal(err)
	}
	// A request for another workload, or one that does not exist, is refused.
	if _, err := b.ForRequest("shop", "db-to-audit").Record(model.Promotion{Workload: "shop/api", ToMode: model.ModeEnforce, ToRevision: 1}, nil); err == nil {
		t.Errorf("record into a recorded request of another workload succeeded")
	}
	if _, err := b.ForRequest("shop", "nope").Record(model.Promotion{Workload: "shop/api", ToMode: model.ModeEnforce, ToRevision: 1}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record into a missing request: %v, want ErrNotFound", err)
	}
}

// TestStoreEditedRecordDetected: an admin edits a record's reason through
// the status subresource; the chain no longer verifies, naming the record.
func TestStoreEditedRecordDetected(t *testing.T) {
	c := storeCluster(t)
	s := newStore(t, c)
	addRevisions(t, s, "shop/db")
	for i, mode := range []model.Mode{model.ModeAudit, model.ModeEnforce, model.ModeAudit} {
		if _, err := s.Record(model.Promotion{At: time.Now(), Who: "ops", Workload: "shop/db", Action: model.ActionPromote, ToMode: mode, ToRevision: 1, Reason: fmt.Sprintf("step %d", i+1)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.VerifyChain(s); err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(c.Config)
	res := dyn.Resource(PromotionResource).Namespace("shop")
	u, err := res.Get(context.Background(), "db-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, "nothing to see", "status", "record", "reason"); err != nil {
		t.Fatal(err)
	}
	if _, err := res.UpdateStatus(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = store.VerifyChain(s)
	if !errors.Is(err, model.ErrChainBroken) || !strings.Contains(err.Error(), "event 2 was altered") {
		t.Errorf("chain with an edited record: %v, want event 2 altered", err)
	}
	// Repair does not hide it: it never rewrites a record.
	if err := s.Repair(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := store.VerifyChain(s); !errors.Is(err, model.ErrChainBroken) {
		t.Errorf("chain after repair: %v, want still broken", err)
	}
}

// TestStoreRepairUndoesHandEdits: a NanoSegment edited by hand gets its
// recorded spec back from Repair; a workload rolled back to revision 0
// filters nothing.
func TestStoreRepairUndoesHandEdits(t *testing.T) {
	c := storeCluster(t)
	s := newStore(t, c)
	addRevisions(t, s, "shop/db")
	if _, err := s.Record(model.Promotion{At: time.Now(), Who: "ops", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 1, Reason: "go"}, nil); err != nil {
		t.Fatal(err)
	}
	res := s.segments("shop")
	u, err := res.Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(u.Object, "observe", "spec", "mode")
	unstructured.RemoveNestedField(u.Object, "spec", "ingress")
	if _, err := res.Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Repair(context.Background()); err != nil {
		t.Fatal(err)
	}
	if seg := getSegment(t, s, "shop", "db"); seg.Spec.Mode != model.ModeEnforce || len(seg.Spec.Ingress) != 1 {
		t.Errorf("NanoSegment after repair: %+v", seg.Spec)
	}
	st, _ := s.State("shop/db")
	p, err := s.Record(model.Promotion{At: time.Now(), Who: "ops", Workload: "shop/db", Action: model.ActionRollback, ToMode: model.ModeObserve, ToRevision: 0, Undoes: 1, Reason: "undo"}, &st)
	if err != nil {
		t.Fatal(err)
	}
	seg := getSegment(t, s, "shop", "db")
	if seg.Spec.Mode != model.ModeObserve || len(seg.Spec.Ingress) != 0 || seg.Labels[v1alpha1.LabelRevision] != "0" {
		t.Errorf("NanoSegment at revision 0: %+v %v", seg.Spec, seg.Labels)
	}
	if st, _ := s.State("shop/db"); st.Seq != p.Seq || st.Revision != 0 || st.Mode != model.ModeObserve {
		t.Errorf("state after the rollback = %+v", st)
	}
	// A NanoSegment written by hand, without the store's label, is not
	// the store's: its workload was never promoted.
	hand := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.APIVersion, "kind": v1alpha1.Kind,
		"metadata": map[string]any{"name": "handmade", "namespace": "shop"},
		"spec":     map[string]any{"selector": map[string]any{}, "mode": "enforce"},
	}}
	if _, err := res.Create(context.Background(), hand, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State("shop/handmade"); st.Seq != 0 || st.Mode != model.ModeObserve || st.Revision != 0 {
		t.Errorf("state of a hand-written NanoSegment's workload = %+v, want never promoted", st)
	}
	if sts, _ := s.States(); len(sts) != 1 || sts[0].Workload != "shop/db" {
		t.Errorf("states = %+v, want shop/db only", sts)
	}
	if ws, _ := s.Workloads(); len(ws) != 1 || ws[0] != "shop/db" {
		t.Errorf("workloads = %v, want shop/db only", ws)
	}
}

// storeRules is what the cluster store needs (docs/architecture.md, "The
// cluster store"): the test grants exactly these to the controller's
// ServiceAccount.
var storeRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"apps"}, Resources: []string{"controllerrevisions"}, Verbs: []string{"get", "list", "create"}},
	{APIGroups: []string{"nanoseg.io"}, Resources: []string{"nanosegments", "nanosegmentpromotions"}, Verbs: []string{"get", "list", "create", "update"}},
	{APIGroups: []string{"nanoseg.io"}, Resources: []string{"nanosegments/status", "nanosegmentpromotions/status"}, Verbs: []string{"update"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "create", "update", "delete"}},
}

// headRules are the store's rights in its own namespace: create the head
// (create cannot be narrowed to a name), then read and swap only it.
var headRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
	{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{HeadConfigMap}, Verbs: []string{"get", "update"}},
}

// TestStoreAsControllerWithAdmission runs the store as the controller's
// ServiceAccount with only storeRules and headRules, on a cluster of its
// own with the admission policies of manifests/admission: the promotions
// it creates are stamped with its identity, and everything it does is
// allowed.
func TestStoreAsControllerWithAdmission(t *testing.T) {
	c := kubetest.New(t, kubetest.Options{CRDDirs: []string{"../../manifests/crds"}})
	ctx := context.Background()
	for _, ns := range []string{DefaultNamespace, "shop"} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile("../../manifests/admission/promotions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(c.Config)
	resources := map[string]string{
		"MutatingAdmissionPolicy": "mutatingadmissionpolicies", "MutatingAdmissionPolicyBinding": "mutatingadmissionpolicybindings",
		"ValidatingAdmissionPolicy": "validatingadmissionpolicies", "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
	}
	for _, o := range objs {
		gvr := admissionregistrationv1.SchemeGroupVersion.WithResource(resources[o.GetKind()])
		if _, err := dyn.Resource(gvr).Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	// The API server loads admission policies asynchronously: wait until
	// a dry-run promotion comes back stamped with its creator.
	deadline := time.Now().Add(time.Minute)
	for {
		probe := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.APIVersion, "kind": v1alpha1.KindPromotion,
			"metadata": map[string]any{"name": "probe", "namespace": "shop"},
			"spec":     map[string]any{"workload": "db", "mode": "audit", "reason": "probe", "requestedBy": map[string]any{"username": "bob"}},
		}}
		got, err := dyn.Resource(PromotionResource).Namespace("shop").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			if user, _, _ := unstructured.NestedString(got.Object, "spec", "requestedBy", "username"); user == "admin" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admission policies never took effect (last error: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sa := "nanoseg-controller"
	rbac := c.Client.RbacV1()
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: DefaultNamespace}}
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "test-store"}, Rules: storeRules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test-store"}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "test-store"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.Roles(DefaultNamespace).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "test-store-head"}, Rules: headRules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(DefaultNamespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test-store-head"}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "test-store-head"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.ServiceAccountConfig(ctx, DefaultNamespace, sa)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(kubernetes.NewForConfigOrDie(cfg), dynamic.NewForConfigOrDie(cfg), StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	addRevisions(t, s, "shop/db")
	p1, err := s.Record(model.Promotion{At: time.Now(), Who: "alice", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeAudit, ToRevision: 1, Reason: "look"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pr := getPromotion(t, s, "shop", fmt.Sprintf("db-%d", p1.Seq))
	if pr.Spec.RequestedBy == nil || pr.Spec.RequestedBy.Username != "system:serviceaccount:"+DefaultNamespace+":"+sa {
		t.Errorf("the store's promotion requestedBy = %+v, want its ServiceAccount", pr.Spec.RequestedBy)
	}
	// An operator's request, carried out into its own object; a rollback.
	req := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.APIVersion, "kind": v1alpha1.KindPromotion,
		"metadata": map[string]any{"name": "db-enforce", "namespace": "shop"},
		"spec":     map[string]any{"workload": "db", "mode": "enforce", "revision": int64(1), "reason": "ready"},
	}}
	if _, err := dyn.Resource(PromotionResource).Namespace("shop").Create(ctx, req, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ForRequest("shop", "db-enforce").Record(model.Promotion{At: time.Now(), Who: "admin", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 1, Reason: "ready"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Record(model.Promotion{At: time.Now(), Who: "admin", Workload: "shop/db", Action: model.ActionRollback, ToMode: model.ModeAudit, ToRevision: 1, Undoes: 2, Reason: "too early"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	if err := store.VerifyChain(s); err != nil {
		t.Fatal(err)
	}
	if hist, _ := s.History("shop/db"); len(hist) != 3 {
		t.Errorf("history: %d records, want 3", len(hist))
	}
	if _, err := s.States(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Workloads(); err != nil {
		t.Fatal(err)
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "deny"}}
	if _, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionApply, Policy: np, By: "admin", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionApply, Policy: np, By: "admin", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NetworkPolicies(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionDelete, Namespace: "shop", Name: "deny", By: "admin", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// The history is kept: the admin may not delete a recorded promotion.
	if err := dyn.Resource(PromotionResource).Namespace("shop").Delete(ctx, "db-enforce", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Errorf("delete of a recorded promotion by the admin: %v, want refused", err)
	}
}
