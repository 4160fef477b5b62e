package controller

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// WorkloadStatus is one workload as `nanoseg status` shows it.
type WorkloadStatus struct {
	Workload string     `json:"workload"`
	Mode     model.Mode `json:"mode"`
	Revision int        `json:"revision"`
	Since    time.Time  `json:"since,omitzero"`
	// NetworkPolicies names the NetworkPolicies in force that select the
	// workload ("NetworkPolicy namespace/name", sorted): they are enforced
	// whatever Mode says, which is the mode of its nanosegment.
	NetworkPolicies []string `json:"networkPolicies,omitempty"`
	// CapturedBy lists the nanosegments in force of other workloads whose
	// selector selects this workload: they apply to its endpoints in
	// their mode, whatever Mode and Revision (its own policy's) say.
	CapturedBy []Capture `json:"capturedBy,omitempty"`
	// EffectiveMode is the strongest mode of the nanosegments that select
	// the workload, its own and CapturedBy's: what its endpoints enforce
	// (NetworkPolicies enforce whatever it says).
	EffectiveMode model.Mode `json:"effectiveMode"`
	// Endpoints are the workload's namespaces with their dataplane state.
	Endpoints []EndpointState `json:"endpoints"`
	// RuleHits are the kernel's counters per rule id, summed over the
	// workload's endpoints: connection-opening packets and their bytes.
	RuleHits []RuleHit `json:"ruleHits,omitempty"`
	// DefaultHits are the kernel's counters of the default verdict, summed
	// over the workload's endpoints, by direction: the packets no rule
	// allowed (dropped in enforce, let through and logged in audit,
	// unmatched in observe) since each table was created. They include
	// what no verdict event records: packets while no agent ran (the
	// verdict log keeps nothing for an absent reader) and denies beyond
	// the deny log's rate limit.
	DefaultHits []DefaultHit `json:"defaultHits,omitempty"`
	// WouldDeny counts audit-deny events and Denied deny events that
	// involve the workload since its last promotion.
	WouldDeny int `json:"wouldDeny"`
	Denied    int `json:"denied"`
	// Breaks lists what enforcing would break (audit mode) or what
	// enforcement blocks: denied edges since promotion, most frequent first.
	Breaks []DeniedCount `json:"breaks,omitempty"`
	// Coverage is how well the workload has been observed, over
	// everything observed (model.Coverage with no window).
	Coverage *model.Coverage `json:"coverage,omitempty"`
	// AuditedDenies names the ClusterNetworkPolicy Deny rules that apply
	// to the workload but are logged as audit-deny, not dropped, because
	// it is in audit mode (policies.PolicySet.AuditedDenies, of its first
	// endpoint): they are enforced once it is promoted to enforce.
	AuditedDenies []string `json:"auditedDenies,omitempty"`
}

// EndpointState is one endpoint's dataplane state.
type EndpointState struct {
	Netns  string `json:"netns"`
	InSync bool   `json:"inSync"` // the kernel holds the desired rule set
	Error  string `json:"error,omitempty"`
	// Adopted is the mode (audit, enforce) of a table the agent found in
	// the endpoint, unknown to its store, and keeps as found until an
	// operator promotes the workload ("" when not adopted).
	Adopted string `json:"adopted,omitempty"`
	// Unreported is true when nothing reports the endpoint's state
	// (EndpointSync.Unreported): InSync false then means unknown, not
	// out of sync.
	Unreported bool `json:"unreported,omitempty"`
}

