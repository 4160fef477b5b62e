package kube

// The promotion executor: every NanoSegmentPromotion without a phase,
// oldest first (creation time, then name), one at a time, on the leader
// only.
//
// A promotion is carried out with controller.Service over the cluster
// store's view of that request (Store.ForRequest), so the hash-chained
// record goes into its status as the store commits it (the head
// ConfigMap's compare-and-swap is the commit point): a leader that dies
// after the commit leaves a record the next leader's Repair copies, and
// the promotion then has its phase, so it is never carried out twice. A
// refusal (the coverage gate, an unknown workload or revision, no
// requestedBy) sets phase Failed with the reason and changes nothing
// else. Any other error (the API server unreachable) leaves the promotion
// pending: the store is repaired and it is tried again.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// Complete condition: its type and reasons.
const (
	ConditionComplete = "Complete"
	ReasonPromoted    = "Promoted"
	ReasonRolledBack  = "RolledBack"
	ReasonUnchanged   = "Unchanged"
	// Refusals.
	ReasonCoverageGate  = "CoverageGate"
	ReasonInvalid       = "Invalid"
	ReasonConflict      = "Conflict"
	ReasonNoRequestedBy = "NoRequestedBy"
	// Event reasons.
	EventPromoted        = "Promoted"
	EventRolledBack      = "RolledBack"
	EventPromotionFailed = "PromotionFailed"
)

// maxChangePaths is how many opened and closed paths a status lists.
const maxChangePaths = 100

var (
	promotionGVK   = v1alpha1.SchemeGroupVersion.WithKind(v1alpha1.KindPromotion)
	nanoSegmentGVK = v1alpha1.SchemeGroupVersion.WithKind(v1alpha1.Kind)
)

func (c *Controller) promotionLoop(ctx context.Context) {
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	f := dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, 0)
	inf := f.ForResource(PromotionResource).Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
	}); err != nil {
		c.log.Error("watch promotions", "err", err)
		return
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	poke()
	retry := time.NewTicker(10 * time.Second) // pending ones left by errors
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-retry.C:
		}
		for _, p := range pending(inf.GetStore().List()) {
			if ctx.Err() != nil {
				return
			}
			c.carryOut(ctx, p)
		}
	}
}

// pending returns the promotions of objs without a phase, oldest first.
func pending(objs []any) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase == "" || phase == string(v1alpha1.PromotionPending) || incomplete(u) {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := out[i].GetCreationTimestamp(), out[j].GetCreationTimestamp()
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out
}

// incomplete reports whether u was recorded (phase Succeeded with a
// record, written by the store's commit or its Repair) by a leader that
// died before it added the message, the change and its Complete reason.
func incomplete(u *unstructured.Unstructured) bool {
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	msg, _, _ := unstructured.NestedString(u.Object, "status", "message")
	return phase == string(v1alpha1.PromotionSucceeded) && msg == ""
}

