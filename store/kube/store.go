package kube

// The cluster's policy store (issue 13): store.PolicyStore over the API
// server. docs/architecture.md ("The cluster store") gives the design and
// its reasons; this file is the mechanism.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// PromotionResource is the resource the NanoSegmentPromotion CRD serves
// (manifests/crds/nanoseg.io_nanosegmentpromotions.yaml).
var PromotionResource = v1alpha1.SchemeGroupVersion.WithResource("nanosegmentpromotions")

// Names the cluster store writes.
const (
	// HeadConfigMap is the ConfigMap (in StoreConfig.Namespace) holding
	// the last record of the hash chain: the commit point of a promotion.
	HeadConfigMap = "nanoseg-history-head"
	// AnnotationState holds, on a NanoSegment the store wrote, the
	// store.WorkloadState (JSON) of the record it was written for.
	AnnotationState = "nanoseg.io/state"
	// AnnotationRecordedSeq marks a NanoSegmentPromotion the store
	// created itself (a Record without a request) with the sequence
	// number of its record.
	AnnotationRecordedSeq = "nanoseg.io/recorded-seq"
	// DefaultNamespace is where the controller runs and the head lives.
	DefaultNamespace = "nanoseg-system"
)

// Keys of the head ConfigMap's data.
const (
	headRecord = "record" // the last record, model.Promotion JSON
	headObject = "object" // "namespace/name" of the promotion it belongs to
	headCreate = "create" // "true": the store creates that promotion itself
)

// Errors of the cluster store, besides store.ErrNotFound and
// store.ErrConflict.
var (
	// ErrAlreadyRecorded: the NanoSegmentPromotion a ForRequest view
	// records into already holds a record (carried out before, perhaps
	// by the leader before a failover); nothing new was recorded.
	ErrAlreadyRecorded = errors.New("promotion already recorded")
	// ErrIncomplete: the record was committed (it is in the hash chain
	// and Record returned it) but copying it into its promotion or
	// writing the NanoSegment failed; the next Record or Repair, by this
	// store or another, completes it.
	ErrIncomplete = errors.New("record committed, not yet written everywhere")
)

// StoreConfig configures a Store.
type StoreConfig struct {
	// Namespace holds the history head ConfigMap (DefaultNamespace when
	// empty). It must exist.
	Namespace string
	// Now is the clock for records without a time (time.Now when nil).
	Now func() time.Time
	// Timeout bounds each method's calls to the API server (30 s when 0).
	Timeout time.Duration
	// MaxAttempts bounds how often Record re-reads the history head when
	// another writer moved it (100 when 0); then it fails with
	// store.ErrConflict.
	MaxAttempts int
	// Log receives repairs and failures (discarded when nil).
	Log *slog.Logger
	// Metadata, the metadata-only client of the same rest.Config
	// (metadata.NewForConfig), lets States list the NanoSegments'
	// metadata alone (the state is an annotation) instead of whole
	// objects; nil lists them whole with the dynamic client. A promotion
	// calls States several times, so with every workload promoted the
	// whole lists made each promotion read every NanoSegment's spec
	// several times (docs/benchmarks.md, "Cluster scale").
	Metadata metadata.Interface
}

// Store is store.PolicyStore over the Kubernetes API server; the
// workload key is "namespace/workload", the workload being the name of a
// Deployment, StatefulSet, … in that namespace (it must be a DNS label or
// subdomain of at most 63 characters: it is a label value). Where
// everything lives:
//
//   - Revision N of a workload: the apps/v1 ControllerRevision
//     "<workload>-r<N>" in its namespace, labelled
//     nanoseg.io/workload=<workload>, revision N, data the store.Revision
//     as JSON. AddRevision validates the policy (policies.ValidateNanoSegment)
//     and takes the next free number (a create that loses a race takes the
//     one after).
//   - The state of a workload: the NanoSegment named after it in its
//     namespace, spec from the revision in force with spec.mode set,
//     labels nanoseg.io/workload and nanoseg.io/revision, status.revision,
//     and the state itself (mode, revision, since, seq) in the
//     nanoseg.io/state annotation. Revision 0 (no policy) is a NanoSegment
//     in observe mode with an empty spec, which filters nothing, whatever
//     mode the record says. A NanoSegment without the workload label or
//     the annotation is not the store's: its workload was never promoted
//     (observe, revision 0); the first promotion takes the object over.
//   - The history: each record in the status of its NanoSegmentPromotion
//     (v1alpha1.PromotionRecord, At at whole seconds); the chain's commit
//     point is the ConfigMap HeadConfigMap, holding the last record and
//     the promotion it belongs to, moved by compare-and-swap on its
//     resourceVersion. See Record.
//   - NetworkPolicies: the networking.k8s.io/v1 objects themselves (see
//     AddNetworkPolicyRecord for what that changes).
//   - ClusterNetworkPolicies: the policy.networking.k8s.io/v1alpha2
//     objects themselves, read on every call (store.ClusterPolicyStore;
//     none when the cluster does not serve the kind).
//
// Every read goes to the API server (quorum reads), so a read right after
// a write, by this Store or another, sees it. Safe for concurrent use, and
// several Stores (a leader and a standby, or two leaders in the seconds of
// a failover) may record at once: the head's compare-and-swap orders them.
// Record and Repair report a committed record that is not yet written
// everywhere with ErrIncomplete.
type Store struct {
	*storeCore
	// target is the promotion a ForRequest view records into.
	target *promoRef
}