// RuleHit is one rule id's counters.
type RuleHit struct {
	RuleID  string `json:"ruleID"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// DefaultHit is one direction's default verdict counter.
type DefaultHit struct {
	Direction model.Direction `json:"direction"` // Ingress, Egress
	Packets   uint64          `json:"packets"`
	Bytes     uint64          `json:"bytes"`
}

// DeniedCount is a (source, destination, protocol, port) with how often it
// was audit-denied or denied.
type DeniedCount struct {
	Verdict     model.Verdict  `json:"verdict"`
	Source      string         `json:"source"`
	Destination string         `json:"destination"`
	Protocol    model.Protocol `json:"protocol"`
	Port        uint16         `json:"port"`
	Count       int            `json:"count"` // connection attempts
	// RuleID lists, comma-separated, the rule ids the verdict records
	// carried: for a default verdict the id of the policies that isolated
	// the endpoint (compile.DefaultID); records of agents before default
	// ids carry the rule set's name.
	RuleID string `json:"ruleID"`
	// DecidedBy names the policies those ids stand for ("NetworkPolicy
	// shop/default-deny"), sorted; empty when no id is known to the
	// node's table (policies no longer in force, older records).
	DecidedBy []string `json:"decidedBy,omitempty"`
}

// auditedDenies returns, per workload of wls in audit mode, the
// ClusterNetworkPolicy Deny rules logged as audit-deny, not dropped, on
// its first endpoint (policies.PolicySet.AuditedDenies). The inventory's
// world is built only when some ClusterNetworkPolicy has a Deny rule.
func (s *Service) auditedDenies(wls []string) (map[string][]string, error) {
	set, err := s.inForceSet()
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(set.ClusterPolicies(), func(cp *policies.ClusterPolicy) bool {
		return slices.ContainsFunc(slices.Concat(cp.Rules[0], cp.Rules[1]), func(r policies.ClusterRule) bool { return r.Action == cnpv1alpha2.ActionDeny })
	}) {
		return nil, nil
	}
	world, err := s.inv.World(s.knownNames())
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, w := range wls {
		eps := s.inv.Workload(w)
		if len(eps) == 0 {
			continue
		}
		p, ok := world.Pod(eps[0].Namespace, eps[0].Netns)
		if !ok {
			continue
		}
		ns, _ := world.Namespace(p.Namespace)
		for _, r := range set.AuditedDenies(ns.Labels, p) {
			out[w] = append(out[w], r.String())
		}
	}
	return out, nil
}

// sumCounts adds every counter of add to the one of the same key in sum.
func sumCounts[K comparable](sum map[K]evidence.Count, add map[K]evidence.Count) {
	for k, c := range add {
		t := sum[k]
		t.Packets += c.Packets
		t.Bytes += c.Bytes
		sum[k] = t
	}
}

// Status reports every workload of the inventory: its state, its
// endpoints' dataplane state and counters (read from the node), and the
// stored verdict events since its last promotion. It writes nothing (see
// CommitObservations).
func (s *Service) Status() ([]WorkloadStatus, error) {
	return s.status(s.inv.Workloads())
}

// status is Status of the workloads wls (keys of the inventory) only:
// the kernel is read for their endpoints alone.
func (s *Service) status(wls []string) ([]WorkloadStatus, error) {
	out := []WorkloadStatus{}
	nps, err := s.store.NetworkPolicies()
	if err != nil {
		return nil, err
	}
	var inForce []networkingv1.NetworkPolicy
	for _, r := range nps {
		inForce = append(inForce, *r.Policy)
	}
	ids, err := s.RuleIDs()
	if err != nil {
		return nil, err
	}
	covs, err := s.coverageAt(wls, 0, time.Now())
	if err != nil {
		return nil, err
	}
	caps, err := s.Captures()
	if err != nil {
		return nil, err
	}
	audited, err := s.auditedDenies(wls)
	if err != nil {
		return nil, err
	}
	for i, w := range wls {
		st, err := s.store.State(w)
		if err != nil {
			return nil, err
		}
		ws := WorkloadStatus{Workload: w, Mode: st.Mode, Revision: st.Revision, Since: st.Since, Coverage: &covs[i],
			CapturedBy: caps[w], EffectiveMode: effectiveMode(st.Mode, caps[w]), AuditedDenies: audited[w]}
		if eps := s.inv.Workload(w); len(eps) > 0 {
			ws.NetworkPolicies = networkPoliciesOf(inForce, eps[0].Namespace, eps[0].Labels)
		}
		hits := map[string]evidence.Count{}
		defaults := map[model.Direction]evidence.Count{}
		for _, e := range s.inv.Workload(w) {
			es := EndpointState{Netns: e.Netns}
			sync := s.node.Read(e.Netns, false)
			if sync.Err != nil {
				es.Error = sync.Err.Error()
			}
			es.Adopted, es.Unreported = sync.Adopted, sync.Unreported
			if sync.ReadErr != nil {
				es.Error = sync.ReadErr.Error()
			} else {
				es.InSync = sync.Known && sync.InSync
				sumCounts(hits, sync.Counters)
				sumCounts(defaults, sync.DefaultHits)
			}
			ws.Endpoints = append(ws.Endpoints, es)
		}
		for _, id := range slices.Sorted(maps.Keys(hits)) {
			ws.RuleHits = append(ws.RuleHits, RuleHit{RuleID: id, Packets: hits[id].Packets, Bytes: hits[id].Bytes})
		}
		for _, dir := range slices.Sorted(maps.Keys(defaults)) {
			ws.DefaultHits = append(ws.DefaultHits, DefaultHit{Direction: dir, Packets: defaults[dir].Packets, Bytes: defaults[dir].Bytes})
		}
		evs, err := s.obs.Verdicts(st.Since)
		if err != nil {
			return nil, err
		}
		ws.Breaks = countDenied(evs, w)
		for i := range ws.Breaks {
			ws.Breaks[i].DecidedBy = decidedBy(ids, strings.Split(ws.Breaks[i].RuleID, ","))
		}
		for _, b := range ws.Breaks {
			if b.Verdict == model.VerdictAuditDeny {
				ws.WouldDeny += b.Count
			} else {
				ws.Denied += b.Count
			}
		}
		out = append(out, ws)
	}
	return out, nil
}

// attempt is one connection attempt as the verdict log recorded it: the
// events of every end that logged it (the client's egress, the server's
// ingress).
type attempt struct {
	src, dst string
	proto    model.Protocol
	port     uint16
	// verdict is deny when any end denied it, else audit-deny.
	verdict model.Verdict
	events  []model.VerdictEvent
}

// edgeKey identifies the edge of an attempt as model.Edge.String names
// its peers: "source|destination|protocol|port".
func (a *attempt) edgeKey() string {
	return fmt.Sprintf("%s|%s|%s|%d", a.src, a.dst, a.proto, a.port)
}

// attempts groups the events of evs that keep accepts (nil: all) into
// connection attempts, in the order of their first event: events with the
// same source, destination, protocol, port and source port are one
// attempt; an event without a source port is an attempt of its own.
func attempts(evs []model.VerdictEvent, keep func(model.VerdictEvent) bool) []*attempt {
	type attemptKey struct {
		src, dst      string
		proto         model.Protocol
		srcPort, port uint16
		solo          int
	}
	var out []*attempt
	byKey := map[attemptKey]*attempt{}
	for i, e := range evs {
		if keep != nil && !keep(e) {
			continue
		}
		k := attemptKey{src: e.Source, dst: e.Destination, proto: e.Protocol, srcPort: e.SrcPort, port: e.Port}
		if e.SrcPort == 0 {
			k.solo = i + 1
		}
		at := byKey[k]
		if at == nil {
			at = &attempt{src: e.Source, dst: e.Destination, proto: e.Protocol, port: e.Port, verdict: e.Verdict}
			byKey[k] = at
			out = append(out, at)
		}
		if e.Verdict == model.VerdictDeny {
			at.verdict = model.VerdictDeny
		}
		at.events = append(at.events, e)
	}
	return out
}

// countDenied groups the verdict events that involve workload by verdict,
// source, destination, protocol and port, counting connection attempts: an
// attempt logged at both ends (the client's egress and the server's
// ingress) counts once, with the stronger verdict when the two ends' modes
// differ (deny over audit-deny), and RuleID lists every rule set that
// logged it.
func countDenied(evs []model.VerdictEvent, workload string) []DeniedCount {
	type group struct {
		verdict  model.Verdict
		src, dst string
		proto    model.Protocol
		port     uint16
	}
	groups := map[group]map[string]bool{}
	counts := map[group]int{}
	for _, at := range attempts(evs, func(e model.VerdictEvent) bool { return e.Source == workload || e.Destination == workload }) {
		g := group{at.verdict, at.src, at.dst, at.proto, at.port}
		if groups[g] == nil {
			groups[g] = map[string]bool{}
		}
		for _, e := range at.events {
			groups[g][e.RuleID] = true
		}
		n := 1
		if len(at.events) == 1 {
			n = at.events[0].Attempts() // an aggregate (a cluster's)
		}
		counts[g] += n
	}
	out := make([]DeniedCount, 0, len(counts))
	for g, n := range counts {
		ids := make([]string, 0, len(groups[g]))
		for id := range groups[g] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		out = append(out, DeniedCount{Verdict: g.verdict, Source: g.src, Destination: g.dst, Protocol: g.proto, Port: g.port,
			Count: n, RuleID: strings.Join(ids, ",")})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return fmt.Sprint(out[i]) < fmt.Sprint(out[j])
	})
	return out
}

// decidedBy returns the policy names the rule ids stand for in table
// (RuleIDs), sorted and without duplicates.
func decidedBy(table map[string][]string, ids []string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, table[id]...)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Diff compares the latest revision of workload (every workload for "")
// with the active policies over the stored edges of window (0: all). It
// writes nothing (see CommitObservations).
func (s *Service) Diff(workload string, window time.Duration) (policies.DiffReport, error) {
	edges, err := s.obs.Edges(windowStart(window))
	if err != nil {
		return policies.DiffReport{}, err
	}
	set, err := s.inForceSet()
	if err != nil {
		return policies.DiffReport{}, err
	}
	var proposal []v1alpha1.NanoSegment
	ws := s.inv.Workloads()
	if workload != "" {
		if len(s.inv.Workload(workload)) == 0 {
			return policies.DiffReport{}, fmt.Errorf("%w: workload %q is not in the inventory", ErrInvalid, Clip(workload))
		}
		ws = []string{workload}
	}
	for _, w := range ws {
		if r, err := s.store.LatestRevision(w); err == nil {
			proposal = append(proposal, *r.Policy)
		}
	}
	if workload != "" {
		// Only the workload's own edges: its rules and its flows.
		var mine []model.Edge
		for _, e := range edges {
			if e.Source.String() == workload || e.Destination.String() == workload {
				mine = append(mine, e)
			}
		}
		edges = mine
	}
	rep, err := policies.Diff(proposal, set, edges)
	if err != nil {
		return rep, err
	}
	if workload != "" {
		rep.Unused = s.rulesOf(workload, set, rep.Unused)
	}
	rep.Coverage, err = s.coverageAt(ws, window, time.Now())
	return rep, err
}

// rulesOf returns the rules of refs whose policy (in set) applies to an
// endpoint of workload: its namespace and its selector matches the
// endpoint's labels, as NetworkPolicy selects pods.
func (s *Service) rulesOf(workload string, set policies.PolicySet, refs []policies.RuleRef) []policies.RuleRef {
	applies := map[policies.PolicyRef]bool{}
	for _, ep := range s.inv.Workload(workload) {
		for _, p := range set.InNamespace(ep.Namespace) {
			if p.Selector != nil && p.Selector.Matches(labels.Set(ep.Labels)) {
				applies[p.Ref] = true
			}
		}
	}
	out := []policies.RuleRef{}
	for _, r := range refs {
		if applies[r.Policy] {
			out = append(out, r)
		}
	}
	return out
}
