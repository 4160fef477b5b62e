package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/model"
)

// The kinds of the Kubernetes mode's learning loop (issue 13): proposals the
// cluster controller writes and nothing enforces, and promotions operators
// create and the controller carries out, each keeping its hash-chained
// record. The NanoSegment (types.go) stays the one kind that is enforced.

// Kinds of this file's objects.
const (
	KindProposal  = "NanoSegmentProposal"
	KindPromotion = "NanoSegmentPromotion"
)

// Labels and names shared by the cluster controller, the node agents and the
// operator's tools.
const (
	// LabelWorkload names the workload (its name in the object's namespace)
	// of a NanoSegment, proposal or revision the controller writes.
	LabelWorkload = "nanoseg.io/workload"
	// LabelRevision is the revision number (decimal) a NanoSegment in force
	// was written from.
	LabelRevision = "nanoseg.io/revision"
)

// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=nsegprop,categories=nanoseg
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Workload",type=string,JSONPath=`.spec.workload`
// +kubebuilder:printcolumn:name="Settled",type=string,JSONPath=`.status.conditions[?(@.type=="Settled")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Settled")].reason`
// +kubebuilder:printcolumn:name="Observed",type=string,JSONPath=`.status.coverage.observed`
// +kubebuilder:printcolumn:name="Edges",type=integer,JSONPath=`.status.edges`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// NanoSegmentProposal is the policy the cluster controller proposes for one
// workload identity from what the node agents observed, with the observed
// edges it came from. Nothing enforces a proposal: an operator promotes it
// (a NanoSegmentPromotion), which makes it a revision and writes the
// NanoSegment. The controller names it after the workload and refreshes it
// as observation goes on; status.conditions[Settled] says how settled the
// learning is.
type NanoSegmentProposal struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   NanoSegmentProposalSpec   `json:"spec"`
	Status NanoSegmentProposalStatus `json:"status,omitempty"`
}

// NanoSegmentProposalSpec is a proposed policy and its provenance.
type NanoSegmentProposalSpec struct {
	// Workload is the workload's name in the proposal's namespace (a
	// Deployment, StatefulSet, DaemonSet or Job name, else the pod's): a
	// DNS-1123 subdomain of at most 63 characters, so that it is also a
	// label value (nanoseg.io/workload).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Workload string `json:"workload"`

	// Segment is the proposed policy (its mode is not used: a promotion
	// chooses it).
	Segment NanoSegmentSpec `json:"segment"`

	// Window is how far back the observed edges were taken from; 0 for
	// everything observed.
	// +optional
	Window metav1.Duration `json:"window,omitempty"`

	// Edges are the observed edges of the workload in the window, in
	// either direction, each with its counters; those the segment does
	// not allow say why in leftOut. At most 1000, the most recently seen
	// first; edgesOmitted counts the others.
	// +optional
	// +kubebuilder:validation:MaxItems=1000
	Edges []ObservedEdge `json:"edges,omitempty"`

	// EdgesOmitted counts observed edges beyond the 1000 kept in edges.
	// +optional
	// +kubebuilder:validation:Minimum=0
	EdgesOmitted int32 `json:"edgesOmitted,omitempty"`
}

// ObservedEdge is one observed edge (source, destination, protocol, port)
// with its counters, as the controller's graph holds it (model.Edge).
type ObservedEdge struct {
	Source      ObservedPeer `json:"source"`
	Destination ObservedPeer `json:"destination"`
	// Protocol is TCP, UDP, SCTP, ICMP or ICMPv6.
	// +kubebuilder:validation:Enum=TCP;UDP;SCTP;ICMP;ICMPv6
	Protocol model.Protocol `json:"protocol"`
	// Port is the destination port (0 for ICMP).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
	// FirstSeen and LastSeen bound the edge's flows.
	FirstSeen metav1.Time `json:"firstSeen"`
	LastSeen  metav1.Time `json:"lastSeen"`
	// Flows counts its connections; Failed those that never succeeded.
	Flows int64 `json:"flows"`
	// +optional
	Failed int64 `json:"failed,omitempty"`
	// BytesOut go from source to destination, BytesIn back.
	// +optional
	BytesOut int64 `json:"bytesOut,omitempty"`
	// +optional
	BytesIn int64 `json:"bytesIn,omitempty"`
	// Verdicts counts the flows by verdict.
	// +optional
	Verdicts EdgeVerdicts `json:"verdicts,omitempty"`
	// LeftOut says why the proposed segment does not allow the edge
	// (every connection failed; denied while enforced; …); empty when it
	// does.
	// +optional
	LeftOut string `json:"leftOut,omitempty"`
}

