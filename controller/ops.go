package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// workloadOf returns the inventory workload ("namespace/workload") that seg
// selects: its namespace and label selector must select the identity of
// exactly one workload.
func (s *Service) workloadOf(seg *v1alpha1.NanoSegment) (string, error) {
	sel, err := metav1.LabelSelectorAsSelector(&seg.Spec.Selector)
	if err != nil {
		return "", fmt.Errorf("%w: spec.selector: %v", ErrInvalid, err)
	}
	match := map[string]bool{}
	for _, e := range s.inv.Endpoints() {
		if e.Namespace == seg.Namespace && sel.Matches(labels.Set(e.Labels)) {
			match[e.Key()] = true
		}
	}
	keys := make([]string, 0, len(match))
	for k := range match {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	switch len(keys) {
	case 0:
		return "", fmt.Errorf("%w: nanosegment %s/%s: spec.selector selects no workload in namespace %q", ErrInvalid, seg.Namespace, seg.Name, Clip(seg.Namespace))
	case 1:
		return keys[0], nil
	}
	return "", fmt.Errorf("%w: nanosegment %s/%s: spec.selector selects %d workloads (%v); a nanosegment is the policy of one workload", ErrInvalid, seg.Namespace, seg.Name, len(keys), keys)
}

// ProposeResult is one workload's proposal and where it went.
type ProposeResult struct {
	Workload string         `json:"workload"`
	Revision store.Revision `json:"revision"`
	// New is false when the proposal equals the latest revision, which is
	// then returned instead of storing a copy.
	New bool `json:"new"`
}

// ProposeReport is what Propose did: one result per workload, the edges
// it left out because the policies in force deny or audit-deny them, and
// the workloads that got no proposal.
type ProposeReport struct {
	Proposals []ProposeResult `json:"proposals"`
	// Excluded lists, for every edge left out, "source -> destination
	// PROTO/port: n denied and m audit-denied in the window, the last at
	// TIME by WORKLOAD revision N (MODE); the policies in force still
	// deny it".
	Excluded []string `json:"excluded"`
	// Skipped lists the workloads observed in the window that got no
	// proposal, and why.
	Skipped []string `json:"skipped"`
	// Failed lists, for every edge left out because every connection of
	// it failed (never established: refused with a reset, or never
	// answered), "source -> destination PROTO/port: n connections in the
	// window, all failed (m refused, k unanswered): ...". Such an edge
	// is never learned as an allow: a port that only refuses looks like a
	// scan.
	Failed []string `json:"failed"`
	// Forbidden lists every edge left out because a Deny rule of the
	// Admin tier of the ClusterNetworkPolicies in force forbids it, with
	// that rule (tier, policy, priority, rule): no nanosegment can allow
	// it, so none proposes it, --include-denied or not. An Admin Accept or
	// Pass, or a Baseline Deny (the nanosegment's tier comes first), leaves
	// nothing out.
	Forbidden []policies.ForbiddenEdge `json:"forbidden"`
	// Window is the window asked for, in seconds (0: every edge stored).
	WindowSeconds float64 `json:"windowSeconds"`
	// Coverage is the coverage of every workload of the inventory in the
	// window (model.Coverage), sorted by workload.
	Coverage []model.Coverage `json:"coverage"`
	// Silent names the workloads of the inventory with no successful
	// connection in the window: they get no proposal, and the policies
	// of the workloads they would talk to do not allow them.
	Silent []string `json:"silent"`
	// Warnings are things the operator should know before promoting
	// these proposals (a window shorter than the minimum observation).
	Warnings []string `json:"warnings,omitempty"`
}

// Inference is what Infer found: the report (its Proposals not filled: Infer
// stores nothing), the proposed nanosegment of each workload, and the
// edges of the window with the reason each left-out one was left out.
type Inference struct {
	Report ProposeReport
	// Proposals are the proposed nanosegments by workload
	// ("namespace/workload"), in the order inference made them.
	Proposals []InferredProposal
	// Edges are every edge last seen in the window, sorted by EdgeKey.
	Edges []model.Edge
	// LeftOut maps the store.EdgeKey (as a string) of each edge a proposal
	// may not use to the reason: every connection failed, or the policies
	// in force still deny it.
	LeftOut map[string]string
	// At is when the inference ran.
	At time.Time
}

// InferredProposal is one workload's proposed nanosegment.
type InferredProposal struct {
	Workload string
	Policy   *v1alpha1.NanoSegment
}

// Reasons an edge is left out of proposals (Inference.LeftOut).
const (
	LeftOutFailed = "every connection failed: never learned as an allow"
	LeftOutDenied = "denied or audit-denied in the window, and the policies in force still deny it"
	// LeftOutForbidden starts the reason of an edge an Admin Deny
	// forbids; the rule follows.
	LeftOutForbidden = "forbidden by an Admin Deny: "
)

// Propose infers one nanosegment per workload (Infer) and stores each that
// differs from the workload's latest revision as a new proposed revision.
func (s *Service) Propose(window time.Duration, includeDenied bool, who string) (ProposeReport, error) {
	inf, err := s.Infer(window, includeDenied)
	rep := inf.Report
	if err != nil {
		return rep, err
	}
	for _, p := range inf.Proposals {
		res := ProposeResult{Workload: p.Workload}
		if last, err := s.store.LatestRevision(p.Workload); err == nil && sameRules(last.Policy, p.Policy) {
			res.Revision = last
			rep.Proposals = append(rep.Proposals, res)
			continue
		}
		r, err := s.store.AddRevision(store.Revision{Workload: p.Workload, Origin: store.OriginProposed, CreatedAt: inf.At.UTC(), CreatedBy: who, Policy: p.Policy, Window: max(window, 0)})
		if err != nil {
			return rep, err
		}
		res.Revision, res.New = r, true
		rep.Proposals = append(rep.Proposals, res)
		s.changes.Publish(TopicRevisions)
	}
	return rep, nil
}

// Infer infers one nanosegment per workload from the edges last seen
// within window (all edges for 0) and stores nothing (Propose stores; the
// cluster controller writes proposals as objects). Unless includeDenied,
// an edge is left out when the verdict log shows it denied or audit-denied
// within the window and the policies in force now still deny or
// audit-deny it (policies.Evaluate on the current inventory): a proposal
// must never quietly allow what the policies in force refuse (`policy
// diff` shows those flows for a person to decide). Denials older than the
// window, or under a policy no longer in force that the policies in force
// allow, leave nothing out. Edges whose every connection failed are left
// out too. A window shorter than the minimum observation for enforce
// (Config.MinObserved) is warned about in the report.
func (s *Service) Infer(window time.Duration, includeDenied bool) (Inference, error) {
	inf := Inference{LeftOut: map[string]string{}, At: time.Now()}
	rep := &inf.Report
	*rep = ProposeReport{Proposals: []ProposeResult{}, Excluded: []string{}, Skipped: []string{}, Failed: []string{}, Silent: []string{}, Forbidden: []policies.ForbiddenEdge{},
		WindowSeconds: max(window, 0).Seconds()}
	if err := s.node.Flush(); err != nil {
		return inf, err
	}
	if window > 0 && s.cfg.MinObserved > 0 && window < s.cfg.MinObserved {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the window (%s) is shorter than the observation a promotion to enforce needs (%s): promoting these proposals to enforce will be refused without --force",
			window, s.cfg.MinObserved))
	}
	since := windowStart(window)
	all, err := s.obs.Edges(since)
	if err != nil {
		return inf, err
	}
	inf.Edges = all
	if rep.Coverage, err = s.coverageAt(s.inv.Workloads(), max(window, 0), inf.At); err != nil {
		return inf, err
	}
	for _, c := range rep.Coverage {
		if c.Silent {
			rep.Silent = append(rep.Silent, c.Workload+": "+c.Summary())
		}
	}
	// Failed attempts are never learned as allows (the proposer gets only
	// edges with at least one connection that succeeded).
	edges, failed := LeaveOutFailed(all)
	rep.Failed = append(rep.Failed, failed...)
	forbidden := map[string]string{}
	if edges, err = s.leaveOutForbidden(edges, rep, forbidden); err != nil {
		return inf, err
	}
	if !includeDenied {
		if edges, err = s.leaveOutDenied(edges, since, rep); err != nil {
			return inf, err
		}
	}
	kept := map[string]bool{}
	for _, e := range edges {
		kept[string(store.EdgeKey(e))] = true
	}
	for _, e := range all {
		if k := string(store.EdgeKey(e)); !kept[k] {
			inf.LeftOut[k] = LeftOutDenied
			if why, ok := forbidden[k]; ok {
				inf.LeftOut[k] = why
			}
			if e.OnlyFailed() {
				inf.LeftOut[k] = LeftOutFailed
			}
		}
	}
	known, err := s.known()
	if err != nil {
		return inf, err
	}
	for _, e := range all {
		if e.OnlyFailed() {
			known.Failed = append(known.Failed, e) // no port range spans them
		}
	}
	segs := policies.ProposeWith(edges, known, s.cfg.Propose)
	proposed := map[string]bool{}
	for i := range segs {
		seg := &segs[i]
		w, err := s.workloadOf(seg)
		if err != nil {
			s.log.Warn("proposal matches no single workload", "nanosegment", seg.Namespace+"/"+seg.Name, "err", err)
			rep.Skipped = append(rep.Skipped, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
			continue
		}
		proposed[w] = true
		inf.Proposals = append(inf.Proposals, InferredProposal{Workload: w, Policy: seg})
	}
	// A workload observed in the window never vanishes without a word
	// (one whose proposal selects no single workload is named above).
	observed, keptPeers := peersOf(all), peersOf(edges)
	for _, w := range s.inv.Workloads() {
		if observed[w] && !keptPeers[w] && !proposed[w] {
			rep.Skipped = append(rep.Skipped, w+": no proposal: every edge of it in the window was left out")
		}
	}
	return inf, nil
}

