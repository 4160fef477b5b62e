package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// Kinds as Rejection.Kind and the metrics' kind label spell them.
const (
	KindNetworkPolicy        = "NetworkPolicy"
	KindNanoSegment          = v1alpha1.Kind
	KindClusterNetworkPolicy = cnpv1alpha2.Kind
)

// watchedKinds are the kinds the watcher keeps, as its metrics label them.
var watchedKinds = []string{KindNetworkPolicy, KindNanoSegment, KindClusterNetworkPolicy}

// PolicyWatcher keeps the policies in force from the API server: every
// networking.k8s.io/v1 NetworkPolicy, every nanoseg.io/v1alpha1
// NanoSegment and every policy.networking.k8s.io/v1alpha2
// ClusterNetworkPolicy of the cluster, each in its last valid version.
//
// NetworkPolicies mean what the Kubernetes API reference says
// (https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/):
// they are enforced as soon as they exist, in every namespace, and a pod
// selected by none keeps Kubernetes' default (allowed). NanoSegments carry
// their mode in spec.mode (empty: observe). ClusterNetworkPolicies mean
// what the network-policy-api reference says (package policies/cnp/v1alpha2):
// the Admin tier before the others, the Baseline tier after them.
//
// ClusterNetworkPolicies are optional: a cluster without their CRD (the
// upstream one or manifests/crds/cnp) has none. When the API server
// answers NotFound for the resource, the watcher logs it once, counts the
// kind as synced with no policy of it, and keeps retrying the list (client-go's
// backoff, up to 30 s), so a CRD installed later takes effect without a
// restart. A list refused for any other reason (RBAC, an unreachable API
// server) keeps the watcher unsynced, as for the other kinds.
//
// Every version of every object is checked before it is applied
// (policies.ValidateNetworkPolicy, policies.ValidateNanoSegment,
// policies.ValidateClusterNetworkPolicy, then compiled), so one bad object can never make the whole set fail to
// compile. Bad input never weakens enforcement:
//   - an object whose first version fails is not applied;
//   - when an object in force is updated to a version that fails, its
//     last valid version stays in force, also across a restart of the
//     watcher's process when it keeps them in a file (KeepLastValid);
//   - a NanoSegment or ClusterNetworkPolicy of an apiVersion or kind this
//     build does not know, or with fields its type does not have, fails.
//
// Each failure is logged at error level, counted in
// nanoseg_policy_watcher_rejections_total, shown in the
// nanoseg_policy_watcher_rejected gauge and listed by Rejected until the
// object is fixed or deleted; with RecordRejections it is also handed to a
// recorder, once per rejected version (RejectionEvent: a Kubernetes Event
// on the object). A deletion through the API always removes the
// object, valid or not: deleting is how an operator withdraws a policy.
//
// Until Synced, InForce holds only part of the cluster's policies: a node
// agent must not enforce it before then (enforcing a partial set would open
// what the missing policies isolate).
type PolicyWatcher struct {
	log *slog.Logger
	m   *watcherMetrics
	now func() time.Time

	npFactory  informers.SharedInformerFactory
	segFactory dynamicinformer.DynamicSharedInformerFactory
	npReg      cache.ResourceEventHandlerRegistration
	segReg     cache.ResourceEventHandlerRegistration
	cnpReg     cache.ResourceEventHandlerRegistration
	initErr    error // handler registration failed (never in practice)
	// cnpAbsent is set when the API server answered NotFound for
	// ClusterNetworkPolicies (no CRD): the kind counts as synced, empty.
	// An object of the kind clears it.
	cnpAbsent atomic.Bool

	// record, when set (RecordRejections), gets every newly rejected
	// version from recordQ, in Run.
	record  func(ctx context.Context, r Rejection) error
	recordQ chan Rejection

	// keep, when set (KeepLastValid), is the file of the last valid
	// versions; keepSeq numbers its snapshots (under mu).
	keep       *keeper
	keepSeq    uint64
	keepSynced bool // the watcher has synced: changes are written (under mu)

	mu       sync.RWMutex
	inForce  map[objRef]applied
	rejected map[objRef]*Rejection
	subs     map[chan struct{}]struct{}
	// seed holds the last valid versions read from the keep file, for
	// objects not seen yet; an object's entry goes when it is first seen.
	seed map[objRef]applied
}

// objRef names one object: kind, namespace, name.
type objRef struct{ kind, namespace, name string }

