// Package storetest checks that an implementation of store.Store keeps the
// contract the controller relies on: edges merge, revisions number from 1,
// a promotion changes the state and appends a hash-chained event at once,
// and a stale or impossible promotion changes nothing.
package storetest

import (
	"errors"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// Run runs the contract tests on stores made by open (a fresh, empty store
// per call; reopen, when not nil, closes s and opens it again on the same
// data, so persistence is checked too).
func Run(t *testing.T, open func(t *testing.T) store.Store, reopen func(t *testing.T, s store.Store) store.Store) {
	if reopen == nil {
		reopen = func(_ *testing.T, s store.Store) store.Store { return s }
	}
	t.Run("MergesEdges", func(t *testing.T) { mergesEdges(t, open(t), reopen) })
	t.Run("VerdictsSince", func(t *testing.T) { verdictsSince(t, open(t)) })
	t.Run("ObservedSpans", func(t *testing.T) { observedSpans(t, open(t), reopen) })
	RunPolicyStore(t, func(t *testing.T) store.PolicyStore { return open(t) },
		func(t *testing.T, s store.PolicyStore) store.PolicyStore { return reopen(t, s.(store.Store)) }, Options{})
}

// Options adapt the suite to a store that cannot keep part of the
// contract by its nature. Each non-empty field is the reason a part is
// skipped (the skip and its reason show in the test log); the zero value
// runs everything, as the standalone stores must.
type Options struct {
	// NetworkPolicyHistory: the store keeps only the current version of
	// each NetworkPolicy (the Kubernetes API), so the records of earlier
	// versions and of deletions are not checked.
	NetworkPolicyHistory string
	// ClusterNetworkPolicyHistory: the same for ClusterNetworkPolicies
	// (a store.ClusterPolicyStore over the Kubernetes API): the records
	// of earlier versions, of deletions, and their At and By are not
	// checked.
	ClusterNetworkPolicyHistory string
}

// RunPolicyStore runs the contract tests of store.PolicyStore alone
// (revisions, promotions and their chain, NetworkPolicy records) on stores
// made by open, for stores that keep no observations; open and reopen are
// as for Run.
func RunPolicyStore(t *testing.T, open func(t *testing.T) store.PolicyStore, reopen func(t *testing.T, s store.PolicyStore) store.PolicyStore, opts Options) {
	if reopen == nil {
		reopen = func(_ *testing.T, s store.PolicyStore) store.PolicyStore { return s }
	}
	t.Run("PromotionsAreChainedAndChecked", func(t *testing.T) { promotionsChained(t, open(t), reopen) })
	t.Run("NetworkPolicies", func(t *testing.T) { networkPolicies(t, open(t), reopen, opts) })
	t.Run("ClusterNetworkPolicies", func(t *testing.T) { clusterNetworkPolicies(t, open(t), reopen, opts) })
}

func mergesEdges(t *testing.T, s store.Store, reopen func(*testing.T, store.Store) store.Store) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	e := model.Edge{Source: model.Peer{Namespace: "shop", Workload: "api"}, Destination: model.Peer{Namespace: "shop", Workload: "db"}, Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0.Add(time.Second), Flows: 2, BytesOut: 100, Verdicts: model.VerdictCounts{Observed: 2}}}
	later := e
	later.FirstSeen, later.LastSeen, later.Flows, later.BytesOut = t0.Add(time.Minute), t0.Add(2*time.Minute), 3, 50
	later.Verdicts = model.VerdictCounts{Denied: 1}
	if err := s.MergeEdges([]model.Edge{e}); err != nil {
		t.Fatal(err)
	}
	if err := s.MergeEdges([]model.Edge{later}); err != nil {
		t.Fatal(err)
	}
	// Reopen: what was committed survives.
	s = reopen(t, s)
	got, err := s.Edges(time.Time{})
	if err != nil || len(got) != 1 {
		t.Fatalf("edges: %v, %v", got, err)
	}
	g := got[0]
	if g.Flows != 5 || g.BytesOut != 150 || !g.FirstSeen.Equal(t0) || !g.LastSeen.Equal(t0.Add(2*time.Minute)) || g.Verdicts.Denied != 1 || g.Verdicts.Observed != 2 {
		t.Errorf("merged edge = %+v", g)
	}
	if got, _ := s.Edges(t0.Add(3 * time.Minute)); len(got) != 0 {
		t.Errorf("window after last seen returned %d edges", len(got))
	}
}