type storeCore struct {
	client kubernetes.Interface
	dyn    dynamic.Interface
	cfg    StoreConfig
	log    *slog.Logger

	mu sync.Mutex
	// applied is the head resourceVersion whose record this process
	// knows to be written everywhere (no roll-forward needed).
	applied string
	// last is the head this process wrote last (rv "": none).
	last head
	// revCache holds revisions Record read (cachedRevision).
	revCache map[string]store.Revision
	// cnpWarned holds "name@resourceVersion" of the invalid
	// ClusterNetworkPolicies logged already.
	cnpWarned map[string]bool
	// afterHead, in tests, runs right after a successful head CAS: an
	// error stops Record there, as a crash would.
	afterHead func(model.Promotion) error
}

var _ store.PolicyStore = (*Store)(nil)

// promoRef names a namespaced object.
type promoRef struct{ Namespace, Name string }

func (r promoRef) String() string { return r.Namespace + "/" + r.Name }

// NewStore returns a Store over the API server of client and dyn (the
// typed and the dynamic client of one rest.Config; writes carry that
// identity). It makes no call to the API server.
func NewStore(client kubernetes.Interface, dyn dynamic.Interface, cfg StoreConfig) (*Store, error) {
	if client == nil || dyn == nil {
		return nil, errors.New("kube store: a typed and a dynamic client are required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("kube store: namespace %q: %s", cfg.Namespace, strings.Join(errs, "; "))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 100
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Store{storeCore: &storeCore{client: client, dyn: dyn, cfg: cfg, log: log.With("component", "kube-store")}}, nil
}

// ForRequest returns a view of s whose Record writes the record into the
// NanoSegmentPromotion namespace/name (an operator's request: the
// promotion executor's) instead of creating a promotion object. That
// Record fails, recording nothing, when the promotion does not exist
// (store.ErrNotFound), is of another workload than the event, or already
// holds a record (ErrAlreadyRecorded; the record it holds is returned).
// Every other method is s's.
func (s *Store) ForRequest(namespace, name string) *Store {
	return &Store{storeCore: s.storeCore, target: &promoRef{namespace, name}}
}

func (s *storeCore) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.Timeout)
}

func (s *storeCore) segments(ns string) dynamic.ResourceInterface {
	return s.dyn.Resource(NanoSegmentResource).Namespace(ns)
}

func (s *storeCore) promotions(ns string) dynamic.ResourceInterface {
	if ns == "" {
		return s.dyn.Resource(PromotionResource)
	}
	return s.dyn.Resource(PromotionResource).Namespace(ns)
}

// splitWorkload splits a workload key into namespace and name, checking
// both can name objects and label them.
func splitWorkload(workload string) (string, string, error) {
	ns, w, ok := strings.Cut(workload, "/")
	if !ok || ns == "" || w == "" {
		return "", "", fmt.Errorf("workload %q: want namespace/workload", workload)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", "", fmt.Errorf("workload %q: namespace: %s", workload, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(w); len(errs) > 0 {
		return "", "", fmt.Errorf("workload %q: name: %s", workload, strings.Join(errs, "; "))
	}
	if errs := validation.IsValidLabelValue(w); len(errs) > 0 {
		return "", "", fmt.Errorf("workload %q: name must be a label value (%s): %s", workload, v1alpha1.LabelWorkload, strings.Join(errs, "; "))
	}
	return ns, w, nil
}

// ---- revisions ----

func revisionName(w string, n int) string { return fmt.Sprintf("%s-r%d", w, n) }

// AddRevision implements store.PolicyStore. The policy must be valid as a
// NanoSegment spec (policies.ValidateNanoSegment; its name and namespace
// are the workload's): an invalid one fails wrapping policies.ErrInvalid,
// every problem named with its field path.
func (s *Store) AddRevision(r store.Revision) (store.Revision, error) {
	ns, w, err := splitWorkload(r.Workload)
	if err != nil {
		return store.Revision{}, fmt.Errorf("add revision: %w", err)
	}
	if r.Policy == nil {
		return store.Revision{}, fmt.Errorf("add revision of %s: policy: required", r.Workload)
	}
	check := &v1alpha1.NanoSegment{ObjectMeta: metav1.ObjectMeta{Name: w, Namespace: ns}, Spec: r.Policy.Spec}
	if errs := policies.ValidateNanoSegment(check); len(errs) > 0 {
		return store.Revision{}, fmt.Errorf("add revision of %s: %w: %w", r.Workload, policies.ErrInvalid, errs.ToAggregate())
	}
	r.Policy = r.Policy.DeepCopy()
	ctx, cancel := s.ctx()
	defer cancel()
	have, err := s.revisions(ctx, ns, w)
	if err != nil {
		return store.Revision{}, err
	}
	n := 1
	if len(have) > 0 {
		n = have[len(have)-1].Number + 1
	}
	crs := s.client.AppsV1().ControllerRevisions(ns)
	for {
		r.Number = n
		raw, err := json.Marshal(r)
		if err != nil {
			return store.Revision{}, fmt.Errorf("add revision of %s: %w", r.Workload, err)
		}
		cr := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Name: revisionName(w, n), Namespace: ns, Labels: map[string]string{v1alpha1.LabelWorkload: w}},
			Revision:   int64(n),
			Data:       runtime.RawExtension{Raw: raw},
		}
		_, err = crs.Create(ctx, cr, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			n++ // another writer took n (or a foreign object has the name)
			continue
		}
		if err != nil {
			return store.Revision{}, fmt.Errorf("add revision %d of %s: %w", n, r.Workload, err)
		}
		r.Policy = r.Policy.DeepCopy()
		return r, nil
	}
}

