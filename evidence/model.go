package evidence

import (
	"encoding/json"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// Bundle is everything one evidence export states. Times are UTC; counts
// are plain numbers whose unit the field name or its comment gives.
type Bundle struct {
	Meta         Meta            `json:"meta"`
	Inventory    []Workload      `json:"inventory"`
	Policies     Policies        `json:"policies"`
	Rules        []EndpointRules `json:"rules"`
	Counters     Counters        `json:"counters"`
	Denied       Denied          `json:"denied"`
	Reachability Reachability    `json:"reachability"`
	// Probes is the live probe run made for this export; nil when the
	// export was asked not to probe.
	Probes *ProbeRun `json:"probes,omitempty"`
	// Coverage is how well each workload in scope was observed in the
	// window (model.Coverage): the basis of every proposed policy, and
	// what a promotion to enforce was gated on.
	Coverage []model.Coverage `json:"coverage,omitempty"`
}

// Meta says when, where and over what the bundle was made.
type Meta struct {
	GeneratedAt time.Time `json:"generatedAt"`
	Host        string    `json:"host"`
	Agent       string    `json:"agent"` // nanoseg version of the agent
	Lab         string    `json:"lab,omitempty"`
	// Scope is "" (everything), a namespace ("shop") or a workload
	// ("shop/api").
	Scope string `json:"scope,omitempty"`
	// Window is the length of the reporting window; WindowStart its start
	// (GeneratedAt − Window).
	Window      Duration  `json:"window"`
	WindowStart time.Time `json:"windowStart"`
	RequestedBy string    `json:"requestedBy"`
	// Frameworks names the controls the bundle supports, by name only.
	Frameworks []string `json:"frameworks"`
}

// Duration is a time.Duration that encodes as its string ("1h0m0s").
type Duration time.Duration

// MarshalJSON encodes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON decodes a Go duration string. Errors: a malformed string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Workload is one workload identity in scope with its endpoints.
type Workload struct {
	Key       string `json:"key"` // "namespace/workload"
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Identity are the identity labels (noise labels removed).
	Identity  map[string]string `json:"identity"`
	Endpoints []Endpoint        `json:"endpoints"`
}

// Endpoint is one network namespace of a workload.
type Endpoint struct {
	Netns string                `json:"netns"`
	Addrs []string              `json:"addrs"`
	Ports []model.ContainerPort `json:"ports,omitempty"`
}

// Policies are the active revisions, the NetworkPolicies in force and the
// promotion history.
type Policies struct {
	Active []ActiveRevision `json:"active"`
	// NetworkPolicies are the NetworkPolicies in force (enforced since
	// they were applied, with Kubernetes NetworkPolicy semantics);
	// NetworkPolicyRecords every apply and deletion of them, oldest first
	// per policy.
	NetworkPolicies      []NetworkPolicyRecord `json:"networkPolicies"`
	NetworkPolicyRecords []NetworkPolicyRecord `json:"networkPolicyRecords"`
	// ClusterNetworkPolicies are the ClusterNetworkPolicies in force
	// (policy.networking.k8s.io/v1alpha2), in the order evaluation
	// consults them: the Admin tier (before every NetworkPolicy and
	// nanosegment), then the Baseline tier (after them), each by priority
	// and name; each rule with its kernel hit counters.
	ClusterNetworkPolicies []ClusterPolicy `json:"clusterNetworkPolicies"`
	// ClusterNetworkPolicyRecords are every apply and deletion of
	// ClusterNetworkPolicies (who, when, the policy as applied), sorted by
	// name, oldest first per policy; the latest apply of each one in force
	// is the record ClusterNetworkPolicies' Revision names.
	ClusterNetworkPolicyRecords []ClusterNetworkPolicyRecord `json:"clusterNetworkPolicyRecords"`
	// DefaultIDs expands the rule ids of default verdicts (the id a
	// denied connection's record carries: the policies that isolated the
	// endpoint) into policy names ("NetworkPolicy shop/default-deny").
	DefaultIDs map[string][]string `json:"defaultIDs,omitempty"`
	// History is every promotion event of the store, oldest first, as the
	// store holds it (hash-chained; model.VerifyPromotions checks it).
	History []model.Promotion `json:"history"`
	// Chain is the result of verifying History's hash chain at export.
	Chain ChainCheck `json:"chain"`
}

// ActiveRevision is the policy in force for one workload.
type ActiveRevision struct {
	Workload  string    `json:"workload"`
	Mode      string    `json:"mode"` // observe, audit or enforce
	Revision  int       `json:"revision"`
	Origin    string    `json:"origin"` // proposed or declared
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy"`
	// Since, PromotedBy, PromotionSeq and Reason describe the promotion
	// event that made this revision and mode active.
	Since        time.Time `json:"since"`
	PromotedBy   string    `json:"promotedBy"`
	PromotionSeq uint64    `json:"promotionSeq"`
	Reason       string    `json:"reason"`
	// Policy is the nanosegment as stored (Kubernetes-style object).
	Policy json.RawMessage `json:"policy,omitempty"`
}

// NetworkPolicyRecord is one stored apply or deletion of a NetworkPolicy.
type NetworkPolicyRecord struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Revision  int       `json:"revision"`
	Action    string    `json:"action"` // apply or delete
	At        time.Time `json:"at"`
	By        string    `json:"by"`
	// Policy is the NetworkPolicy as applied (Kubernetes object); empty
	// for a deletion.
	Policy json.RawMessage `json:"policy,omitempty"`
}

