package kube

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// ErrReadOnly is the answer of every write of the cluster mode's store:
// against a cluster only the controller writes (a promotion is a
// NanoSegmentPromotion the CLI creates; proposals are the controller's).
var ErrReadOnly = errors.New("read-only against a cluster: the nanoseg controller writes revisions and records (promote and rollback create NanoSegmentPromotions; proposals are the controller's NanoSegmentProposals)")

// policyStore is the read-only store.PolicyStore over a snapshot.
type policyStore struct {
	s *snapshot
	// history is every record in the snapshot, oldest first (by seq).
	history []model.Promotion
	// pending is, per workload, the proposal as the revision a promotion
	// would make of it, when it differs from the latest revision.
	pending map[string]store.Revision
}

var (
	_ store.PolicyStore        = (*policyStore)(nil)
	_ store.ClusterPolicyStore = (*policyStore)(nil)
)

func newPolicyStore(s *snapshot) *policyStore {
	ps := &policyStore{s: s, pending: map[string]store.Revision{}}
	headIn := false
	for _, p := range s.promotions {
		if p.Status.Record != nil {
			rec := p.Status.Record.Model()
			ps.history = append(ps.history, rec)
			headIn = headIn || (rec.Seq == s.head.Seq && p.Namespace+"/"+p.Name == s.headObj)
		}
	}
	// The head's record is committed even before it is in its promotion
	// (as store/kube's History reads it), when it is in the scope read.
	if ns, _, _ := strings.Cut(s.head.Workload, "/"); s.head.Seq > 0 && !headIn && (s.namespace == "" || ns == s.namespace) {
		ps.history = append(ps.history, s.head)
	}
	sort.SliceStable(ps.history, func(i, j int) bool { return ps.history[i].Seq < ps.history[j].Seq })
	for _, pr := range s.proposals {
		w := key(pr.Namespace, pr.Spec.Workload)
		seg := proposalSegment(pr)
		next := 1
		if rs := s.revisions[w]; len(rs) > 0 {
			last := rs[len(rs)-1]
			if sameRules(last.Policy, seg) {
				continue
			}
			next = last.Number + 1
		}
		ps.pending[w] = store.Revision{Workload: w, Number: next, Origin: store.OriginProposed, CreatedAt: pr.CreationTimestamp.Time,
			CreatedBy: "nanoseg controller (proposal " + pr.Namespace + "/" + pr.Name + ", not a revision yet)", Policy: seg, Window: pr.Spec.Window.Duration}
	}
	return ps
}

func (p *policyStore) AddRevision(store.Revision) (store.Revision, error) {
	return store.Revision{}, ErrReadOnly
}

func (p *policyStore) Record(model.Promotion, *store.WorkloadState) (model.Promotion, error) {
	return model.Promotion{}, ErrReadOnly
}

func (p *policyStore) AddNetworkPolicyRecord(store.NetworkPolicyRecord) (store.NetworkPolicyRecord, error) {
	return store.NetworkPolicyRecord{}, ErrReadOnly
}

func (p *policyStore) Revision(workload string, n int) (store.Revision, error) {
	for _, r := range p.s.revisions[workload] {
		if r.Number == n {
			return r, nil
		}
	}
	return store.Revision{}, fmt.Errorf("revision %d of %s: %w", n, workload, store.ErrNotFound)
}

func (p *policyStore) Revisions(workload string) ([]store.Revision, error) {
	return append([]store.Revision(nil), p.s.revisions[workload]...), nil
}

// LatestRevision answers with the workload's proposal when it differs
// from its latest revision (see the package doc): what a promotion of the
// current proposal would put in force, so `policy diff` reviews it.
func (p *policyStore) LatestRevision(workload string) (store.Revision, error) {
	if r, ok := p.pending[workload]; ok {
		return r, nil
	}
	rs := p.s.revisions[workload]
	if len(rs) == 0 {
		return store.Revision{}, fmt.Errorf("revisions of %s: %w", workload, store.ErrNotFound)
	}
	return rs[len(rs)-1], nil
}

// State is the workload's latest record; a workload never promoted is in
// observe mode at revision 0.
func (p *policyStore) State(workload string) (store.WorkloadState, error) {
	for i := len(p.history) - 1; i >= 0; i-- {
		if h := p.history[i]; h.Workload == workload {
			return store.WorkloadState{Workload: workload, Mode: h.ToMode, Revision: h.ToRevision, Since: h.At, Seq: h.Seq}, nil
		}
	}
	return store.WorkloadState{Workload: workload, Mode: model.ModeObserve}, nil
}

