package kube

import (
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

func seg(w string, egressPort int32) *v1alpha1.NanoSegment {
	s := &v1alpha1.NanoSegment{ObjectMeta: metav1.ObjectMeta{Name: w, Namespace: "shop"},
		Spec: v1alpha1.NanoSegmentSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": w}}}}
	if egressPort > 0 {
		p := intstr.FromInt32(egressPort)
		s.Spec.Egress = []v1alpha1.Rule{{ID: "out", Ports: []v1alpha1.Port{{Port: &p}}, Provenance: v1alpha1.Provenance{Observed: &v1alpha1.Observed{Edges: []string{"x"}}}}}
	}
	return s
}

// TestPolicyStore: the history is the promotions' records by seq, as
// stored; a workload's state is its latest record; a proposal that
// differs from the latest revision is what LatestRevision answers (the
// next number), one that equals it (provenance aside) is not; writes are
// refused.
func TestPolicyStore(t *testing.T) {
	mem := store.NewMem()
	at := v1alpha1.RecordTime(time.Now())
	for _, w := range []string{"web", "db"} {
		if _, err := mem.AddRevision(store.Revision{Workload: "shop/" + w, Policy: seg(w, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	var recs []model.Promotion
	for _, p := range []model.Promotion{
		{Workload: "shop/web", ToMode: model.ModeAudit, ToRevision: 1},
		{Workload: "shop/db", ToMode: model.ModeAudit, ToRevision: 1},
		{Workload: "shop/web", ToMode: model.ModeEnforce, ToRevision: 1},
	} {
		p.At, p.Who, p.Action, p.Reason = at, "alice", model.ActionPromote, "r"
		r, err := mem.Record(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	snap := &snapshot{at: at, revisions: map[string][]store.Revision{
		"shop/web": {{Workload: "shop/web", Number: 1, Policy: seg("web", 0)}},
		"shop/db":  {{Workload: "shop/db", Number: 1, Policy: seg("db", 5432)}},
	}}
	// Listed in any order.
	for _, i := range []int{2, 0, 1} {
		snap.promotions = append(snap.promotions, v1alpha1.NanoSegmentPromotion{Status: v1alpha1.NanoSegmentPromotionStatus{Record: ptr(v1alpha1.RecordFrom(recs[i]))}})
	}
	snap.promotions = append(snap.promotions, v1alpha1.NanoSegmentPromotion{}) // pending: no record
	dbSame := seg("db", 5432)
	dbSame.Spec.Egress[0].Provenance = v1alpha1.Provenance{}
	snap.proposals = []v1alpha1.NanoSegmentProposal{
		{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: v1alpha1.NanoSegmentProposalSpec{Workload: "web", Segment: seg("web", 80).Spec}},
		{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"}, Spec: v1alpha1.NanoSegmentProposalSpec{Workload: "db", Segment: dbSame.Spec}},
	}
	ps := newPolicyStore(snap)
	h, _ := ps.History("")
	if len(h) != 3 || model.VerifyPromotions(h) != nil {
		t.Fatalf("history: %+v (%v)", h, model.VerifyPromotions(h))
	}
	if st, _ := ps.State("shop/web"); st.Mode != model.ModeEnforce || st.Seq != 3 {
		t.Errorf("state of web: %+v", st)
	}
	if st, _ := ps.State("shop/none"); st.Mode != model.ModeObserve || st.Revision != 0 {
		t.Errorf("state of a workload never promoted: %+v", st)
	}
	if r, _ := ps.LatestRevision("shop/web"); r.Number != 2 || r.Origin != store.OriginProposed || len(r.Policy.Spec.Egress) != 1 {
		t.Errorf("latest of web (a new proposal): %+v", r)
	}
	if r, _ := ps.LatestRevision("shop/db"); r.Number != 1 || r.Origin != "" {
		t.Errorf("latest of db (its proposal equals revision 1): %+v", r)
	}
	if rs, _ := ps.Revisions("shop/web"); len(rs) != 1 {
		t.Errorf("revisions of web: %+v", rs)
	}
	if _, err := ps.AddRevision(store.Revision{}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("AddRevision: %v", err)
	}
	if _, err := ps.Record(model.Promotion{}, nil); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Record: %v", err)
	}
}

// TestObservations: an edge two proposals keep counts once (the copy last
// seen); each proposal's coverage becomes one span per observed endpoint,
// as long as it says, ending at the read.
func TestObservations(t *testing.T) {
	at := time.Now().UTC().Truncate(time.Second)
	e := model.Edge{Source: model.Peer{Namespace: "shop", Workload: "web"}, Destination: model.Peer{Namespace: "shop", Workload: "db"},
		Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{FirstSeen: at.Add(-time.Hour), LastSeen: at.Add(-time.Minute), Flows: 5}}
	newer := e
	newer.LastSeen, newer.Flows = at, 7
	snap := &snapshot{at: at, proposals: []v1alpha1.NanoSegmentProposal{
		{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: v1alpha1.NanoSegmentProposalSpec{Workload: "web", Edges: []v1alpha1.ObservedEdge{v1alpha1.EdgeFrom(e, "")}},
			Status: v1alpha1.NanoSegmentProposalStatus{Coverage: &v1alpha1.ProposalCoverage{Observed: metav1.Duration{Duration: time.Hour}, Endpoints: 2}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"}, Spec: v1alpha1.NanoSegmentProposalSpec{Workload: "db", Edges: []v1alpha1.ObservedEdge{v1alpha1.EdgeFrom(newer, "")}}},
	}}
	o, err := newObservations(snap)
	if err != nil {
		t.Fatal(err)
	}
	edges, _ := o.Edges(time.Time{})
	if len(edges) != 1 || edges[0].Flows != 7 {
		t.Errorf("edges: %+v", edges)
	}
	if edges, _ := o.Edges(at.Add(time.Second)); len(edges) != 0 {
		t.Errorf("edges since after the last: %+v", edges)
	}
	spans, _ := o.Observed(time.Time{})
	if len(spans) != 2 || spans[0].Workload != "shop/web" || spans[0].End != at || spans[0].End.Sub(spans[0].Start) != time.Hour || spans[0].Endpoint == spans[1].Endpoint {
		t.Errorf("spans: %+v", spans)
	}
	if v, _ := o.Verdicts(time.Time{}); len(v) != 0 {
		t.Errorf("verdicts: %+v", v)
	}
}

func ptr[T any](v T) *T { return &v }

// TestPolicyStoreClusterNetworkPolicyRecords: against a cluster each
// ClusterNetworkPolicy of the snapshot is one apply record (as for
// NetworkPolicies): revision its generation, at its creation, by "";
// writes are refused.
func TestPolicyStoreClusterNetworkPolicyRecords(t *testing.T) {
	created := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	cnp := func(name string, gen int64) cnpv1alpha2.ClusterNetworkPolicy {
		return cnpv1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: gen, CreationTimestamp: metav1.NewTime(created)},
			Spec: cnpv1alpha2.Spec{Tier: cnpv1alpha2.TierAdmin, Priority: int32(gen)}}
	}
	ps := newPolicyStore(&snapshot{cnps: []cnpv1alpha2.ClusterNetworkPolicy{cnp("a-guard", 3), cnp("b-guard", 1)}})
	recs, err := ps.ClusterNetworkPolicyRecords("")
	if err != nil || len(recs) != 2 {
		t.Fatalf("records = %+v, %v; want 2", recs, err)
	}
	if r := recs[0]; r.Name != "a-guard" || r.Revision != 3 || r.Action != store.ActionApply || !r.At.Equal(created) || r.By != "" || r.Policy == nil || r.Policy.Spec.Priority != 3 {
		t.Errorf("record of a-guard = %+v", r)
	}
	if one, _ := ps.ClusterNetworkPolicyRecords("b-guard"); len(one) != 1 || one[0].Revision != 1 {
		t.Errorf("records of b-guard = %+v", one)
	}
	if none, _ := ps.ClusterNetworkPolicyRecords("nope"); len(none) != 0 {
		t.Errorf("records of one not in the cluster = %+v", none)
	}
	one, _ := ps.ClusterNetworkPolicyRecords("a-guard")
	one[0].Policy.Spec.Priority = 99 // a copy: the snapshot keeps its own
	if again, _ := ps.ClusterNetworkPolicyRecords("a-guard"); again[0].Policy.Spec.Priority != 3 {
		t.Errorf("a caller changed the snapshot's policy")
	}
	if _, err := ps.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionDelete, Name: "a-guard"}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("delete through the snapshot: %v, want ErrReadOnly", err)
	}
}