// LeaveOutFailed returns the edges of all with at least one connection
// that did not fail (or with no flow counted: traffic of connections
// older than the observer), and a line for each one it leaves out (see
// ProposeReport.Failed). Propose uses it; so does the offline
// `policy propose --edges`.
func LeaveOutFailed(all []model.Edge) (keep []model.Edge, left []string) {
	for _, e := range all {
		if !e.OnlyFailed() {
			keep = append(keep, e)
			continue
		}
		left = append(left, failedLine(e))
	}
	return keep, left
}

// failedLine says why edge e, whose every connection failed, is left out.
func failedLine(e model.Edge) string {
	var how []string
	if e.Reset > 0 {
		how = append(how, fmt.Sprintf("%d refused (reset)", e.Reset))
	}
	if n := e.Failed - min(e.Reset, e.Failed); n > 0 {
		how = append(how, fmt.Sprintf("%d unanswered", n))
	}
	why := "never established, so never learned as an allow (a port that only refuses looks like a scan); allow it by hand if it is meant"
	if e.Reset == 0 && e.Protocol == model.ProtocolUDP {
		why = "no reply ever came, so never learned as an allow (one-way UDP such as syslog looks the same: allow it by hand if it is meant)"
	}
	return fmt.Sprintf("%s -> %s %s/%d: %d connections in the window, all failed (%s): %s", e.Source, e.Destination, e.Protocol, e.Port,
		e.Flows, strings.Join(how, ", "), why)
}

