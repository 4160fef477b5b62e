package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nanoseg/nanoseg/observer"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// Errors callers check with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the workload changed since the caller read it.
	ErrConflict = errors.New("conflict")
	// ErrChainBroken: the promotion history does not verify.
	ErrChainBroken = errors.New("promotion history hash chain broken")
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
	Record(p Promotion, expect *WorkloadState) (Promotion, error)
	// History returns the promotion events of workload (all for ""),
	// oldest first.
	History(workload string) ([]Promotion, error)
	// Workloads returns every workload with revisions or state, sorted.
	Workloads() ([]string, error)
}

// ObservationSink receives what the node side observed.
type ObservationSink interface {
	// MergeEdges adds edges to the stored ones in one change: counters
	// are summed, FirstSeen keeps the earliest and LastSeen the latest
	// time (see MergeEdge).
	MergeEdges(edges []observer.Edge) error
	// AddVerdicts appends verdict events in one change.
	AddVerdicts(evs []VerdictEvent) error
}

// ObservationReader reads what was observed.
type ObservationReader interface {
	// Edges returns the edges last seen at or after since (all for the
	// zero time), sorted by EdgeKey.
	Edges(since time.Time) ([]observer.Edge, error)
	// Verdicts returns the verdict events at or after since, oldest first.
	Verdicts(since time.Time) ([]VerdictEvent, error)
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

// EdgeKey identifies an edge: source, destination, protocol, port.
func EdgeKey(e observer.Edge) []byte {
	return []byte(fmt.Sprintf("%s|%s|%s|%d", e.Source.String(), e.Destination.String(), e.Protocol, e.Port))
}

// MergeEdge returns a with b added (observer.Edge.Add), keeping b's DNS
// name for a destination a had none for.
func MergeEdge(a, b observer.Edge) observer.Edge {
	out := a
	out.Add(b)
	if out.Destination.Name == "" && b.Destination.Name != "" {
		out.Destination.Name = b.Destination.Name
	}
	return out
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
}

// WorkloadState is what is active for a workload: a mode and a revision
// (0: no policy yet, so nothing is filtered).
type WorkloadState struct {
	Workload string        `json:"workload"`
	Mode     v1alpha1.Mode `json:"mode"`
	Revision int           `json:"revision"`
	Since    time.Time     `json:"since"`
	// Seq is the promotion event that set this state (0: never promoted).
	Seq uint64 `json:"seq"`
}

// Action is what a promotion event did.
type Action string

// Actions of promotion events.
const (
	ActionPromote  Action = "promote"
	ActionRollback Action = "rollback"
)

// Promotion is one recorded change of a workload's mode or revision. The
// history is append-only and hash-chained: Hash is the SHA-256 (hex) of
// PrevHash and the event's other fields in canonical JSON, so an edit or a
// gap anywhere breaks every later hash.
type Promotion struct {
	Seq          uint64        `json:"seq"`
	At           time.Time     `json:"at"`
	Who          string        `json:"who"`
	Workload     string        `json:"workload"`
	Action       Action        `json:"action"`
	FromMode     v1alpha1.Mode `json:"fromMode"`
	ToMode       v1alpha1.Mode `json:"toMode"`
	FromRevision int           `json:"fromRevision"`
	ToRevision   int           `json:"toRevision"`
	Reason       string        `json:"reason"`
	// Undoes is the Seq of the promotion a rollback reverted.
	Undoes   uint64 `json:"undoes,omitempty"`
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash"`
}

// ChainHash computes p's Hash from its other fields.
func ChainHash(p Promotion) string {
	p.Hash = ""
	raw, _ := json.Marshal(p) // a struct of plain fields: cannot fail
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// VerifyPromotions checks a whole promotion history read from anywhere (a
// store, an evidence bundle): sequence numbers from 1 without gaps, each
// PrevHash equal to the previous Hash, each Hash recomputed. It returns
// an error wrapping ErrChainBroken naming the first event that does not
// verify.
func VerifyPromotions(all []Promotion) error {
	prev := ""
	for i, p := range all {
		switch {
		case p.Seq != uint64(i+1):
			return fmt.Errorf("%w: event %d has sequence %d (gap or reorder)", ErrChainBroken, i+1, p.Seq)
		case p.PrevHash != prev:
			return fmt.Errorf("%w: event %d does not link to event %d", ErrChainBroken, p.Seq, p.Seq-1)
		case ChainHash(p) != p.Hash:
			return fmt.Errorf("%w: event %d was altered", ErrChainBroken, p.Seq)
		}
		prev = p.Hash
	}
	return nil
}

// VerifyChain checks the whole promotion history of s as VerifyPromotions
// does.
func VerifyChain(s PolicyStore) error {
	all, err := s.History("")
	if err != nil {
		return err
	}
	return VerifyPromotions(all)
}

// VerdictEvent is one audit-denied or denied connection attempt.
type VerdictEvent struct {
	At          time.Time `json:"at"`
	Endpoint    string    `json:"endpoint"` // netns name where it was logged
	Verdict     string    `json:"verdict"`  // audit-deny or deny
	RuleID      string    `json:"ruleID"`
	Source      string    `json:"source"` // workload or address
	SrcPort     uint16    `json:"srcPort,omitempty"`
	Destination string    `json:"destination"` // workload, DNS name or address
	Protocol    string    `json:"protocol"`
	Port        uint16    `json:"port"`
}
