package store

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// ClusterPolicyStore is an optional part of a PolicyStore: the
// ClusterNetworkPolicies (policy.networking.k8s.io/v1alpha2,
// cluster-scoped, keyed by name), kept as numbered records of the objects
// themselves, as NetworkPolicies are (NetworkPolicyRecord): every apply
// and deletion is a record with who and when, and the ones in force are
// derived from the latest record of each name. A store without it cannot
// hold them, and the controller refuses to apply one.
type ClusterPolicyStore interface {
	// AddClusterNetworkPolicyRecord appends rec as the next record
	// (Revision 1, 2, ... per name, growing across deletions) of the
	// ClusterNetworkPolicy it names and returns it with Revision set. An
	// ActionApply record carries the whole object in Policy (its name
	// fills Name); an ActionDelete record names the policy in Name,
	// carries no Policy, and wraps ErrNotFound when that
	// ClusterNetworkPolicy is not in force.
	AddClusterNetworkPolicyRecord(rec ClusterNetworkPolicyRecord) (ClusterNetworkPolicyRecord, error)
	// ClusterNetworkPolicies returns every one in force: the policy of
	// the latest record of every name whose latest record is an apply,
	// sorted by name.
	ClusterNetworkPolicies() ([]cnpv1alpha2.ClusterNetworkPolicy, error)
	// ClusterNetworkPolicyRecords returns every record of name (of every
	// ClusterNetworkPolicy for ""), sorted by name and revision.
	ClusterNetworkPolicyRecords(name string) ([]ClusterNetworkPolicyRecord, error)
}

// ErrNoName is returned for a ClusterNetworkPolicy without a name.
var ErrNoName = errors.New("ClusterNetworkPolicy without a name")

// ByUnknown is the By of a record made when a store kept only the
// ClusterNetworkPolicies in force, without records (bbolt files written
// before ClusterNetworkPolicy records: each one in force became a
// revision-1 apply with a zero At, because who applied it and when were
// never stored).
const ByUnknown = "(unknown: in force before records were kept)"

// ClusterNetworkPolicyRecord is one stored change of a
// ClusterNetworkPolicy, kept as the object itself, with the semantics of
// NetworkPolicyRecord: append-only, a change is a new revision, a deletion
// a record without a policy. A zero At means the time is unknown (see
// ByUnknown).
type ClusterNetworkPolicyRecord struct {
	Name     string              `json:"name"`
	Revision int                 `json:"revision"`
	Action   NetworkPolicyAction `json:"action"`
	At       time.Time           `json:"at"`
	By       string              `json:"by"`
	// Policy is the ClusterNetworkPolicy as applied; nil for ActionDelete.
	Policy *cnpv1alpha2.ClusterNetworkPolicy `json:"policy,omitempty"`
}

// PrepareClusterNetworkPolicyRecord checks rec as
// AddClusterNetworkPolicyRecord wants it and returns it with Name taken
// from an applied policy and the policy deep-copied; implementations call
// it first. A record without a name wraps ErrNoName.
func PrepareClusterNetworkPolicyRecord(rec ClusterNetworkPolicyRecord) (ClusterNetworkPolicyRecord, error) {
	switch rec.Action {
	case ActionApply:
		if rec.Policy == nil {
			return rec, fmt.Errorf("record ClusterNetworkPolicy %s: apply without a policy", rec.Name)
		}
		rec.Policy = rec.Policy.DeepCopy()
		rec.Name = rec.Policy.Name
	case ActionDelete:
		rec.Policy = nil
	default:
		return rec, fmt.Errorf("record ClusterNetworkPolicy %s: unknown action %q", rec.Name, rec.Action)
	}
	if rec.Name == "" {
		return rec, fmt.Errorf("record ClusterNetworkPolicy: %w", ErrNoName)
	}
	return rec, nil
}

// InForceClusterNetworkPolicies returns the policies of recs (sorted by
// name and revision, as ClusterNetworkPolicyRecords returns them) in
// force: the latest record of each name when it is an apply, sorted by
// name, deep-copied; never nil.
func InForceClusterNetworkPolicies(recs []ClusterNetworkPolicyRecord) []cnpv1alpha2.ClusterNetworkPolicy {
	out := []cnpv1alpha2.ClusterNetworkPolicy{}
	for i, r := range recs {
		last := i == len(recs)-1 || recs[i+1].Name != r.Name
		if last && r.Action == ActionApply && r.Policy != nil {
			out = append(out, *r.Policy.DeepCopy())
		}
	}
	slices.SortFunc(out, func(a, b cnpv1alpha2.ClusterNetworkPolicy) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

var _ ClusterPolicyStore = (*Mem)(nil)

func copyClusterRecord(r ClusterNetworkPolicyRecord) ClusterNetworkPolicyRecord {
	r.Policy = r.Policy.DeepCopy()
	return r
}

// AddClusterNetworkPolicyRecord implements ClusterPolicyStore.
func (m *Mem) AddClusterNetworkPolicyRecord(rec ClusterNetworkPolicyRecord) (ClusterNetworkPolicyRecord, error) {
	rec, err := PrepareClusterNetworkPolicyRecord(rec)
	if err != nil {
		return ClusterNetworkPolicyRecord{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := m.cnps[rec.Name]
	if rec.Action == ActionDelete && (len(rs) == 0 || rs[len(rs)-1].Action != ActionApply) {
		return ClusterNetworkPolicyRecord{}, fmt.Errorf("delete ClusterNetworkPolicy %s: %w", rec.Name, ErrNotFound)
	}
	if m.cnps == nil {
		m.cnps = map[string][]ClusterNetworkPolicyRecord{}
	}
	rec.Revision = len(rs) + 1
	m.cnps[rec.Name] = append(rs, rec)
	return copyClusterRecord(rec), nil
}

// ClusterNetworkPolicies implements ClusterPolicyStore.
func (m *Mem) ClusterNetworkPolicies() ([]cnpv1alpha2.ClusterNetworkPolicy, error) {
	recs, err := m.ClusterNetworkPolicyRecords("")
	return InForceClusterNetworkPolicies(recs), err
}

// ClusterNetworkPolicyRecords implements ClusterPolicyStore.
func (m *Mem) ClusterNetworkPolicyRecords(name string) ([]ClusterNetworkPolicyRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.cnps))
	for n := range m.cnps {
		if name == "" || n == name {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []ClusterNetworkPolicyRecord
	for _, n := range names {
		for _, r := range m.cnps[n] {
			out = append(out, copyClusterRecord(r))
		}
	}
	return out, nil
}

// SynthesizeClusterNetworkPolicyRecords returns one apply record per
// policy of cnps (of name, or all for ""), for stores that hold only the
// current objects (the API server): Revision is its metadata.generation,
// At its creationTimestamp (UTC), By "" (not kept); sorted by name.
func SynthesizeClusterNetworkPolicyRecords(cnps []cnpv1alpha2.ClusterNetworkPolicy, name string) []ClusterNetworkPolicyRecord {
	var out []ClusterNetworkPolicyRecord
	for i := range cnps {
		p := cnps[i].DeepCopy()
		if name != "" && p.Name != name {
			continue
		}
		out = append(out, ClusterNetworkPolicyRecord{Name: p.Name, Revision: int(p.Generation), Action: ActionApply,
			At: p.CreationTimestamp.UTC(), Policy: p})
	}
	slices.SortFunc(out, func(a, b ClusterNetworkPolicyRecord) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
