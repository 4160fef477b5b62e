package kube

// The proposal refresher: every ProposeInterval, one NanoSegmentProposal
// per workload the observation graph proposes a nanosegment for, named
// after the workload in its namespace. A proposal is written only when
// its spec or status changed (compared as the API server keeps them), so
// a quiet cluster causes no writes. The proposal of a workload that left
// the inventory is deleted; one whose workload is still there but got no
// proposal this round (its edges aged out of the window) is kept, marked
// Settled=False (Silent), so that an operator can still read and promote
// what was learnt.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// MaxProposalEdges is how many observed edges a proposal lists (the most
// recently seen); the CRD allows no more.
const MaxProposalEdges = 1000

// proposalListPage is how many proposals one list request of the
// refresher asks for.
const proposalListPage = 25

// Settled condition: its type and reasons.
const (
	ConditionSettled   = "Settled"
	ReasonSettled      = "Settled"
	ReasonLearning     = "Learning"
	ReasonSilent       = "Silent"
	ReasonNotObserved  = "NotObserved"
	managedByLabel     = "app.kubernetes.io/managed-by"
	managedByValue     = "nanoseg-controller"
	proposalFieldOwner = "nanoseg-controller"
)

func (c *Controller) proposalLoop(ctx context.Context) {
	for {
		if err := c.refreshProposals(ctx); err != nil && ctx.Err() == nil {
			c.mErrors.WithLabelValues("proposals").Inc()
			c.log.Error("refresh proposals", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.ProposeInterval):
		}
	}
}

// refreshProposals is one round of the refresher.
func (c *Controller) refreshProposals(ctx context.Context) error {
	svc := c.service(c.parts.Store)
	inf, err := svc.Infer(c.cfg.Window, false)
	if err != nil {
		return fmt.Errorf("propose: %w", err)
	}
	props := byWorkload(inf)
	existing := map[string]*unstructured.Unstructured{}
	// In pages: 500 proposals of a few hundred KiB each are more than the
	// API server answers in one request within its 60 s timeout on a busy
	// server (docs/benchmarks.md, "Cluster scale").
	opts := metav1.ListOptions{Limit: proposalListPage}
	for {
		list, err := c.dyn.Resource(ProposalResource).Namespace("").List(ctx, opts)
		if err != nil {
			return fmt.Errorf("list proposals: %w", err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			existing[u.GetNamespace()+"/"+u.GetName()] = u
		}
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			break
		}
	}
	now := time.Now()
	var errs []error
	seen := map[string]bool{}
	for _, p := range props {
		ns, name, _ := strings.Cut(p.workload, "/")
		seen[p.workload] = true
		if err := c.writeProposal(ctx, ns, name, c.desiredProposal(ns, name, p), c.settled(p.workload, inf.Report.Coverage, now), p.coverage, existing[p.workload]); err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	known := map[string]bool{}
	for _, w := range c.inv.Workloads() {
		known[w] = true
	}
	for key, u := range existing {
		if seen[key] || u.GetLabels()[v1alpha1.LabelWorkload] == "" {
			continue // refreshed above, or not written by the controller
		}
		if !known[key] {
			err := c.dyn.Resource(ProposalResource).Namespace(u.GetNamespace()).Delete(ctx, u.GetName(),
				metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptrUID(u.GetUID())}})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete proposal %s of a workload that left: %w", key, err))
				continue
			}
			c.mProposals.WithLabelValues("delete").Inc()
			c.log.Info("proposal deleted: its workload left the cluster", "proposal", key)
			continue
		}
		var cur v1alpha1.NanoSegmentProposal
		if err := toTyped(u, &cur); err != nil {
			errs = append(errs, err)
			continue
		}
		cond := metav1.Condition{Type: ConditionSettled, Status: metav1.ConditionFalse, Reason: ReasonSilent,
			Message: fmt.Sprintf("no edge of the workload in the last %s: this proposal is what was learnt before", c.cfg.Window)}
		if err := c.writeStatus(ctx, &cur, cond, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d proposal writes failed, the first: %w", len(errs), errs[0])
	}
	return nil
}

// proposal is one workload's inferred nanosegment with its observed
// edges (either direction, the most recently seen first, each with why
// the segment leaves it out, if it does) and its coverage.
type proposal struct {
	workload string
	policy   *v1alpha1.NanoSegment
	edges    []proposalEdge
	coverage model.Coverage
}

type proposalEdge struct {
	edge    model.Edge
	leftOut string
}