// observedSpans: a span's End only moves forward, a restart (a new start)
// is a new span beside the old one, and both survive a reopen.
func observedSpans(t *testing.T, s store.Store, reopen func(*testing.T, store.Store) store.Store) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	span := func(ep, w string, start, end time.Duration) model.ObservedSpan {
		return model.ObservedSpan{Endpoint: ep, Workload: w, Start: t0.Add(start), End: t0.Add(end)}
	}
	if got, err := s.Observed(time.Time{}); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v", got, err)
	}
	if err := s.RecordObserved([]model.ObservedSpan{span("db-0", "shop/db", 0, time.Minute), span("api-0", "shop/api", 0, time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// The next commit moves End forward; an older End never moves it back.
	if err := s.RecordObserved([]model.ObservedSpan{span("db-0", "shop/db", 0, 5*time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordObserved([]model.ObservedSpan{span("db-0", "shop/db", 0, 2*time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// A restart starts a new span.
	if err := s.RecordObserved([]model.ObservedSpan{span("db-0", "shop/db", time.Hour, time.Hour+time.Minute)}); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s)
	got, err := s.Observed(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []model.ObservedSpan{span("api-0", "shop/api", 0, time.Minute), span("db-0", "shop/db", 0, 5*time.Minute), span("db-0", "shop/db", time.Hour, time.Hour+time.Minute)}
	if len(got) != len(want) {
		t.Fatalf("spans %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Endpoint != want[i].Endpoint || got[i].Workload != want[i].Workload || !got[i].Start.Equal(want[i].Start) || !got[i].End.Equal(want[i].End) {
			t.Errorf("span %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// since: the spans that end at or after it.
	if got, _ := s.Observed(t0.Add(3 * time.Minute)); len(got) != 2 || got[0].Endpoint != "db-0" {
		t.Errorf("spans ending after 3m: %+v", got)
	}
}

func promotionsChained(t *testing.T, s store.PolicyStore, reopen func(*testing.T, store.PolicyStore) store.PolicyStore) {
	pol := &v1alpha1.NanoSegment{}
	r1, err := s.AddRevision(store.Revision{Workload: "shop/db", Origin: store.OriginProposed, Policy: pol})
	if err != nil || r1.Number != 1 {
		t.Fatalf("first revision: %+v, %v", r1, err)
	}
	r2, _ := s.AddRevision(store.Revision{Workload: "shop/db", Origin: store.OriginDeclared, Policy: pol})
	if r2.Number != 2 {
		t.Fatalf("second revision number %d", r2.Number)
	}
	if _, err := s.Revision("shop/db", 3); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing revision: %v, want ErrNotFound", err)
	}
	if _, err := s.LatestRevision("shop/web"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("latest revision of a workload without any: %v, want ErrNotFound", err)
	}
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	p1, err := s.Record(model.Promotion{At: at, Who: "ops", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeAudit, ToRevision: 1, Reason: "try"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p1.FromMode != model.ModeObserve || p1.FromRevision != 0 || p1.Seq != 1 || p1.PrevHash != "" || p1.Hash != p1.ChainHash() {
		t.Errorf("first promotion = %+v", p1)
	}
	stale := store.WorkloadState{Mode: model.ModeObserve}
	if _, err := s.Record(model.Promotion{Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 1}, &stale); !errors.Is(err, store.ErrConflict) {
		t.Errorf("promotion from a stale state: %v, want ErrConflict", err)
	}
	if _, err := s.Record(model.Promotion{Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 9}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("promotion to a missing revision: %v, want ErrNotFound", err)
	}
	if st, _ := s.State("shop/db"); st.Mode != model.ModeAudit || st.Revision != 1 || st.Seq != 1 {
		t.Errorf("refused promotions changed the state: %+v", st)
	}
	p2, err := s.Record(model.Promotion{At: at, Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p2.PrevHash != p1.Hash || p2.FromMode != model.ModeAudit || p2.FromRevision != 1 {
		t.Errorf("second promotion = %+v, want it linked to the first", p2)
	}
	s = reopen(t, s)
	st, _ := s.State("shop/db")
	if st.Mode != model.ModeEnforce || st.Revision != 2 || st.Seq != 2 {
		t.Errorf("state = %+v", st)
	}
	if sts, _ := s.States(); len(sts) != 1 || sts[0] != st {
		t.Errorf("states = %+v", sts)
	}
	if ws, _ := s.Workloads(); len(ws) != 1 || ws[0] != "shop/db" {
		t.Errorf("workloads = %v", ws)
	}
	if err := store.VerifyChain(s); err != nil {
		t.Fatalf("fresh chain: %v", err)
	}
	hist, _ := s.History("shop/db")
	if len(hist) != 2 {
		t.Fatalf("history has %d events, want 2", len(hist))
	}
	if err := model.VerifyPromotions(hist[1:]); !errors.Is(err, model.ErrChainBroken) {
		t.Errorf("history with a gap verifies: %v", err)
	}
	edited := append([]model.Promotion(nil), hist...)
	edited[0].Reason = "edited"
	if err := model.VerifyPromotions(edited); !errors.Is(err, model.ErrChainBroken) {
		t.Errorf("edited history verifies: %v", err)
	}
}

func verdictsSince(t *testing.T, s store.Store) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	evs := []model.VerdictEvent{
		{At: t0.Add(2 * time.Second), Verdict: "deny", Source: "shop/web", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432},
		{At: t0, Verdict: "audit-deny", Source: "shop/web", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432},
	}
	if err := s.AddVerdicts(evs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Verdicts(t0.Add(time.Second))
	if err != nil || len(got) != 1 || got[0].Verdict != "deny" {
		t.Fatalf("verdicts since t0+1s = %+v, %v", got, err)
	}
	if all, _ := s.Verdicts(time.Time{}); len(all) != 2 || !all[0].At.Equal(t0) {
		t.Errorf("all verdicts = %+v, want 2 oldest first", all)
	}
}

// networkPolicies: NetworkPolicies are stored as themselves, each apply and
// delete is a numbered record of its namespace/name, the ones in force are
// the latest applied and not deleted, and deleting one not in force
// changes nothing.
func networkPolicies(t *testing.T, s store.PolicyStore, reopen func(*testing.T, store.PolicyStore) store.PolicyStore, opts Options) {
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	np := func(ns, name string, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: networkingv1.NetworkPolicySpec{PolicyTypes: types}}
	}
	if got, err := s.NetworkPolicies(); err != nil || len(got) != 0 {
		t.Fatalf("empty store: NetworkPolicies = %+v, %v", got, err)
	}
	r1, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionApply, At: at, By: "ops", Policy: np("shop", "default-deny", networkingv1.PolicyTypeIngress)})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Namespace != "shop" || r1.Name != "default-deny" || r1.Revision != 1 {
		t.Errorf("first record = %+v, want shop/default-deny revision 1", r1)
	}
	r2, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionApply, At: at, By: "ops", Policy: np("shop", "default-deny", networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)})
	if err != nil || r2.Revision != 2 {
		t.Fatalf("second record = %+v, %v", r2, err)
	}
	if _, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionApply, At: at, By: "ops", Policy: np("monitoring", "deny-all")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionDelete, Namespace: "shop", Name: "nope", At: at, By: "ops"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete of a NetworkPolicy never applied: %v, want ErrNotFound", err)
	}
	if _, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionApply, At: at}); err == nil {
		t.Errorf("apply without a policy was stored")
	}
	s = reopen(t, s)
	got, err := s.NetworkPolicies()
	if err != nil || len(got) != 2 {
		t.Fatalf("in force = %+v, %v; want 2", got, err)
	}
	if got[0].Namespace != "monitoring" || got[1].Name != "default-deny" || got[1].Revision != 2 || len(got[1].Policy.Spec.PolicyTypes) != 2 {
		t.Errorf("in force = %+v, want monitoring/deny-all then shop/default-deny revision 2", got)
	}
	got[1].Policy.Spec.PolicyTypes = nil // callers cannot change what the store holds
	del, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionDelete, Namespace: "shop", Name: "default-deny", At: at.Add(time.Minute), By: "ops"})
	if err != nil || del.Revision != 3 || del.Policy != nil {
		t.Fatalf("delete = %+v, %v; want revision 3 without a policy", del, err)
	}
	if _, err := s.AddNetworkPolicyRecord(store.NetworkPolicyRecord{Action: store.ActionDelete, Namespace: "shop", Name: "default-deny", At: at, By: "ops"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	s = reopen(t, s)
	if got, _ := s.NetworkPolicies(); len(got) != 1 || got[0].Namespace != "monitoring" {
		t.Errorf("in force after delete = %+v, want monitoring/deny-all only", got)
	}
	t.Run("RecordHistory", func(t *testing.T) {
		if opts.NetworkPolicyHistory != "" {
			t.Skip(opts.NetworkPolicyHistory)
		}
		recs, err := s.NetworkPolicyRecords("shop", "default-deny")
		if err != nil || len(recs) != 3 || recs[2].Action != store.ActionDelete || recs[2].By != "ops" || len(recs[1].Policy.Spec.PolicyTypes) != 2 {
			t.Errorf("records of shop/default-deny = %+v, %v; want apply, apply, delete", recs, err)
		}
		if all, _ := s.NetworkPolicyRecords("", ""); len(all) != 4 {
			t.Errorf("all records: %d, want 4", len(all))
		}
	})
}

// clusterNetworkPolicies: a store.ClusterPolicyStore keeps
// ClusterNetworkPolicies as networkPolicies keeps NetworkPolicies: each
// apply and delete is a numbered record of its name (growing across
// deletions), the ones in force are the policies of the latest applies,
// and deleting one not in force changes nothing. A store without
// ClusterPolicyStore skips it.
func clusterNetworkPolicies(t *testing.T, s store.PolicyStore, reopen func(*testing.T, store.PolicyStore) store.PolicyStore, opts Options) {
	cs, ok := s.(store.ClusterPolicyStore)
	if !ok {
		t.Skip("the store holds no ClusterNetworkPolicies (no store.ClusterPolicyStore)")
	}
	reopenCS := func() store.ClusterPolicyStore {
		s = reopen(t, s)
		return s.(store.ClusterPolicyStore)
	}
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	cnp := func(name string, priority int32) *cnpv1alpha2.ClusterNetworkPolicy {
		p := &cnpv1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: cnpv1alpha2.Spec{
			Tier: cnpv1alpha2.TierAdmin, Priority: priority,
			Subject: cnpv1alpha2.Subject{Namespaces: &metav1.LabelSelector{}},
			Ingress: []cnpv1alpha2.IngressRule{{Name: "deny-all", Action: cnpv1alpha2.ActionDeny,
				From: []cnpv1alpha2.IngressPeer{{Namespaces: &metav1.LabelSelector{}}}}},
		}}
		p.APIVersion, p.Kind = cnpv1alpha2.APIVersion, cnpv1alpha2.Kind
		return p
	}
	if got, err := cs.ClusterNetworkPolicies(); err != nil || len(got) != 0 {
		t.Fatalf("empty store: ClusterNetworkPolicies = %+v, %v", got, err)
	}
	r1, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, At: at, By: "ops", Policy: cnp("guard-db", 5)})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Name != "guard-db" || r1.Revision != 1 || r1.Policy.Spec.Priority != 5 {
		t.Errorf("first record = %+v, want guard-db revision 1", r1)
	}
	r2, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, At: at.Add(time.Minute), By: "sec", Policy: cnp("guard-db", 7)})
	if err != nil || r2.Revision != 2 {
		t.Fatalf("second record = %+v, %v", r2, err)
	}
	if _, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, At: at, By: "ops", Policy: cnp("baseline", 3)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionDelete, Name: "nope", At: at, By: "ops"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete of a ClusterNetworkPolicy never applied: %v, want ErrNotFound", err)
	}
	if _, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, At: at}); err == nil {
		t.Errorf("apply without a policy was stored")
	}
	if _, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, At: at, Policy: cnp("", 1)}); !errors.Is(err, store.ErrNoName) {
		t.Errorf("apply without a name: %v, want ErrNoName", err)
	}
	cs = reopenCS()
	got, err := cs.ClusterNetworkPolicies()
	if err != nil || len(got) != 2 {
		t.Fatalf("in force = %+v, %v; want 2", got, err)
	}
	if got[0].Name != "baseline" || got[1].Name != "guard-db" || got[1].Spec.Priority != 7 {
		t.Errorf("in force = %+v, want baseline then guard-db at priority 7", got)
	}
	got[1].Spec.Priority = 99 // callers cannot change what the store holds
	del, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionDelete, Name: "guard-db", At: at.Add(2 * time.Minute), By: "ops"})
	if err != nil || del.Revision != 3 || del.Policy != nil {
		t.Fatalf("delete = %+v, %v; want revision 3 without a policy", del, err)
	}
	if _, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionDelete, Name: "guard-db", At: at, By: "ops"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	cs = reopenCS()
	if got, _ := cs.ClusterNetworkPolicies(); len(got) != 1 || got[0].Name != "baseline" {
		t.Errorf("in force after delete = %+v, want baseline only", got)
	}
	t.Run("RecordHistory", func(t *testing.T) {
		if opts.ClusterNetworkPolicyHistory != "" {
			t.Skip(opts.ClusterNetworkPolicyHistory)
		}
		recs, err := cs.ClusterNetworkPolicyRecords("guard-db")
		if err != nil || len(recs) != 3 {
			t.Fatalf("records of guard-db = %+v, %v; want apply, apply, delete", recs, err)
		}
		want := []struct {
			rev    int
			action store.NetworkPolicyAction
			by     string
			at     time.Time
			prio   int32
		}{{1, store.ActionApply, "ops", at, 5}, {2, store.ActionApply, "sec", at.Add(time.Minute), 7}, {3, store.ActionDelete, "ops", at.Add(2 * time.Minute), 0}}
		for i, w := range want {
			r := recs[i]
			if r.Name != "guard-db" || r.Revision != w.rev || r.Action != w.action || r.By != w.by || !r.At.Equal(w.at) {
				t.Errorf("record %d = %+v, want revision %d %s by %s at %s", i, r, w.rev, w.action, w.by, w.at)
			}
			if (r.Policy == nil) != (w.action == store.ActionDelete) || (r.Policy != nil && r.Policy.Spec.Priority != w.prio) {
				t.Errorf("record %d policy = %+v, want priority %d (none for a delete)", i, r.Policy, w.prio)
			}
		}
		all, _ := cs.ClusterNetworkPolicyRecords("")
		if len(all) != 4 || all[0].Name != "baseline" || all[3].Action != store.ActionDelete {
			t.Errorf("all records = %+v, want baseline's then guard-db's three", all)
		}
		// Applied again after the delete: the revisions go on.
		r4, err := cs.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, At: at.Add(3 * time.Minute), By: "ops", Policy: cnp("guard-db", 5)})
		if err != nil || r4.Revision != 4 {
			t.Errorf("apply after delete = %+v, %v; want revision 4", r4, err)
		}
	})
}
