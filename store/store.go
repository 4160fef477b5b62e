package store

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// Errors callers check with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the workload changed since the caller read it.
	ErrConflict = errors.New("conflict")
)

// PolicyStore keeps policy revisions, the state of every workload (mode and
// revision in force) and the promotion history. Implementations are safe
// for concurrent use: the bbolt file of the standalone agent (store/bolt)
// and Mem (tests, fakes); a Kubernetes store (custom resources) will be
// another.
type PolicyStore interface {
	// AddRevision stores r as the workload's next revision and returns it
	// with its number set (1, 2, ... per workload).
	AddRevision(r Revision) (Revision, error)
	// Revision returns revision n of workload, or an error wrapping
	// ErrNotFound.
	Revision(workload string, n int) (Revision, error)
	// Revisions returns every revision of workload, oldest first.
	Revisions(workload string) ([]Revision, error)
	// LatestRevision returns the highest-numbered revision of workload, or
	// an error wrapping ErrNotFound.
	LatestRevision(workload string) (Revision, error)
	// State returns the state of workload; a workload never promoted is
	// in observe mode with revision 0.
	State(workload string) (WorkloadState, error)
	// States returns the state of every workload ever promoted, sorted by
	// workload.
	States() ([]WorkloadState, error)
	// Record appends promotion event p to the hash-chained history and
	// sets the workload's state to (p.ToMode, p.ToRevision) as one atomic
	// change, filling Seq, FromMode, FromRevision, PrevHash and Hash. If
	// expect is not nil and the current state differs from it, nothing
	// changes and the error wraps ErrConflict; a missing revision (other
	// than 0) wraps ErrNotFound.
	Record(p model.Promotion, expect *WorkloadState) (model.Promotion, error)
	// History returns the promotion events of workload (all for ""),
	// oldest first.
	History(workload string) ([]model.Promotion, error)
	// Workloads returns every workload with revisions or state, sorted.
	Workloads() ([]string, error)

	// AddNetworkPolicyRecord appends rec as the next record (Revision 1,
	// 2, ... per namespace/name, growing across deletions) of the
	// NetworkPolicy it names and returns it with Revision set. An
	// ActionApply record carries the whole object in Policy (its
	// namespace and name fill Namespace and Name); an ActionDelete
	// record names the policy in Namespace and Name, carries no Policy,
	// and wraps ErrNotFound when that NetworkPolicy is not in force.
	AddNetworkPolicyRecord(rec NetworkPolicyRecord) (NetworkPolicyRecord, error)
	// NetworkPolicies returns the NetworkPolicies in force: the latest
	// record of every namespace/name whose latest record is an apply,
	// sorted by namespace and name.
	NetworkPolicies() ([]NetworkPolicyRecord, error)
	// NetworkPolicyRecords returns every record of namespace/name (of
	// every NetworkPolicy for "", ""), sorted by namespace, name and
	// revision.
	NetworkPolicyRecords(namespace, name string) ([]NetworkPolicyRecord, error)
}

// ObservationSink receives what the node side observed.
type ObservationSink interface {
	// MergeEdges adds edges to the stored ones in one change: counters
	// are summed, FirstSeen keeps the earliest and LastSeen the latest
	// time (see MergeEdge).
	MergeEdges(edges []model.Edge) error
	// AddVerdicts appends verdict events in one change.
	AddVerdicts(evs []model.VerdictEvent) error
	// RecordObserved stores observation spans in one change: a span with
	// the key of a stored one (model.ObservedSpan.SpanKey: the same
	// endpoint and start) moves the stored span's End forward (never
	// back); another is added. The node calls it on every commit with
	// each observer's span up to now, so a span never outlives its last
	// commit.
	RecordObserved(spans []model.ObservedSpan) error
}

// ObservationReader reads what was observed.
type ObservationReader interface {
	// Edges returns the edges last seen at or after since (all for the
	// zero time), sorted by EdgeKey.
	Edges(since time.Time) ([]model.Edge, error)
	// Verdicts returns the verdict events at or after since, oldest first.
	Verdicts(since time.Time) ([]model.VerdictEvent, error)
	// Observed returns the observation spans that end at or after since
	// (all for the zero time), sorted by workload, endpoint and start.
	Observed(since time.Time) ([]model.ObservedSpan, error)
}

// Observations is an observation sink that can be read back.
type Observations interface {
	ObservationSink
	ObservationReader
}

// Store is everything the standalone agent keeps.
type Store interface {
	PolicyStore
	Observations
}

// EdgeKey identifies an edge: source, destination, protocol, port. The
// protocol keeps the spelling store files had before the one vocabulary
// (lower case, "ipv6-icmp"), so that edges merge into the records of
// existing files instead of beside them.
func EdgeKey(e model.Edge) []byte {
	proto := strings.ToLower(string(e.Protocol))
	if e.Protocol == model.ProtocolICMPv6 {
		proto = "ipv6-icmp"
	}
	return []byte(fmt.Sprintf("%s|%s|%s|%d", e.Source.String(), e.Destination.String(), proto, e.Port))
}