// ObservedPeer is one end of an observed edge: a workload, or an
// external peer by DNS name or address.
type ObservedPeer struct {
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// +optional
	Workload string `json:"workload,omitempty"`
	// External is true for a peer outside the cluster's workloads.
	// +optional
	External bool `json:"external,omitempty"`
	// Name is an external peer's DNS name, when known.
	// +optional
	Name string `json:"name,omitempty"`
	// Address is an external peer's IP address.
	// +optional
	Address string `json:"address,omitempty"`
}

// EdgeVerdicts counts an edge's flows by verdict (model.VerdictCounts).
type EdgeVerdicts struct {
	// +optional
	Observed int64 `json:"observed,omitempty"`
	// +optional
	Allowed int64 `json:"allowed,omitempty"`
	// +optional
	AuditDenied int64 `json:"auditDenied,omitempty"`
	// +optional
	Denied int64 `json:"denied,omitempty"`
}

// NanoSegmentProposalStatus is how settled a proposal's learning is.
type NanoSegmentProposalStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Edges counts the observed edges of the workload in the window
	// (spec.edges plus spec.edgesOmitted).
	// +optional
	Edges int32 `json:"edges,omitempty"`
	// Coverage is how well the workload was observed in the window.
	// +optional
	Coverage *ProposalCoverage `json:"coverage,omitempty"`
	// Conditions: Settled (True when the workload was observed at least
	// the controller's minimum and no new peer or port appeared lately;
	// reasons Settled, Learning, Silent, NotObserved).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ProposalCoverage is model.Coverage as a proposal shows it.
type ProposalCoverage struct {
	// Observed is how long, in the window, at least one endpoint of the
	// workload had an observer.
	Observed metav1.Duration `json:"observed"`
	// Window is the window the coverage is of (0: everything observed).
	// +optional
	Window metav1.Duration `json:"window,omitempty"`
	// Endpoints counts the workload's endpoints observed in the window.
	// +optional
	Endpoints int32 `json:"endpoints,omitempty"`
	// Flows and Failed count its connections, and those that failed.
	// +optional
	Flows int64 `json:"flows,omitempty"`
	// +optional
	Failed int64 `json:"failed,omitempty"`
	// Peers counts the distinct peers it talked with.
	// +optional
	Peers int32 `json:"peers,omitempty"`
	// LastNew is when a peer or port not seen before last appeared.
	// +optional
	LastNew *metav1.Time `json:"lastNew,omitempty"`
	// Silent is true when the workload had no flow in the window.
	// +optional
	Silent bool `json:"silent,omitempty"`
}

// +kubebuilder:object:root=true

// NanoSegmentProposalList is a list of NanoSegmentProposals.
type NanoSegmentProposalList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NanoSegmentProposal `json:"items"`
}

// PromotionPhase is where a promotion is.
// +kubebuilder:validation:Enum=Pending;Succeeded;Failed
type PromotionPhase string

// Phases of a promotion.
const (
	PromotionPending   PromotionPhase = "Pending"   // not carried out yet
	PromotionSucceeded PromotionPhase = "Succeeded" // recorded; the NanoSegment written
	PromotionFailed    PromotionPhase = "Failed"    // refused; status.message says why; nothing changed
)

// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=nsegpromo,categories=nanoseg
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Workload",type=string,JSONPath=`.spec.workload`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.status.record.action`,description="promote or rollback, once recorded (blank: pending, failed, or no change)"
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.record.toRevision`,description="the revision put in force (a rollback's target)"
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="By",type=string,JSONPath=`.spec.requestedBy.username`
// +kubebuilder:printcolumn:name="Seq",type=integer,JSONPath=`.status.record.seq`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// NanoSegmentPromotion is an operator's request to change what is in force
// for one workload, and, once the cluster controller carried it out, its
// record: who (as the API server authenticated them), when, from which mode
// and revision to which, the reachability change, and the hash of the
// previous record. Promotions form the cluster's hash-chained history
// (model.Promotion); a rollback is a promotion with spec.rollback, a new
// forward record to an earlier revision. The spec cannot change once
// created.
type NanoSegmentPromotion struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: create a new promotion"
	Spec   NanoSegmentPromotionSpec   `json:"spec"`
	Status NanoSegmentPromotionStatus `json:"status,omitempty"`
}

// NanoSegmentPromotionSpec is what an operator asks for.
// +kubebuilder:validation:XValidation:rule="!has(self.rollback) || !self.rollback || !has(self.force) || !self.force",message="force applies to promotions, not rollbacks",fieldPath=".force",reason="FieldValueForbidden"
// +kubebuilder:validation:XValidation:rule="(has(self.rollback) && self.rollback) || has(self.mode)",message="mode is required unless rollback is true",fieldPath=".mode",reason="FieldValueRequired"
// +kubebuilder:validation:XValidation:rule="!has(self.rollback) || !self.rollback || !has(self.mode)",message="a rollback returns to the mode recorded with its revision: leave mode out",fieldPath=".mode",reason="FieldValueForbidden"
type NanoSegmentPromotionSpec struct {
	// Workload is the workload's name in the promotion's namespace: a
	// DNS-1123 subdomain of at most 63 characters (a label value).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Workload string `json:"workload"`

	// Mode is the mode to put the workload in: observe, audit or
	// enforce. Required unless rollback is true (a rollback returns to
	// the mode recorded with the revision it goes back to).
	// +optional
	// +kubebuilder:validation:Enum=observe;audit;enforce
	Mode model.Mode `json:"mode,omitempty"`

	// Revision is the revision to put in force; 0 (or absent) means, for
	// a promotion, the workload's current proposal (it becomes a new
	// revision if it differs from the latest) and, for a rollback, the
	// state before the most recent change still in effect.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Revision int32 `json:"revision,omitempty"`

	// Rollback makes this a rollback: a new forward record back to an
	// earlier revision.
	// +optional
	Rollback bool `json:"rollback,omitempty"`

	// Reason says why, for the record.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.trim() != ''",message="must say why, for the record"
	Reason string `json:"reason"`

	// Force promotes to enforce although the learning is not settled
	// (observed less than the minimum, a silent workload); the reasons
	// are recorded.
	// +optional
	Force bool `json:"force,omitempty"`

	// RequestedBy is the user who created the promotion, as the API
	// server authenticated them. It is set by admission
	// (manifests/admission: a MutatingAdmissionPolicy from
	// request.userInfo, checked by a ValidatingAdmissionPolicy); a value
	// typed by the requester is overwritten.
	// +optional
	RequestedBy *RequestUser `json:"requestedBy,omitempty"`
}

// RequestUser is an authenticated user (authentication.k8s.io UserInfo).
type RequestUser struct {
	// +kubebuilder:validation:MinLength=1
	Username string `json:"username"`
	// +optional
	UID string `json:"uid,omitempty"`
	// +optional
	// +listType=atomic
	Groups []string `json:"groups,omitempty"`
}

// NanoSegmentPromotionStatus is what the controller did with a promotion.
type NanoSegmentPromotionStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase is Pending, Succeeded or Failed.
	// +optional
	Phase PromotionPhase `json:"phase,omitempty"`
	// Message says why a promotion failed, or what a success changed.
	// +optional
	Message string `json:"message,omitempty"`
	// Record is the hash-chained history record (Succeeded only).
	// +optional
	Record *PromotionRecord `json:"record,omitempty"`
	// Change is the reachability change the promotion made (or, for a
	// failed one, would have made).
	// +optional
	Change *ReachabilityChange `json:"change,omitempty"`
	// Conditions: Complete (True once carried out, False with the reason
	// when refused).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PromotionRecord is model.Promotion as a promotion's status holds it: the
// fields the hash covers, with At at whole seconds (so it survives the
// API's time format and the hash verifies after a round trip).
type PromotionRecord struct {
	Seq          int64        `json:"seq"`
	At           metav1.Time  `json:"at"`
	Who          string       `json:"who"`
	Workload     string       `json:"workload"`
	Action       model.Action `json:"action"`
	FromMode     model.Mode   `json:"fromMode"`
	ToMode       model.Mode   `json:"toMode"`
	FromRevision int32        `json:"fromRevision"`
	ToRevision   int32        `json:"toRevision"`
	Reason       string       `json:"reason"`
	// +optional
	Undoes int64 `json:"undoes,omitempty"`
	// +optional
	// +listType=atomic
	Forced   []string `json:"forced,omitempty"`
	PrevHash string   `json:"prevHash"`
	Hash     string   `json:"hash"`
}

// ReachabilityChange is what a promotion opens and closes: the paths
// (source → destination protocol/port) allowed after it and not before,
// and the reverse. At most 100 of each are listed; the counts are whole.
type ReachabilityChange struct {
	// +optional
	Opened int32 `json:"opened,omitempty"`
	// +optional
	Closed int32 `json:"closed,omitempty"`
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	OpenedPaths []string `json:"openedPaths,omitempty"`
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	ClosedPaths []string `json:"closedPaths,omitempty"`
}

// +kubebuilder:object:root=true

// NanoSegmentPromotionList is a list of NanoSegmentPromotions.
type NanoSegmentPromotionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NanoSegmentPromotion `json:"items"`
}
