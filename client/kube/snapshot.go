package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
	storekube "github.com/nanoseg/nanoseg/store/kube"
)

// Resources of nanoseg's kinds.
var (
	NanoSegments = v1alpha1.SchemeGroupVersion.WithResource("nanosegments")
	Proposals    = v1alpha1.SchemeGroupVersion.WithResource("nanosegmentproposals")
	Promotions   = v1alpha1.SchemeGroupVersion.WithResource("nanosegmentpromotions")
	// ClusterNetworkPolicies is storekube.ClusterNetworkPolicyResource.
	ClusterNetworkPolicies = storekube.ClusterNetworkPolicyResource
)

// snapshot is what the API server held when the CLI read it, in the scope
// of one namespace or all ("").
type snapshot struct {
	at         time.Time
	namespace  string                      // the scope read ("" every namespace)
	revisions  map[string][]store.Revision // by workload key, by number
	promotions []v1alpha1.NanoSegmentPromotion
	segments   map[string]v1alpha1.NanoSegment // NanoSegments in force by workload key
	proposals  []v1alpha1.NanoSegmentProposal
	// observed are the proposals the observations come from: those of
	// every namespace when the user may list them, else proposals. A
	// scope of one namespace must not drop what was observed of its
	// peers in others (their coverage is in their own proposals).
	observed []v1alpha1.NanoSegmentProposal
	netpols  []networkingv1.NetworkPolicy
	// cnps are the valid ClusterNetworkPolicies (cluster-scoped, read
	// whatever the scope), sorted by name; cnpSkipped says, per invalid
	// one left out, why (the node agents do not apply it either);
	// cnpErr, when set, why none could be read (RBAC: they are
	// cluster-scoped, and a namespace binding of nanoseg-view does not
	// grant them).
	cnps       []cnpv1alpha2.ClusterNetworkPolicy
	cnpSkipped []string
	cnpErr     error
	// head is the last record of the hash chain as the history head
	// ConfigMap holds it (the commit point of a promotion: the controller
	// copies it into its promotion's status after), with the promotion
	// it belongs to; zero when absent or not readable.
	head    model.Promotion
	headObj string // "namespace/name"
}

// key is a workload key, "namespace/workload".
func key(ns, workload string) string { return ns + "/" + workload }

// readSnapshot lists nanoseg's objects and the NetworkPolicies in
// namespace ("" every namespace) with the user's credentials.
func readSnapshot(ctx context.Context, kc kubernetes.Interface, dyn dynamic.Interface, namespace string) (*snapshot, error) {
	s := &snapshot{at: time.Now(), namespace: namespace, revisions: map[string][]store.Revision{}, segments: map[string]v1alpha1.NanoSegment{}}
	crs, err := kc.AppsV1().ControllerRevisions(namespace).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelWorkload})
	if err != nil {
		return nil, fmt.Errorf("list revisions (controllerrevisions): %w", err)
	}
	for i := range crs.Items {
		r, err := revisionOf(&crs.Items[i])
		if err != nil {
			return nil, err
		}
		s.revisions[r.Workload] = append(s.revisions[r.Workload], r)
	}
	for _, rs := range s.revisions {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Number < rs[j].Number })
	}
	if err := listInto(ctx, dyn, Promotions, namespace, &s.promotions); err != nil {
		return nil, err
	}
	var segs []v1alpha1.NanoSegment
	if err := listInto(ctx, dyn, NanoSegments, namespace, &segs); err != nil {
		return nil, err
	}
	for _, seg := range segs {
		// The controller names the NanoSegment in force after its
		// workload and labels it; one written by hand is the workload
		// it names by label, else by name.
		w := seg.Name
		if l := seg.Labels[v1alpha1.LabelWorkload]; l != "" {
			w = l
		}
		s.segments[key(seg.Namespace, w)] = seg
	}
	if err := listInto(ctx, dyn, Proposals, namespace, &s.proposals); err != nil {
		return nil, err
	}
	s.observed = s.proposals
	if namespace != "" {
		var all []v1alpha1.NanoSegmentProposal
		switch err := listInto(ctx, dyn, Proposals, "", &all); {
		case err == nil:
			s.observed = all
		case !apierrors.IsForbidden(err):
			return nil, err
		}
	}
	nps, err := kc.NetworkingV1().NetworkPolicies(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list networkpolicies: %w", err)
	}
	s.netpols = nps.Items
	if err := s.readClusterNetworkPolicies(ctx, dyn); err != nil {
		return nil, err
	}
	if err := s.readHead(ctx, kc); err != nil {
		return nil, err
	}
	return s, nil
}

