package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
)

// ErrNotSynced is returned by List before every informer has listed its
// objects and the finder has scanned once: a partial snapshot would leave
// peers unknown, and a node must not enforce on it.
var ErrNotSynced = errors.New("kubernetes inventory not synced yet")

// Config configures a Source.
type Config struct {
	// NodeName is this node's name (spec.nodeName of its pods). Empty:
	// no pod is local and every endpoint is a peer.
	NodeName string
	// Finder finds the network namespaces of this node's pods (nil: none
	// is found, every endpoint is a peer, and no pod is reported unfound).
	// A PodFinder also finds them before their addresses are posted
	// (early.go).
	Finder Finder
	// ByAddressOnly finds pods by their posted addresses only, even with
	// a PodFinder (the source as it was before; for measurements).
	ByAddressOnly bool
	// Nodes watches the cluster's Nodes (labels and InternalIP and
	// ExternalIP addresses) for the nodes peers of ClusterNetworkPolicies
	// (Snapshot.Nodes); it needs list and watch on nodes. Without it a
	// snapshot has no nodes.
	Nodes bool
	// Resync is the informers' resync period (0: none).
	Resync time.Duration
	// Logger gets address conflicts and unfound pods (nil: discard).
	Logger *slog.Logger
	// Registerer gets the source's metrics (nil: none).
	Registerer prometheus.Registerer
}

// Validate reports every bad field at once.
func (c Config) Validate() error {
	var errs []error
	if c.Resync < 0 {
		errs = append(errs, fmt.Errorf("resync: %s is negative", c.Resync))
	}
	if strings.ContainsAny(c.NodeName, " /") {
		errs = append(errs, fmt.Errorf("nodeName: %q is no Kubernetes node name", c.NodeName))
	}
	return errors.Join(errs...)
}

// Source is the Kubernetes inventory source (inventory.Source): every
// counted Pod of the cluster is an endpoint (pods of other nodes too, as
// peers), with the Namespaces and the Services with their ready backends.
// The pods of NodeName whose network namespace the Finder found get Path
// and NetnsInode; every other endpoint has Path "" and is a peer only: a
// node neither claims, observes nor programs it.
//
// Pods that count, workloads and address conflicts: see podEndpoint,
// Workload and resolveAddrs. Snapshots share the informers' label maps:
// treat them as read-only.
type Source struct {
	cfg      Config
	log      *slog.Logger
	factory  informers.SharedInformerFactory
	podInf   cache.SharedIndexInformer
	nsInf    cache.SharedIndexInformer
	svcInf   cache.SharedIndexInformer
	sliceInf cache.SharedIndexInformer
	nodeInf  cache.SharedIndexInformer // nil without Config.Nodes
	synced   atomic.Bool
	unfoundG *prometheus.GaugeVec

	mu       sync.Mutex
	pods     map[string]*podEntry // by endpoint key
	waiting  map[string]*podEntry // pods of this node without addresses yet, by endpoint key
	pending  []PendingPod         // of the last List
	watchers map[int]func()
	nextID   int
	unfound  []Unfound
	logged   map[string]bool // conflicts and unfound reasons logged, so each is logged once
}

// Unfound is a pod of this node whose network namespace was not found,
// and why: it is listed as a peer (no Path) until found.
type Unfound struct {
	Pod    string       `json:"pod"`   // "namespace/name"
	Netns  string       `json:"netns"` // endpoint key
	Addrs  []netip.Addr `json:"addrs"`
	Code   string       `json:"code"` // ReasonNotFound, ReasonPartial or ReasonAmbiguous
	Reason string       `json:"reason"`
}