// revisionFrom decodes a ControllerRevision of workload ns/w; ok is false
// for one that is not the store's.
func revisionFrom(cr *appsv1.ControllerRevision, ns, w string) (store.Revision, bool, error) {
	if cr.Labels[v1alpha1.LabelWorkload] != w {
		return store.Revision{}, false, nil
	}
	var r store.Revision
	if err := json.Unmarshal(cr.Data.Raw, &r); err != nil {
		return store.Revision{}, false, fmt.Errorf("decode ControllerRevision %s/%s: %w", cr.Namespace, cr.Name, err)
	}
	r.Workload, r.Number = ns+"/"+w, int(cr.Revision)
	return r, true, nil
}

func (s *storeCore) revisions(ctx context.Context, ns, w string) ([]store.Revision, error) {
	list, err := s.client.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelWorkload + "=" + w})
	if err != nil {
		return nil, fmt.Errorf("list revisions of %s/%s: %w", ns, w, err)
	}
	out := make([]store.Revision, 0, len(list.Items))
	for i := range list.Items {
		r, ok, err := revisionFrom(&list.Items[i], ns, w)
		if err != nil {
			return nil, err
		}
		if ok && list.Items[i].Name == revisionName(w, r.Number) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b store.Revision) int { return a.Number - b.Number })
	return out, nil
}

func (s *storeCore) revision(ctx context.Context, workload string, n int) (store.Revision, error) {
	ns, w, err := splitWorkload(workload)
	if err != nil {
		return store.Revision{}, err
	}
	if n < 1 {
		return store.Revision{}, fmt.Errorf("revision %d of %s: %w", n, workload, store.ErrNotFound)
	}
	cr, err := s.client.AppsV1().ControllerRevisions(ns).Get(ctx, revisionName(w, n), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return store.Revision{}, fmt.Errorf("revision %d of %s: %w", n, workload, store.ErrNotFound)
	}
	if err != nil {
		return store.Revision{}, fmt.Errorf("get revision %d of %s: %w", n, workload, err)
	}
	r, ok, err := revisionFrom(cr, ns, w)
	if err != nil {
		return store.Revision{}, err
	}
	if !ok || r.Number != n {
		return store.Revision{}, fmt.Errorf("revision %d of %s: ControllerRevision %s is not nanoseg's: %w", n, workload, cr.Name, store.ErrNotFound)
	}
	return r, nil
}

// cachedRevision is revision for Record's path and Revision: the API server keeps a
// ControllerRevision's data immutable and the store never deletes one, so
// one read serves every later record to that revision (of this process;
// at most maxCachedRevisions are kept).
func (s *storeCore) cachedRevision(ctx context.Context, workload string, n int) (store.Revision, error) {
	key := workload + "#" + strconv.Itoa(n)
	s.mu.Lock()
	r, ok := s.revCache[key]
	s.mu.Unlock()
	if ok {
		r.Policy = r.Policy.DeepCopy()
		return r, nil
	}
	r, err := s.revision(ctx, workload, n)
	if err != nil {
		return r, err
	}
	s.mu.Lock()
	if s.revCache == nil || len(s.revCache) >= maxCachedRevisions {
		s.revCache = map[string]store.Revision{}
	}
	c := r
	c.Policy = r.Policy.DeepCopy()
	s.revCache[key] = c
	s.mu.Unlock()
	return r, nil
}

const maxCachedRevisions = 4096

// Revision implements store.PolicyStore, read once per process
// (cachedRevision): the controller service asks for the revision in
// force of every workload on each promotion (Active), which without the
// cache made a promotion of every workload one GET per workload per
// promotion, quadratic in the workloads.
func (s *Store) Revision(workload string, n int) (store.Revision, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	return s.cachedRevision(ctx, workload, n)
}

// Revisions implements store.PolicyStore.
func (s *Store) Revisions(workload string) ([]store.Revision, error) {
	ns, w, err := splitWorkload(workload)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	return s.revisions(ctx, ns, w)
}

// LatestRevision implements store.PolicyStore.
func (s *Store) LatestRevision(workload string) (store.Revision, error) {
	rs, err := s.Revisions(workload)
	if err != nil {
		return store.Revision{}, err
	}
	if len(rs) == 0 {
		return store.Revision{}, fmt.Errorf("revisions of %s: %w", workload, store.ErrNotFound)
	}
	return rs[len(rs)-1], nil
}

// ---- the history head ----

// head is the history head as read: the last record (Seq 0: none yet) and
// the promotion it belongs to.
type head struct {
	rv     string // resourceVersion; "" when the ConfigMap does not exist
	rec    model.Promotion
	obj    promoRef
	create bool
}

func (s *storeCore) readHead(ctx context.Context) (head, error) {
	cm, err := s.client.CoreV1().ConfigMaps(s.cfg.Namespace).Get(ctx, HeadConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return head{}, nil
	}
	if err != nil {
		return head{}, fmt.Errorf("read history head %s/%s: %w", s.cfg.Namespace, HeadConfigMap, err)
	}
	h := head{rv: cm.ResourceVersion, create: cm.Data[headCreate] == "true"}
	if raw := cm.Data[headRecord]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &h.rec); err != nil {
			return head{}, fmt.Errorf("read history head %s/%s: record: %w", s.cfg.Namespace, HeadConfigMap, err)
		}
		ns, name, ok := strings.Cut(cm.Data[headObject], "/")
		if !ok {
			return head{}, fmt.Errorf("read history head %s/%s: object %q: want namespace/name", s.cfg.Namespace, HeadConfigMap, cm.Data[headObject])
		}
		h.obj = promoRef{ns, name}
	}
	return h, nil
}

// errHeadMoved: another writer moved the head between read and CAS.
var errHeadMoved = errors.New("history head moved")