// known returns the inventory as inference sees it: each workload's
// identity with the ports any of its endpoints declares, and the
// namespaces with their labels.
func (s *Service) known() (policies.Known, error) {
	var k policies.Known
	for _, w := range s.inv.Workloads() {
		eps := s.inv.Workload(w)
		if len(eps) == 0 {
			// A key Workload cannot split back (a '/' in a namespace the
			// source let through) or an endpoint gone since Workloads.
			return k, fmt.Errorf("workload %q: no endpoints found under its key (its namespace or name holds a '/'?)", w)
		}
		kw := policies.KnownWorkload{Identity: eps[0].Identity()}
		seen := map[model.ContainerPort]bool{}
		for _, e := range eps {
			for _, p := range e.Ports {
				if !seen[p] {
					seen[p] = true
					kw.Ports = append(kw.Ports, p)
				}
			}
		}
		k.Workloads = append(k.Workloads, kw)
	}
	world, err := s.inv.World(nil)
	if err != nil {
		return k, err
	}
	k.Namespaces = world.Namespaces()
	return k, nil
}

// peersOf returns the workload keys of the internal peers of edges.
func peersOf(edges []model.Edge) map[string]bool {
	out := map[string]bool{}
	for _, e := range edges {
		for _, p := range []model.Peer{e.Source, e.Destination} {
			if !p.External {
				out[p.String()] = true
			}
		}
	}
	return out
}