func (p *policyStore) States() ([]store.WorkloadState, error) {
	seen := map[string]bool{}
	var out []store.WorkloadState
	for _, h := range p.history {
		if !seen[h.Workload] {
			seen[h.Workload] = true
			st, _ := p.State(h.Workload)
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Workload < out[j].Workload })
	return out, nil
}

func (p *policyStore) History(workload string) ([]model.Promotion, error) {
	out := []model.Promotion{}
	for _, h := range p.history {
		if workload == "" || h.Workload == workload {
			out = append(out, h)
		}
	}
	return out, nil
}

func (p *policyStore) Workloads() ([]string, error) {
	set := map[string]bool{}
	for w := range p.s.revisions {
		set[w] = true
	}
	for _, h := range p.history {
		set[h.Workload] = true
	}
	out := make([]string, 0, len(set))
	for w := range set {
		out = append(out, w)
	}
	sort.Strings(out)
	return out, nil
}

// NetworkPolicies are the cluster's NetworkPolicies, each one record:
// revision = its generation, at its creation, by "" (the API server does
// not keep who).
func (p *policyStore) NetworkPolicies() ([]store.NetworkPolicyRecord, error) {
	return p.NetworkPolicyRecords("", "")
}

func (p *policyStore) NetworkPolicyRecords(namespace, name string) ([]store.NetworkPolicyRecord, error) {
	var out []store.NetworkPolicyRecord
	for i := range p.s.netpols {
		np := p.s.netpols[i].DeepCopy()
		if (namespace != "" && np.Namespace != namespace) || (name != "" && np.Name != name) {
			continue
		}
		out = append(out, store.NetworkPolicyRecord{Namespace: np.Namespace, Name: np.Name, Revision: int(np.Generation),
			Action: store.ActionApply, At: np.CreationTimestamp.Time, Policy: np})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

// ClusterNetworkPolicies implements store.ClusterPolicyStore: the valid
// ClusterNetworkPolicies of the snapshot, sorted by name (none when the
// user may not list them: Open warned).
func (p *policyStore) ClusterNetworkPolicies() ([]cnpv1alpha2.ClusterNetworkPolicy, error) {
	out := make([]cnpv1alpha2.ClusterNetworkPolicy, 0, len(p.s.cnps))
	for i := range p.s.cnps {
		out = append(out, *p.s.cnps[i].DeepCopy())
	}
	return out, nil
}

// ClusterNetworkPolicyRecords implements store.ClusterPolicyStore: one
// record per ClusterNetworkPolicy of the snapshot (of name, or all for
// ""), as for NetworkPolicies: revision = its generation, at its
// creation, by "" (the API server does not keep who); no deletions.
func (p *policyStore) ClusterNetworkPolicyRecords(name string) ([]store.ClusterNetworkPolicyRecord, error) {
	return store.SynthesizeClusterNetworkPolicyRecords(p.s.cnps, name), nil
}

// AddClusterNetworkPolicyRecord fails with ErrReadOnly: a cluster
// administrator applies and deletes ClusterNetworkPolicies with kubectl.
func (p *policyStore) AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord) (store.ClusterNetworkPolicyRecord, error) {
	return store.ClusterNetworkPolicyRecord{}, ErrReadOnly
}

// proposalSegment is the NanoSegment a proposal proposes, named after its
// workload as a proposed revision is.
func proposalSegment(pr v1alpha1.NanoSegmentProposal) *v1alpha1.NanoSegment {
	seg := &v1alpha1.NanoSegment{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: pr.Spec.Workload, Namespace: pr.Namespace},
		Spec:       *pr.Spec.Segment.DeepCopy(),
	}
	seg.Spec.Mode = ""
	return seg
}

// sameRules reports whether a and b allow the same (mode and provenance
// aside), as the controller decides whether a proposal is a new revision.
func sameRules(a, b *v1alpha1.NanoSegment) bool {
	strip := func(s *v1alpha1.NanoSegment) v1alpha1.NanoSegmentSpec {
		sp := *s.Spec.DeepCopy()
		sp.Mode = ""
		for _, rs := range [][]v1alpha1.Rule{sp.Ingress, sp.Egress} {
			for i := range rs {
				rs[i].Provenance = v1alpha1.Provenance{}
			}
		}
		return sp
	}
	return a != nil && b != nil && a.Namespace == b.Namespace && equality.Semantic.DeepEqual(strip(a), strip(b))
}