// carryOut carries out one promotion, read again from the API server
// (the informer's copy may predate a status written since).
func (c *Controller) carryOut(ctx context.Context, cached *unstructured.Unstructured) {
	ns, name := cached.GetNamespace(), cached.GetName()
	api := c.dyn.Resource(PromotionResource).Namespace(ns)
	u, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		c.promotionError(ctx, ns, name, fmt.Errorf("get promotion: %w", err))
		return
	}
	var p v1alpha1.NanoSegmentPromotion
	if err := toTyped(u, &p); err != nil {
		c.fail(ctx, &p, ReasonInvalid, err, nil)
		return
	}
	if incomplete(u) && p.Status.Record != nil {
		// Recorded by a leader that died before completing the status:
		// complete it from the record (the change is not known any more).
		c.succeed(ctx, &p, controller.PromoteResult{Promotion: p.Status.Record.Model(), Converged: true}, nil)
		return
	}
	if p.Status.Phase != "" && p.Status.Phase != v1alpha1.PromotionPending {
		return
	}
	log := c.log.With("promotion", ns+"/"+name, "workload", ns+"/"+p.Spec.Workload)
	if p.Spec.RequestedBy == nil || p.Spec.RequestedBy.Username == "" {
		c.fail(ctx, &p, ReasonNoRequestedBy, errors.New("spec.requestedBy: missing: admission stamps it from the authenticated user (manifests/admission); "+
			"a promotion whose author the API server did not record is not carried out"), nil)
		return
	}
	who := p.Spec.RequestedBy.Username
	w := ns + "/" + p.Spec.Workload
	svc := c.service(c.parts.Store.ForRequest(ns, name))
	var target controller.ChangeTarget
	rev := int(p.Spec.Revision)
	if p.Spec.Rollback {
		if target, err = svc.RollbackTarget(w, rev); err != nil {
			c.refuseOrRetry(ctx, &p, err, nil)
			return
		}
	} else {
		if rev == 0 {
			if rev, err = c.currentProposal(ctx, svc, &p, who); err != nil {
				c.refuseOrRetry(ctx, &p, err, nil)
				return
			}
		}
		target = controller.ChangeTarget{Workload: w, Mode: p.Spec.Mode, Revision: rev}
	}
	var change *v1alpha1.ReachabilityChange
	if ch, err := svc.Change(target); err == nil {
		change = reachability(ch)
	} else {
		log.Debug("reachability change not computed", "err", err)
	}
	var res controller.PromoteResult
	if p.Spec.Rollback {
		res, err = svc.Rollback(ctx, controller.RollbackRequest{Workload: w, ToRevision: int(p.Spec.Revision), Reason: p.Spec.Reason}, who)
	} else {
		res, err = svc.Promote(ctx, controller.PromoteRequest{Workload: w, To: p.Spec.Mode, Revision: rev, Reason: p.Spec.Reason, Force: p.Spec.Force}, who)
	}
	if err != nil {
		c.refuseOrRetry(ctx, &p, err, change)
		return
	}
	c.succeed(ctx, &p, res, change)
	// `promote` waits for the NanoSegment's status to say every
	// endpoint is in sync: write it now, not up to StatusInterval later.
	c.kickStatus()
	log.Info("promotion carried out", "seq", res.Promotion.Seq, "to", res.Promotion.ToMode, "revision", res.Promotion.ToRevision,
		"unchanged", res.Unchanged, "converged", res.Converged)
}

// currentProposal makes the workload's current proposal object a
// revision (unless the latest revision has its rules) and returns its
// number; without a proposal object it returns 0 (the latest revision).
func (c *Controller) currentProposal(ctx context.Context, svc *controller.Service, p *v1alpha1.NanoSegmentPromotion, who string) (int, error) {
	u, err := c.dyn.Resource(ProposalResource).Namespace(p.Namespace).Get(ctx, p.Spec.Workload, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get proposal %s/%s: %w", p.Namespace, p.Spec.Workload, err)
	}
	var prop v1alpha1.NanoSegmentProposal
	if err := toTyped(u, &prop); err != nil {
		return 0, err
	}
	seg := &v1alpha1.NanoSegment{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: p.Spec.Workload, Namespace: p.Namespace},
		Spec:       *prop.Spec.Segment.DeepCopy(),
	}
	// Proposed now: the coverage gate judges the window up to now.
	r, _, err := svc.AdoptProposal(p.Namespace+"/"+p.Spec.Workload, seg, prop.Spec.Window.Duration, time.Now(), who)
	if err != nil {
		return 0, err
	}
	return r.Number, nil
}

// reachability is ch as a promotion's status holds it.
func reachability(ch controller.Change) *v1alpha1.ReachabilityChange {
	out := &v1alpha1.ReachabilityChange{Opened: int32(len(ch.Opened)), Closed: int32(len(ch.Closed))}
	out.OpenedPaths = ch.Opened[:min(len(ch.Opened), maxChangePaths)]
	out.ClosedPaths = ch.Closed[:min(len(ch.Closed), maxChangePaths)]
	return out
}

