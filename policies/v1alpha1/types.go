package v1alpha1

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/model"
)

// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=nseg,categories=nanoseg
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.revision`
// +kubebuilder:printcolumn:name="Endpoints",type=integer,JSONPath=`.status.endpoints`
// +kubebuilder:printcolumn:name="In-Sync",type=integer,JSONPath=`.status.inSync`
// +kubebuilder:printcolumn:name="Denied",type=integer,JSONPath=`.status.denied`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// NanoSegment is the allow-list policy of one workload identity: the pods of
// its namespace that spec.selector selects. Like a Kubernetes NetworkPolicy it
// isolates the selected pods in the directions of spec.policyTypes, and a
// connection in an isolated direction is allowed only if some rule of some
// policy selecting the pod allows it; unlike a NetworkPolicy it has a mode,
// DNS-name and host peers, ICMP, and rule provenance.
type NanoSegment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   NanoSegmentSpec   `json:"spec"`
	Status NanoSegmentStatus `json:"status,omitzero"`
}

// Limits of a NanoSegment's lists, as its CRD's schema enforces them
// (maxItems; manifests tests check the two agree): they keep the cost of
// the schema's CEL rules within what the API server accepts for a CRD. An
// object beyond them is refused by the API server (FieldValueTooMany);
// policies.ValidateNanoSegment does not check them, so a writer (the
// cluster controller) checks before it writes.
const (
	MaxRules  = 256  // rules per direction (spec.ingress, spec.egress)
	MaxPeers  = 32   // peers per rule
	MaxPorts  = 128  // ports per rule
	MaxExcept = 8    // except CIDRs per ipBlock
	MaxEdges  = 1000 // observed edges per NanoSegmentProposal (spec.edges)
)

// NanoSegmentSpec is the desired policy of one workload identity.
//
// The API server checks the shape of a NanoSegment with the schema and the
// CEL rules of these markers (each error with its field path);
// policies.ValidateNanoSegment checks the same and what a schema cannot
// (label keys and values), and the controller reports what fails it in the
// Accepted condition. The limits on list sizes keep the rules' cost within
// the API server's budget.
// +kubebuilder:validation:XValidation:rule="!has(self.ingress) || !has(self.egress) || self.egress.all(e, !self.ingress.exists(i, i.id == e.id))",message="rule ids must be unique across ingress and egress",fieldPath=".egress",reason="FieldValueDuplicate"
type NanoSegmentSpec struct {
	// Selector selects the pods of the workload identity in the NanoSegment's
	// namespace, as NetworkPolicySpec.podSelector does: an empty selector
	// selects every pod of the namespace.
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="operator must be In, NotIn, Exists or DoesNotExist",fieldPath=".matchExpressions"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, (e.operator in ['In', 'NotIn']) == (has(e.values) && size(e.values) > 0))",message="values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",fieldPath=".matchExpressions"
	Selector metav1.LabelSelector `json:"selector"`

	// Mode is observe, audit or enforce; empty means observe.
	// +kubebuilder:validation:Enum=observe;audit;enforce
	// +optional
	Mode model.Mode `json:"mode,omitempty"`

	// PolicyTypes lists the directions the NanoSegment isolates, defaulted as
	// in NetworkPolicySpec: when empty, Ingress always, and Egress when the
	// egress list is non-empty.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=2
	// +kubebuilder:validation:items:Enum=Ingress;Egress
	PolicyTypes []networkingv1.PolicyType `json:"policyTypes,omitempty"`

	// Ingress lists the rules that allow connections to the selected pods
	// (at most 256, each id once).
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=256
	Ingress []Rule `json:"ingress,omitempty"`

	// Egress lists the rules that allow connections from the selected pods
	// (at most 256, each id once, and none an id of an ingress rule).
	// +optional
	// +listType=map
	// +listMapKey=id
	// +kubebuilder:validation:MaxItems=256
	Egress []Rule `json:"egress,omitempty"`
}

// Rule allows connections with any of its peers on any of its ports. An
// empty peer list means every peer (inside the cluster or not); an empty port
// list means every port of every protocol, as for NetworkPolicyIngressRule.
type Rule struct {
	// ID names the rule stably across revisions; verdicts, rule sets and
	// counters carry it. Unique within the NanoSegment: 1-63 characters of
	// [a-z0-9-], starting and ending with a letter or digit.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`
	ID string `json:"id"`

	// Peers are the other sides of the connection; any one matching
	// suffices (at most 256).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	Peers []Peer `json:"peers,omitempty"`

	// Ports are the destination ports; any one matching suffices (at most
	// 64).
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Ports []Port `json:"ports,omitempty"`

	// Provenance says why the rule exists.
	// +optional
	Provenance Provenance `json:"provenance,omitempty"`
}

