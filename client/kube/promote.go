package kube

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// promote carries out req as a NanoSegmentPromotion (see the package doc).
func (s *Session) promote(ctx context.Context, req controller.PromoteRequest) (any, int, error) {
	if req.MinObserved != 0 {
		return nil, http.StatusBadRequest, fmt.Errorf("min-observed: against a cluster the controller's minimum observation applies (--force to enforce anyway)")
	}
	if req.Revision < 0 {
		return nil, http.StatusBadRequest, fmt.Errorf("revision: %d is negative", req.Revision)
	}
	if req.Reason == "" {
		return nil, http.StatusBadRequest, fmt.Errorf("reason: a promotion needs one (--reason)")
	}
	ns, name, err := s.splitWorkload(req.Workload)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	spec := v1alpha1.NanoSegmentPromotionSpec{Workload: name, Mode: req.To, Revision: int32(req.Revision), Reason: req.Reason, Force: req.Force}
	return s.carryOut(ctx, ns, spec)
}

// rollback carries out req as a NanoSegmentPromotion with spec.rollback.
func (s *Session) rollback(ctx context.Context, req controller.RollbackRequest) (any, int, error) {
	if req.ToRevision < 0 {
		return nil, http.StatusBadRequest, fmt.Errorf("toRevision: %d is negative (0 to undo the last change)", req.ToRevision)
	}
	ns, name, err := s.splitWorkload(req.Workload)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	if req.Reason == "" {
		req.Reason = "rollback"
	}
	spec := v1alpha1.NanoSegmentPromotionSpec{Workload: name, Rollback: true, Revision: int32(req.ToRevision), Reason: req.Reason}
	return s.carryOut(ctx, ns, spec)
}

// carryOut creates the promotion in namespace ns with the user's
// credentials, waits for the controller's phase and then for the
// NanoSegment's endpoints, and answers as the agent answers a promotion.
func (s *Session) carryOut(ctx context.Context, ns string, spec v1alpha1.NanoSegmentPromotionSpec) (any, int, error) {
	deadline := time.Now().Add(s.cfg.Wait)
	obj := &v1alpha1.NanoSegmentPromotion{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindPromotion},
		ObjectMeta: metav1.ObjectMeta{GenerateName: generateName(spec.Workload)},
		Spec:       spec,
	}
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, 0, err
	}
	created, err := s.dyn.Resource(Promotions).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: raw}, metav1.CreateOptions{})
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot create resource"):
		// RBAC (an admission policy may answer Forbidden too: below).
		return nil, http.StatusForbidden, fmt.Errorf("forbidden: user %s cannot create nanosegmentpromotions in namespace %s", s.whoAmI(ctx, err), ns)
	case apierrors.IsForbidden(err):
		return nil, http.StatusForbidden, fmt.Errorf("the API server refused the promotion: %v", err)
	case apierrors.IsInvalid(err):
		return nil, http.StatusBadRequest, fmt.Errorf("the API server refused the promotion: %v", err)
	case err != nil:
		return nil, 0, fmt.Errorf("create nanosegmentpromotion in %s: %w", ns, err)
	}
	ref := ns + "/" + created.GetName()
	var p v1alpha1.NanoSegmentPromotion
	for {
		u, err := s.dyn.Resource(Promotions).Namespace(ns).Get(ctx, created.GetName(), metav1.GetOptions{})
		if err != nil {
			return nil, 0, fmt.Errorf("read nanosegmentpromotion %s: %w", ref, err)
		}
		p = v1alpha1.NanoSegmentPromotion{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
			return nil, 0, fmt.Errorf("nanosegmentpromotion %s: %w", ref, err)
		}
		if p.Status.Phase == v1alpha1.PromotionSucceeded || p.Status.Phase == v1alpha1.PromotionFailed {
			break
		}
		if err := sleepUntil(ctx, deadline, s.cfg.Poll); err != nil {
			return nil, http.StatusGatewayTimeout, fmt.Errorf("nanosegmentpromotion %s is still %s after %s: is the nanoseg controller running? (kubectl get nanosegmentpromotion -n %s %s)",
				ref, phaseOr(p.Status.Phase), s.cfg.Wait, ns, created.GetName())
		}
	}
	if p.Status.Phase == v1alpha1.PromotionFailed {
		msg := p.Status.Message
		if msg == "" {
			msg = "refused by the controller (no message)"
		}
		return nil, http.StatusConflict, fmt.Errorf("%s", msg)
	}
	workload := key(ns, spec.Workload)
	var res controller.PromoteResult
	if rec := p.Status.Record; rec != nil {
		res.Promotion = rec.Model()
		res.Warnings = rec.Forced
	} else {
		// Carried out without a record: the workload was already there.
		res.Unchanged = true
		res.Promotion = s.lastRecord(ctx, ns, workload)
		if res.Promotion.Workload == "" {
			res.Promotion = model.Promotion{Workload: workload, ToMode: spec.Mode, ToRevision: int(spec.Revision)}
		}
	}
	// The coverage of the proposal as its status last said, unless the
	// promotion was forced past the gate: then the record's reasons say
	// what the controller's gate observed, at the promotion, and a second
	// observed time from the proposal's last refresh would contradict it.
	if !spec.Rollback && spec.Mode == model.ModeEnforce && spec.Revision == 0 && !res.Unchanged && len(res.Warnings) == 0 {
		res.Coverage = s.proposalCoverage(workload)
	}
	res.Converged, res.Errors = s.converged(ctx, ns, spec.Workload, deadline)
	return res, 0, nil
}