// refusalReason returns the Complete condition's reason for err when it
// is a refusal, "" when it is not (then the promotion is tried again).
func refusalReason(err error) string {
	switch {
	case errors.Is(err, controller.ErrCoverage):
		return ReasonCoverageGate
	case errors.Is(err, controller.ErrInvalid):
		return ReasonInvalid
	case errors.Is(err, store.ErrConflict):
		return ReasonConflict
	}
	return ""
}

func (c *Controller) refuseOrRetry(ctx context.Context, p *v1alpha1.NanoSegmentPromotion, err error, change *v1alpha1.ReachabilityChange) {
	if reason := refusalReason(err); reason != "" {
		c.fail(ctx, p, reason, err, change)
		return
	}
	c.promotionError(ctx, p.Namespace, p.Name, err)
}

// promotionError counts and logs an error that leaves the promotion
// pending, and repairs the store (the error may have come after the
// commit: Repair then gives the promotion its record and phase).
func (c *Controller) promotionError(ctx context.Context, ns, name string, err error) {
	if ctx.Err() != nil {
		return
	}
	c.mErrors.WithLabelValues("promotions").Inc()
	c.log.Error("carry out promotion; it stays pending and is tried again", "promotion", ns+"/"+name, "err", err)
	if rerr := c.parts.Store.Repair(ctx); rerr != nil && ctx.Err() == nil {
		c.mErrors.WithLabelValues("repair").Inc()
		c.log.Error("repair the cluster store", "err", rerr)
	}
}

// fail sets phase Failed with reason and err's message (Complete=False)
// and records Warning Events on the promotion and the NanoSegment.
func (c *Controller) fail(ctx context.Context, p *v1alpha1.NanoSegmentPromotion, reason string, cause error, change *v1alpha1.ReachabilityChange) {
	msg := cause.Error()
	err := c.updatePromotionStatus(ctx, p.Namespace, p.Name, func(st *v1alpha1.NanoSegmentPromotionStatus, gen int64) bool {
		if st.Phase != "" && st.Phase != v1alpha1.PromotionPending {
			return false // someone (a previous leader's commit) got there first
		}
		st.Phase, st.Message, st.Change, st.ObservedGeneration = v1alpha1.PromotionFailed, msg, change, gen
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: ConditionComplete, Status: metav1.ConditionFalse, Reason: reason,
			Message: msg, ObservedGeneration: gen})
		return true
	})
	if err != nil {
		c.promotionError(ctx, p.Namespace, p.Name, fmt.Errorf("set phase Failed: %w", err))
		return
	}
	c.mPromotions.WithLabelValues("failed").Inc()
	c.log.Warn("promotion refused", "promotion", p.Namespace+"/"+p.Name, "reason", reason, "err", cause)
	msg = fmt.Sprintf("%s %s refused (%s): %s", kindWord(p), p.Name, reason, msg)
	c.event(ctx, objectRef{promotionGVK, p.Namespace, p.Name, string(p.UID)}, corev1.EventTypeWarning, EventPromotionFailed, msg)
	c.segmentEvent(ctx, p.Namespace, p.Spec.Workload, corev1.EventTypeWarning, EventPromotionFailed, msg)
}

