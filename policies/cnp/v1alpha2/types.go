package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Limits of the API (the upstream CRD's schema), checked by
// policies.ValidateClusterNetworkPolicy.
const (
	// MinPriority and MaxPriority bound spec.priority.
	MinPriority = 0
	MaxPriority = 1000
	// MaxRules is the most ingress (or egress) rules one policy holds.
	MaxRules = 25
	// MaxPeers is the most peers (from/to) of one rule.
	MaxPeers = 25
	// MaxProtocols is the most protocols entries of one rule.
	MaxProtocols = 25
	// MaxNetworks is the most CIDRs of one networks peer.
	MaxNetworks = 25
	// MaxDomainNames is the most names of one domainNames peer.
	MaxDomainNames = 25
	// MaxRuleName is the longest rule name, in characters.
	MaxRuleName = 100
	// MaxCIDR is the longest CIDR string, in bytes.
	MaxCIDR = 43
)

// ClusterNetworkPolicy is a cluster-scoped network policy of the cluster
// administrator: its rules apply to the pods its subject selects, in the
// tier and at the priority it names.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cnp
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=unapproved: nanoseg's own schema for clusters without the upstream CRD"
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Tier",type=string,JSONPath=`.spec.tier`
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`

	Spec Spec `json:"spec"`
	// Status is written by implementations; nanoseg reads no field of it.
	// +optional
	Status Status `json:"status,omitzero"`
}

// ClusterNetworkPolicyList is a list of ClusterNetworkPolicy objects.
//
// +kubebuilder:object:root=true
type ClusterNetworkPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterNetworkPolicy `json:"items"`
}

// Tier is where a policy sits in the order of evaluation: Admin before the
// NetworkPolicies (and nanosegments) of the namespaces, Baseline after them.
// +kubebuilder:validation:Enum=Admin;Baseline
type Tier string

// The tiers.
const (
	TierAdmin    Tier = "Admin"
	TierBaseline Tier = "Baseline"
)

// Action is what a rule does with the connections it matches.
// +kubebuilder:validation:Enum=Accept;Deny;Pass
type Action string

// The actions of a rule.
const (
	// ActionAccept allows the connection in this direction; no later
	// ClusterNetworkPolicy or NetworkPolicy rule of the direction is
	// consulted (the other end's ingress still is, for egress).
	ActionAccept Action = "Accept"
	// ActionDeny drops the connection; nothing later is consulted.
	ActionDeny Action = "Deny"
	// ActionPass skips the rest of the rule's tier: after an Admin Pass the
	// NetworkPolicies decide, then the Baseline tier; after a Baseline Pass
	// the default (allow).
	ActionPass Action = "Pass"
)

// Spec is the policy itself.
type Spec struct {
	// Tier is Admin or Baseline.
	Tier Tier `json:"tier"`
	// Priority orders the policies of one tier, 0-1000: lower values are
	// consulted first. Upstream leaves the order of two policies of one
	// tier with the same priority undefined; nanoseg orders them by name.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Priority int32 `json:"priority"`
	// Subject selects the pods the rules apply to (never host-network pods).
	Subject Subject `json:"subject"`
	// Ingress rules, at most 25, consulted in order; none means the policy
	// does not touch ingress.
	// +optional
	// +kubebuilder:validation:MaxItems=25
	Ingress []IngressRule `json:"ingress,omitempty"`
	// Egress rules, at most 25, consulted in order; none means the policy
	// does not touch egress.
	// +optional
	// +kubebuilder:validation:MaxItems=25
	Egress []EgressRule `json:"egress,omitempty"`
}

// Status is the implementation-reported state of a policy.
type Status struct {
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Subject selects pods: exactly one of its fields is set.
//
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type Subject struct {
	// Namespaces selects every pod of the namespaces it matches.
	// +optional
	Namespaces *metav1.LabelSelector `json:"namespaces,omitempty"`
	// Pods selects pods by namespace labels and pod labels together.
	// +optional
	Pods *NamespacedPod `json:"pods,omitempty"`
}

// NamespacedPod selects the pods whose namespace matches NamespaceSelector
// and whose labels match PodSelector; an empty selector matches all.
type NamespacedPod struct {
	// +optional
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`
	PodSelector       metav1.LabelSelector `json:"podSelector"`
}

