package controller

// Details for the web UI's panes (GET /v1/edges/detail,
// /v1/workloads/detail, /v1/matrix): each is a composition of answers the
// CLI gives one by one (status, history, policy explain, policy diff,
// policy matrix, policy show), computed by the same functions, plus the
// link from a rule to the revision it came from and the observed edges
// that produced it (the rule's provenance).

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// RevisionRef names a stored revision without its policy.
type RevisionRef struct {
	Workload  string       `json:"workload"`
	Number    int          `json:"number"`
	Origin    store.Origin `json:"origin"`
	CreatedAt time.Time    `json:"createdAt"`
	CreatedBy string       `json:"createdBy"`
	// Window is the observation window of a proposed revision (0: all).
	Window time.Duration `json:"window,omitempty"`
}

func revisionRef(r store.Revision) *RevisionRef {
	return &RevisionRef{Workload: r.Workload, Number: r.Number, Origin: r.Origin, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy, Window: r.Window}
}

// EdgeRef is an observed edge a rule was inferred from.
type EdgeRef struct {
	// Key is the edge's key in the rule's provenance
	// (v1alpha1.Observed.Edges: identities with their labels).
	Key string `json:"key"`
	// Source, Destination, Protocol and Port name the stored edge of that
	// key as GET /v1/edges does ("shop/web"; an external peer by DNS name
	// or address); absent when no stored edge has the key any more.
	Source      string         `json:"source,omitempty"`
	Destination string         `json:"destination,omitempty"`
	Protocol    model.Protocol `json:"protocol,omitempty"`
	Port        uint16         `json:"port,omitempty"`
}

// edgeIndex maps provenance keys to stored edges.
type edgeIndex map[string]model.Edge

func (s *Service) edgeIndex() (edgeIndex, error) {
	edges, err := s.obs.Edges(time.Time{})
	if err != nil {
		return nil, err
	}
	return indexEdges(edges), nil
}

// indexEdges indexes edges (all stored ones) by provenance key.
func indexEdges(edges []model.Edge) edgeIndex {
	idx := edgeIndex{}
	for _, e := range edges {
		if k, ok := policies.ProvenanceKey(e); ok {
			idx[k] = e
		}
	}
	return idx
}

// refs returns the edges of provenance p as EdgeRefs (never nil).
func (idx edgeIndex) refs(p v1alpha1.Provenance) []EdgeRef {
	out := []EdgeRef{}
	if p.Observed == nil {
		return out
	}
	for _, k := range p.Observed.Edges {
		r := EdgeRef{Key: k}
		if e, ok := idx[k]; ok {
			r.Source, r.Destination, r.Protocol, r.Port = e.Source.String(), e.Destination.String(), e.Protocol, e.Port
		}
		out = append(out, r)
	}
	return out
}

// RuleOrigin is where one rule of a policy in force comes from: the
// nanosegment's workload, mode and revision (or the NetworkPolicy's
// record), the rule's provenance, and the observed edges it was inferred
// from.
type RuleOrigin struct {
	// Direction is Ingress or Egress: the direction the rule allows.
	Direction model.Direction `json:"direction"`
	// Rule is the policy and the rule's id.
	Rule policies.RuleRef `json:"rule"`
	// Workload, Mode and Revision: the nanosegment's workload, its mode
	// and the revision in force (nanosegments only).
	Workload string       `json:"workload,omitempty"`
	Mode     model.Mode   `json:"mode,omitempty"`
	Revision *RevisionRef `json:"revision,omitempty"`
	// NetworkPolicy is the record in force of a NetworkPolicy's rule:
	// its revision, when and by whom (the policy left out).
	NetworkPolicy *store.NetworkPolicyRecord `json:"networkPolicy,omitempty"`
	// Provenance says why the rule exists (declared, observed, widened).
	Provenance *v1alpha1.Provenance `json:"provenance,omitempty"`
	// Edges are the observed edges the rule was inferred from; empty for
	// a declared rule.
	Edges []EdgeRef `json:"edges"`
}