// byWorkload splits an inference into one proposal per workload.
func byWorkload(inf controller.Inference) []proposal {
	cov := map[string]model.Coverage{}
	for _, c := range inf.Report.Coverage {
		cov[c.Workload] = c
	}
	edges := map[string][]proposalEdge{}
	for _, e := range inf.Edges {
		pe := proposalEdge{edge: e, leftOut: inf.LeftOut[string(store.EdgeKey(e))]}
		src, dst := e.Source.String(), e.Destination.String()
		if !e.Source.External {
			edges[src] = append(edges[src], pe)
		}
		if !e.Destination.External && dst != src {
			edges[dst] = append(edges[dst], pe)
		}
	}
	out := make([]proposal, 0, len(inf.Proposals))
	for _, ip := range inf.Proposals {
		es := edges[ip.Workload]
		sort.SliceStable(es, func(a, b int) bool { return es[a].edge.LastSeen.After(es[b].edge.LastSeen) })
		c, ok := cov[ip.Workload]
		if !ok {
			c = model.Coverage{Workload: ip.Workload, Silent: true}
		}
		out = append(out, proposal{workload: ip.Workload, policy: ip.Policy, edges: es, coverage: c})
	}
	return out
}

// desiredProposal is the proposal object for p (spec and labels).
func (c *Controller) desiredProposal(ns, name string, p proposal) *v1alpha1.NanoSegmentProposal {
	spec := p.policy.Spec.DeepCopy()
	spec.Mode = ""
	out := &v1alpha1.NanoSegmentProposal{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{v1alpha1.LabelWorkload: name, managedByLabel: managedByValue}},
		Spec: v1alpha1.NanoSegmentProposalSpec{Workload: name, Segment: *spec, Window: metav1.Duration{Duration: c.cfg.Window}},
	}
	for i, e := range p.edges {
		if i == MaxProposalEdges {
			out.Spec.EdgesOmitted = int32(min(len(p.edges)-MaxProposalEdges, 1<<31-1))
			break
		}
		out.Spec.Edges = append(out.Spec.Edges, v1alpha1.EdgeFrom(e.edge, e.leftOut))
	}
	return out
}

// settled is the Settled condition of workload at now, given the
// coverage of every workload in the window (covs). It applies the one
// rule of the coverage gate (controller.EnforceGate, with the
// controller's Window and MinObserved, as a promotion of this proposal
// to enforce is judged): Settled=True means a promotion to enforce
// passes the gate without force; Settled=False says what is missing,
// every reason the gate would give. A workload is also still Learning
// while a new peer or port appeared within the last ProposeInterval
// (this the gate does not ask: the proposal may still change).
func (c *Controller) settled(workload string, covs []model.Coverage, now time.Time) metav1.Condition {
	cov, reasons := controller.EnforceGate(workload, covs, c.cfg.Window, c.cfg.MinObserved)
	cond := metav1.Condition{Type: ConditionSettled, Status: metav1.ConditionFalse}
	switch {
	case cov.ObservedSeconds == 0:
		cond.Reason, cond.Message = ReasonNotObserved, "no node agent observed the workload in the window: a promotion to enforce needs force"
	case len(reasons) > 0:
		cond.Reason = ReasonLearning
		if cov.Silent {
			cond.Reason = ReasonSilent
		}
		cond.Message = "a promotion to enforce needs force until it is settled: " + strings.Join(reasons, "; ")
	case !cov.LastNew.IsZero() && now.Sub(cov.LastNew) < c.cfg.ProposeInterval:
		cond.Reason, cond.Message = ReasonLearning, fmt.Sprintf("a new peer or port appeared at %s", cov.LastNew.UTC().Format(time.RFC3339))
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonSettled
		cond.Message = fmt.Sprintf("observed %s of the %s window (at least the %s required), no new peer or port in the last %s: a promotion to enforce passes the coverage gate",
			model.ShortDuration(cov.Observed()), model.ShortDuration(c.cfg.Window), model.ShortDuration(c.cfg.MinObserved), c.cfg.ProposeInterval)
	}
	return cond
}