// String returns "<kind> <namespace>/<name>", or "<kind> <name>" for a
// cluster-scoped object.
func (r objRef) String() string {
	if r.namespace == "" {
		return r.kind + " " + r.name
	}
	return r.kind + " " + r.namespace + "/" + r.name
}

// applied is the version of one object in force: exactly one of np, seg,
// cnp; uid is the object's.
type applied struct {
	rv  string
	uid types.UID
	np  *networkingv1.NetworkPolicy
	seg *v1alpha1.NanoSegment
	cnp *cnpv1alpha2.ClusterNetworkPolicy
}

// Rejection is an object whose latest version is not applied.
type Rejection struct {
	// Kind is KindNetworkPolicy, KindNanoSegment or
	// KindClusterNetworkPolicy.
	Kind string
	// Namespace is "" for a ClusterNetworkPolicy (cluster-scoped).
	Namespace string
	Name      string
	// UID is the object's.
	UID types.UID
	// ResourceVersion and Generation are those of the rejected version.
	ResourceVersion string
	Generation      int64
	// Err lists every problem, each with its field path (or the unknown
	// apiVersion, kind or field).
	Err error
	// Since is when this version was rejected.
	Since time.Time
	// KeptPrevious is true when an earlier valid version of the object
	// stays in force (its resourceVersion in KeptResourceVersion), false
	// when no version of it is in force.
	KeptPrevious        bool
	KeptResourceVersion string
}

// Key returns "<Kind> <namespace>/<name>" ("<Kind> <name>" for a
// cluster-scoped object).
func (r Rejection) Key() string { return objRef{r.Kind, r.Namespace, r.Name}.String() }

// String returns the key, what stays in force, and the error.
func (r Rejection) String() string {
	kept := "not applied"
	if r.KeptPrevious {
		kept = "previous version (resourceVersion " + r.KeptResourceVersion + ") stays in force"
	}
	return fmt.Sprintf("%s (resourceVersion %s) rejected, %s: %v", r.Key(), r.ResourceVersion, kept, r.Err)
}

// NewPolicyWatcher returns a watcher over client (NetworkPolicies) and dyn
// (NanoSegments, resource NanoSegmentResource; ClusterNetworkPolicies,
// resource ClusterNetworkPolicyResource), cluster-wide. Nothing is
// watched before Run. A nil log discards. Metrics are registered with
// Register.
func NewPolicyWatcher(client kubernetes.Interface, dyn dynamic.Interface, log *slog.Logger) *PolicyWatcher {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &PolicyWatcher{
		log:      log.With("component", "policy-watcher"),
		m:        newWatcherMetrics(),
		now:      time.Now,
		inForce:  map[objRef]applied{},
		rejected: map[objRef]*Rejection{},
		subs:     map[chan struct{}]struct{}{},
		seed:     map[objRef]applied{},
	}
	w.npFactory = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(stripManagedFields))
	w.segFactory = dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, "", nil)
	npInf := w.npFactory.Networking().V1().NetworkPolicies().Informer()
	segInf := w.segFactory.ForResource(NanoSegmentResource).Informer()
	cnpInf := w.segFactory.ForResource(ClusterNetworkPolicyResource).Informer()
	var errs []error
	errs = append(errs, segInf.SetTransform(stripManagedFields))
	errs = append(errs, cnpInf.SetTransform(stripManagedFields))
	errs = append(errs, npInf.SetWatchErrorHandlerWithContext(w.watchErrorHandler("networkpolicies")))
	errs = append(errs, segInf.SetWatchErrorHandlerWithContext(w.watchErrorHandler(NanoSegmentResource.Resource)))
	errs = append(errs, cnpInf.SetWatchErrorHandlerWithContext(w.watchErrorHandler(ClusterNetworkPolicyResource.Resource)))
	var err error
	w.npReg, err = npInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.onNetworkPolicy,
		UpdateFunc: func(_, obj any) { w.onNetworkPolicy(obj) },
		DeleteFunc: func(obj any) { w.onDelete(KindNetworkPolicy, obj) },
	})
	errs = append(errs, err)
	w.segReg, err = segInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.onNanoSegment,
		UpdateFunc: func(_, obj any) { w.onNanoSegment(obj) },
		DeleteFunc: func(obj any) { w.onDelete(KindNanoSegment, obj) },
	})
	errs = append(errs, err)
	w.cnpReg, err = cnpInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.onClusterNetworkPolicy,
		UpdateFunc: func(_, obj any) { w.onClusterNetworkPolicy(obj) },
		DeleteFunc: func(obj any) { w.onDelete(KindClusterNetworkPolicy, obj) },
	})
	errs = append(errs, err)
	w.initErr = errors.Join(errs...)
	return w
}