// IngressRule is one ingress rule: connections from any of From, on any of
// Protocols (every protocol and port when none), get Action.
type IngressRule struct {
	// Name identifies the rule in reports, at most 100 characters; optional.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	Name   string `json:"name,omitempty"`
	Action Action `json:"action"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=25
	From []IngressPeer `json:"from"`
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=25
	Protocols []Protocol `json:"protocols,omitempty"`
}

// EgressRule is one egress rule: connections to any of To, on any of
// Protocols (every protocol and port when none), get Action.
//
// +kubebuilder:validation:XValidation:rule="!(self.to.exists(p, has(p.networks) || has(p.nodes) || has(p.domainNames)) && has(self.protocols) && self.protocols.exists(p, has(p.destinationNamedPort)))",message="networks/nodes/domainNames peer cannot be set with destinationNamedPort: they have no named ports"
// +kubebuilder:validation:XValidation:rule="self.action == 'Accept' || !self.to.exists(p, has(p.domainNames))",message="domainNames are supported only in Accept rules"
type EgressRule struct {
	// Name identifies the rule in reports, at most 100 characters; optional.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	Name   string `json:"name,omitempty"`
	Action Action `json:"action"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=25
	To []EgressPeer `json:"to"`
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=25
	Protocols []Protocol `json:"protocols,omitempty"`
}

// IngressPeer is a source: exactly one field is set. Host-network pods are
// never matched.
//
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type IngressPeer struct {
	// +optional
	Namespaces *metav1.LabelSelector `json:"namespaces,omitempty"`
	// +optional
	Pods *NamespacedPod `json:"pods,omitempty"`
}

// EgressPeer is a destination: exactly one field is set.
//
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type EgressPeer struct {
	// Namespaces matches the pods (not host-network ones) of the namespaces
	// it selects.
	// +optional
	Namespaces *metav1.LabelSelector `json:"namespaces,omitempty"`
	// Pods matches pods by namespace and pod labels.
	// +optional
	Pods *NamespacedPod `json:"pods,omitempty"`
	// Nodes matches the addresses of the nodes whose labels it selects
	// (upstream: experimental).
	// +optional
	Nodes *metav1.LabelSelector `json:"nodes,omitempty"`
	// Networks matches addresses in any of its CIDRs, pod addresses
	// included; 1-25 of them.
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=25
	// +listType=set
	Networks []CIDR `json:"networks,omitempty"`
	// DomainNames matches addresses resolved from these names, only in
	// Accept rules (upstream: experimental); 1-25 of them.
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=25
	// +listType=set
	DomainNames []DomainName `json:"domainNames,omitempty"`
}

// Protocol narrows a rule to one protocol's ports, or to a named port of the
// destination pod: exactly one field is set.
//
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type Protocol struct {
	// +optional
	TCP *PortMatch `json:"tcp,omitempty"`
	// +optional
	UDP *PortMatch `json:"udp,omitempty"`
	// +optional
	SCTP *PortMatch `json:"sctp,omitempty"`
	// DestinationNamedPort matches the destination pod's container port of
	// this name (its number and protocol); never a node or network. An
	// empty name, accepted as the upstream CRD accepts it, names no
	// container port: the entry matches nothing.
	// +optional
	DestinationNamedPort *string `json:"destinationNamedPort,omitempty"` // a pointer: "" is not absent

}

// PortMatch is the port part of a tcp, udp or sctp entry.
type PortMatch struct {
	// DestinationPort is required: nanoseg's validation and this schema
	// refuse a tcp, udp or sctp entry without it.
	// +required
	DestinationPort *Port `json:"destinationPort,omitempty"`
}

// Port is one port number or an inclusive range: exactly one is set.
//
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type Port struct {
	// Number is 1-65535.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Number *int32 `json:"number,omitempty"` // upstream: int32; a pointer so that `number: 0` is refused at number, not read as absent

	// +optional
	Range *PortRange `json:"range,omitempty"`
}

// PortRange is the ports Start through End, both included; Start < End.
//
// +kubebuilder:validation:XValidation:rule="self.start < self.end",message="Start port must be less than End port"
type PortRange struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Start int32 `json:"start"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	End int32 `json:"end"`
}

// CIDR is an address range such as 198.18.0.0/15 or 2001:db8::/32.
//
// +kubebuilder:validation:MaxLength=43
// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="Invalid CIDR format provided"
type CIDR string

// DomainName is a DNS name, or "*." followed by a name to match every name
// with one or more labels before it.
//
// +kubebuilder:validation:Pattern=`^(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`
type DomainName string