// casHead replaces head old by nw, failing with errHeadMoved when the
// head is no longer old; it returns the new resourceVersion.
func (s *storeCore) casHead(ctx context.Context, old, nw head) (string, error) {
	raw, err := json.Marshal(nw.rec)
	if err != nil {
		return "", err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: HeadConfigMap, Namespace: s.cfg.Namespace, ResourceVersion: old.rv,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "nanoseg"}},
		Data: map[string]string{headRecord: string(raw), headObject: nw.obj.String(), headCreate: strconv.FormatBool(nw.create)},
	}
	cms := s.client.CoreV1().ConfigMaps(s.cfg.Namespace)
	var out *corev1.ConfigMap
	if old.rv == "" {
		out, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	} else {
		out, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return "", errHeadMoved
	}
	if err != nil {
		return "", fmt.Errorf("write history head %s/%s: %w", s.cfg.Namespace, HeadConfigMap, err)
	}
	return out.ResourceVersion, nil
}

// ---- state ----

func stateOf(p model.Promotion) store.WorkloadState {
	return store.WorkloadState{Workload: p.Workload, Mode: p.ToMode, Revision: p.ToRevision, Since: p.At, Seq: p.Seq}
}

// segmentState returns the state a NanoSegment the store wrote holds;
// ok is false for one that is not the store's.
func segmentState(u *unstructured.Unstructured, workload string) (store.WorkloadState, bool) {
	_, w, _ := strings.Cut(workload, "/")
	raw, has := u.GetAnnotations()[AnnotationState]
	if !has || u.GetLabels()[v1alpha1.LabelWorkload] != w {
		return store.WorkloadState{}, false
	}
	var st store.WorkloadState
	if err := json.Unmarshal([]byte(raw), &st); err != nil || st.Workload != workload || st.Seq == 0 {
		return store.WorkloadState{}, false
	}
	return st, true
}

// state returns the state of workload ns/w: what its NanoSegment holds,
// unless head h holds a later record of it (committed, not yet written).
func (s *storeCore) state(ctx context.Context, ns, w string, h head) (store.WorkloadState, *unstructured.Unstructured, error) {
	key := ns + "/" + w
	st := store.WorkloadState{Workload: key, Mode: model.ModeObserve}
	u, err := s.segments(ns).Get(ctx, w, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		u = nil
	case err != nil:
		return st, nil, fmt.Errorf("get NanoSegment %s: %w", key, err)
	default:
		if got, ok := segmentState(u, key); ok {
			st = got
		}
	}
	if h.rec.Workload == key && h.rec.Seq > st.Seq {
		st = stateOf(h.rec)
	}
	return st, u, nil
}

// State implements store.PolicyStore.
func (s *Store) State(workload string) (store.WorkloadState, error) {
	ns, w, err := splitWorkload(workload)
	if err != nil {
		return store.WorkloadState{}, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	h, err := s.readHead(ctx)
	if err != nil {
		return store.WorkloadState{}, err
	}
	st, _, err := s.state(ctx, ns, w, h)
	return st, err
}

// States implements store.PolicyStore: the NanoSegments labelled
// nanoseg.io/workload that hold the store's state annotation, in every
// namespace.
func (s *Store) States() ([]store.WorkloadState, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	h, err := s.readHead(ctx)
	if err != nil {
		return nil, err
	}
	items, err := s.listSegmentMeta(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.WorkloadState
	for _, u := range items {
		key := u.GetNamespace() + "/" + u.GetLabels()[v1alpha1.LabelWorkload]
		if u.GetName() != u.GetLabels()[v1alpha1.LabelWorkload] {
			continue
		}
		st, ok := segmentState(u, key)
		if !ok {
			continue
		}
		if h.rec.Workload == key && h.rec.Seq > st.Seq {
			st = stateOf(h.rec)
		}
		out = append(out, st)
	}
	if h.rec.Seq > 0 && !slices.ContainsFunc(out, func(st store.WorkloadState) bool { return st.Workload == h.rec.Workload }) {
		out = append(out, stateOf(h.rec))
	}
	slices.SortFunc(out, func(a, b store.WorkloadState) int { return strings.Compare(a.Workload, b.Workload) })
	return out, nil
}

// listSegmentMeta lists the NanoSegments labelled nanoseg.io/workload in
// every namespace; with cfg.Metadata only their metadata.
func (s *storeCore) listSegmentMeta(ctx context.Context) ([]*unstructured.Unstructured, error) {
	opts := metav1.ListOptions{LabelSelector: v1alpha1.LabelWorkload}
	var out []*unstructured.Unstructured
	if s.cfg.Metadata != nil {
		list, err := s.cfg.Metadata.Resource(NanoSegmentResource).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list NanoSegments: %w", err)
		}
		for i := range list.Items {
			m := &list.Items[i]
			u := &unstructured.Unstructured{}
			u.SetName(m.Name)
			u.SetNamespace(m.Namespace)
			u.SetLabels(m.Labels)
			u.SetAnnotations(m.Annotations)
			out = append(out, u)
		}
		return out, nil
	}
	list, err := s.dyn.Resource(NanoSegmentResource).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list NanoSegments: %w", err)
	}
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out, nil
}

// Workloads implements store.PolicyStore: the workloads of the store's
// ControllerRevisions and NanoSegments.
func (s *Store) Workloads() ([]string, error) {
	sts, err := s.States()
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	list, err := s.client.AppsV1().ControllerRevisions("").List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelWorkload})
	if err != nil {
		return nil, fmt.Errorf("list revisions: %w", err)
	}
	seen := map[string]bool{}
	for _, st := range sts {
		seen[st.Workload] = true
	}
	for i := range list.Items {
		cr := &list.Items[i]
		w := cr.Labels[v1alpha1.LabelWorkload]
		if cr.Name == revisionName(w, int(cr.Revision)) {
			seen[cr.Namespace+"/"+w] = true
		}
	}
	out := make([]string, 0, len(seen))
	for w := range seen {
		out = append(out, w)
	}
	slices.Sort(out)
	return out, nil
}