// leaveOutForbidden returns the edges of all that no Admin Deny of the
// ClusterNetworkPolicies in force forbids, adding each one it leaves out
// to rep.Forbidden and its reason to why (by store.EdgeKey). Edges that
// cannot be evaluated (a workload gone) are kept: leaveOutDenied and the
// proposer judge them as before.
func (s *Service) leaveOutForbidden(all []model.Edge, rep *ProposeReport, why map[string]string) ([]model.Edge, error) {
	world, set, err := s.policyWorld()
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(set.ClusterPolicies(), func(p *policies.ClusterPolicy) bool { return p.Tier == cnpv1alpha2.TierAdmin }) {
		return all, nil
	}
	names := s.knownNames()
	var keep []model.Edge
	for _, e := range all {
		v, err := s.evaluateEdge(world, set, names, e)
		if err != nil {
			keep = append(keep, e)
			continue
		}
		r, dir := v.AdminDeny()
		if r == nil {
			keep = append(keep, e)
			continue
		}
		f := policies.ForbiddenEdge{Edge: fmt.Sprintf("%s -> %s %s/%d", e.Source, e.Destination, e.Protocol, e.Port), Direction: dir, Rule: *r, Flows: int64(e.Flows)}
		rep.Forbidden = append(rep.Forbidden, f)
		why[string(store.EdgeKey(e))] = LeftOutForbidden + r.String()
	}
	return keep, nil
}

// leaveOutDenied returns the edges of all that a proposal may use, adding
// to rep.Excluded the ones it leaves out (see Propose).
func (s *Service) leaveOutDenied(all []model.Edge, since time.Time, rep *ProposeReport) ([]model.Edge, error) {
	evs, err := s.obs.Verdicts(since)
	if err != nil {
		return nil, err
	}
	byEdge := edgeDenials(evs)
	if len(byEdge) == 0 {
		return all, nil
	}
	world, set, err := s.policyWorld()
	if err != nil {
		return nil, err
	}
	names := s.knownNames()
	hist := map[string][]model.Promotion{}
	var keep []model.Edge
	for _, e := range all {
		d := byEdge[observedEdgeKey(e)]
		if d == nil {
			keep = append(keep, e)
			continue
		}
		now, evalErr := s.stillDenied(world, set, names, e)
		if evalErr == nil && now == model.VerdictAllow {
			keep = append(keep, e)
			continue
		}
		by, err := s.deniedBy(d.last, hist)
		if err != nil {
			return nil, err
		}
		rep.Excluded = append(rep.Excluded, excludedLine(e, d, by, now, evalErr))
	}
	return keep, nil
}

// ApplyPolicies is Apply without a context, answering only the
// nanosegment revisions (tests and callers that apply nanosegments).
func (s *Service) ApplyPolicies(file string, raw []byte, who string) ([]store.Revision, error) {
	res, err := s.Apply(context.Background(), file, raw, who)
	return res.Revisions, err
}

// ApplyResult is what Apply stored.
type ApplyResult struct {
	// Revisions are the nanosegments' revisions, new or (the same rules
	// as the latest) existing; promotions decide when they take effect.
	Revisions []store.Revision `json:"revisions"`
	// NetworkPolicies are the NetworkPolicies, in force from now on.
	NetworkPolicies []NetworkPolicyResult `json:"networkPolicies"`
	// ClusterNetworkPolicies are the ClusterNetworkPolicies of the
	// document, in force from now on.
	ClusterNetworkPolicies []ClusterNetworkPolicyResult `json:"clusterNetworkPolicies,omitempty"`
	// Converged is true when no NetworkPolicy changed, or when every
	// endpoint holds its rule set after they took effect; Errors name
	// the endpoints that failed.
	Converged bool              `json:"converged"`
	Errors    map[string]string `json:"errors,omitempty"`
}

// Apply stores the document raw (YAML or JSON; file names errors), after
// validating every object in it: one invalid object stores nothing, and
// every problem is reported with its field path. NanoSegments (each must
// select exactly one workload) become declared revisions, which take
// effect when promoted. NetworkPolicies are stored as NetworkPolicies
// (networking.k8s.io/v1, any selector) and enforced at once with their
// own semantics, as Kubernetes does; Apply then waits for the dataplane
// as a promotion does. ClusterNetworkPolicies (policy.networking.k8s.io/
// v1alpha2) are recorded as themselves (store.ClusterNetworkPolicyRecord,
// by who), each one changed a new revision of its name, and enforced at
// once as well; a store without ClusterPolicyStore refuses
// them (ErrInvalid, nothing stored).
func (s *Service) Apply(ctx context.Context, file string, raw []byte, who string) (ApplyResult, error) {
	return s.apply(ctx, file, raw, who, false)
}

