package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of the network-policy-api.
const GroupName = "policy.networking.k8s.io"

// Kind is the kind of a ClusterNetworkPolicy object.
const Kind = "ClusterNetworkPolicy"

// SchemeGroupVersion is policy.networking.k8s.io/v1alpha2.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha2"}

// APIVersion is SchemeGroupVersion as written in an object's apiVersion field.
var APIVersion = SchemeGroupVersion.String()

var (
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds ClusterNetworkPolicy and its list to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, &ClusterNetworkPolicy{}, &ClusterNetworkPolicyList{})
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