// New returns a source over client's informers; Run starts them.
func New(client kubernetes.Interface, cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cfg: cfg, log: cfg.Logger.With("component", "kube-inventory"),
		pods: map[string]*podEntry{}, waiting: map[string]*podEntry{}, watchers: map[int]func(){}, logged: map[string]bool{},
		unfoundG: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nanoseg_node_pod_netns_unfound",
			Help: "Pods of this node whose network namespace was not found (reason: not_found, partial, ambiguous), as of the last inventory list; they are peers only until found.",
		}, []string{"reason"}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.unfoundG); err != nil {
			return nil, fmt.Errorf("register kube inventory metrics: %w", err)
		}
	}
	for _, r := range []string{ReasonNotFound, ReasonPartial, ReasonAmbiguous} {
		s.unfoundG.WithLabelValues(r).Set(0)
	}
	s.factory = informers.NewSharedInformerFactoryWithOptions(client, cfg.Resync, informers.WithTransform(transform))
	// Pods that ended hold no address any more: the API server leaves them
	// out (and sends a deletion when a pod ends).
	s.podInf = coreinformers.NewFilteredPodInformer(client, metav1.NamespaceAll, cfg.Resync, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = "status.phase!=" + string(corev1.PodSucceeded) + ",status.phase!=" + string(corev1.PodFailed)
		})
	if err := s.podInf.SetTransform(transform); err != nil {
		return nil, fmt.Errorf("trim pods: %w", err)
	}
	s.nsInf = s.factory.Core().V1().Namespaces().Informer()
	s.svcInf = s.factory.Core().V1().Services().Informer()
	s.sliceInf = s.factory.Discovery().V1().EndpointSlices().Informer()
	if err := s.sliceInf.AddIndexers(cache.Indexers{serviceIndex: sliceService}); err != nil {
		return nil, fmt.Errorf("index endpoint slices: %w", err)
	}
	if _, err := s.podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.podChanged(o) },
		UpdateFunc: func(_, o any) { s.podChanged(o) },
		DeleteFunc: s.podDeleted,
	}); err != nil {
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.notify() },
		UpdateFunc: func(a, b any) {
			// A resync delivers the same object again: nothing changed.
			if ma, mb := metaOf(a), metaOf(b); ma == nil || mb == nil || ma.GetResourceVersion() == "" || ma.GetResourceVersion() != mb.GetResourceVersion() {
				s.notify()
			}
		},
		DeleteFunc: func(any) { s.notify() },
	}
	watched := map[string]cache.SharedIndexInformer{"namespaces": s.nsInf, "services": s.svcInf, "endpointslices": s.sliceInf}
	if cfg.Nodes {
		s.nodeInf = s.factory.Core().V1().Nodes().Informer()
		watched["nodes"] = s.nodeInf
	}
	for name, inf := range watched {
		if _, err := inf.AddEventHandler(notify); err != nil {
			return nil, fmt.Errorf("watch %s: %w", name, err)
		}
	}
	return s, nil
}

func metaOf(o any) metav1.Object {
	m, _ := o.(metav1.Object)
	return m
}

// Run starts the informers and the finder, waits until they have synced
// (HasSynced), and runs until ctx ends; it returns nil then, or an error
// when the caches could not sync before ctx ended.
func (s *Source) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer s.factory.Shutdown()
	defer cancel()
	s.factory.Start(ctx.Done())
	wg.Add(1)
	go func() { defer wg.Done(); s.podInf.RunWithContext(ctx) }()
	if s.cfg.Finder != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.cfg.Finder.Run(ctx, s.notify); err != nil {
				s.log.Error("netns finder stopped", "err", err)
			}
		}()
	}
	syncs := []cache.InformerSynced{s.podInf.HasSynced, s.nsInf.HasSynced, s.svcInf.HasSynced, s.sliceInf.HasSynced}
	if s.nodeInf != nil {
		syncs = append(syncs, s.nodeInf.HasSynced)
	}
	if s.cfg.Finder != nil {
		syncs = append(syncs, s.cfg.Finder.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return fmt.Errorf("sync kubernetes inventory: %w", context.Cause(ctx))
	}
	s.synced.Store(true)
	s.log.Info("kubernetes inventory synced", "node", s.cfg.NodeName)
	s.notify()
	<-ctx.Done()
	return nil
}

// HasSynced reports whether the informers have listed every object once
// and the finder has scanned once; before, List fails with ErrNotSynced.
func (s *Source) HasSynced() bool { return s.synced.Load() }