// CheckApply runs every check Apply runs on the document raw (parsing,
// validation with field paths, each NanoSegment selecting one workload)
// and stores and enforces nothing: nil means Apply would accept it now.
// Its errors are Apply's (ErrInvalid). `policy apply` of several files
// checks them all this way before it applies the first.
func (s *Service) CheckApply(file string, raw []byte) error {
	_, err := s.apply(context.Background(), file, raw, "", true)
	return err
}

func (s *Service) apply(ctx context.Context, file string, raw []byte, who string, checkOnly bool) (ApplyResult, error) {
	res := ApplyResult{Revisions: []store.Revision{}, NetworkPolicies: []NetworkPolicyResult{}, Converged: true}
	objs, err := policies.ParseObjects(file, raw)
	if err != nil {
		return res, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// ClusterNetworkPolicies are enforced at once, like NetworkPolicies;
	// a store that cannot hold them refuses them (nothing stored).
	cnps := policies.ClusterNetworkPolicies(objs)
	cstore, canCNP := s.store.(store.ClusterPolicyStore)
	if len(cnps) > 0 && !canCNP {
		return res, fmt.Errorf("%w: %s: ClusterNetworkPolicy %s: not stored: this store does not hold ClusterNetworkPolicies; nothing stored", ErrInvalid, file, cnps[0].Name)
	}
	nps, segs := policies.SplitObjects(objs)
	if len(segs) == 0 && len(nps) == 0 && len(cnps) == 0 {
		return res, fmt.Errorf("%w: %s: no NanoSegment, NetworkPolicy or ClusterNetworkPolicy objects", ErrInvalid, file)
	}
	var errs []error
	for i := range cnps {
		if _, err := policies.CompileClusterNetworkPolicy(&cnps[i]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
		}
	}
	for i := range nps {
		if verrs := policies.ValidateNetworkPolicy(&nps[i]); len(verrs) > 0 {
			errs = append(errs, fmt.Errorf("%s: NetworkPolicy %s/%s: %v", file, nps[i].Namespace, nps[i].Name, verrs.ToAggregate()))
		}
	}
	targets := make([]string, len(segs))
	for i := range segs {
		if verrs := policies.ValidateNanoSegment(&segs[i]); len(verrs) > 0 {
			errs = append(errs, fmt.Errorf("%s: nanosegment %s/%s: %v", file, segs[i].Namespace, segs[i].Name, verrs.ToAggregate()))
			continue
		}
		w, err := s.workloadOf(&segs[i])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")))
			continue
		}
		targets[i] = w
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("%w:\n%w", ErrInvalid, errors.Join(errs...))
	}
	if checkOnly {
		return res, nil
	}
	now := time.Now().UTC()
	for i := range segs {
		seg := segs[i]
		for j := range seg.Spec.Ingress {
			markDeclared(&seg.Spec.Ingress[j], who, now)
		}
		for j := range seg.Spec.Egress {
			markDeclared(&seg.Spec.Egress[j], who, now)
		}
		// The same rules as the latest revision: nothing new to store.
		if last, err := s.store.LatestRevision(targets[i]); err == nil && sameRules(last.Policy, &seg) {
			res.Revisions = append(res.Revisions, last)
			continue
		}
		r, err := s.store.AddRevision(store.Revision{Workload: targets[i], Origin: store.OriginDeclared, CreatedAt: now, CreatedBy: who, Policy: &seg})
		if err != nil {
			return res, err
		}
		s.changes.Publish(TopicRevisions)
		res.Revisions = append(res.Revisions, r)
	}
	cnpChanged, err := s.storeClusterNetworkPolicies(cstore, cnps, now, who, &res)
	if err != nil {
		return res, err
	}
	if len(nps) == 0 && !cnpChanged {
		return res, nil
	}
	changed, err := s.storeNetworkPolicies(nps, now, who, &res)
	if err != nil || !(changed || cnpChanged) {
		return res, err
	}
	s.changes.Publish(TopicPolicies)
	res.Converged, res.Errors = s.enforceAll(ctx)
	return res, nil
}

// sameRules reports whether a and b select the same workload with the same
// rules, whatever their provenance (who declared them, which edges, when)
// and their spec.mode (promotions decide the mode).
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