// ---- recording ----

// Record implements store.PolicyStore over the API server. p.At is kept
// at whole seconds in UTC (v1alpha1.RecordTime; the current time when
// zero), so the hash verifies after the record's round trip through the
// API. The steps:
//
//  1. read the history head; if its record is not yet written everywhere
//     (a writer stopped after committing it), write it first (see Repair);
//  2. check expect against the workload's state (store.ErrConflict) and
//     that the target revision exists (store.ErrNotFound);
//  3. build the record (Seq head+1, PrevHash head's Hash, Hash) and swap it
//     into the head by compare-and-swap on the head's resourceVersion:
//     this is the commit point. When another writer moved the head in
//     between, go back to 1 (at most StoreConfig.MaxAttempts times, then
//     store.ErrConflict);
//  4. write the record into its NanoSegmentPromotion's status (phase
//     Succeeded): the ForRequest view's promotion, else a promotion the
//     store creates, named "<workload>-<seq>" in the workload's namespace;
//  5. write the workload's NanoSegment (skipped when it already holds a
//     later record's state, so a slow writer never turns it back).
//
// A failure after step 3 returns the committed record with an error
// wrapping ErrIncomplete. So every record is committed once (the head
// admits one successor of each record) and none is lost (the head keeps
// the last until it is written, and only one record at a time can be in
// that state).
func (s *Store) Record(p model.Promotion, expect *store.WorkloadState) (model.Promotion, error) {
	ns, w, err := splitWorkload(p.Workload)
	if err != nil {
		return model.Promotion{}, fmt.Errorf("record %s: %w", p.Action, err)
	}
	if p.At.IsZero() {
		p.At = s.cfg.Now()
	}
	p.At = v1alpha1.RecordTime(p.At)
	ctx, cancel := s.ctx()
	defer cancel()
	var k known
	if p.ToRevision != 0 {
		r, err := s.cachedRevision(ctx, p.Workload, p.ToRevision)
		if err != nil {
			return model.Promotion{}, fmt.Errorf("record %s of %s: %w", p.Action, p.Workload, err)
		}
		k.rev = &r
	}
	if s.target != nil && s.target.Namespace != ns {
		return model.Promotion{}, fmt.Errorf("record %s of %s into promotion %s: the promotion is in another namespace than the workload", p.Action, p.Workload, s.target)
	}
	// The head this process wrote last, when it is still the head, saves
	// reading it: a stale one fails the compare-and-swap (or the expect
	// check, which is then done again on a fresh head).
	s.mu.Lock()
	h, cached := s.last, s.last.rv != ""
	s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		if !cached {
			var err error
			if h, err = s.readHead(ctx); err != nil {
				return model.Promotion{}, err
			}
		}
		if err := s.rollForward(ctx, h); err != nil {
			return model.Promotion{}, fmt.Errorf("record %s of %s: complete record %d first: %w", p.Action, p.Workload, h.rec.Seq, err)
		}
		if s.target != nil {
			if h.obj == *s.target {
				return h.rec, fmt.Errorf("record %s of %s into promotion %s: %w as record %d", p.Action, p.Workload, s.target, ErrAlreadyRecorded, h.rec.Seq)
			}
			u, prev, err := s.checkRequest(ctx, p.Workload)
			if err != nil {
				return prev, err
			}
			k.prom = u
		}
		cur, seg, err := s.state(ctx, ns, w, h)
		if err != nil {
			return model.Promotion{}, err
		}
		k.seg, k.segRead = seg, true
		if expect != nil && (cur.Mode != expect.Mode || cur.Revision != expect.Revision) {
			if cached {
				cached = false
				continue
			}
			return model.Promotion{}, fmt.Errorf("record %s of %s: %w: %s is %s at revision %d now", p.Action, p.Workload, store.ErrConflict, p.Workload, cur.Mode, cur.Revision)
		}
		rec := p
		rec.Seq, rec.FromMode, rec.FromRevision, rec.PrevHash = h.rec.Seq+1, cur.Mode, cur.Revision, h.rec.Hash
		rec.Hash = rec.ChainHash()
		nw := head{rec: rec}
		if s.target != nil {
			nw.obj = *s.target
		} else {
			name, free, err := s.freeName(ctx, ns, w, rec.Seq)
			if err != nil {
				return model.Promotion{}, err
			}
			nw.obj, nw.create, k.promFree = promoRef{ns, name}, true, free
		}
		rv, err := s.casHead(ctx, h, nw)
		if errors.Is(err, errHeadMoved) {
			if attempt >= s.cfg.MaxAttempts {
				return model.Promotion{}, fmt.Errorf("record %s of %s: %w: the history head moved %d times in a row", p.Action, p.Workload, store.ErrConflict, attempt)
			}
			if !cached {
				// Others are writing: back off a little, at random, so
				// two writers do not keep colliding.
				time.Sleep(time.Duration(rand.Int64N(int64(time.Millisecond) * int64(min(attempt, 20)))))
			}
			cached = false
			continue
		}
		if err != nil {
			return model.Promotion{}, err
		}
		nw.rv = rv
		if s.afterHead != nil {
			if err := s.afterHead(rec); err != nil {
				return rec, err
			}
		}
		if err := s.complete(ctx, nw, false, k); err != nil {
			return rec, fmt.Errorf("record %d (%s of %s): %w: %w", rec.Seq, p.Action, p.Workload, ErrIncomplete, err)
		}
		s.mu.Lock()
		s.last = nw
		s.mu.Unlock()
		return rec, nil
	}
}

