package kube

// The NanoSegment status writer: every StatusInterval, each NanoSegment's
// status from the inventory (the endpoints it selects) and the node
// agents' reports (in sync per node, errors) and verdict events (denied,
// audit-denied), with the conditions Accepted (policies.ValidateNanoSegment:
// what passes the CRD schema but fails deeper validation shows here with
// its field, and the node agents keep the previous version in force),
// Programmed and Degraded. A status is written only when it changed.

import (
	"context"
	"fmt"
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
	var errs []error
	for i := range list.Items {
		var seg v1alpha1.NanoSegment
		if err := toTyped(&list.Items[i], &seg); err != nil {
			errs = append(errs, err)
			continue
		}
		st := c.segmentStatus(&seg, reports, denied)
		if sameJSON(st, seg.Status) {
			continue
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
		if ctx.Err() != nil {
			return nil
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d statuses failed, the first: %w", len(errs), len(list.Items), errs[0])
	}
	return nil
}

// segmentStatus computes seg's status.
func (c *Controller) segmentStatus(seg *v1alpha1.NanoSegment, reports map[string]endpointState, denied map[string][2]int64) v1alpha1.NanoSegmentStatus {
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
		return st
	}
	set(ConditionAccepted, true, ReasonValid, "the spec passed validation")
	mode := seg.Spec.Mode
	if mode == "" {
		mode = model.ModeObserve
	}
	sel, _ := metav1.LabelSelectorAsSelector(&seg.Spec.Selector) // validated above
	nodes := map[string]*v1alpha1.NodeSync{}
	unreported := 0
	var firstErr string
	for _, e := range c.inv.Endpoints() {
		if e.Namespace != seg.Namespace || !sel.Matches(labels.Set(e.Labels)) {
			continue
		}
		st.Endpoints++
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
	return st
}