// Peer is one other side of a connection. Exactly one of the groups
// {podSelector, namespaceSelector}, ipBlock, dnsName, host is set. With
// podSelector and namespaceSelector together a pod must match both, as in
// NetworkPolicyPeer; podSelector alone selects pods of the NanoSegment's own
// namespace; namespaceSelector alone selects every pod of the matching
// namespaces (an empty one: every pod of every namespace).
// +kubebuilder:validation:XValidation:rule="(has(self.podSelector) || has(self.namespaceSelector) ? 1 : 0) + (has(self.ipBlock) ? 1 : 0) + (has(self.dnsName) ? 1 : 0) + (has(self.host) && self.host ? 1 : 0) >= 1",message="must set one of podSelector/namespaceSelector, ipBlock, dnsName, host",reason="FieldValueRequired"
// +kubebuilder:validation:XValidation:rule="(has(self.podSelector) || has(self.namespaceSelector) ? 1 : 0) + (has(self.ipBlock) ? 1 : 0) + (has(self.dnsName) ? 1 : 0) + (has(self.host) && self.host ? 1 : 0) <= 1",message="may set only one of podSelector/namespaceSelector, ipBlock, dnsName, host",reason="FieldValueForbidden"
type Peer struct {
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// IPBlock matches addresses in CIDR but not in any of Except; it matches
	// pod addresses too.
	// +optional
	IPBlock *IPBlock `json:"ipBlock,omitempty"`
	// DNSName matches addresses the workload resolved for this name: an exact
	// name ("api.example.com") or a one-label wildcard ("*.example.com",
	// which matches "a.example.com" but neither "example.com" nor
	// "a.b.example.com"); case does not matter, a trailing dot is
	// allowed.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*\.?$`
	DNSName string `json:"dnsName,omitempty"`
	// Host matches the addresses of the node the pod runs on.
	// +optional
	Host bool `json:"host,omitempty"`
}

// IPBlock is a CIDR with exceptions, as networkingv1.IPBlock, validated as
// strictly as the API server validates a new NetworkPolicy's: no bits set
// beyond the prefix length, no IPv4-mapped IPv6 address, no leading zeros.
// +kubebuilder:validation:XValidation:rule="isCIDR(self.cidr) && cidr(self.cidr) == cidr(self.cidr).masked()",message="must be a valid CIDR with no bits set beyond the prefix length, such as 198.19.0.0/16 or 2001:db8::/64",fieldPath=".cidr"
// +kubebuilder:validation:XValidation:rule="!has(self.except) || !isCIDR(self.cidr) || self.except.all(e, !isCIDR(e) || (cidr(self.cidr).containsCIDR(e) && cidr(e).prefixLength() > cidr(self.cidr).prefixLength()))",message="each except must be a strict subset of cidr",fieldPath=".except"
type IPBlock struct {
	// CIDR such as "198.19.0.0/16" or "2001:db8::/64".
	// +kubebuilder:validation:MaxLength=49
	CIDR string `json:"cidr"`
	// Except lists CIDRs inside CIDR that do not match (at most 64).
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=49
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self) && cidr(self) == cidr(self).masked()",message="must be a valid CIDR with no bits set beyond the prefix length"
	Except []string `json:"except,omitempty"`
}