// Register registers the watcher's metrics with reg:
// nanoseg_policy_watcher_policies{kind} (objects in force),
// nanoseg_policy_watcher_rejected{kind,in_force} (objects whose latest
// version is rejected; in_force="previous" when an earlier valid version
// stays in force, "none" when none does),
// nanoseg_policy_watcher_rejections_total{kind} (versions rejected) and
// nanoseg_policy_watcher_watch_errors_total{resource} (failed lists and
// watches; the informers retry).
func (w *PolicyWatcher) Register(reg prometheus.Registerer) error {
	return w.m.register(reg)
}

// Run starts the informers and blocks until ctx ends; it returns nil then,
// after the informers stopped. It returns an error at once if the
// informers could not be set up. Run is called once.
func (w *PolicyWatcher) Run(ctx context.Context) error {
	if w.initErr != nil {
		return fmt.Errorf("set up policy informers: %w", w.initErr)
	}
	if w.record != nil {
		go w.recordRejections(ctx)
	}
	w.npFactory.Start(ctx.Done())
	w.segFactory.Start(ctx.Done())
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), w.Synced) {
			n := w.InForce()
			w.log.Info("policies synced", "networkPolicies", len(n.NetworkPolicies), "nanoSegments", len(n.NanoSegments),
				"clusterNetworkPolicies", len(n.ClusterNetworkPolicies), "clusterNetworkPoliciesServed", !w.cnpAbsent.Load(), "rejected", len(w.Rejected()))
			w.mu.Lock()
			w.notifyLocked()
			// Every object is judged: the kept versions of objects not
			// seen were deleted meanwhile, and the keep file says what is
			// in force now (also when nothing is, or it was malformed).
			// Not while ClusterNetworkPolicies are not served: they are
			// not listed, and the kept ones wait for the kind to come back.
			var save func()
			w.keepSynced = true
			if !w.cnpAbsent.Load() {
				clear(w.seed)
				save = w.saveLocked()
			}
			w.mu.Unlock()
			if save != nil {
				save()
			}
		}
	}()
	<-ctx.Done()
	w.npFactory.Shutdown()
	w.segFactory.Shutdown()
	return nil
}

// RecordRejections makes the watcher hand every newly rejected version
// (one call per object and resourceVersion: a relist of a version already
// judged is not handed again) to record, e.g. RejectionEvent. Calls come
// from one goroutine of Run, in order, never concurrently; at most 256
// wait, and rejections beyond are logged and not recorded (the log line,
// the metrics and Rejected still have them). When record fails with
// Forbidden (RBAC), the watcher logs it once and records no more; other
// errors (among them Forbidden because the object's namespace is
// terminating) are logged and the next rejection is tried. Call it before Run.
func (w *PolicyWatcher) RecordRejections(record func(ctx context.Context, r Rejection) error) {
	w.record = record
	w.recordQ = make(chan Rejection, 256)
}

// recordRejections hands queued rejections to w.record until ctx ends.
func (w *PolicyWatcher) recordRejections(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-w.recordQ:
			err := w.record(ctx, r)
			switch {
			case err == nil || ctx.Err() != nil:
			case apierrors.IsForbidden(err) && !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
				w.log.Error("record a rejection as an Event: forbidden; no more will be recorded (RBAC: create events)", "object", r.Key(), "error", err)
				for {
					select { // drain until the end, recording nothing
					case <-ctx.Done():
						return
					case <-w.recordQ:
					}
				}
			default:
				w.log.Warn("record a rejection as an Event", "object", r.Key(), "error", err)
			}
		}
	}
}

// Synced reports whether every informer has listed every object and the
// watcher has judged each of them, the ClusterNetworkPolicies' counting as
// listed when the API server does not serve the kind: from then on
// InForce holds every policy of the cluster.
func (w *PolicyWatcher) Synced() bool {
	return w.npReg != nil && w.segReg != nil && w.cnpReg != nil && w.npReg.HasSynced() && w.segReg.HasSynced() &&
		(w.cnpReg.HasSynced() || w.cnpAbsent.Load())
}

// ClusterNetworkPoliciesServed reports whether the API server serves
// ClusterNetworkPolicies, as far as the watcher knows: false once a list
// was answered NotFound (no CRD), true again when an object of the kind
// arrives.
func (w *PolicyWatcher) ClusterNetworkPoliciesServed() bool { return !w.cnpAbsent.Load() }

