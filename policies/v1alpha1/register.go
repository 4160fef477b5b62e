package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of nanoseg's custom resources.
const GroupName = "nanoseg.io"

// Kind is the kind of a NanoSegment object.
const Kind = "NanoSegment"

// SchemeGroupVersion is the group and version of this package: nanoseg.io/v1alpha1.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// APIVersion is SchemeGroupVersion as written in an object's apiVersion field.
var APIVersion = SchemeGroupVersion.String()

var (
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the package's kinds (NanoSegment, NanoSegmentProposal,
	// NanoSegmentPromotion, NanoSegmentProbe and their lists) to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, &NanoSegment{}, &NanoSegmentList{},
		&NanoSegmentProposal{}, &NanoSegmentProposalList{},
		&NanoSegmentPromotion{}, &NanoSegmentPromotionList{},
		&NanoSegmentProbe{}, &NanoSegmentProbeList{})
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