func markDeclared(r *v1alpha1.Rule, who string, at time.Time) {
	if r.Provenance.Declared == nil && r.Provenance.Observed == nil && r.Provenance.Widened == nil {
		t := metav1.NewTime(at)
		r.Provenance.Declared = &v1alpha1.Declared{By: who, At: &t}
	}
}

// PromoteRequest asks for a workload's mode (and optionally revision) to
// change.
type PromoteRequest struct {
	Workload string     `json:"workload"`
	To       model.Mode `json:"to"`
	// Revision 0 means the latest revision; a negative one is refused.
	Revision int    `json:"revision,omitempty"`
	Reason   string `json:"reason"`
	// Force promotes to enforce although the coverage gate refuses (see
	// Promote); the reasons are recorded in the event's Forced.
	Force bool `json:"force,omitempty"`
	// MinObserved overrides the service's minimum observation for this
	// request (nanoseconds in JSON; 0: Config.MinObserved, negative: no
	// minimum).
	MinObserved time.Duration `json:"minObserved,omitempty"`
}

// PromoteResult is the recorded event and whether the dataplane converged.
type PromoteResult struct {
	Promotion model.Promotion `json:"promotion"`
	// Unchanged is true when the workload already had the requested mode
	// and revision: nothing was recorded, and Promotion is the event that
	// set that state.
	Unchanged bool `json:"unchanged,omitempty"`
	// Converged is true when every endpoint of the workload holds the new
	// rule set; Errors name the endpoints that failed.
	Converged bool              `json:"converged"`
	Errors    map[string]string `json:"errors,omitempty"`
	// Coverage is the workload's coverage in its proposal's window, for a
	// promotion to enforce of a proposed revision.
	Coverage *model.Coverage `json:"coverage,omitempty"`
	// Warnings are the coverage gate's reasons when Force overrode them
	// (also recorded in Promotion.Forced).
	Warnings []string `json:"warnings,omitempty"`
}

// CoverageError is the refusal of a promotion to enforce by the coverage
// gate: the workload and every reason. It wraps ErrCoverage.
type CoverageError struct {
	Workload string
	Reasons  []string
	Coverage model.Coverage
}

// ErrCoverage marks a promotion to enforce refused because the workload's
// proposal rests on too little observation; Force overrides it.
var ErrCoverage = errors.New("coverage too thin to enforce")

func (e *CoverageError) Error() string {
	return fmt.Sprintf("%v: %s: %s; promote with --force to enforce anyway (the reasons are recorded)", ErrCoverage, e.Workload, strings.Join(e.Reasons, "; "))
}

// Unwrap returns ErrCoverage.
func (e *CoverageError) Unwrap() error { return ErrCoverage }