// ClusterNetworkPolicyRecord is one stored apply or deletion of a
// ClusterNetworkPolicy (store.ClusterNetworkPolicyRecord).
type ClusterNetworkPolicyRecord struct {
	Name     string `json:"name"`
	Revision int    `json:"revision"`
	Action   string `json:"action"` // apply or delete
	// At is when (UTC; the zero time when unknown: a record made by the
	// upgrade of a store that kept none); By who, as the agent
	// authenticated the caller.
	At time.Time `json:"at"`
	By string    `json:"by"`
	// Policy is the ClusterNetworkPolicy as applied (Kubernetes object);
	// empty for a deletion.
	Policy json.RawMessage `json:"policy,omitempty"`
}

// ClusterPolicy is one ClusterNetworkPolicy in force.
type ClusterPolicy struct {
	Name     string `json:"name"`
	Tier     string `json:"tier"` // Admin or Baseline
	Priority int32  `json:"priority"`
	// Revision, Since and By are the record that put it in force (see
	// Policies.ClusterNetworkPolicyRecords); Revision 0 when the store
	// has no record of it.
	Revision int       `json:"revision"`
	Since    time.Time `json:"since"`
	By       string    `json:"by"`
	// Rules are its rules, ingress then egress, each in written order
	// (first match wins within the policy).
	Rules []ClusterRule `json:"rules"`
	// Policy is the ClusterNetworkPolicy as applied (Kubernetes object).
	Policy json.RawMessage `json:"policy,omitempty"`
}

// ClusterRule is one rule of a ClusterNetworkPolicy and its hits: the
// sums of its kernel counters over the endpoints in scope whose tables
// hold it (the pods its subject selects). An Accept or Pass rule counts
// the connection-opening packets it let through or handed on, a Deny
// rule the packets it dropped (or, in audit mode, logged).
type ClusterRule struct {
	ID        string          `json:"id"` // ingress-<i> or egress-<i>
	Name      string          `json:"name,omitempty"`
	Direction model.Direction `json:"direction"`
	Action    string          `json:"action"` // Accept, Deny or Pass
	// RuleID is the dataplane rule id its counters and verdict-log
	// records carry ("cnp/admin/<policy>/<rule>").
	RuleID string `json:"ruleID"`
	// Endpoints is the number of endpoints in scope holding a counter
	// for it (0: no endpoint in scope is its subject).
	Endpoints     int    `json:"endpoints"`
	WindowPackets uint64 `json:"windowPackets"`
	WindowBytes   uint64 `json:"windowBytes"`
	TotalPackets  uint64 `json:"totalPackets"`
	TotalBytes    uint64 `json:"totalBytes"`
}

// ChainCheck is the outcome of a hash-chain verification.
type ChainCheck struct {
	Events   int    `json:"events"`
	Verified bool   `json:"verified"`
	Error    string `json:"error,omitempty"`
	Head     string `json:"head,omitempty"` // hash of the last event
}

// Rule is one allow entry of a rule set as programmed (one verdict-map
// element): direction, peer prefix, protocol, inclusive port range, rule id.
type Rule struct {
	Direction model.Direction `json:"direction"` // Ingress or Egress
	Peer      string          `json:"peer"`      // address prefix
	Protocol  model.Protocol  `json:"protocol"`  // TCP, UDP, SCTP, ICMP, ICMPv6, or "any"
	PortFrom  int             `json:"portFrom"`
	PortTo    int             `json:"portTo"`
	RuleID    string          `json:"ruleID"`
}