// EdgeDetail is one edge as the web UI's edge pane shows it: its
// observed traffic, the policies' verdict now (Explain's answer) and
// where each rule that decided comes from.
type EdgeDetail struct {
	// Key is "<source> -> <destination> <PROTO>/<port>" in the terms of
	// the query ("shop/web -> shop/db TCP/5432"); ProvenanceKey is the
	// key rule provenance gives the stored edge (EdgeRef.Key), when one
	// is stored.
	Key           string         `json:"key"`
	ProvenanceKey string         `json:"provenanceKey,omitempty"`
	Source        string         `json:"source"`
	Destination   string         `json:"destination"`
	Protocol      model.Protocol `json:"protocol"`
	Port          uint16         `json:"port"`
	// Observed is false when no stored edge matches (the answer then
	// explains a connection nothing observed).
	Observed bool `json:"observed"`
	// Traffic sums the stored edges that match (one per peer address of
	// an external peer known by name): flows, failed, packets and bytes
	// each way, first and last seen, and the verdict split.
	model.Traffic
	// Explain is the verdict of the policies in force (GET /v1/explain);
	// ExplainError says why there is none (an end the policies cannot
	// evaluate, such as an external peer without a known address).
	Explain      *policies.Evaluation `json:"explain,omitempty"`
	ExplainError string               `json:"explainError,omitempty"`
	// Rules are the origins of the rules that allow the connection, per
	// direction.
	Rules []RuleOrigin `json:"rules"`
	// Denying are, for each direction that denies or audit-denies it, the
	// policies that isolate it there (no rule of theirs allows it), with
	// their workload, mode and revision or NetworkPolicy record; Rule.Rule
	// is empty (their default decided). A ClusterNetworkPolicy rule that
	// decided is in Explain only.
	Denying []RuleOrigin `json:"denying"`
}

// EdgeKey returns "<source> -> <destination> <PROTO>/<port>".
func EdgeKey(src, dst string, proto model.Protocol, port uint16) string {
	return fmt.Sprintf("%s -> %s %s/%d", src, dst, proto, port)
}

// ParsePort parses "5432/TCP" or "TCP/5432" (protocol TCP, UDP, SCTP,
// ICMP, ICMPv6 in any case; "5432" alone is TCP). Errors wrap ErrInvalid
// and name field.
func ParsePort(field, s string) (model.Protocol, uint16, error) {
	a, b, ok := strings.Cut(s, "/")
	num, proto := a, b
	if _, err := strconv.Atoi(a); err != nil && ok {
		num, proto = b, a
	}
	if !ok {
		proto = string(model.ProtocolTCP)
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s: %q is not PORT/PROTOCOL such as 5432/TCP", ErrInvalid, field, Clip(s))
	}
	p, err := model.ParseProtocol(proto)
	if !slices.Contains([]model.Protocol{model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP, model.ProtocolICMP, model.ProtocolICMPv6}, p) {
		err = model.ErrUnknownWord
	}
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s: %q: protocol %q is not TCP, UDP, SCTP, ICMP or ICMPv6", ErrInvalid, field, Clip(s), Clip(proto))
	}
	return p, uint16(n), nil
}