// checkRequest checks the ForRequest target exists, is of workload and
// holds no record yet.
func (s *Store) checkRequest(ctx context.Context, workload string) (*unstructured.Unstructured, model.Promotion, error) {
	u, err := s.promotions(s.target.Namespace).Get(ctx, s.target.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, model.Promotion{}, fmt.Errorf("record into promotion %s: %w", s.target, store.ErrNotFound)
	}
	if err != nil {
		return nil, model.Promotion{}, fmt.Errorf("get promotion %s: %w", s.target, err)
	}
	var pr v1alpha1.NanoSegmentPromotion
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &pr); err != nil {
		return nil, model.Promotion{}, fmt.Errorf("decode promotion %s: %w", s.target, err)
	}
	if pr.Status.Record != nil {
		return nil, pr.Status.Record.Model(), fmt.Errorf("record into promotion %s: %w as record %d", s.target, ErrAlreadyRecorded, pr.Status.Record.Seq)
	}
	if got := pr.Namespace + "/" + pr.Spec.Workload; got != workload {
		return nil, model.Promotion{}, fmt.Errorf("record %s into promotion %s: the promotion is of workload %s", workload, s.target, got)
	}
	return u, model.Promotion{}, nil
}

// freeName returns the name of the promotion the store creates for
// record seq of ns/w: "<w>-<seq>", or with a random suffix when someone
// took that name; free says the name was not taken when read.
func (s *storeCore) freeName(ctx context.Context, ns, w string, seq uint64) (name string, free bool, err error) {
	base := fmt.Sprintf("%s-%d", w, seq)
	if len(base) > validation.DNS1123SubdomainMaxLength-6 {
		base = base[len(base)-(validation.DNS1123SubdomainMaxLength-6):]
		base = strings.TrimLeft(base, "-.")
	}
	_, err = s.promotions(ns).Get(ctx, base, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return base, true, nil
	case err != nil:
		return "", false, fmt.Errorf("get promotion %s/%s: %w", ns, base, err)
	}
	const letters = "bcdfghjklmnpqrstvwxz2456789"
	suffix := make([]byte, 5)
	for i := range suffix {
		suffix[i] = letters[rand.IntN(len(letters))]
	}
	return base + "-" + string(suffix), false, nil
}

// known is what Record read before the commit and the writes after it
// may start from instead of reading again (each write is conditional on
// the resourceVersion read, so a stale one costs a retry, never a lost
// update).
type known struct {
	rev      *store.Revision            // the record's revision (nil: read it)
	seg      *unstructured.Unstructured // the NanoSegment as read
	segRead  bool                       // seg was read (nil: it did not exist)
	prom     *unstructured.Unstructured // the promotion as read
	promFree bool                       // the promotion's name was free
}

// rollForward completes head h's record when this process does not know
// it to be complete.
func (s *storeCore) rollForward(ctx context.Context, h head) error {
	if h.rec.Seq == 0 {
		return nil
	}
	s.mu.Lock()
	done := s.applied == h.rv
	s.mu.Unlock()
	if done {
		return nil
	}
	err := s.complete(ctx, h, false, known{})
	if err != nil && permanent(err) {
		// Retrying cannot help, and the chain must not stop for it: the
		// record stays committed (History shows it), the failure is
		// logged, and Repair will try again.
		s.log.Error("a committed record cannot be written everywhere", "seq", h.rec.Seq, "workload", h.rec.Workload, "promotion", h.obj.String(), "err", err)
		s.mu.Lock()
		s.applied = h.rv
		s.mu.Unlock()
		return nil
	}
	return err
}

// errRecordDiffers: a promotion holds another record than the one the
// head says it belongs to (edited after the fact).
var errRecordDiffers = errors.New("promotion holds another record")

// permanent reports whether err from completing a record is one retrying
// cannot fix: the API refuses the NanoSegment as invalid, the revision is
// gone, or the promotion holds another record.
func permanent(err error) bool {
	return apierrors.IsInvalid(err) || errors.Is(err, store.ErrNotFound) || errors.Is(err, errRecordDiffers)
}

// complete writes head h's record into its promotion and the workload's
// NanoSegment, then remembers h as complete. force re-applies the
// NanoSegment even when it already holds this record's state (Repair:
// it undoes hand edits).
func (s *storeCore) complete(ctx context.Context, h head, force bool, k known) error {
	if err := s.writeRecord(ctx, h, k); err != nil {
		return err
	}
	if err := s.applySegment(ctx, h.rec, force, k); err != nil {
		return err
	}
	s.mu.Lock()
	s.applied = h.rv
	s.mu.Unlock()
	return nil
}