// Port is a destination port or range on one protocol. A nil Port means every
// port of Protocol. Port may be a name, resolved at each destination pod to
// the number of its container port of that name and protocol. EndPort, with a
// numeric Port, makes the inclusive range [Port, EndPort]. For ICMP, Port is
// an ICMP type (0-255) and EndPort is not allowed. These are
// NetworkPolicyPort's rules, checked by the API server with these
// markers' CEL rules.
// +kubebuilder:validation:XValidation:rule="!has(self.port) || type(self.port) != int || (has(self.protocol) && self.protocol == 'ICMP') || (self.port >= 1 && self.port <= 65535)",message="must be between 1 and 65535, inclusive",fieldPath=".port"
// +kubebuilder:validation:XValidation:rule="!has(self.port) || type(self.port) != string || (has(self.protocol) && self.protocol == 'ICMP') || (size(self.port) >= 1 && size(self.port) <= 15)",message="a port name (IANA_SVC_NAME) has 1-15 characters",fieldPath=".port"
// +kubebuilder:validation:XValidation:rule="!has(self.protocol) || self.protocol != 'ICMP' || !has(self.port) || (type(self.port) == int && self.port >= 0 && self.port <= 255)",message="an ICMP port is an ICMP type, 0-255",fieldPath=".port"
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || !has(self.protocol) || self.protocol != 'ICMP'",message="not allowed for ICMP",fieldPath=".endPort",reason="FieldValueForbidden"
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || has(self.port) || (has(self.protocol) && self.protocol == 'ICMP')",message="required when endPort is set",fieldPath=".port",reason="FieldValueRequired"
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || !has(self.port) || type(self.port) == int",message="may not be set with a named port",fieldPath=".endPort",reason="FieldValueForbidden"
// +kubebuilder:validation:XValidation:rule="!has(self.endPort) || !has(self.port) || type(self.port) != int || self.endPort >= self.port",message="must be greater than or equal to port",fieldPath=".endPort"
type Port struct {
	// Protocol defaults to TCP.
	// +kubebuilder:validation:Enum=TCP;UDP;SCTP;ICMP
	// +optional
	Protocol model.Protocol `json:"protocol,omitempty"`
	// +optional
	Port *intstr.IntOrString `json:"port,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	EndPort *int32 `json:"endPort,omitempty"`
}

// Provenance says why a rule exists: a person or an imported object declared
// it, or the observed graph proposed it.
type Provenance struct {
	// +optional
	Declared *Declared `json:"declared,omitempty"`
	// +optional
	Observed *Observed `json:"observed,omitempty"`
	// Widened is set on a proposed rule that allows more than the edges it
	// was inferred from: a person should review it, and accept or narrow it.
	// +optional
	Widened *Widened `json:"widened,omitempty"`
}

// Widening says in which way a proposed rule goes beyond what was observed.
// +kubebuilder:validation:Enum=shared-server;dns;port-range
type Widening string

// The ways inference widens a rule.
const (
	// WideningSharedServer: a server port with many distinct clients
	// (across namespaces, or a large share of the workloads) allows any
	// pod of the namespaces its clients share a label with, or of the
	// cluster, not only the clients seen.
	WideningSharedServer Widening = "shared-server"
	// WideningDNS: the cluster's DNS server is reachable on UDP and TCP 53
	// from any pod (its ingress), and from every proposed workload (their
	// egress), whether or not it resolved a name while observed.
	WideningDNS Widening = "dns"
	// WideningPortRange: spread-out ports of one server to one peer became
	// ranges (endPort), within the ports the server declares where it
	// declares any.
	WideningPortRange Widening = "port-range"
)

// Widened records how and why a proposed rule allows more than it saw.
type Widened struct {
	// Kinds are the ways the rule was widened, sorted.
	// +listType=set
	Kinds []Widening `json:"kinds"`
	// Clients are the client workloads ("namespace/workload") seen on the
	// server ports of a shared-server or dns rule: the evidence, and what
	// the operator narrows the rule to if it should not be broad.
	// +optional
	Clients []string `json:"clients,omitempty"`
	// SeenPorts are the destination ports actually seen ("TCP/8080"), when
	// the rule's ports are wider than them.
	// +optional
	SeenPorts []string `json:"seenPorts,omitempty"`
	// Note says in one sentence what was widened and from what.
	Note string `json:"note"`
}

// Declared records who declared a rule.
type Declared struct {
	// By names the author: a user, or "NetworkPolicy <namespace>/<name>" for
	// an imported rule.
	By string `json:"by"`
	// +optional
	At *metav1.Time `json:"at,omitempty"`
}

// Observed records the edges of the observed graph a rule was inferred from.
type Observed struct {
	// Edges are the edges' keys, "<source> -> <destination> <PROTO>/<port>",
	// sorted.
	Edges []string `json:"edges"`
	// FirstSeen is the start of the earliest flow of those edges.
	FirstSeen metav1.Time `json:"firstSeen"`
	// LastSeen is the end of the latest flow of those edges.
	LastSeen metav1.Time `json:"lastSeen"`
	// Flows counts the connections of those edges.
	Flows int64 `json:"flows"`
}

// NanoSegmentStatus is what the cluster controller last learnt of a
// NanoSegment from the node agents.
type NanoSegmentStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Revision is the revision the NanoSegment was written from by a
	// promotion (0: written by hand).
	// +optional
	Revision int32 `json:"revision,omitempty"`
	// Endpoints counts the endpoints the NanoSegment selects, on every
	// node.
	// +optional
	Endpoints int32 `json:"endpoints"`
	// InSync counts those whose node reports the kernel holds the rule
	// set of this generation.
	// +optional
	InSync int32 `json:"inSync"`
	// Denied and AuditDenied count the connections of its endpoints
	// denied (enforce) and that would have been (audit), as the nodes
	// last reported them. Endpoints, InSync, Denied and AuditDenied are
	// written also when 0, so that kubectl's columns show 0, not blank.
	// +optional
	Denied int64 `json:"denied"`
	// +optional
	AuditDenied int64 `json:"auditDenied"`
	// Nodes is the state per node that runs selected endpoints.
	// +optional
	// +listType=map
	// +listMapKey=node
	Nodes []NodeSync `json:"nodes,omitempty"`
	// Verdicts are the recent audit-denied and denied connection
	// attempts logged at its endpoints, aggregated: one entry per
	// (verdict, source, destination, protocol, port, endpoint, rule id)
	// with how many attempts and when the first and last were logged,
	// the most recently seen first, at most MaxStatusVerdicts, none last
	// seen longer ago than the controller's window. `kubectl nanoseg
	// verdicts` reads them (docs/architecture.md, "Verdicts and rule
	// counters in a cluster").
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	Verdicts []VerdictCount `json:"verdicts,omitempty"`
	// Conditions follow the Kubernetes conventions: Accepted (the
	// NanoSegment passed validation deeper than the schema), Programmed
	// (every selected endpoint in sync), Degraded (with the reason).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeSync is a NanoSegment's state on one node.
type NodeSync struct {
	Node string `json:"node"`
	// Endpoints counts the selected endpoints on the node; InSync those
	// whose rule set the kernel holds.
	Endpoints int32 `json:"endpoints"`
	InSync    int32 `json:"inSync"`
	// Error is the node's last error for one of them, if any.
	// +optional
	Error string `json:"error,omitempty"`
	// RuleHits are the kernel's per-rule counters (connection-opening
	// packets and their bytes) of the selected endpoints on the node,
	// summed by rule id, as the node agent last read them (it reads them
	// every 15 s; the controller writes them at most every
	// --counters-interval), at most MaxStatusRuleHits rule ids, the
	// busiest.
	// +optional
	// +listType=map
	// +listMapKey=ruleID
	// +kubebuilder:validation:MaxItems=512
	RuleHits []RuleHits `json:"ruleHits,omitempty"`
	// DefaultHits are the counters of the default verdict by direction
	// (Ingress, Egress): packets no rule allowed (dropped in enforce,
	// logged in audit, unmatched in observe) since each table was made.
	// +optional
	// +listType=map
	// +listMapKey=direction
	// +kubebuilder:validation:MaxItems=2
	DefaultHits []DefaultHits `json:"defaultHits,omitempty"`
}

// MaxStatusVerdicts is how many aggregated verdicts a NanoSegment's
// status keeps; MaxStatusRuleHits how many rule ids a node's entry keeps.
const (
	MaxStatusVerdicts = 100
	MaxStatusRuleHits = 512
)

// RuleHits is one rule id's kernel counters.
type RuleHits struct {
	RuleID  string `json:"ruleID"`
	Packets int64  `json:"packets"`
	Bytes   int64  `json:"bytes"`
}

// DefaultHits is one direction's default-verdict counters.
type DefaultHits struct {
	// +kubebuilder:validation:Enum=Ingress;Egress
	Direction string `json:"direction"`
	Packets   int64  `json:"packets"`
	Bytes     int64  `json:"bytes"`
}

// VerdictCount aggregates the verdict events (model.VerdictEvent) of one
// kind of denied connection attempt.
type VerdictCount struct {
	// Verdict is audit-deny or deny.
	// +kubebuilder:validation:Enum=audit-deny;deny
	Verdict string `json:"verdict"`
	// Source is a workload (namespace/name) or an address.
	Source string `json:"source"`
	// Destination is a workload, a DNS name or an address.
	Destination string `json:"destination"`
	Protocol    string `json:"protocol"`
	// +optional
	Port int32 `json:"port,omitempty"`
	// Endpoint is the endpoint (netns key) whose table logged it.
	Endpoint string `json:"endpoint"`
	// RuleID is the id the verdict record carried.
	// +optional
	RuleID string `json:"ruleID,omitempty"`
	// DecidedBy names the policies a default-verdict id stands for
	// ("NanoSegment shop/db"), as the logging node's agent knows them.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	DecidedBy []string `json:"decidedBy,omitempty"`
	// Count is how many attempts were logged (at least: a new leader
	// counts again from what the agents still send it).
	Count int64 `json:"count"`
	// FirstSeen and LastSeen are when the first and the last were logged.
	FirstSeen metav1.Time `json:"firstSeen"`
	LastSeen  metav1.Time `json:"lastSeen"`
}

// +kubebuilder:object:root=true

// NanoSegmentList is a list of NanoSegments.
type NanoSegmentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NanoSegment `json:"items"`
}