// readClusterNetworkPolicies lists the ClusterNetworkPolicies: none when
// the cluster does not serve the kind (no CRD); cnpErr when the user may
// not list them (the verbs go on without them, and the CLI warns); any
// other error is returned.
func (s *snapshot) readClusterNetworkPolicies(ctx context.Context, dyn dynamic.Interface) error {
	l, err := dyn.Resource(ClusterNetworkPolicies).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsForbidden(err):
		s.cnpErr = err
		return nil
	case err != nil:
		return fmt.Errorf("list clusternetworkpolicies: %w", err)
	}
	for i := range l.Items {
		p, err := storekube.ClusterNetworkPolicyFromUnstructured(&l.Items[i])
		if err == nil {
			err = storekube.CheckClusterNetworkPolicy(p)
		}
		if err != nil {
			s.cnpSkipped = append(s.cnpSkipped, fmt.Sprintf("ClusterNetworkPolicy %s: %v", l.Items[i].GetName(), err))
			continue
		}
		p.APIVersion, p.Kind = cnpv1alpha2.APIVersion, cnpv1alpha2.Kind
		p.ManagedFields = nil
		s.cnps = append(s.cnps, *p)
	}
	sort.Slice(s.cnps, func(i, j int) bool { return s.cnps[i].Name < s.cnps[j].Name })
	return nil
}

// readHead reads the history head (storekube.HeadConfigMap in
// storekube.DefaultNamespace). A user who may not read it, or a cluster
// without it, gets the history the promotions hold: at most the record
// committed last, and not yet copied into its promotion, is missing.
func (s *snapshot) readHead(ctx context.Context, kc kubernetes.Interface) error {
	cm, err := kc.CoreV1().ConfigMaps(storekube.DefaultNamespace).Get(ctx, storekube.HeadConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read history head %s/%s: %w", storekube.DefaultNamespace, storekube.HeadConfigMap, err)
	}
	raw := cm.Data["record"]
	if raw == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(raw), &s.head); err != nil {
		return fmt.Errorf("read history head %s/%s: record: %w", storekube.DefaultNamespace, storekube.HeadConfigMap, err)
	}
	s.headObj = cm.Data["object"]
	return nil
}

// revisionOf decodes a ControllerRevision written by the cluster store:
// its data is a store.Revision.
func revisionOf(cr *appsv1.ControllerRevision) (store.Revision, error) {
	var r store.Revision
	if err := json.Unmarshal(cr.Data.Raw, &r); err != nil {
		return r, fmt.Errorf("controllerrevision %s/%s: data: %w", cr.Namespace, cr.Name, err)
	}
	if r.Workload == "" {
		r.Workload = key(cr.Namespace, cr.Labels[v1alpha1.LabelWorkload])
	}
	if r.Number == 0 {
		r.Number = int(cr.Revision)
	}
	if r.Policy == nil {
		return r, fmt.Errorf("controllerrevision %s/%s: data: no policy", cr.Namespace, cr.Name)
	}
	return r, nil
}

// listInto lists resource gvr in namespace into out, a pointer to a slice
// of the typed objects.
func listInto[T any](ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, namespace string, out *[]T) error {
	l, err := dyn.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list %s: %w", gvr.Resource, err)
	}
	for _, u := range l.Items {
		var obj T
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &obj); err != nil {
			return fmt.Errorf("%s %s/%s: %w", gvr.Resource, u.GetNamespace(), u.GetName(), err)
		}
		*out = append(*out, obj)
	}
	return nil
}
