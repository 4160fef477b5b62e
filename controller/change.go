package controller

// What a promotion or rollback would change: the paths it opens and
// closes, computed before it is carried out (the cluster controller writes
// it in a promotion's status.change; the web page confirms with it).

import (
	"fmt"
	"slices"
	"time"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// ChangeTarget is the state a workload would be put in: a mode and a
// revision (0: the latest revision).
type ChangeTarget struct {
	Workload string
	Mode     model.Mode
	Revision int
	// NoPolicy is the state before a workload's first promotion: no
	// nanosegment in force (a rollback of it); Mode and Revision are
	// then not used.
	NoPolicy bool `json:"noPolicy,omitempty"`
}

// Change is what going from the policies in force to a target opens and
// closes: reachability paths ("source -> destination PROTO/port", over
// the destinations' declared ports, evidence.Reach) reachable after and
// not before (Opened), and the reverse (Closed), each sorted. A path
// counts as reachable when the policies allow or audit-deny it (audit
// lets it through). Only paths to or from the target's workload are
// considered: nothing else changes.
type Change struct {
	Opened []string `json:"opened"`
	Closed []string `json:"closed"`
}

// Change computes the Change of putting t.Workload in t.Mode at
// t.Revision. The workload must be in the inventory and the revision
// stored (ErrInvalid otherwise); nothing is recorded.
func (s *Service) Change(t ChangeTarget) (Change, error) {
	out := Change{Opened: []string{}, Closed: []string{}}
	if len(s.inv.Workload(t.Workload)) == 0 {
		return out, fmt.Errorf("%w: workload %q is not in the inventory", ErrInvalid, Clip(t.Workload))
	}
	if !t.Mode.Valid() && !t.NoPolicy {
		return out, fmt.Errorf("%w: mode: %q is not observe, audit or enforce", ErrInvalid, Clip(t.Mode))
	}
	if err := notNegative("revision", t.Revision, "0 for the latest"); err != nil {
		return out, err
	}
	var rev store.Revision
	var err error
	switch {
	case t.NoPolicy:
	case t.Revision == 0:
		rev, err = s.store.LatestRevision(t.Workload)
	default:
		rev, err = s.store.Revision(t.Workload, t.Revision)
	}
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	world, err := s.inv.World(s.knownNames())
	if err != nil {
		return out, err
	}
	before, err := s.InForce()
	if err != nil {
		return out, err
	}
	after := before
	// The active list is keyed by workload: rebuild it with the target.
	active, err := s.Active()
	if err != nil {
		return out, err
	}
	after.NanoSegments = nil
	for _, ap := range active {
		if ap.State.Workload != t.Workload {
			after.NanoSegments = append(after.NanoSegments, *ap.Policy)
		}
	}
	if !t.NoPolicy {
		p := rev.Policy.DeepCopy()
		p.Spec.Mode = t.Mode
		after.NanoSegments = append(after.NanoSegments, *p)
	}
	setBefore, err := before.Set()
	if err != nil {
		return out, err
	}
	setAfter, err := after.Set()
	if err != nil {
		return out, err
	}
	eps, err := s.withObservedPorts(s.inv.Endpoints())
	if err != nil {
		return out, err
	}
	targets := reachTargets(eps)
	scope := func(src, dst string) bool { return src == t.Workload || dst == t.Workload }
	rb := evidence.Reach(world, setBefore, targets, scope)
	ra := evidence.Reach(world, setAfter, targets, scope)
	reach := func(r evidence.Reachability) map[string]bool {
		m := map[string]bool{}
		for _, row := range r.Rows {
			if row.Now == model.VerdictAllow || row.Now == model.VerdictAuditDeny {
				m[fmt.Sprintf("%s -> %s %s/%d", row.Source, row.Destination, row.Protocol, row.Port)] = true
			}
		}
		return m
	}
	b, a := reach(rb), reach(ra)
	for k := range a {
		if !b[k] {
			out.Opened = append(out.Opened, k)
		}
	}
	for k := range b {
		if !a[k] {
			out.Closed = append(out.Closed, k)
		}
	}
	slices.Sort(out.Opened)
	slices.Sort(out.Closed)
	return out, nil
}

// AdoptProposal stores seg, proposed for workload from the edges of
// window, as the workload's next proposed revision, unless its rules
// equal the latest revision's, which is returned instead (added false).
// The cluster controller calls it for a promotion that names no revision:
// the workload's current proposal object becomes the revision promoted.
func (s *Service) AdoptProposal(workload string, seg *v1alpha1.NanoSegment, window time.Duration, at time.Time, who string) (rev store.Revision, added bool, err error) {
	if seg == nil {
		return store.Revision{}, false, fmt.Errorf("%w: no proposed segment for %s", ErrInvalid, workload)
	}
	if last, err := s.store.LatestRevision(workload); err == nil && sameRules(last.Policy, seg) {
		return last, false, nil
	}
	r, err := s.store.AddRevision(store.Revision{Workload: workload, Origin: store.OriginProposed, CreatedAt: at.UTC(), CreatedBy: who,
		Policy: seg.DeepCopy(), Window: max(window, 0)})
	if err != nil {
		return store.Revision{}, false, err
	}
	return r, true, nil
}

// RollbackTarget returns the state a rollback of workload would put it
// in (see Rollback): toRevision in the current mode, or, for 0, the state
// before the most recent change still in effect; ErrInvalid when there is
// nothing to roll back.
func (s *Service) RollbackTarget(workload string, toRevision int) (ChangeTarget, error) {
	if err := notNegative("toRevision", toRevision, "0 to undo the last change"); err != nil {
		return ChangeTarget{}, err
	}
	cur, err := s.store.State(workload)
	if err != nil {
		return ChangeTarget{}, err
	}
	if toRevision > 0 {
		return ChangeTarget{Workload: workload, Mode: cur.Mode, Revision: toRevision}, nil
	}
	hist, err := s.store.History(workload)
	if err != nil {
		return ChangeTarget{}, err
	}
	target := undoTarget(hist)
	if target == nil {
		return ChangeTarget{}, fmt.Errorf("%w: workload %s has no promotion to roll back", ErrInvalid, workload)
	}
	return ChangeTarget{Workload: workload, Mode: target.FromMode, Revision: target.FromRevision, NoPolicy: target.FromRevision == 0}, nil
}