// EdgeDetail answers the edge from workload from ("shop/web") to peer to
// (a workload, an external peer's DNS name or address) on port
// ("5432/TCP" or "TCP/5432"), over the stored edges of window (0: all).
// Errors: ErrInvalid for a malformed argument or an unknown source
// workload.
func (s *Service) EdgeDetail(from, to, port string, window time.Duration) (EdgeDetail, error) {
	proto, num, err := ParsePort("port", port)
	if err != nil {
		return EdgeDetail{}, err
	}
	if from == "" || to == "" {
		return EdgeDetail{}, fmt.Errorf("%w: from and to: both required (a workload such as shop/web, a DNS name or an address)", ErrInvalid)
	}
	d := EdgeDetail{Key: EdgeKey(from, to, proto, num), Source: from, Destination: to, Protocol: proto, Port: num, Rules: []RuleOrigin{}, Denying: []RuleOrigin{}}
	edges, err := s.obs.Edges(windowStart(window))
	if err != nil {
		return d, err
	}
	// The addresses to explain with: an end known by name is explained
	// at an address it was seen at.
	fromRef, toRef := from, to
	for _, e := range edges {
		if e.Protocol != proto || e.Port != num || !peerIs(e.Source, from) || !peerIs(e.Destination, to) {
			continue
		}
		d.Observed = true
		d.Traffic.Add(e.Traffic)
		if k, ok := policies.ProvenanceKey(e); ok {
			d.ProvenanceKey = k
		}
		if e.Source.External && e.Source.Addr.IsValid() {
			fromRef = e.Source.Addr.String()
		}
		if e.Destination.External && e.Destination.Addr.IsValid() {
			toRef = e.Destination.Addr.String()
		}
	}
	eproto := proto
	if eproto == model.ProtocolICMPv6 {
		eproto = model.ProtocolICMP
	}
	ev, err := s.Explain(fromRef, toRef, fmt.Sprintf("%d/%s", num, eproto))
	if err != nil {
		d.ExplainError = strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
		return d, nil
	}
	d.Explain = &ev
	origins, err := s.ruleOrigins()
	if err != nil {
		return d, err
	}
	if window == 0 {
		origins.edges = indexEdges(edges) // every stored edge: read once
	} else if origins.edges, err = s.edgeIndex(); err != nil {
		return d, err
	}
	for _, dir := range []policies.DirectionEvaluation{ev.Egress, ev.Ingress} {
		for _, r := range dir.Allowing {
			d.Rules = append(d.Rules, origins.of(dir.Direction, r))
		}
		if dir.Action != model.VerdictAllow && dir.ClusterRule == nil {
			for _, p := range dir.Isolating {
				d.Denying = append(d.Denying, origins.of(dir.Direction, policies.RuleRef{Policy: p}))
			}
		}
	}
	return d, nil
}

// peerIs reports whether p is the peer named ref: a workload key, or an
// external peer's DNS name (any case, trailing dot or not) or address.
func peerIs(p model.Peer, ref string) bool {
	if !p.External {
		return p.String() == ref
	}
	r := strings.ToLower(strings.TrimSuffix(ref, "."))
	return p.ExternalKey() == r || (p.Addr.IsValid() && p.Addr.String() == ref)
}

// origins indexes the policies in force for RuleOrigin.
type origins struct {
	segs map[policies.PolicyRef]ActivePolicy
	revs map[string]store.Revision // by workload: the revision in force
	nps  map[policies.PolicyRef]store.NetworkPolicyRecord
	// edges resolves provenance keys.
	edges edgeIndex
}

func (s *Service) ruleOrigins() (*origins, error) {
	o := &origins{segs: map[policies.PolicyRef]ActivePolicy{}, revs: map[string]store.Revision{}, nps: map[policies.PolicyRef]store.NetworkPolicyRecord{}}
	active, err := s.Active()
	if err != nil {
		return nil, err
	}
	for _, a := range active {
		ref := policies.PolicyRef{Kind: "NanoSegment", Namespace: a.Policy.Namespace, Name: a.Policy.Name}
		o.segs[ref] = a
		if r, err := s.store.Revision(a.State.Workload, a.State.Revision); err == nil {
			o.revs[a.State.Workload] = r
		}
	}
	recs, err := s.store.NetworkPolicies()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		r.Policy = nil
		o.nps[policies.PolicyRef{Kind: "NetworkPolicy", Namespace: r.Namespace, Name: r.Name}] = r
	}
	return o, nil
}

// of returns the origin of rule r allowing direction dir.
func (o *origins) of(dir model.Direction, r policies.RuleRef) RuleOrigin {
	out := RuleOrigin{Direction: dir, Rule: r, Edges: []EdgeRef{}}
	if rec, ok := o.nps[r.Policy]; ok {
		out.NetworkPolicy = &rec
		return out
	}
	a, ok := o.segs[r.Policy]
	if !ok {
		return out
	}
	out.Workload, out.Mode = a.State.Workload, a.State.Mode
	if rev, ok := o.revs[a.State.Workload]; ok {
		out.Revision = revisionRef(rev)
	}
	if rule := findRule(a.Policy, dir, r.Rule); rule != nil {
		p := rule.Provenance
		out.Provenance = &p
		out.Edges = o.edges.refs(p)
	}
	return out
}