// succeed completes the status of a carried-out promotion: the store's
// view wrote phase Succeeded and the record; this adds the message, the
// change and Complete=True (and the record, if the view did not).
func (c *Controller) succeed(ctx context.Context, p *v1alpha1.NanoSegmentPromotion, res controller.PromoteResult, change *v1alpha1.ReachabilityChange) {
	reason, evReason := ReasonPromoted, EventPromoted
	if p.Spec.Rollback {
		reason, evReason = ReasonRolledBack, EventRolledBack
	}
	pr := res.Promotion
	msg := fmt.Sprintf("seq %d: %s from %s revision %d to %s revision %d by %s", pr.Seq, pr.Workload, pr.FromMode, pr.FromRevision, pr.ToMode, pr.ToRevision, pr.Who)
	if res.Unchanged {
		reason = ReasonUnchanged
		msg = fmt.Sprintf("%s is already in %s at revision %d: nothing recorded", pr.Workload, pr.ToMode, pr.ToRevision)
		change = &v1alpha1.ReachabilityChange{}
	} else if !res.Converged {
		msg += fmt.Sprintf("; not every endpoint reported in sync within %s", c.cfg.ConvergeTimeout)
	}
	if len(res.Warnings) > 0 {
		msg += fmt.Sprintf("; forced past the coverage gate: %v", res.Warnings)
	}
	err := c.updatePromotionStatus(ctx, p.Namespace, p.Name, func(st *v1alpha1.NanoSegmentPromotionStatus, gen int64) bool {
		if st.Phase == v1alpha1.PromotionFailed {
			return false
		}
		if st.Record == nil && !res.Unchanged {
			r := v1alpha1.RecordFrom(pr)
			st.Record = &r
		}
		st.Phase, st.Message, st.Change, st.ObservedGeneration = v1alpha1.PromotionSucceeded, msg, change, gen
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: ConditionComplete, Status: metav1.ConditionTrue, Reason: reason,
			Message: msg, ObservedGeneration: gen})
		return true
	})
	if err != nil && ctx.Err() == nil {
		// Recorded already (the store's view wrote phase and record):
		// only the message and the change are missing; the next leader
		// completes them (incomplete).
		c.mErrors.WithLabelValues("promotions").Inc()
		c.log.Error("complete the status of a recorded promotion", "promotion", p.Namespace+"/"+p.Name, "err", err)
	}
	result := "succeeded"
	if res.Unchanged {
		result = "unchanged"
	}
	c.mPromotions.WithLabelValues(result).Inc()
	msg = fmt.Sprintf("%s %s: %s", kindWord(p), p.Name, msg)
	c.event(ctx, objectRef{promotionGVK, p.Namespace, p.Name, string(p.UID)}, corev1.EventTypeNormal, evReason, msg)
	c.segmentEvent(ctx, p.Namespace, p.Spec.Workload, corev1.EventTypeNormal, evReason, msg)
}

func kindWord(p *v1alpha1.NanoSegmentPromotion) string {
	if p.Spec.Rollback {
		return "rollback"
	}
	return "promotion"
}

// segmentEvent records an Event on the workload's NanoSegment, when it
// exists.
func (c *Controller) segmentEvent(ctx context.Context, ns, workload, typ, reason, msg string) {
	u, err := c.dyn.Resource(NanoSegmentResource).Namespace(ns).Get(ctx, workload, metav1.GetOptions{})
	if err != nil {
		return
	}
	c.event(ctx, objectRef{nanoSegmentGVK, ns, workload, string(u.GetUID())}, typ, reason, msg)
}

// updatePromotionStatus reads promotion ns/name, lets edit change its
// status (false: leave it), and writes it, again on a conflict.
func (c *Controller) updatePromotionStatus(ctx context.Context, ns, name string, edit func(st *v1alpha1.NanoSegmentPromotionStatus, generation int64) bool) error {
	api := c.dyn.Resource(PromotionResource).Namespace(ns)
	for attempt := 1; ; attempt++ {
		u, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var p v1alpha1.NanoSegmentPromotion
		if err := toTyped(u, &p); err != nil {
			return err
		}
		if !edit(&p.Status, p.Generation) {
			return nil
		}
		nu, err := toUnstructured(&p, v1alpha1.KindPromotion)
		if err != nil {
			return err
		}
		_, err = api.UpdateStatus(ctx, nu, metav1.UpdateOptions{FieldManager: proposalFieldOwner})
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		return err
	}
}