// writeRecord writes h's record into the status of h's promotion,
// creating the promotion when the head says the store creates it or when
// it is gone (an operator deleted a request whose record was committed:
// the record must not be lost).
func (s *storeCore) writeRecord(ctx context.Context, h head, k known) error {
	res := s.promotions(h.obj.Namespace)
	rec := v1alpha1.RecordFrom(h.rec)
	for attempt := 1; ; attempt++ {
		var u *unstructured.Unstructured
		var err error
		switch {
		case attempt == 1 && k.promFree:
			err = apierrors.NewNotFound(PromotionResource.GroupResource(), h.obj.Name)
		case attempt == 1 && k.prom != nil:
			u = k.prom
		default:
			u, err = res.Get(ctx, h.obj.Name, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			if !h.create {
				s.log.Warn("the promotion of a committed record is gone: creating it again", "promotion", h.obj.String(), "seq", h.rec.Seq)
			}
			u, err = res.Create(ctx, promotionFor(h), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("promotion %s: %w", h.obj, err)
		}
		var pr v1alpha1.NanoSegmentPromotion
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &pr); err != nil {
			return fmt.Errorf("decode promotion %s: %w", h.obj, err)
		}
		if have := pr.Status.Record; have != nil {
			if have.Seq == rec.Seq && have.Hash == rec.Hash {
				return nil
			}
			return fmt.Errorf("%w: %s holds record %d (hash %.12s), not the committed record %d (hash %.12s)", errRecordDiffers, h.obj, have.Seq, have.Hash, rec.Seq, rec.Hash)
		}
		if h.create && u.GetAnnotations()[AnnotationRecordedSeq] != strconv.FormatUint(h.rec.Seq, 10) {
			// Someone created a request of that name between the check
			// that it was free and the create: never mark their request
			// carried out with another record.
			return fmt.Errorf("%w: %s was created by someone else after the store chose the name for record %d", errRecordDiffers, h.obj, rec.Seq)
		}
		status, _, _ := unstructured.NestedMap(u.Object, "status")
		if status == nil {
			status = map[string]any{}
		}
		recMap, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&rec)
		if err != nil {
			return err
		}
		cond, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&metav1.Condition{
			Type: "Complete", Status: metav1.ConditionTrue, Reason: "Recorded", ObservedGeneration: u.GetGeneration(),
			LastTransitionTime: metav1.NewTime(h.rec.At), Message: fmt.Sprintf("recorded as event %d of the history", rec.Seq),
		})
		if err != nil {
			return err
		}
		status["phase"] = string(v1alpha1.PromotionSucceeded)
		status["record"] = recMap
		status["observedGeneration"] = u.GetGeneration()
		conds, _, _ := unstructured.NestedSlice(status, "conditions")
		conds = slices.DeleteFunc(conds, func(c any) bool { m, _ := c.(map[string]any); return m["type"] == "Complete" })
		status["conditions"] = append(conds, cond)
		u.Object["status"] = status
		_, err = res.UpdateStatus(ctx, u, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && attempt < 10 {
			continue
		}
		if err != nil {
			return fmt.Errorf("write record %d into promotion %s: %w", rec.Seq, h.obj, err)
		}
		return nil
	}
}

// promotionFor returns the NanoSegmentPromotion the store creates for
// h's record: the request the record answers.
func promotionFor(h head) *unstructured.Unstructured {
	_, w, _ := strings.Cut(h.rec.Workload, "/")
	// The request's reason must be 1-1024 characters, not blank (the
	// CRD's rules); the record keeps the reason as given.
	reason := h.rec.Reason
	if strings.TrimSpace(reason) == "" {
		reason = "(none given)"
	}
	if r := []rune(reason); len(r) > 1024 {
		reason = string(r[:1023]) + "…"
	}
	spec := map[string]any{
		"workload": w,
		"reason":   reason,
		"revision": int64(h.rec.ToRevision),
	}
	if h.rec.Action == model.ActionRollback {
		// A rollback's mode is the one recorded with its revision: the
		// schema refuses a rollback that names one (the record has it).
		spec["rollback"] = true
	} else if h.rec.ToMode != "" {
		spec["mode"] = string(h.rec.ToMode)
	}
	if h.rec.Action != model.ActionRollback && len(h.rec.Forced) > 0 {
		spec["force"] = true
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(v1alpha1.APIVersion)
	u.SetKind(v1alpha1.KindPromotion)
	u.SetNamespace(h.obj.Namespace)
	u.SetName(h.obj.Name)
	u.SetLabels(map[string]string{v1alpha1.LabelWorkload: w})
	u.SetAnnotations(map[string]string{AnnotationRecordedSeq: strconv.FormatUint(h.rec.Seq, 10)})
	return u
}

// desiredSegment returns the NanoSegment in force for record rec.
func (s *storeCore) desiredSegment(ctx context.Context, rec model.Promotion, rev *store.Revision) (*v1alpha1.NanoSegment, error) {
	ns, w, err := splitWorkload(rec.Workload)
	if err != nil {
		return nil, err
	}
	seg := &v1alpha1.NanoSegment{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: w, Namespace: ns},
		Spec:       v1alpha1.NanoSegmentSpec{Mode: model.ModeObserve},
	}
	if rec.ToRevision != 0 {
		r := rev
		if r == nil || r.Number != rec.ToRevision || r.Workload != rec.Workload {
			got, err := s.cachedRevision(ctx, rec.Workload, rec.ToRevision)
			if err != nil {
				return nil, err
			}
			r = &got
		}
		seg.Spec = *r.Policy.Spec.DeepCopy()
		seg.Spec.Mode = rec.ToMode
	}
	raw, err := json.Marshal(stateOf(rec))
	if err != nil {
		return nil, err
	}
	seg.Labels = map[string]string{v1alpha1.LabelWorkload: w, v1alpha1.LabelRevision: strconv.Itoa(rec.ToRevision)}
	seg.Annotations = map[string]string{AnnotationState: string(raw)}
	return seg, nil
}