// findRule returns the rule of seg with id in direction dir, or nil.
func findRule(seg *v1alpha1.NanoSegment, dir model.Direction, id string) *v1alpha1.Rule {
	rules := seg.Spec.Ingress
	if dir == model.Egress {
		rules = seg.Spec.Egress
	}
	for i := range rules {
		if rules[i].ID == id {
			return &rules[i]
		}
	}
	return nil
}

// maxCounterIDLen is the longest rule id the dataplane's counters carry
// (internal/verdictlog.MaxIDLen).
const maxCounterIDLen = 100

// counterID returns the id the kernel's counters carry for rule of the
// nanosegment ns/name: compile.RuleID's "seg/<ns>/<name>/<rule>",
// shortened with its FNV-1a hash beyond maxCounterIDLen (a test checks
// that the two agree; controller may not import compile).
func counterID(ns, name, rule string) string {
	id := "seg/" + ns + "/" + name + "/" + rule
	if len(id) > maxCounterIDLen {
		h := fnv.New32a()
		h.Write([]byte(id))
		id = fmt.Sprintf("%s-%08x", id[:maxCounterIDLen-9], h.Sum32())
	}
	return id
}

// RuleDetail is one rule of a workload's policy with its kernel counters
// and origin.
type RuleDetail struct {
	Direction model.Direction `json:"direction"`
	ID        string          `json:"id"`
	Peers     []v1alpha1.Peer `json:"peers,omitempty"`
	Ports     []v1alpha1.Port `json:"ports,omitempty"`
	// CounterID is the id the kernel's counters carry for the rule.
	CounterID string `json:"counterID"`
	// Packets and Bytes are the kernel's hit counters summed over the
	// workload's endpoints (connection-opening packets); Hit is Packets > 0.
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Hit     bool   `json:"hit"`
	// Provenance and Edges: why the rule exists and the observed edges it
	// was inferred from.
	Provenance v1alpha1.Provenance `json:"provenance"`
	Edges      []EdgeRef           `json:"edges"`
}

// RuleChange is a rule a proposed revision adds, removes or changes
// against the revision in force.
type RuleChange struct {
	Direction model.Direction `json:"direction"`
	ID        string          `json:"id"`
	// Change is added, removed or changed (same id, other peers or ports).
	Change string `json:"change"`
	// Before is the rule in force (removed, changed), After the proposed
	// one (added, changed).
	Before *v1alpha1.Rule `json:"before,omitempty"`
	After  *v1alpha1.Rule `json:"after,omitempty"`
}

// ProposedDiff is a workload's latest revision against the one in force.
type ProposedDiff struct {
	// Revision is the latest revision; Active the number in force (0:
	// none).
	Revision RevisionRef `json:"revision"`
	Active   int         `json:"active"`
	// Rules are the rules added, removed and changed, by direction and id.
	Rules []RuleChange `json:"rules"`
	// Report is `policy diff --workload` (GET /v1/diff): proposal rules
	// that allow edges no active rule does, active rules unused, edges
	// the policies in force deny or audit-deny.
	Report policies.DiffReport `json:"report"`
}

// WorkloadDetail is one workload as the web UI's workload pane shows it.
type WorkloadDetail struct {
	// Status is the workload's line of GET /v1/status: mode, revision,
	// effective mode, endpoints and their sync, counters, denials,
	// coverage.
	Status WorkloadStatus `json:"status"`
	// Revision is the revision in force (absent: none promoted).
	Revision *RevisionRef `json:"revision,omitempty"`
	// Rules are the rules of the revision in force with their counters
	// and origins; Unhit the ids of those the kernel never counted.
	Rules []RuleDetail `json:"rules"`
	Unhit []string     `json:"unhit"`
	// Proposed is the latest revision when it is not the one in force.
	Proposed *ProposedDiff `json:"proposed,omitempty"`
	// WouldBreak are the audit-denied edges since the last promotion:
	// what enforcing would break (Status.Breaks with verdict audit-deny).
	WouldBreak []DeniedCount `json:"wouldBreak"`
	// History is the workload's promotions, oldest first.
	History []model.Promotion `json:"history"`
}

