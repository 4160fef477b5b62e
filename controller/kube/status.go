package kube

// The NanoSegment status writer: every StatusInterval, each NanoSegment's
// status from the inventory (the endpoints it selects) and the node
// agents' reports (in sync per node, errors) and verdict events (denied,
// audit-denied), with the conditions Accepted (policies.ValidateNanoSegment:
// what passes the CRD schema but fails deeper validation shows here with
// its field, and the node agents keep the previous version in force),
// Programmed and Degraded. A status is written only when it changed.

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// NanoSegment conditions and their reasons.
const (
	ConditionAccepted   = "Accepted"
	ConditionProgrammed = "Programmed"
	ConditionDegraded   = "Degraded"

	ReasonValid        = "Valid"
	ReasonInvalidSpec  = "Invalid"
	ReasonInSync       = "InSync"
	ReasonNotInSync    = "NotInSync"
	ReasonNoEndpoints  = "NoEndpoints"
	ReasonAsExpected   = "AsExpected"
	ReasonNodeError    = "NodeError"
	ReasonNotReported  = "NotReported"
	ReasonNotValidated = "NotAccepted"
)

func (c *Controller) statusLoop(ctx context.Context) {
	for {
		if err := c.refreshStatuses(ctx); err != nil && ctx.Err() == nil {
			c.mErrors.WithLabelValues("status").Inc()
			c.log.Error("refresh NanoSegment status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.StatusInterval):
		case <-c.statusKick:
		}
	}
}

// kickStatus has the status loop refresh the NanoSegments' status now
// rather than at the next StatusInterval.
func (c *Controller) kickStatus() {
	select {
	case c.statusKick <- struct{}{}:
	default:
	}
}

// endpointState is one endpoint's report with its node.
type endpointState struct {
	node string
	rep  EndpointReport
}

func (c *Controller) refreshStatuses(ctx context.Context) error {
	list, err := c.dyn.Resource(NanoSegmentResource).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nanosegments: %w", err)
	}
	reports := map[string]endpointState{}
	for _, nr := range c.parts.Graph.Reports() {
		for _, e := range nr.Endpoints {
			reports[e.Key] = endpointState{node: nr.Node, rep: e}
		}
	}
	evs, err := c.parts.Graph.Verdicts(time.Time{})
	if err != nil {
		return err
	}
	denied := map[string][2]int64{} // endpoint → deny, audit-deny
	for _, ev := range evs {
		d := denied[ev.Endpoint]
		switch ev.Verdict {
		case model.VerdictDeny:
			d[0]++
		case model.VerdictAuditDeny:
			d[1]++
		}
		denied[ev.Endpoint] = d
	}
	var ids map[string][]string
	if g, ok := c.parts.Graph.(interface{ RuleIDs() map[string][]string }); ok {
		ids = g.RuleIDs()
	}
	verdicts := aggregateVerdicts(evs, ids)
	now := time.Now()
	if c.countersAt == nil {
		c.countersAt = map[string]time.Time{}
	}
	var errs []error
	seen := map[string]bool{}
	for i := range list.Items {
		var seg v1alpha1.NanoSegment
		if err := toTyped(&list.Items[i], &seg); err != nil {
			errs = append(errs, err)
			continue
		}
		segKey := seg.Namespace + "/" + seg.Name
		seen[segKey] = true
		st, eps := c.segmentStatus(&seg, reports, denied)
		st.Verdicts = mergeVerdicts(seg.Status.Verdicts, eps, verdicts, now.Add(-c.cfg.Window))
		if sameJSON(st, seg.Status) {
			continue
		}
		// Counters move with every new connection: a status whose only
		// change is its counters is written at most every
		// CountersInterval (a new leader waits one before its first).
		if sameJSON(withoutCounters(st), withoutCounters(seg.Status)) {
			last, ok := c.countersAt[segKey]
			if !ok {
				c.countersAt[segKey] = now
				continue
			}
			if now.Sub(last) < c.cfg.CountersInterval {
				continue
			}
		}
		next := seg.DeepCopy()
		next.Status = st
		u, err := toUnstructured(next, v1alpha1.Kind)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = c.dyn.Resource(NanoSegmentResource).Namespace(seg.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: proposalFieldOwner})
		if apierrors.IsConflict(err) {
			continue // written meanwhile (a promotion): the next round sees it
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("update status of nanosegment %s/%s: %w", seg.Namespace, seg.Name, err))
			continue
		}
		c.mStatus.Inc()
		c.countersAt[segKey] = now
		if ctx.Err() != nil {
			return nil
		}
	}
	for k := range c.countersAt {
		if !seen[k] {
			delete(c.countersAt, k)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d statuses failed, the first: %w", len(errs), len(list.Items), errs[0])
	}
	return nil
}

