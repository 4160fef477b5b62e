package kube

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// NanoSegmentResource is the resource the NanoSegment CRD serves
// (manifests/crds/nanoseg.io_nanosegments.yaml: group nanoseg.io, plural
// nanosegments, version v1alpha1), as the dynamic client names it.
var NanoSegmentResource = v1alpha1.SchemeGroupVersion.WithResource("nanosegments")

// nanoSegmentKind is the only apiVersion and kind this build understands.
var nanoSegmentKind = v1alpha1.SchemeGroupVersion.WithKind(v1alpha1.Kind)

// NanoSegmentFromUnstructured converts u, as the dynamic client returns
// it, into a NanoSegment. It fails, wrapping policies.ErrInvalid, when u
// is of another apiVersion or kind than nanoseg.io/v1alpha1 NanoSegment
// (a version this build does not know may mean something it cannot
// enforce), and, wrapping policies.ErrUnknownField, when u holds fields
// outside status that the type does not have (every such field named).
// Status is ignored: it says what a controller did, never what to enforce.
// The result is not validated (see policies.ValidateNanoSegment).
func NanoSegmentFromUnstructured(u *unstructured.Unstructured) (*v1alpha1.NanoSegment, error) {
	if gvk := u.GroupVersionKind(); gvk != nanoSegmentKind {
		return nil, fmt.Errorf("%w: apiVersion %q kind %q: this node agent knows only apiVersion %q kind %q",
			policies.ErrInvalid, u.GetAPIVersion(), u.GetKind(), nanoSegmentKind.GroupVersion().String(), nanoSegmentKind.Kind)
	}
	obj := make(map[string]any, len(u.Object))
	for k, v := range u.Object {
		if k != "status" {
			obj[k] = v
		}
	}
	var s v1alpha1.NanoSegment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj, &s, true); err != nil {
		if runtime.IsStrictDecodingError(err) {
			return nil, fmt.Errorf("%w: %w", policies.ErrUnknownField, err)
		}
		return nil, fmt.Errorf("%w: convert %s: %w", policies.ErrInvalid, schema.GroupKind{Group: nanoSegmentKind.Group, Kind: nanoSegmentKind.Kind}, err)
	}
	return &s, nil
}

// ClusterNetworkPolicyResource is the resource of ClusterNetworkPolicies
// (policy.networking.k8s.io/v1alpha2, plural clusternetworkpolicies,
// cluster-scoped) as the dynamic client names it; the upstream CRD and
// nanoseg's own (manifests/crds/cnp) both serve it.
var ClusterNetworkPolicyResource = cnpv1alpha2.SchemeGroupVersion.WithResource("clusternetworkpolicies")

// clusterNetworkPolicyKind is the only apiVersion and kind of a
// ClusterNetworkPolicy this build understands.
var clusterNetworkPolicyKind = cnpv1alpha2.SchemeGroupVersion.WithKind(cnpv1alpha2.Kind)

// ClusterNetworkPolicyFromUnstructured converts u, as the dynamic client
// returns it, into a ClusterNetworkPolicy, as NanoSegmentFromUnstructured
// does for NanoSegments: another apiVersion or kind wraps
// policies.ErrInvalid, a field outside status that the type does not have
// wraps policies.ErrUnknownField (every such field named; an upstream CRD
// newer than this build may carry fields whose meaning nanoseg cannot
// enforce), and status is ignored. The result is not validated (see
// policies.ValidateClusterNetworkPolicy).
func ClusterNetworkPolicyFromUnstructured(u *unstructured.Unstructured) (*cnpv1alpha2.ClusterNetworkPolicy, error) {
	if gvk := u.GroupVersionKind(); gvk != clusterNetworkPolicyKind {
		return nil, fmt.Errorf("%w: apiVersion %q kind %q: this build knows only apiVersion %q kind %q",
			policies.ErrInvalid, u.GetAPIVersion(), u.GetKind(), clusterNetworkPolicyKind.GroupVersion().String(), clusterNetworkPolicyKind.Kind)
	}
	obj := make(map[string]any, len(u.Object))
	for k, v := range u.Object {
		if k != "status" {
			obj[k] = v
		}
	}
	var p cnpv1alpha2.ClusterNetworkPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj, &p, true); err != nil {
		if runtime.IsStrictDecodingError(err) {
			return nil, fmt.Errorf("%w: %w", policies.ErrUnknownField, err)
		}
		return nil, fmt.Errorf("%w: convert %s: %w", policies.ErrInvalid, clusterNetworkPolicyKind.GroupKind(), err)
	}
	return &p, nil
}