// WorkloadDetail answers the workload pane for workload ("shop/db").
// Errors: ErrInvalid when it is not a workload of the inventory.
func (s *Service) WorkloadDetail(workload string) (WorkloadDetail, error) {
	if workload == "" || len(s.inv.Workload(workload)) == 0 {
		return WorkloadDetail{}, fmt.Errorf("%w: workload: %q is not a workload of the inventory (known: %v)", ErrInvalid, Clip(workload), Names(s.inv.Workloads()))
	}
	d := WorkloadDetail{Rules: []RuleDetail{}, Unhit: []string{}, WouldBreak: []DeniedCount{}}
	one, err := s.status([]string{workload})
	if err != nil {
		return d, err
	}
	d.Status = one[0]
	for _, b := range d.Status.Breaks {
		if b.Verdict == model.VerdictAuditDeny {
			d.WouldBreak = append(d.WouldBreak, b)
		}
	}
	if d.History, err = s.History(workload); err != nil {
		return d, err
	}
	hits := map[string]RuleHit{}
	for _, h := range d.Status.RuleHits {
		hits[h.RuleID] = h
	}
	var active *v1alpha1.NanoSegment
	idx, err := s.edgeIndex()
	if err != nil {
		return d, err
	}
	if d.Status.Revision > 0 {
		rev, err := s.store.Revision(workload, d.Status.Revision)
		if err != nil {
			return d, err
		}
		d.Revision, active = revisionRef(rev), rev.Policy
		for _, dir := range []model.Direction{model.Ingress, model.Egress} {
			rules := active.Spec.Ingress
			if dir == model.Egress {
				rules = active.Spec.Egress
			}
			for _, r := range rules {
				rd := RuleDetail{Direction: dir, ID: r.ID, Peers: r.Peers, Ports: r.Ports, Provenance: r.Provenance, Edges: idx.refs(r.Provenance),
					CounterID: counterID(active.Namespace, active.Name, r.ID)}
				h := hits[rd.CounterID]
				rd.Packets, rd.Bytes, rd.Hit = h.Packets, h.Bytes, h.Packets > 0
				if !rd.Hit {
					d.Unhit = append(d.Unhit, rd.ID)
				}
				d.Rules = append(d.Rules, rd)
			}
		}
	}
	latest, err := s.store.LatestRevision(workload)
	if err == nil && latest.Number != d.Status.Revision {
		p := &ProposedDiff{Revision: *revisionRef(latest), Active: d.Status.Revision, Rules: ruleChanges(active, latest.Policy)}
		if p.Report, err = s.Diff(workload, 0); err != nil {
			return d, err
		}
		d.Proposed = p
	}
	return d, nil
}

// ruleChanges compares the rules of before (nil: none) and after by
// direction and id.
func ruleChanges(before, after *v1alpha1.NanoSegment) []RuleChange {
	out := []RuleChange{}
	for _, dir := range []model.Direction{model.Ingress, model.Egress} {
		var b, a []v1alpha1.Rule
		if before != nil {
			b = before.Spec.Ingress
			if dir == model.Egress {
				b = before.Spec.Egress
			}
		}
		a = after.Spec.Ingress
		if dir == model.Egress {
			a = after.Spec.Egress
		}
		old := map[string]*v1alpha1.Rule{}
		for i := range b {
			old[b[i].ID] = &b[i]
		}
		for i := range a {
			r := &a[i]
			o, ok := old[r.ID]
			delete(old, r.ID)
			switch {
			case !ok:
				out = append(out, RuleChange{Direction: dir, ID: r.ID, Change: "added", After: r})
			case !sameRule(o, r):
				out = append(out, RuleChange{Direction: dir, ID: r.ID, Change: "changed", Before: o, After: r})
			}
		}
		for i := range b {
			if _, gone := old[b[i].ID]; gone {
				out = append(out, RuleChange{Direction: dir, ID: b[i].ID, Change: "removed", Before: &b[i]})
			}
		}
	}
	return out
}

// sameRule reports whether a and b allow the same peers and ports,
// whatever their provenance.
func sameRule(a, b *v1alpha1.Rule) bool {
	x, y := a.DeepCopy(), b.DeepCopy()
	x.Provenance, y.Provenance = v1alpha1.Provenance{}, v1alpha1.Provenance{}
	return fmt.Sprintf("%+v", *x) == fmt.Sprintf("%+v", *y)
}