// WaitForSync returns nil once Synced, or ctx's error when ctx ends first.
func (w *PolicyWatcher) WaitForSync(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), w.Synced) {
		return fmt.Errorf("wait for policy informers: %w", context.Cause(ctx))
	}
	return nil
}

// InForce returns a copy of the policies in force, taken at one moment:
// the last valid version of every NetworkPolicy (apiVersion and kind set),
// every NanoSegment and every ClusterNetworkPolicy (apiVersion and kind
// set), each list sorted by namespace and name. The caller owns it.
func (w *PolicyWatcher) InForce() policies.InForce {
	w.mu.RLock()
	var out policies.InForce
	for _, a := range w.inForce {
		switch {
		case a.np != nil:
			out.NetworkPolicies = append(out.NetworkPolicies, *a.np.DeepCopy())
		case a.seg != nil:
			out.NanoSegments = append(out.NanoSegments, *a.seg.DeepCopy())
		case a.cnp != nil:
			out.ClusterNetworkPolicies = append(out.ClusterNetworkPolicies, *a.cnp.DeepCopy())
		}
	}
	w.mu.RUnlock()
	for i := range out.ClusterNetworkPolicies {
		out.ClusterNetworkPolicies[i].APIVersion = cnpv1alpha2.APIVersion
		out.ClusterNetworkPolicies[i].Kind = KindClusterNetworkPolicy
	}
	slices.SortFunc(out.ClusterNetworkPolicies, func(a, b cnpv1alpha2.ClusterNetworkPolicy) int { return cmp.Compare(a.Name, b.Name) })
	for i := range out.NetworkPolicies {
		out.NetworkPolicies[i].APIVersion = networkingv1.SchemeGroupVersion.String()
		out.NetworkPolicies[i].Kind = KindNetworkPolicy
	}
	slices.SortFunc(out.NetworkPolicies, func(a, b networkingv1.NetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.SortFunc(out.NanoSegments, func(a, b v1alpha1.NanoSegment) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Rejected returns the objects whose latest version is not applied, sorted
// by key.
func (w *PolicyWatcher) Rejected() []Rejection {
	w.mu.RLock()
	out := make([]Rejection, 0, len(w.rejected))
	for _, r := range w.rejected {
		out = append(out, *r)
	}
	w.mu.RUnlock()
	slices.SortFunc(out, func(a, b Rejection) int { return cmp.Compare(a.Key(), b.Key()) })
	return out
}

// Watch calls notify after every change of InForce, and once when the
// watcher becomes Synced, until ctx ends. Calls are coalesced (a burst of
// changes may give one call) and never concurrent for one Watch; notify
// should call InForce itself. Watch returns at once: the calls come from a
// goroutine of their own.
func (w *PolicyWatcher) Watch(ctx context.Context, notify func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	w.subs[ch] = struct{}{}
	w.mu.Unlock()
	go func() {
		defer func() {
			w.mu.Lock()
			delete(w.subs, ch)
			w.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				if ctx.Err() != nil {
					return
				}
				notify()
			}
		}
	}()
}

// notifyLocked wakes every Watch; w.mu is held.
func (w *PolicyWatcher) notifyLocked() {
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

func (w *PolicyWatcher) onNetworkPolicy(obj any) {
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		w.log.Error("unexpected object from the NetworkPolicy informer", "type", fmt.Sprintf("%T", obj))
		return
	}
	r := objRef{KindNetworkPolicy, np.Namespace, np.Name}
	err := checkNetworkPolicy(np)
	w.judge(r, np.UID, np.ResourceVersion, np.Generation, applied{rv: np.ResourceVersion, uid: np.UID, np: np}, err)
}

func (w *PolicyWatcher) onNanoSegment(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		w.log.Error("unexpected object from the NanoSegment informer", "type", fmt.Sprintf("%T", obj))
		return
	}
	r := objRef{KindNanoSegment, u.GetNamespace(), u.GetName()}
	seg, err := NanoSegmentFromUnstructured(u)
	if err == nil {
		err = checkNanoSegment(seg)
	}
	w.judge(r, u.GetUID(), u.GetResourceVersion(), u.GetGeneration(), applied{rv: u.GetResourceVersion(), uid: u.GetUID(), seg: seg}, err)
}

func (w *PolicyWatcher) onClusterNetworkPolicy(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		w.log.Error("unexpected object from the ClusterNetworkPolicy informer", "type", fmt.Sprintf("%T", obj))
		return
	}
	if w.cnpAbsent.CompareAndSwap(true, false) {
		w.log.Info("ClusterNetworkPolicies are served now; enforcing them")
	}
	r := objRef{KindClusterNetworkPolicy, "", u.GetName()}
	p, err := ClusterNetworkPolicyFromUnstructured(u)
	if err == nil {
		err = CheckClusterNetworkPolicy(p)
	}
	w.judge(r, u.GetUID(), u.GetResourceVersion(), u.GetGeneration(), applied{rv: u.GetResourceVersion(), uid: u.GetUID(), cnp: p}, err)
}

// judge applies version a of r when err is nil, and otherwise records the
// rejection, keeping what is in force: the version in force, or on the
// first sight of r the one the keep file holds for it (KeepLastValid).
func (w *PolicyWatcher) judge(r objRef, uid types.UID, rv string, gen int64, a applied, err error) {
	w.mu.Lock()
	old, had := w.inForce[r]
	prevRej := w.rejected[r]
	seeded, fromSeed := w.seed[r]
	delete(w.seed, r)
	if err == nil {
		delete(w.rejected, r)
		changed := !had || !sameSpec(old, a)
		w.inForce[r] = a
		var save func()
		if changed {
			// Not for a status or label write of the same spec: the file
			// would be rewritten at every status update.
			save = w.saveLocked()
		}
		if changed {
			w.notifyLocked()
		}
		w.updateGaugesLocked()
		w.mu.Unlock()
		if save != nil {
			save()
		}
		if prevRej != nil {
			w.log.Info("policy accepted after a rejection", "kind", r.kind, "namespace", r.namespace, "name", r.name, "resourceVersion", rv)
		}
		return
	}
	if prevRej != nil && ((rv != "" && prevRej.ResourceVersion == rv) ||
		(gen > 0 && prevRej.UID == uid && prevRej.Generation == gen && prevRej.Err.Error() == err.Error())) {
		// The same version again (a relist), or a new resourceVersion
		// of the same spec (a status write such as the controller's
		// Accepted condition, or labels) refused for the same reason:
		// judged already, no second log line or Event.
		w.mu.Unlock()
		return
	}
	rej := &Rejection{Kind: r.kind, Namespace: r.namespace, Name: r.name, UID: uid, ResourceVersion: rv, Generation: gen, Err: err, Since: w.now()}
	var save func()
	kept := ""
	if !had && fromSeed && uid != "" && seeded.uid == uid {
		// Refused at first sight, with a valid version of the same
		// object kept from before this watcher started: that one stays
		// in force, as it would have without the restart.
		w.inForce[r] = seeded
		old, had, kept = seeded, true, w.keep.path
		w.notifyLocked()
		save = w.saveLocked()
	}
	if had {
		rej.KeptPrevious, rej.KeptResourceVersion = true, old.rv
	}
	w.rejected[r] = rej
	w.updateGaugesLocked()
	w.mu.Unlock()
	if save != nil {
		save()
	}
	w.m.rejections.WithLabelValues(r.kind).Inc()
	if w.recordQ != nil {
		select {
		case w.recordQ <- *rej:
		default:
			w.log.Warn("too many rejections waiting to be recorded as Events; this one is not", "object", r.String(), "resourceVersion", rv)
		}
	}
	if kept != "" {
		w.log.Error("policy rejected; its last valid version, kept from before this agent started, stays in force", "kind", r.kind,
			"namespace", r.namespace, "name", r.name, "resourceVersion", rv, "keptResourceVersion", old.rv, "keptIn", kept, "error", err)
	} else if had {
		w.log.Error("policy rejected; its last valid version stays in force", "kind", r.kind, "namespace", r.namespace, "name", r.name,
			"resourceVersion", rv, "keptResourceVersion", old.rv, "error", err)
	} else {
		w.log.Error("policy rejected; it is not applied", "kind", r.kind, "namespace", r.namespace, "name", r.name,
			"resourceVersion", rv, "error", err)
	}
}

// sameSpec reports whether two versions of one object mean the same
// policy (a status or label change does not change what is enforced).
func sameSpec(a, b applied) bool {
	switch {
	case a.np != nil && b.np != nil:
		return apiequality.Semantic.DeepEqual(a.np.Spec, b.np.Spec)
	case a.seg != nil && b.seg != nil:
		return apiequality.Semantic.DeepEqual(a.seg.Spec, b.seg.Spec)
	case a.cnp != nil && b.cnp != nil:
		return apiequality.Semantic.DeepEqual(a.cnp.Spec, b.cnp.Spec)
	}
	return false
}

func (w *PolicyWatcher) onDelete(kind string, obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		w.log.Error("unexpected deleted object", "kind", kind, "type", fmt.Sprintf("%T", obj), "error", err)
		return
	}
	r := objRef{kind, m.GetNamespace(), m.GetName()}
	w.mu.Lock()
	_, had := w.inForce[r]
	delete(w.inForce, r)
	delete(w.rejected, r)
	delete(w.seed, r)
	var save func()
	if had {
		w.notifyLocked()
		save = w.saveLocked()
	}
	w.updateGaugesLocked()
	w.mu.Unlock()
	if save != nil {
		save()
	}
}