// Promote records a promotion of req.Workload and waits until the
// dataplane has converged (at most Config.ConvergeTimeout). A workload
// already in that mode at that revision is answered Unchanged, and
// nothing is recorded.
//
// A promotion to enforce of a proposed revision passes the coverage gate
// first: the workload's coverage in the proposal's window (up to when it
// was proposed) must reach the minimum observation (req.MinObserved, else
// Config.MinObserved), cover the window the proposal asked for, and show
// traffic; and no workload of its namespace may be silent in that window
// (whatever it does with this workload would be denied). Otherwise the
// answer is a *CoverageError (ErrCoverage) naming each reason, unless
// req.Force, which promotes and records the reasons in the event's
// Forced. Promotions to observe or audit are never gated: audit is how
// one learns safely. Declared revisions (applied from YAML) are the
// operator's own rules and are not gated either.
func (s *Service) Promote(ctx context.Context, req PromoteRequest, who string) (PromoteResult, error) {
	switch req.To {
	case model.ModeObserve, model.ModeAudit, model.ModeEnforce:
	default:
		return PromoteResult{}, fmt.Errorf("%w: to: %q is not observe, audit or enforce", ErrInvalid, Clip(req.To))
	}
	if strings.TrimSpace(req.Reason) == "" {
		return PromoteResult{}, fmt.Errorf("%w: reason: required: say why", ErrInvalid)
	}
	if err := notNegative("revision", req.Revision, "0 for the latest"); err != nil {
		return PromoteResult{}, err
	}
	if len(s.inv.Workload(req.Workload)) == 0 {
		return PromoteResult{}, fmt.Errorf("%w: workload %q is not in the inventory (known: %v)", ErrInvalid, Clip(req.Workload), Names(s.inv.Workloads()))
	}
	rev := req.Revision
	if rev == 0 {
		last, err := s.store.LatestRevision(req.Workload)
		if err != nil {
			return PromoteResult{}, fmt.Errorf("%w: workload %s has no policy revision yet: propose or apply one first", ErrInvalid, req.Workload)
		}
		rev = last.Number
	} else if _, err := s.store.Revision(req.Workload, rev); err != nil {
		return PromoteResult{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	ev := model.Promotion{Who: who, Workload: req.Workload, Action: model.ActionPromote, Reason: req.Reason}
	var cov *model.Coverage
	var warnings []string
	if req.To == model.ModeEnforce {
		cur, err := s.store.State(req.Workload)
		if err != nil {
			return PromoteResult{}, err
		}
		if cur.Mode != model.ModeEnforce || cur.Revision != rev {
			c, reasons, err := s.gate(req, rev)
			if err != nil {
				return PromoteResult{}, err
			}
			cov = c
			if len(reasons) > 0 && !req.Force {
				return PromoteResult{Coverage: cov}, &CoverageError{Workload: req.Workload, Reasons: reasons, Coverage: *cov}
			}
			ev.Forced, warnings = reasons, reasons
		}
	}
	res, err := s.record(ctx, ev, func(store.WorkloadState) (model.Mode, int) { return req.To, rev })
	res.Coverage, res.Warnings = cov, warnings
	return res, err
}

// gate returns the coverage of req.Workload in the window of its
// revision rev and the reasons to refuse enforcing it (see Promote); a
// nil coverage for a revision the gate does not apply to.
func (s *Service) gate(req PromoteRequest, rev int) (*model.Coverage, []string, error) {
	r, err := s.store.Revision(req.Workload, rev)
	if err != nil {
		return nil, nil, err
	}
	if r.Origin != store.OriginProposed {
		return nil, nil, nil
	}
	minObs := req.MinObserved
	if minObs == 0 {
		minObs = s.cfg.MinObserved
	}
	ns, _, _ := strings.Cut(req.Workload, "/")
	scope := []string{req.Workload}
	for _, w := range s.inv.Workloads() {
		if w != req.Workload && strings.HasPrefix(w, ns+"/") {
			scope = append(scope, w)
		}
	}
	covs, err := s.coverageAt(scope, r.Window, r.CreatedAt)
	if err != nil {
		return nil, nil, err
	}
	c, reasons := EnforceGate(req.Workload, covs, r.Window, minObs)
	return &c, reasons, nil
}

// record records ev, a change of ev.Workload from its current state cur to
// the mode and revision to(cur), and waits for the dataplane. When the
// workload is already there nothing is recorded and the node is not asked
// again: the result is Unchanged. The check and the record are one step:
// a change by someone else in between makes it read the state again (a
// few times, then the store's ErrConflict).
func (s *Service) record(ctx context.Context, ev model.Promotion, to func(cur store.WorkloadState) (model.Mode, int)) (PromoteResult, error) {
	for attempt := 1; ; attempt++ {
		cur, err := s.store.State(ev.Workload)
		if err != nil {
			return PromoteResult{}, err
		}
		ev.ToMode, ev.ToRevision = to(cur)
		if cur.Mode == ev.ToMode && cur.Revision == ev.ToRevision {
			return s.unchanged(cur)
		}
		ev.At = time.Now().UTC()
		p, err := s.store.Record(ev, &cur)
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return PromoteResult{}, err
		}
		s.changes.Publish(TopicHistory, TopicStatus)
		return s.converge(ctx, p)
	}
}

// unchanged answers a request for the state cur already is: the event
// that set it (none for a workload never promoted) and whether the
// workload's endpoints hold their rule sets, as far as the node knows.
func (s *Service) unchanged(cur store.WorkloadState) (PromoteResult, error) {
	res := PromoteResult{Unchanged: true, Promotion: model.Promotion{Workload: cur.Workload, FromMode: cur.Mode, ToMode: cur.Mode,
		FromRevision: cur.Revision, ToRevision: cur.Revision, At: cur.Since}}
	if cur.Seq != 0 {
		hist, err := s.store.History(cur.Workload)
		if err != nil {
			return PromoteResult{}, err
		}
		for _, p := range hist {
			if p.Seq == cur.Seq {
				res.Promotion = p
			}
		}
	}
	s.endpointErrors(&res)
	return res, nil
}

// notNegative refuses a negative revision number n given in field, with
// what zero means in that field.
func notNegative(field string, n int, zero string) error {
	if n < 0 {
		return fmt.Errorf("%w: %s: %d is negative (revisions are 1, 2, ...; %s)", ErrInvalid, field, n, zero)
	}
	return nil
}

// RollbackRequest asks to undo a workload's last promotion (ToRevision 0),
// or to return to revision ToRevision (keeping the current mode); a
// negative ToRevision is refused.
type RollbackRequest struct {
	Workload   string `json:"workload"`
	ToRevision int    `json:"toRevision,omitempty"`
	Reason     string `json:"reason"`
}

// Rollback records a rollback and waits for the dataplane like Promote;
// a rollback to the revision in force is Unchanged. Without ToRevision it undoes the most recent change still in effect (a
// promotion, or a rollback to a revision): the workload returns to the
// state before it. Repeated plain rollbacks walk further back.
func (s *Service) Rollback(ctx context.Context, req RollbackRequest, who string) (PromoteResult, error) {
	if err := notNegative("toRevision", req.ToRevision, "0 to undo the last change"); err != nil {
		return PromoteResult{}, err
	}
	if len(s.inv.Workload(req.Workload)) == 0 {
		return PromoteResult{}, fmt.Errorf("%w: workload %q is not in the inventory (known: %v)", ErrInvalid, Clip(req.Workload), Names(s.inv.Workloads()))
	}
	if req.Reason == "" {
		req.Reason = "rollback"
	}
	ev := model.Promotion{Who: who, Workload: req.Workload, Action: model.ActionRollback, Reason: req.Reason}
	if req.ToRevision > 0 {
		if _, err := s.store.Revision(req.Workload, req.ToRevision); err != nil {
			return PromoteResult{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return s.record(ctx, ev, func(cur store.WorkloadState) (model.Mode, int) { return cur.Mode, req.ToRevision })
	}
	cur, err := s.store.State(req.Workload)
	if err != nil {
		return PromoteResult{}, err
	}
	hist, err := s.store.History(req.Workload)
	if err != nil {
		return PromoteResult{}, err
	}
	target := undoTarget(hist)
	if target == nil {
		return PromoteResult{}, fmt.Errorf("%w: workload %s has no promotion to roll back", ErrInvalid, req.Workload)
	}
	ev.At, ev.ToMode, ev.ToRevision, ev.Undoes = time.Now().UTC(), target.FromMode, target.FromRevision, target.Seq
	p, err := s.store.Record(ev, &cur)
	if err != nil {
		return PromoteResult{}, err
	}
	return s.converge(ctx, p)
}

// undoTarget returns the latest event of hist that is not itself an undo
// and that no later undo reverted: the most recent change still in effect,
// whether a promotion or a rollback to a revision.
func undoTarget(hist []model.Promotion) *model.Promotion {
	undone := map[uint64]bool{}
	for i := len(hist) - 1; i >= 0; i-- {
		p := hist[i]
		if p.Undoes != 0 {
			undone[p.Undoes] = true
			continue
		}
		if !undone[p.Seq] {
			return &hist[i]
		}
	}
	return nil
}

// converge hands the new policies to the node and waits (at most
// ConvergeTimeout) until the endpoints whose rule sets changed are
// applied; the result is converged when every endpoint of p's workload
// holds its rule set.
func (s *Service) converge(ctx context.Context, p model.Promotion) (PromoteResult, error) {
	res := PromoteResult{Promotion: p}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ConvergeTimeout)
	defer cancel()
	if err := s.Enforce(wctx); err != nil {
		s.log.Warn("converge after promotion", "workload", p.Workload, "seq", p.Seq, "err", err)
		return res, nil // recorded; convergence not confirmed
	}
	s.endpointErrors(&res)
	return res, nil
}

// endpointErrors sets res converged unless an endpoint of its workload
// failed to apply its rule set, which Errors then names.
func (s *Service) endpointErrors(res *PromoteResult) {
	res.Converged = true
	for _, e := range s.inv.Workload(res.Promotion.Workload) {
		if err := s.node.Applied(e.Netns).Err; err != nil {
			if res.Errors == nil {
				res.Errors = map[string]string{}
			}
			res.Errors[e.Netns] = err.Error()
			res.Converged = false
		}
	}
}