// segmentStatus computes seg's status (without Verdicts) and returns the
// endpoints (netns keys) it selects.
func (c *Controller) segmentStatus(seg *v1alpha1.NanoSegment, reports map[string]endpointState, denied map[string][2]int64) (v1alpha1.NanoSegmentStatus, []string) {
	gen := seg.Generation
	st := v1alpha1.NanoSegmentStatus{ObservedGeneration: gen, Conditions: append([]metav1.Condition(nil), seg.Status.Conditions...)}
	if n, err := strconv.Atoi(seg.Labels[v1alpha1.LabelRevision]); err == nil && n > 0 {
		st.Revision = int32(n)
	}
	set := func(typ string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen})
	}
	if errs := policies.ValidateNanoSegment(seg); len(errs) > 0 {
		msg := errs.ToAggregate().Error() + "; the node agents keep the previous valid version in force"
		set(ConditionAccepted, false, ReasonInvalidSpec, msg)
		set(ConditionProgrammed, false, ReasonNotValidated, "not programmed: the spec is not accepted")
		set(ConditionDegraded, true, ReasonInvalidSpec, msg)
		return st, nil
	}
	set(ConditionAccepted, true, ReasonValid, "the spec passed validation")
	mode := seg.Spec.Mode
	if mode == "" {
		mode = model.ModeObserve
	}
	sel, _ := metav1.LabelSelectorAsSelector(&seg.Spec.Selector) // validated above
	nodes := map[string]*v1alpha1.NodeSync{}
	var eps []string
	unreported := 0
	var firstErr string
	for _, e := range c.inv.Endpoints() {
		if e.Namespace != seg.Namespace || !sel.Matches(labels.Set(e.Labels)) {
			continue
		}
		st.Endpoints++
		eps = append(eps, e.Netns)
		d := denied[e.Netns]
		st.Denied += d[0]
		st.AuditDenied += d[1]
		r, ok := reports[e.Netns]
		if !ok {
			unreported++
			continue
		}
		ns := nodes[r.node]
		if ns == nil {
			ns = &v1alpha1.NodeSync{Node: r.node}
			nodes[r.node] = ns
		}
		ns.Endpoints++
		addCounters(ns, r.rep)
		switch {
		case r.rep.InSync && r.rep.Mode == mode:
			ns.InSync++
			st.InSync++
		case r.rep.Error != "" && ns.Error == "":
			ns.Error = r.rep.Error
			if firstErr == "" {
				firstErr = fmt.Sprintf("%s on %s: %s", e.Netns, r.node, r.rep.Error)
			}
		}
	}
	for _, ns := range nodes {
		ns.RuleHits = busiest(ns.RuleHits, v1alpha1.MaxStatusRuleHits)
		st.Nodes = append(st.Nodes, *ns)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Node < st.Nodes[j].Node })
	switch {
	case st.Endpoints == 0:
		set(ConditionProgrammed, false, ReasonNoEndpoints, "the selector selects no running pod")
	case st.InSync == st.Endpoints:
		set(ConditionProgrammed, true, ReasonInSync, fmt.Sprintf("%d of %d endpoints in sync in %s mode", st.InSync, st.Endpoints, mode))
	default:
		set(ConditionProgrammed, false, ReasonNotInSync, fmt.Sprintf("%d of %d endpoints in sync in %s mode", st.InSync, st.Endpoints, mode))
	}
	switch {
	case firstErr != "":
		set(ConditionDegraded, true, ReasonNodeError, firstErr)
	case unreported > 0:
		set(ConditionDegraded, true, ReasonNotReported, fmt.Sprintf("%d endpoints reported by no node agent", unreported))
	default:
		set(ConditionDegraded, false, ReasonAsExpected, "no node reports an error")
	}
	return st, eps
}

// addCounters adds an endpoint's kernel counters to its node's entry.
func addCounters(ns *v1alpha1.NodeSync, r EndpointReport) {
	for _, id := range slices.Sorted(maps.Keys(r.Counters)) {
		c := r.Counters[id]
		i := slices.IndexFunc(ns.RuleHits, func(h v1alpha1.RuleHits) bool { return h.RuleID == id })
		if i < 0 {
			ns.RuleHits = append(ns.RuleHits, v1alpha1.RuleHits{RuleID: id})
			i = len(ns.RuleHits) - 1
		}
		ns.RuleHits[i].Packets += clamp64(c.Packets)
		ns.RuleHits[i].Bytes += clamp64(c.Bytes)
	}
	for _, dir := range slices.Sorted(maps.Keys(r.Defaults)) {
		c := r.Defaults[dir]
		i := slices.IndexFunc(ns.DefaultHits, func(h v1alpha1.DefaultHits) bool { return h.Direction == string(dir) })
		if i < 0 {
			ns.DefaultHits = append(ns.DefaultHits, v1alpha1.DefaultHits{Direction: string(dir)})
			i = len(ns.DefaultHits) - 1
		}
		ns.DefaultHits[i].Packets += clamp64(c.Packets)
		ns.DefaultHits[i].Bytes += clamp64(c.Bytes)
	}
	slices.SortFunc(ns.DefaultHits, func(a, b v1alpha1.DefaultHits) int { return cmp.Compare(a.Direction, b.Direction) })
}