// lastRecord is the latest record of workload among the promotions of ns.
func (s *Session) lastRecord(ctx context.Context, ns, workload string) model.Promotion {
	var ps []v1alpha1.NanoSegmentPromotion
	var last model.Promotion
	if listInto(ctx, s.dyn, Promotions, ns, &ps) != nil {
		return last
	}
	for _, p := range ps {
		if r := p.Status.Record; r != nil && r.Workload == workload && uint64(r.Seq) >= last.Seq {
			last = r.Model()
		}
	}
	return last
}

// converged waits until the workload's NanoSegment reports every endpoint
// in sync for its generation, or deadline; it returns the nodes' errors
// otherwise.
func (s *Session) converged(ctx context.Context, ns, workload string, deadline time.Time) (bool, map[string]string) {
	ref := "nanosegment " + ns + "/" + workload
	for {
		var seg v1alpha1.NanoSegment
		u, err := s.dyn.Resource(NanoSegments).Namespace(ns).Get(ctx, workload, metav1.GetOptions{})
		if err == nil {
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &seg)
		}
		st := seg.Status
		if err == nil && st.ObservedGeneration == seg.Generation && st.InSync == st.Endpoints {
			return true, nil
		}
		if sleepUntil(ctx, deadline, s.cfg.Poll) != nil {
			errs := map[string]string{}
			switch {
			case err != nil:
				errs[ref] = err.Error()
			case st.ObservedGeneration != seg.Generation:
				errs[ref] = fmt.Sprintf("no node agent reported generation %d within %s (status is of generation %d)", seg.Generation, s.cfg.Wait, st.ObservedGeneration)
			default:
				errs[ref] = fmt.Sprintf("%d of %d endpoints in sync", st.InSync, st.Endpoints)
			}
			for _, n := range st.Nodes {
				if n.Error != "" {
					errs["node "+n.Node] = n.Error
				}
			}
			return false, errs
		}
	}
}

// sleepUntil sleeps poll, or returns an error when deadline has passed or
// ctx ends.
func sleepUntil(ctx context.Context, deadline time.Time, poll time.Duration) error {
	if !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	t := time.NewTimer(min(poll, time.Until(deadline)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func phaseOr(p v1alpha1.PromotionPhase) string {
	if p == "" {
		return "unhandled"
	}
	return string(p)
}

// generateName is the name prefix of a promotion of workload: the
// workload's name, cut so that the generated name stays a valid name.
func generateName(workload string) string {
	if len(workload) > 200 {
		workload = workload[:200]
	}
	return workload + "-"
}

var forbiddenUser = regexp.MustCompile(`User "([^"]*)"`)

// whoAmI names the user the API server authenticated: from a
// SelfSubjectReview, else from the Forbidden message err.
func (s *Session) whoAmI(ctx context.Context, err error) string {
	if r, rerr := s.kc.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{}); rerr == nil && r.Status.UserInfo.Username != "" {
		return r.Status.UserInfo.Username
	}
	if m := forbiddenUser.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return "(unknown)"
}

// proposalCoverage is the coverage of workload in the window of its
// proposal, as read before the promotion (the promotion to enforce of a
// proposal shows it, as against an agent); nil without a proposal.
func (s *Session) proposalCoverage(workload string) *model.Coverage {
	for _, pr := range s.snap.proposals {
		if key(pr.Namespace, pr.Spec.Workload) != workload {
			continue
		}
		covs, err := s.svc.Coverage(pr.Spec.Window.Duration)
		if err != nil {
			return nil
		}
		for _, c := range covs {
			if c.Workload == workload {
				return &c
			}
		}
	}
	return nil
}