// applySegment writes the NanoSegment of rec's workload for rec, unless
// it holds a later record's state (or, without force, this record's).
func (s *storeCore) applySegment(ctx context.Context, rec model.Promotion, force bool, k known) error {
	want, err := s.desiredSegment(ctx, rec, k.rev)
	if err != nil {
		return err
	}
	res := s.segments(want.Namespace)
	for attempt := 1; ; attempt++ {
		if attempt > 20 {
			return fmt.Errorf("write NanoSegment %s/%s: kept changing under the write", want.Namespace, want.Name)
		}
		var u *unstructured.Unstructured
		switch {
		case attempt == 1 && k.segRead && k.seg == nil:
			err = apierrors.NewNotFound(NanoSegmentResource.GroupResource(), want.Name)
		case attempt == 1 && k.segRead:
			u, err = k.seg, nil
		default:
			u, err = res.Get(ctx, want.Name, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(want)
			if err != nil {
				return err
			}
			delete(obj, "status")
			u, err = res.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("create NanoSegment %s/%s: %w", want.Namespace, want.Name, err)
			}
		} else if err != nil {
			return fmt.Errorf("get NanoSegment %s/%s: %w", want.Namespace, want.Name, err)
		} else {
			have, ok := segmentState(u, rec.Workload)
			if ok && have.Seq > rec.Seq {
				return nil // a later record is in force
			}
			if !ok || have.Seq < rec.Seq || (force && !sameSegment(u, want)) {
				spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&want.Spec)
				if err != nil {
					return err
				}
				u.Object["spec"] = spec
				labels := u.GetLabels()
				if labels == nil {
					labels = map[string]string{}
				}
				annotations := u.GetAnnotations()
				if annotations == nil {
					annotations = map[string]string{}
				}
				for k, v := range want.Labels {
					labels[k] = v
				}
				for k, v := range want.Annotations {
					annotations[k] = v
				}
				u.SetLabels(labels)
				u.SetAnnotations(annotations)
				u, err = res.Update(ctx, u, metav1.UpdateOptions{})
				if apierrors.IsConflict(err) {
					continue
				}
				if err != nil {
					return fmt.Errorf("update NanoSegment %s/%s: %w", want.Namespace, want.Name, err)
				}
			}
		}
		rev, _, _ := unstructured.NestedInt64(u.Object, "status", "revision")
		if rev == int64(rec.ToRevision) {
			return nil
		}
		if err := unstructured.SetNestedField(u.Object, int64(rec.ToRevision), "status", "revision"); err != nil {
			return err
		}
		_, err = res.UpdateStatus(ctx, u, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue // re-read: if a later record wrote it since, leave it
		}
		if err != nil {
			return fmt.Errorf("write status of NanoSegment %s/%s: %w", want.Namespace, want.Name, err)
		}
		return nil
	}
}

// sameSegment reports whether u holds want's spec, labels and
// annotations.
func sameSegment(u *unstructured.Unstructured, want *v1alpha1.NanoSegment) bool {
	have, err := NanoSegmentFromUnstructured(u)
	if err != nil {
		return false
	}
	for k, v := range want.Labels {
		if have.Labels[k] != v {
			return false
		}
	}
	for k, v := range want.Annotations {
		if have.Annotations[k] != v {
			return false
		}
	}
	return apiequality.Semantic.DeepEqual(have.Spec, want.Spec)
}

// ---- history ----

// History implements store.PolicyStore: the records in the status of
// every NanoSegmentPromotion (of the workload's namespace, for a
// workload), with the head's record when it is not yet in its
// promotion, sorted by Seq. Nothing here repairs or filters: two objects
// holding one Seq, or an edited record, are returned as they are, for
// model.VerifyPromotions to report.
func (s *Store) History(workload string) ([]model.Promotion, error) {
	ns := ""
	if workload != "" {
		var err error
		if ns, _, err = splitWorkload(workload); err != nil {
			return nil, err
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	h, err := s.readHead(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.promotions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list promotions: %w", err)
	}
	var out []model.Promotion
	headIn := false
	for i := range list.Items {
		var pr v1alpha1.NanoSegmentPromotion
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(list.Items[i].Object, &pr); err != nil {
			return nil, fmt.Errorf("decode promotion %s/%s: %w", list.Items[i].GetNamespace(), list.Items[i].GetName(), err)
		}
		if pr.Status.Record == nil {
			continue
		}
		p := pr.Status.Record.Model()
		if workload != "" && p.Workload != workload {
			continue
		}
		if p.Seq == h.rec.Seq && (promoRef{pr.Namespace, pr.Name}) == h.obj {
			headIn = true
		}
		out = append(out, p)
	}
	if h.rec.Seq > 0 && !headIn && (workload == "" || h.rec.Workload == workload) {
		out = append(out, h.rec)
	}
	slices.SortStableFunc(out, func(a, b model.Promotion) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return out, nil
}

// Repair makes what the API server holds agree with the hash chain; the
// controller that becomes leader calls it before anything else. It writes
// the head's record into its promotion when a writer stopped before doing
// so, and re-applies the NanoSegment of every workload's latest record
// (a NanoSegment edited by hand gets the recorded spec, mode and labels
// back; one that holds its record's state is left alone). It changes no
// record and adds none. Errors name the workload; the other workloads are
// still repaired.
func (s *Store) Repair(ctx context.Context) error {
	h, err := s.readHead(ctx)
	if err != nil {
		return err
	}
	var errs []error
	if h.rec.Seq > 0 {
		if err := s.writeRecord(ctx, h, known{}); err != nil {
			errs = append(errs, fmt.Errorf("repair record %d: %w", h.rec.Seq, err))
		}
	}
	hist, err := s.History("")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	latest := map[string]model.Promotion{}
	for _, p := range hist {
		if p.Seq > latest[p.Workload].Seq {
			latest[p.Workload] = p
		}
	}
	for _, w := range slices.Sorted(maps.Keys(latest)) {
		if err := s.applySegment(ctx, latest[w], true, known{}); err != nil {
			errs = append(errs, fmt.Errorf("repair NanoSegment of %s: %w", w, err))
		}
	}
	if len(errs) == 0 {
		s.mu.Lock()
		s.applied = h.rv
		s.mu.Unlock()
		s.log.Info("repaired", "head", h.rec.Seq, "workloads", len(latest))
	}
	return errors.Join(errs...)
}