func (w *PolicyWatcher) updateGaugesLocked() {
	n := map[string]float64{}
	for r := range w.inForce {
		n[r.kind]++
	}
	for _, k := range watchedKinds {
		w.m.policies.WithLabelValues(k).Set(n[k])
	}
	counts := map[[2]string]float64{}
	for _, k := range watchedKinds {
		counts[[2]string{k, "previous"}] = 0
		counts[[2]string{k, "none"}] = 0
	}
	for _, r := range w.rejected {
		inForce := "none"
		if r.KeptPrevious {
			inForce = "previous"
		}
		counts[[2]string{r.Kind, inForce}]++
	}
	for k, v := range counts {
		w.m.rejected.WithLabelValues(k[0], k[1]).Set(v)
	}
}

func (w *PolicyWatcher) watchErrorHandler(resource string) cache.WatchErrorHandlerWithContext {
	return func(_ context.Context, _ *cache.Reflector, err error) {
		w.m.watchErrors.WithLabelValues(resource).Inc()
		if resource == NanoSegmentResource.Resource && apierrors.IsNotFound(err) {
			w.log.Error("cannot list NanoSegments: is the CRD (manifests/crds/nanoseg.io_nanosegments.yaml) installed? Not synced until it is", "error", err)
			return
		}
		if resource == ClusterNetworkPolicyResource.Resource && apierrors.IsNotFound(err) {
			if w.cnpAbsent.CompareAndSwap(false, true) {
				w.log.Warn("ClusterNetworkPolicies are not served (no CRD for policy.networking.k8s.io/v1alpha2 clusternetworkpolicies): running without them, retrying; install the upstream CRD or manifests/crds/cnp to use them",
					"error", err)
			}
			return
		}
		w.log.Warn("list or watch failed; retrying, the policies in force stay as they are", "resource", resource, "error", err)
	}
}