// busiest keeps the n rule ids of hs with the most packets, sorted by id.
func busiest(hs []v1alpha1.RuleHits, n int) []v1alpha1.RuleHits {
	if len(hs) > n {
		slices.SortFunc(hs, func(a, b v1alpha1.RuleHits) int {
			return cmp.Or(cmp.Compare(b.Packets, a.Packets), cmp.Compare(a.RuleID, b.RuleID))
		})
		hs = hs[:n]
	}
	slices.SortFunc(hs, func(a, b v1alpha1.RuleHits) int { return cmp.Compare(a.RuleID, b.RuleID) })
	return hs
}

// withoutCounters is st without its nodes' counters (what changes with
// every connection).
func withoutCounters(st v1alpha1.NanoSegmentStatus) v1alpha1.NanoSegmentStatus {
	out := *st.DeepCopy()
	for i := range out.Nodes {
		out.Nodes[i].RuleHits, out.Nodes[i].DefaultHits = nil, nil
	}
	return out
}

// verdictKey is what aggregates verdict events into a VerdictCount.
type verdictKey struct {
	verdict, src, dst, proto, endpoint, ruleID string
	port                                       int32
}

func keyOf(v v1alpha1.VerdictCount) verdictKey {
	return verdictKey{v.Verdict, v.Source, v.Destination, v.Protocol, v.Endpoint, v.RuleID, v.Port}
}

// aggregateVerdicts groups evs by endpoint and verdictKey, with counts
// and first and last times (whole seconds, as the API keeps them), and
// the policies ids (the nodes' default rule id table) names for each.
func aggregateVerdicts(evs []model.VerdictEvent, ids map[string][]string) map[string]map[verdictKey]*v1alpha1.VerdictCount {
	out := map[string]map[verdictKey]*v1alpha1.VerdictCount{}
	for _, ev := range evs {
		v := v1alpha1.VerdictCount{Verdict: string(ev.Verdict), Source: ev.Source, Destination: ev.Destination, Protocol: string(ev.Protocol),
			Port: int32(ev.Port), Endpoint: ev.Endpoint, RuleID: ev.RuleID}
		k := keyOf(v)
		at := metav1.NewTime(ev.At.UTC().Truncate(time.Second))
		byKey := out[ev.Endpoint]
		if byKey == nil {
			byKey = map[verdictKey]*v1alpha1.VerdictCount{}
			out[ev.Endpoint] = byKey
		}
		a := byKey[k]
		if a == nil {
			v.FirstSeen, v.LastSeen = at, at
			if by := ids[ev.RuleID]; len(by) > 0 {
				v.DecidedBy = slices.Clone(by[:min(len(by), 32)])
			}
			a = &v
			byKey[k] = a
		}
		a.Count++
		if at.Before(&a.FirstSeen) {
			a.FirstSeen = at
		}
		if a.LastSeen.Before(&at) {
			a.LastSeen = at
		}
	}
	return out
}

// mergeVerdicts is a NanoSegment's Verdicts: the aggregates of the
// endpoints it selects (eps) merged with what its
// status held (prev), so that a new leader, whose graph has only the
// events the agents sent it since, keeps what the previous one
// published: an entry in both keeps the larger count, the earlier first
// and the later last time. Entries last seen before since are dropped;
// the MaxStatusVerdicts most recently seen are kept, newest first.
func mergeVerdicts(prev []v1alpha1.VerdictCount, eps []string, aggs map[string]map[verdictKey]*v1alpha1.VerdictCount, since time.Time) []v1alpha1.VerdictCount {
	merged := map[verdictKey]v1alpha1.VerdictCount{}
	for _, v := range prev {
		merged[keyOf(v)] = v
	}
	for _, ep := range eps {
		for k, a := range aggs[ep] {
			old, ok := merged[k]
			if !ok {
				merged[k] = *a
				continue
			}
			old.Count = max(old.Count, a.Count)
			if len(a.DecidedBy) > 0 {
				old.DecidedBy = a.DecidedBy
			}
			if a.FirstSeen.Before(&old.FirstSeen) {
				old.FirstSeen = a.FirstSeen
			}
			if old.LastSeen.Before(&a.LastSeen) {
				old.LastSeen = a.LastSeen
			}
			merged[k] = old
		}
	}
	out := make([]v1alpha1.VerdictCount, 0, len(merged))
	for _, v := range merged {
		if !v.LastSeen.Time.Before(since) {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b v1alpha1.VerdictCount) int {
		if c := b.LastSeen.Compare(a.LastSeen.Time); c != 0 {
			return c
		}
		return cmp.Compare(fmt.Sprint(keyOf(a)), fmt.Sprint(keyOf(b)))
	})
	if len(out) > v1alpha1.MaxStatusVerdicts {
		out = out[:v1alpha1.MaxStatusVerdicts]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