// EndpointRules is what one endpoint's table holds, read back from the
// kernel, next to what it should hold.
type EndpointRules struct {
	Netns    string `json:"netns"`
	Workload string `json:"workload"`
	// Present: the table exists in the endpoint's netns.
	Present bool `json:"present"`
	// Mode and Name are those the kernel's table implements.
	Mode string `json:"mode"`
	Name string `json:"name"`
	// DesiredMode is the mode of the desired rule set.
	DesiredMode string `json:"desiredMode"`
	// InSync: the kernel holds exactly the desired rule set.
	InSync bool `json:"inSync"`
	// Drift lists every difference in words; empty when InSync.
	Drift []string `json:"drift,omitempty"`
	// Missing are desired entries the kernel lacks; Extra entries the
	// kernel holds that are not desired.
	Missing    []Rule `json:"missing,omitempty"`
	Extra      []Rule `json:"extra,omitempty"`
	Programmed []Rule `json:"programmed"`
	Desired    []Rule `json:"desired"`
	Error      string `json:"error,omitempty"`
}

// Counters are the per-rule hit counters of every endpoint in scope.
type Counters struct {
	Rules []RuleCounter `json:"rules"`
	// Unused lists the rules with no hit in the window: candidates for
	// removal (a rule that never carries traffic widens the attack surface
	// for nothing).
	Unused []RuleCounter `json:"unused"`
}

// RuleCounter is one rule id's counter at one endpoint. The kernel counts
// the connection-opening packets (and their bytes) the rule let through;
// later packets of a connection take the conntrack fast path.
type RuleCounter struct {
	Workload string `json:"workload"`
	Netns    string `json:"netns"`
	RuleID   string `json:"ruleID"`
	// TotalPackets and TotalBytes are the kernel's counters now, counted
	// since the rule was programmed.
	TotalPackets uint64 `json:"totalPackets"`
	TotalBytes   uint64 `json:"totalBytes"`
	// WindowPackets and WindowBytes are the hits from CountedFrom to the
	// export: the difference to the first counter snapshot taken inside
	// the window, or the totals when there is none (Baseline "programmed").
	WindowPackets uint64    `json:"windowPackets"`
	WindowBytes   uint64    `json:"windowBytes"`
	CountedFrom   time.Time `json:"countedFrom,omitzero"`
	// Baseline is "snapshot" (CountedFrom is a snapshot's time),
	// "programmed" (since the rule was programmed, time unknown) or
	// "reset" (the counter restarted after the snapshot: the table was
	// re-created).
	Baseline string `json:"baseline"`
}

// Denied are the audit-denied and denied flows of the window.
type Denied struct {
	// Flows group the events by verdict, source, destination, protocol,
	// port and rule (the rule set that logged them).
	Flows []DeniedFlow `json:"flows"`
	// Events are the individual events, oldest first (bounded by the
	// dataplane's log rate limit: 10 per second per endpoint in enforce).
	Events []model.VerdictEvent `json:"events"`
	// Truncated: Events was cut to MaxEvents.
	Truncated bool `json:"truncated,omitempty"`
}

// MaxEvents bounds Denied.Events.
const MaxEvents = 10000

// DeniedFlow is a group of verdict events.
type DeniedFlow struct {
	Verdict     model.Verdict  `json:"verdict"` // audit-deny or deny
	Source      string         `json:"source"`
	Destination string         `json:"destination"`
	Protocol    model.Protocol `json:"protocol"`
	Port        int            `json:"port"`
	RuleID      string         `json:"ruleID"`
	// DecidedBy names the policies RuleID stands for (Policies.DefaultIDs).
	DecidedBy []string  `json:"decidedBy,omitempty"`
	Count     int       `json:"count"` // events
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
}

// Reachability compares which workload pairs could talk on the
// destination's declared ports with no policy at all (before enforcement)
// and with the active policies (now), as policy evaluation predicts.
type Reachability struct {
	// Paths are (source, destination, port) triples; Pairs are (source,
	// destination) workload pairs, reachable when any declared port is.
	PathsTotal  int `json:"pathsTotal"`
	PathsBefore int `json:"pathsBefore"`
	PathsNow    int `json:"pathsNow"`
	// PathsAuditOnly are reachable now only because the deciding policy is
	// in audit mode (they would be denied under enforcement).
	PathsAuditOnly int `json:"pathsAuditOnly"`
	PairsTotal     int `json:"pairsTotal"`
	PairsBefore    int `json:"pairsBefore"`
	PairsNow       int `json:"pairsNow"`
	// ReductionPercent is 100 × (PathsBefore − PathsNow) / PathsBefore.
	ReductionPercent float64     `json:"reductionPercent"`
	Rows             []ReachPath `json:"rows"`
}