// stripManagedFields drops metadata.managedFields before an object enters
// an informer's cache: nanoseg never reads them, and they are often the
// larger part of a small object.
func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// checkNetworkPolicy validates np as the API server does and compiles it;
// the error wraps policies.ErrInvalid and names every field at fault.
func checkNetworkPolicy(np *networkingv1.NetworkPolicy) error {
	if errs := policies.ValidateNetworkPolicy(np); len(errs) > 0 {
		return fmt.Errorf("%w: %w", policies.ErrInvalid, errs.ToAggregate())
	}
	if _, err := policies.CompileNetworkPolicy(np); err != nil {
		return err
	}
	return nil
}

// CheckClusterNetworkPolicy validates p as its CRD's schema would and
// compiles it, as the node agent does before applying a version; the error
// wraps policies.ErrInvalid and names every field at fault.
func CheckClusterNetworkPolicy(p *cnpv1alpha2.ClusterNetworkPolicy) error {
	if errs := policies.ValidateClusterNetworkPolicy(p); len(errs) > 0 {
		return fmt.Errorf("%w: %w", policies.ErrInvalid, errs.ToAggregate())
	}
	if _, err := policies.CompileClusterNetworkPolicy(p); err != nil {
		return err
	}
	return nil
}

// checkNanoSegment validates s and compiles it; the error wraps
// policies.ErrInvalid and names every field at fault.
func checkNanoSegment(s *v1alpha1.NanoSegment) error {
	if errs := policies.ValidateNanoSegment(s); len(errs) > 0 {
		return fmt.Errorf("%w: %w", policies.ErrInvalid, errs.ToAggregate())
	}
	if _, err := policies.CompileNanoSegment(s); err != nil {
		return err
	}
	return nil
}