// MergeEdge returns a with b added (model.Edge.Add), keeping b's DNS
// name for a destination a had none for.
func MergeEdge(a, b model.Edge) model.Edge {
	out := a
	out.Add(b.Traffic)
	if out.Destination.Name == "" && b.Destination.Name != "" {
		out.Destination.Name = b.Destination.Name
	}
	return out
}

// MergeSpan returns stored span a with b recorded (see RecordObserved):
// End keeps the later of the two.
func MergeSpan(a, b model.ObservedSpan) model.ObservedSpan {
	if b.End.After(a.End) {
		a.End = b.End
	}
	return a
}

// SortSpans sorts spans by workload, endpoint and start.
func SortSpans(spans []model.ObservedSpan) {
	slices.SortFunc(spans, func(x, y model.ObservedSpan) int {
		return cmp.Or(cmp.Compare(x.Workload, y.Workload), cmp.Compare(x.Endpoint, y.Endpoint), x.Start.Compare(y.Start))
	})
}

// Origin says where a policy revision came from.
type Origin string

// Origins of revisions.
const (
	OriginProposed Origin = "proposed" // inferred from observed edges
	OriginDeclared Origin = "declared" // applied from YAML by a person
)

// Revision is one stored version of a workload's nanosegment. Numbers start
// at 1 per workload and only grow.
type Revision struct {
	Workload  string                `json:"workload"` // "namespace/workload"
	Number    int                   `json:"number"`
	Origin    Origin                `json:"origin"`
	CreatedAt time.Time             `json:"createdAt"`
	CreatedBy string                `json:"createdBy"`
	Policy    *v1alpha1.NanoSegment `json:"policy"`
	// Window is, for a proposed revision, the window its edges were taken
	// from (`policy propose --window`; nanoseconds in JSON); 0 for every
	// edge stored, and for declared revisions. A promotion to enforce
	// compares it with how long the workload was observed in it.
	Window time.Duration `json:"window,omitempty"`
}

// WorkloadState is what is active for a workload: a mode and a revision
// (0: no policy yet, so nothing is filtered).
type WorkloadState struct {
	Workload string     `json:"workload"`
	Mode     model.Mode `json:"mode"`
	Revision int        `json:"revision"`
	Since    time.Time  `json:"since"`
	// Seq is the promotion event that set this state (0: never promoted).
	Seq uint64 `json:"seq"`
}

// NetworkPolicyAction is what a NetworkPolicy record did.
type NetworkPolicyAction string

// Actions of NetworkPolicy records.
const (
	ActionApply  NetworkPolicyAction = "apply"  // stored (new or changed); in force from then on
	ActionDelete NetworkPolicyAction = "delete" // removed; no longer in force
)

// NetworkPolicyRecord is one stored change of a Kubernetes NetworkPolicy
// (networking.k8s.io/v1), kept as the NetworkPolicy itself: NetworkPolicies
// are enforced with their own semantics next to the nanosegments, as soon
// as they are applied, and never become nanosegments. Records are
// append-only: a change is a new revision, a deletion a record without a
// policy.
type NetworkPolicyRecord struct {
	Namespace string              `json:"namespace"`
	Name      string              `json:"name"`
	Revision  int                 `json:"revision"`
	Action    NetworkPolicyAction `json:"action"`
	At        time.Time           `json:"at"`
	By        string              `json:"by"`
	// Policy is the NetworkPolicy as applied; nil for ActionDelete.
	Policy *networkingv1.NetworkPolicy `json:"policy,omitempty"`
}

// Key returns "namespace/name".
func (r NetworkPolicyRecord) Key() string { return r.Namespace + "/" + r.Name }

// PrepareNetworkPolicyRecord checks rec as AddNetworkPolicyRecord wants it
// and returns it with Namespace and Name taken from an applied policy and
// the policy deep-copied; implementations call it first.
func PrepareNetworkPolicyRecord(rec NetworkPolicyRecord) (NetworkPolicyRecord, error) {
	switch rec.Action {
	case ActionApply:
		if rec.Policy == nil {
			return rec, fmt.Errorf("record NetworkPolicy %s/%s: apply without a policy", rec.Namespace, rec.Name)
		}
		rec.Policy = rec.Policy.DeepCopy()
		rec.Namespace, rec.Name = rec.Policy.Namespace, rec.Policy.Name
	case ActionDelete:
		rec.Policy = nil
	default:
		return rec, fmt.Errorf("record NetworkPolicy %s/%s: unknown action %q", rec.Namespace, rec.Name, rec.Action)
	}
	if rec.Namespace == "" || rec.Name == "" {
		return rec, fmt.Errorf("record NetworkPolicy %q/%q: namespace and name are required", rec.Namespace, rec.Name)
	}
	return rec, nil
}

// VerifyChain checks the whole promotion history of s as
// model.VerifyPromotions does.
func VerifyChain(s PolicyStore) error {
	all, err := s.History("")
	if err != nil {
		return err
	}
	return model.VerifyPromotions(all)
}