// writeProposal creates or updates the proposal's spec when it differs
// from cur (nil: none yet), then its status.
func (c *Controller) writeProposal(ctx context.Context, ns, name string, want *v1alpha1.NanoSegmentProposal, cond metav1.Condition, cov model.Coverage, cur *unstructured.Unstructured) error {
	api := c.dyn.Resource(ProposalResource).Namespace(ns)
	var obj v1alpha1.NanoSegmentProposal
	switch {
	case cur == nil:
		u, err := toUnstructured(want, v1alpha1.KindProposal)
		if err != nil {
			return err
		}
		got, err := api.Create(ctx, u, metav1.CreateOptions{FieldManager: proposalFieldOwner})
		if err != nil {
			return fmt.Errorf("create proposal %s/%s: %w", ns, name, err)
		}
		c.mProposals.WithLabelValues("create").Inc()
		if err := toTyped(got, &obj); err != nil {
			return err
		}
	default:
		if err := toTyped(cur, &obj); err != nil {
			return err
		}
		if !sameJSON(obj.Spec, want.Spec) || !hasLabels(obj.Labels, want.Labels) {
			obj.Spec = want.Spec
			if obj.Labels == nil {
				obj.Labels = map[string]string{}
			}
			for k, v := range want.Labels {
				obj.Labels[k] = v
			}
			u, err := toUnstructured(&obj, v1alpha1.KindProposal)
			if err != nil {
				return err
			}
			got, err := api.Update(ctx, u, metav1.UpdateOptions{FieldManager: proposalFieldOwner})
			if err != nil {
				return fmt.Errorf("update proposal %s/%s: %w", ns, name, err)
			}
			c.mProposals.WithLabelValues("update").Inc()
			obj = v1alpha1.NanoSegmentProposal{}
			if err := toTyped(got, &obj); err != nil {
				return err
			}
		}
	}
	n := int64(len(want.Spec.Edges)) + int64(want.Spec.EdgesOmitted)
	pc := &v1alpha1.ProposalCoverage{
		Observed:  metav1.Duration{Duration: time.Duration(cov.ObservedSeconds * float64(time.Second)).Truncate(time.Second)},
		Window:    metav1.Duration{Duration: c.cfg.Window},
		Endpoints: int32(cov.Endpoints), Flows: clamp64(cov.Flows), Failed: clamp64(cov.Failed), Peers: int32(cov.Peers), Silent: cov.Silent,
	}
	if !cov.LastNew.IsZero() {
		t := metav1.NewTime(cov.LastNew)
		pc.LastNew = &t
	}
	return c.writeStatus(ctx, &obj, cond, &proposalNumbers{edges: int32(min(n, 1<<31-1)), coverage: pc})
}

// proposalNumbers are the status fields besides the condition.
type proposalNumbers struct {
	edges    int32
	coverage *v1alpha1.ProposalCoverage
}

// writeStatus writes obj's status with cond (and nums, when not nil)
// when it differs from what obj holds.
func (c *Controller) writeStatus(ctx context.Context, obj *v1alpha1.NanoSegmentProposal, cond metav1.Condition, nums *proposalNumbers) error {
	st := *obj.Status.DeepCopy()
	st.ObservedGeneration = obj.Generation
	if nums != nil {
		st.Edges, st.Coverage = nums.edges, nums.coverage
	}
	cond.ObservedGeneration = obj.Generation
	meta.SetStatusCondition(&st.Conditions, cond)
	if sameJSON(st, obj.Status) {
		return nil
	}
	// The observed time grows with every round while agents observe,
	// and the Settled message quotes it: a status whose only change is
	// that is written at most every ProposalStatusRefresh (a new leader
	// waits one before its first such write), so an idle cluster causes
	// no proposal writes.
	key := obj.Namespace + "/" + obj.Name
	now := time.Now()
	if c.statusAt == nil {
		c.statusAt = map[string]time.Time{}
	}
	if sameJSON(withoutVolatile(st), withoutVolatile(obj.Status)) {
		last, ok := c.statusAt[key]
		if !ok {
			c.statusAt[key] = now
			return nil
		}
		if now.Sub(last) < ProposalStatusRefresh {
			return nil
		}
	}
	next := obj.DeepCopy()
	next.Status = st
	u, err := toUnstructured(next, v1alpha1.KindProposal)
	if err != nil {
		return err
	}
	if _, err := c.dyn.Resource(ProposalResource).Namespace(obj.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: proposalFieldOwner}); err != nil {
		return fmt.Errorf("update status of proposal %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	c.mProposals.WithLabelValues("status").Inc()
	c.statusAt[key] = now
	return nil
}

// ProposalStatusRefresh is how often, at most, a proposal's status is
// written when only its observed time (and the condition messages that
// quote it) changed.
const ProposalStatusRefresh = 10 * time.Minute

// withoutVolatile is st without what changes every round while nothing
// else does: the observed time and the conditions' messages.
func withoutVolatile(st v1alpha1.NanoSegmentProposalStatus) v1alpha1.NanoSegmentProposalStatus {
	out := *st.DeepCopy()
	if out.Coverage != nil {
		out.Coverage.Observed = metav1.Duration{}
	}
	for i := range out.Conditions {
		out.Conditions[i].Message = ""
		out.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	return out
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func clamp64(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}
