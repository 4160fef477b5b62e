package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/model"
)

// The live probes of `nanoseg verify` and of evidence export against a
// cluster: the operator's tool creates one NanoSegmentProbe per connection
// attempt, the node agent of spec.node runs it once from inside the
// source pod's network namespace and writes the outcome into its status,
// and the tool reads it and deletes the object.

// KindProbe is the kind of a NanoSegmentProbe.
const KindProbe = "NanoSegmentProbe"

// LabelProbeRun marks a probe with the run (one verify or export) that
// created it; a later run deletes the probes of runs older than
// ProbeTTL that were left behind (a killed CLI).
const LabelProbeRun = "nanoseg.io/probe-run"

// Probe outcomes (status.outcome), as node.Node.Probe reports them
// (controller.ProbeOutcome).
const (
	ProbeConnected      = "connected"         // TCP handshake completed
	ProbeRefused        = "refused"           // a reset or port unreachable came back: the network let it through
	ProbeReply          = "reply"             // UDP: a datagram came back
	ProbeTimeout        = "timeout"           // no answer within spec.timeoutMilliseconds: blocked
	ProbeDroppedAtSrc   = "dropped at source" // the source's own egress rules dropped it
	ProbeError          = "error"             // not run, or failed: status.detail says why
	ProbeMinTimeoutMS   = 100
	ProbeMaxTimeoutMS   = 10000
	ProbeDefaultTimeout = 1000
)

// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=nsegprobe,categories=nanoseg
// +kubebuilder:subresource:status
// +kubebuilder:selectablefield:JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.spec.pod`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Port",type=integer,JSONPath=`.spec.port`
// +kubebuilder:printcolumn:name="Protocol",type=string,JSONPath=`.spec.protocol`
// +kubebuilder:printcolumn:name="Outcome",type=string,JSONPath=`.status.outcome`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// NanoSegmentProbe asks the node agent of spec.node for one connection
// attempt from inside the network namespace of pod spec.pod (in the
// probe's namespace) to spec.address:spec.port over spec.protocol. The
// agent runs it once and writes the outcome into status; it never runs a
// probe again once its status has an outcome, and it refuses (outcome
// error, the detail naming the field) a pod that is not one of its node's
// and an address that is neither a pod's nor a Service's of the cluster.
// The spec cannot change once created. Creating one makes traffic, so it
// needs its own right (nanoseg-operate has it, nanoseg-view does not).
type NanoSegmentProbe struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: create a new probe"
	Spec   NanoSegmentProbeSpec   `json:"spec"`
	Status NanoSegmentProbeStatus `json:"status,omitempty"`
}

// NanoSegmentProbeSpec is one connection attempt to make.
type NanoSegmentProbeSpec struct {
	// Node is the node whose agent runs the probe: the source pod's
	// spec.nodeName. The agents select their probes by it (a selectable
	// field).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// Pod is the source pod's name, in the probe's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Pod string `json:"pod"`
	// Address is the destination IP address (IPv4 or IPv6): a pod's or a
	// Service's address in the cluster.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address"
	Address string `json:"address"`
	// Port is the destination port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// Protocol is TCP (a handshake) or UDP (one datagram expecting a
	// reply; a DNS query on port 53).
	// +kubebuilder:validation:Enum=TCP;UDP
	Protocol model.Protocol `json:"protocol"`
	// TimeoutMilliseconds bounds the attempt (100 to 10000; default 1000).
	// +optional
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=10000
	TimeoutMilliseconds int32 `json:"timeoutMilliseconds,omitempty"`
}

// NanoSegmentProbeStatus is the outcome, written once by the node agent.
type NanoSegmentProbeStatus struct {
	// Outcome is connected, refused, reply, timeout, dropped at source or
	// error.
	// +optional
	// +kubebuilder:validation:Enum=connected;refused;reply;timeout;"dropped at source";error
	Outcome string `json:"outcome,omitempty"`
	// Reached is true when the network let the attempt through
	// (connected, refused, reply).
	// +optional
	Reached bool `json:"reached,omitempty"`
	// Detail says why for an error (which field a refused probe got
	// wrong, or the connection error).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Detail string `json:"detail,omitempty"`
	// Started is when the agent made the attempt; DurationMicroseconds
	// how long the attempt took.
	// +optional
	Started *metav1.MicroTime `json:"started,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	DurationMicroseconds int64 `json:"durationMicroseconds,omitempty"`
	// Agent names the node agent that ran it ("nanoseg node NODE").
	// +optional
	Agent string `json:"agent,omitempty"`
}

// +kubebuilder:object:root=true

// NanoSegmentProbeList is a list of NanoSegmentProbes.
type NanoSegmentProbeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NanoSegmentProbe `json:"items"`
}