// WaitForSync waits until HasSynced or ctx ends (then its error).
func (s *Source) WaitForSync(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !s.synced.Load() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for kubernetes inventory: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Watch implements inventory.Source: notify (which must not block) is
// called on every informer event that may change List's answer and after
// every finder scan that changed the node's namespaces, until ctx ends.
func (s *Source) Watch(ctx context.Context, notify func()) error {
	s.mu.Lock()
	id := s.nextID
	s.nextID++
	s.watchers[id] = notify
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	delete(s.watchers, id)
	s.mu.Unlock()
	return nil
}

func (s *Source) notify() {
	s.mu.Lock()
	fns := make([]func(), 0, len(s.watchers))
	for _, f := range s.watchers {
		fns = append(fns, f)
	}
	s.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

// podChanged updates the pod's entry and notifies when its endpoint
// changed; a pod of this node that appeared or changed asks the finder to
// rescan.
func (s *Source) podChanged(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	key := NetnsKey(p.Namespace, p.Name)
	e, counts, bad := podEndpoint(p)
	if len(bad) > 0 {
		s.log.Warn("pod has unparsable addresses; left out", "pod", p.Namespace+"/"+p.Name, "addrs", bad)
	}
	s.mu.Lock()
	old, oldW := s.pods[key], s.waiting[key]
	var w *podEntry
	if counts {
		s.pods[key] = e
		delete(s.waiting, key)
	} else {
		delete(s.pods, key)
		if s.local(e) {
			w = e
			s.waiting[key] = e
		} else {
			delete(s.waiting, key)
		}
	}
	s.mu.Unlock()
	if !counts {
		e = nil
	}
	if sameEndpoint(old, e) && sameEndpoint(oldW, w) {
		return
	}
	if s.local(old) || s.local(e) || w != nil {
		s.refresh()
	}
	s.notify()
}

func (s *Source) podDeleted(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	key := NetnsKey(p.Namespace, p.Name)
	s.mu.Lock()
	old := s.pods[key]
	delete(s.pods, key)
	if w := s.waiting[key]; w != nil {
		delete(s.waiting, key)
		old = w
	}
	s.mu.Unlock()
	if old == nil {
		return
	}
	if s.local(old) {
		s.refresh()
	}
	s.notify()
}

func (s *Source) local(e *podEntry) bool {
	return e != nil && s.cfg.NodeName != "" && e.node == s.cfg.NodeName
}

func (s *Source) refresh() {
	if s.cfg.Finder != nil {
		s.cfg.Finder.Refresh()
	}
}

// List implements inventory.Source. It fails with ErrNotSynced before
// HasSynced. Endpoints are sorted by key, Services by namespace/name.
func (s *Source) List(ctx context.Context) (inventory.Snapshot, error) {
	if !s.synced.Load() {
		return inventory.Snapshot{}, ErrNotSynced
	}
	if err := ctx.Err(); err != nil {
		return inventory.Snapshot{}, err
	}
	s.mu.Lock()
	entries := make([]*podEntry, 0, len(s.pods))
	for _, e := range s.pods {
		entries = append(entries, e)
	}
	waiting := make([]*podEntry, 0, len(s.waiting))
	for _, e := range s.waiting {
		waiting = append(waiting, e)
	}
	s.mu.Unlock()
	pf := s.podFinder()
	early, pending := s.findEarly(pf, waiting)
	for _, fe := range early {
		entries = append(entries, fe.entry)
	}
	slices.SortFunc(entries, func(a, b *podEntry) int { return strings.Compare(a.ep.Netns, b.ep.Netns) })
	entries, conflicts := resolveAddrs(entries)
	snap := inventory.Snapshot{Endpoints: make([]model.Endpoint, len(entries)), Namespaces: s.namespaces(), Services: s.services(), Nodes: s.nodes()}
	local := map[string][]netip.Addr{}
	uids := map[string][]string{}
	for i, e := range entries {
		snap.Endpoints[i] = e.ep
		if s.local(e) {
			local[e.ep.Netns] = e.ep.Addrs
			uids[e.ep.Netns] = e.uids
		}
	}
	var unfound []Unfound
	if s.cfg.Finder != nil && len(local) > 0 {
		found := s.cfg.Finder.Find(local)
		for i := range snap.Endpoints {
			ep := &snap.Endpoints[i]
			fd, ok := found[ep.Netns]
			if !ok {
				continue
			}
			fd = checkIdentity(pf, fd, uids[ep.Netns], early[ep.Netns])
			if fd.Reason == "" {
				ep.Path, ep.NetnsInode = fd.Path, fd.Inode
				continue
			}
			if fe, ok := early[ep.Netns]; ok {
				// Found by its processes, but its addresses say otherwise:
				// still waiting, not unfound (its status has no addresses).
				pending = append(pending, pendingOf(fe.entry, fd.Reason))
				continue
			}
			pending = append(pending, pendingOf(entries[i], fd.Reason))
			unfound = append(unfound, Unfound{Pod: ep.Namespace + "/" + strings.TrimPrefix(ep.Netns, ep.Namespace+"_"),
				Netns: ep.Netns, Addrs: ep.Addrs, Code: fd.Code, Reason: fd.Reason})
		}
		if len(unfound) > 0 {
			s.cfg.Finder.Refresh()
		}
	}
	slices.SortFunc(pending, func(a, b PendingPod) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	s.mu.Lock()
	s.pending = pending
	s.mu.Unlock()
	s.report(conflicts, unfound)
	return snap, nil
}

// report logs each new address conflict and unfound pod once, and sets
// the unfound gauge.
func (s *Source) report(conflicts []conflict, unfound []Unfound) {
	counts := map[string]int{ReasonNotFound: 0, ReasonPartial: 0, ReasonAmbiguous: 0}
	for _, u := range unfound {
		counts[u.Code]++
	}
	for r, n := range counts {
		s.unfoundG.WithLabelValues(r).Set(float64(n))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unfound = unfound
	now := map[string]bool{}
	for _, c := range conflicts {
		k := "conflict " + c.String()
		now[k] = true
		if !s.logged[k] {
			s.log.Warn("two pods claim one address; the newer keeps it", "addr", c.addr, "winner", c.winner, "loser", c.loser)
		}
	}
	for _, u := range unfound {
		k := "unfound " + u.Netns + " " + u.Reason
		now[k] = true
		if !s.logged[k] {
			s.log.Info("network namespace of pod not found; it stays a peer", "pod", u.Pod, "addrs", u.Addrs, "reason", u.Reason)
		}
	}
	s.logged = now
}

// Unfound returns the pods of this node whose network namespace the last
// List did not find, sorted by key, with the reasons.
func (s *Source) Unfound() []Unfound {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.unfound)
}

// namespaces returns every namespace's labels, with
// kubernetes.io/metadata.name.
func (s *Source) namespaces() map[string]map[string]string {
	objs := s.nsInf.GetStore().List()
	out := make(map[string]map[string]string, len(objs))
	for _, o := range objs {
		if ns, ok := o.(*corev1.Namespace); ok {
			out[ns.Name] = inventory.WithNamespaceName(ns.Name, ns.Labels)
		}
	}
	return out
}

// nodes returns every Node with its labels and its InternalIP and
// ExternalIP addresses (unparsable ones left out), sorted by name; nil
// without Config.Nodes.
func (s *Source) nodes() []inventory.Node {
	if s.nodeInf == nil {
		return nil
	}
	var out []inventory.Node
	for _, o := range s.nodeInf.GetStore().List() {
		n, ok := o.(*corev1.Node)
		if !ok {
			continue
		}
		pn := inventory.Node{Name: n.Name, Labels: n.Labels}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && !slices.Contains(pn.IPs, ip.Unmap()) {
				pn.IPs = append(pn.IPs, ip.Unmap())
			}
		}
		out = append(out, pn)
	}
	slices.SortFunc(out, func(a, b inventory.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// services returns every Service with a ClusterIP and its ready
// backends, sorted by key.
func (s *Source) services() []model.Service {
	var out []model.Service
	idx := s.sliceInf.GetIndexer()
	for _, o := range s.svcInf.GetStore().List() {
		svc, ok := o.(*corev1.Service)
		if !ok {
			continue
		}
		objs, _ := idx.ByIndex(serviceIndex, svc.Namespace+"/"+svc.Name)
		sl := make([]*discoveryv1.EndpointSlice, 0, len(objs))
		for _, so := range objs {
			if x, ok := so.(*discoveryv1.EndpointSlice); ok {
				sl = append(sl, x)
			}
		}
		if m, ok := serviceModel(svc, sl); ok {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b model.Service) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}