// ReachPath is one (source, destination, port) triple.
type ReachPath struct {
	Source      string        `json:"source"`
	Destination string        `json:"destination"`
	Port        int           `json:"port"`
	Protocol    string        `json:"protocol"`
	Before      model.Verdict `json:"before"` // allow (no policy)
	Now         model.Verdict `json:"now"`    // allow, audit-deny or deny
	Reason      string        `json:"reason"`
}

// ProbeRun is one live verification: real connections from inside
// endpoint namespaces compared with the verdicts policy predicts.
type ProbeRun struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Method describes how the matrix was built and sampled.
	Method string `json:"method"`
	// Matrix is the number of (source, destination, port) candidates;
	// Probed how many were tried (Matrix minus those sampled out).
	Matrix          int      `json:"matrix"`
	Probed          int      `json:"probed"`
	ExpectedAllowed int      `json:"expectedAllowed"`
	ExpectedDenied  int      `json:"expectedDenied"`
	Mismatches      int      `json:"mismatches"`
	Timeout         Duration `json:"timeout"` // per probe
	Parallel        int      `json:"parallel"`
	Results         []Probe  `json:"results"`
	// AdminDenies has one check per Deny rule of the Admin tier in force:
	// a probe between real endpoints whose path the rule decides (always
	// probed, beyond the sampling budget), expected dropped unless the
	// workload it applies to is in audit mode (then logged as audit-deny
	// and let through; AdminDenyCheck.Audited).
	AdminDenies []AdminDenyCheck `json:"adminDenies,omitempty"`
}

// AdminDenyCheck is the live check of one Admin Deny rule.
type AdminDenyCheck struct {
	Policy   string `json:"policy"`
	Priority int32  `json:"priority"`
	Rule     string `json:"rule"` // ingress-<i> or egress-<i>
	Name     string `json:"name,omitempty"`
	// Probe is the probe of a path the rule decides; nil when no path
	// between endpoints in scope on a declared port is decided by it
	// (Note says so).
	Probe *Probe `json:"probe,omitempty"`
	// Held: the probe was blocked, as the rule says. A probe of a path
	// the rule decides only on workloads in audit mode is never held: the
	// rule is logged as audit-deny there, not dropped (Audited, Note).
	Held bool `json:"held"`
	// Audited lists the workloads in audit mode on which the rule decides
	// some path of the probe matrix: there it is logged as audit-deny, not
	// dropped, until they are promoted to enforce (issue 15).
	Audited []string `json:"audited,omitempty"`
	Note    string   `json:"note,omitempty"`
}

// Probe is one connection attempt and its comparison with the prediction.
type Probe struct {
	Source      string `json:"source"`      // workload
	SourceNetns string `json:"sourceNetns"` // endpoint the probe ran in
	Destination string `json:"destination"` // workload
	DestNetns   string `json:"destNetns"`
	Address     string `json:"address"` // destination address:port
	Protocol    string `json:"protocol"`
	Port        int    `json:"port"`
	// Expected is the predicted verdict (allow, audit-deny, deny);
	// ExpectReach whether the connection should get through.
	Expected    model.Verdict `json:"expected"`
	ExpectReach bool          `json:"expectReach"`
	Reason      string        `json:"reason"`
	// Outcome is connected, refused (the destination answered with a
	// reset or port unreachable: the network let it through), reply (UDP
	// answered), timeout (nothing came back: dropped on the way), dropped
	// at source (the source's own rules refused to send: EPERM), or error.
	Outcome string `json:"outcome"`
	Reached bool   `json:"reached"`
	// DecidedBy names the ClusterNetworkPolicy rule that decided the
	// prediction ("ClusterNetworkPolicy NAME (TIER, priority N) rule
	// ID"), when one did.
	DecidedBy  string  `json:"decidedBy,omitempty"`
	Match      bool    `json:"match"`
	Detail     string  `json:"detail,omitempty"`
	DurationMS float64 `json:"durationMs"`
}
