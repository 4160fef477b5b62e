package nodeagent

// Live probes asked through the API server (NanoSegmentProbe objects).
//
// Design: `nanoseg verify` and `nanoseg evidence export` against a cluster
// (client/kube) create one NanoSegmentProbe per connection attempt, with
// spec.node the source pod's node. Each agent watches only the probes of
// its node (a field selector on spec.node, which the CRD declares a
// selectable field), runs each probe without an outcome once, at most
// ProbeParallel at a time, and writes the outcome with UpdateStatus. A
// probe is never run twice: the watcher remembers the probes it started
// (by UID, forgotten when the object is deleted) and skips any whose
// status has an outcome, so neither a relist nor an agent restart runs
// one again. The requester deletes the probe once it has read it; probes
// a killed requester left behind are deleted by a later run, and an agent
// refuses to run one older than ProbeMaxAge (status error), so a late
// agent never sends traffic nobody waits for.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// ProbeResource is the NanoSegmentProbe resource.
var ProbeResource = v1alpha1.SchemeGroupVersion.WithResource("nanosegmentprobes")

// ProbeParallel bounds the probes one agent runs at once.
const ProbeParallel = 16

// ProbeMaxAge is how old a probe may be when the agent first sees it:
// an older one is answered with an error instead of being run (its
// requester has given up on it long ago).
const ProbeMaxAge = 2 * time.Minute

// ProbeRequest is one NanoSegmentProbe as the agent runs it.
type ProbeRequest struct {
	Namespace, Name string
	Created         time.Time
	Spec            v1alpha1.NanoSegmentProbeSpec
}

// ProbeSource delivers the live probes asked of this node.
type ProbeSource interface {
	// Run calls run once for every probe of the node that has no outcome
	// yet (concurrently, bounded), writes the status it returns, and
	// returns when ctx ends.
	Run(ctx context.Context, run func(ctx context.Context, req ProbeRequest) v1alpha1.NanoSegmentProbeStatus) error
}

// ProbeWatcher is the ProbeSource over the API server: an informer on the
// NanoSegmentProbes whose spec.node is this node (RBAC: get, list, watch
// nanosegmentprobes; update nanosegmentprobes/status).
type ProbeWatcher struct {
	dyn  dynamic.Interface
	node string
	log  *slog.Logger

	mu      sync.Mutex
	started map[types.UID]bool
}

// NewProbeWatcher returns the probe watcher of node; log nil discards.
func NewProbeWatcher(dyn dynamic.Interface, node string, log *slog.Logger) *ProbeWatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ProbeWatcher{dyn: dyn, node: node, log: log.With("component", "probes"), started: map[types.UID]bool{}}
}

// Run implements ProbeSource.
func (w *ProbeWatcher) Run(ctx context.Context, run func(ctx context.Context, req ProbeRequest) v1alpha1.NanoSegmentProbeStatus) error {
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(w.dyn, 0, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.FieldSelector = "spec.node=" + w.node
	})
	inf := f.ForResource(ProbeResource).Informer()
	sem := make(chan struct{}, ProbeParallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	handle := func(obj any) {
		p, ok := probeOf(obj)
		if !ok || p.Status.Outcome != "" || p.Spec.Node != w.node {
			return
		}
		w.mu.Lock()
		if w.started[p.UID] {
			w.mu.Unlock()
			return
		}
		w.started[p.UID] = true
		w.mu.Unlock()
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			req := ProbeRequest{Namespace: p.Namespace, Name: p.Name, Created: p.CreationTimestamp.Time, Spec: p.Spec}
			st := run(ctx, req)
			w.write(ctx, p, st)
		})
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				w.mu.Lock()
				delete(w.started, u.GetUID())
				w.mu.Unlock()
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watch nanosegmentprobes: %w", err)
	}
	f.Start(ctx.Done())
	<-ctx.Done()
	f.Shutdown()
	return nil
}

// write sets p's status to st, once: a probe whose status meanwhile got
// an outcome (written by an earlier agent) is left alone.
func (w *ProbeWatcher) write(ctx context.Context, p *v1alpha1.NanoSegmentProbe, st v1alpha1.NanoSegmentProbeStatus) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	res := w.dyn.Resource(ProbeResource).Namespace(p.Namespace)
	for range 3 {
		p.Status = st
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
		if err != nil {
			w.log.Error("encode probe status", "probe", p.Namespace+"/"+p.Name, "err", err)
			return
		}
		_, err = res.UpdateStatus(ctx, &unstructured.Unstructured{Object: raw}, metav1.UpdateOptions{})
		switch {
		case err == nil:
			w.log.Debug("probe done", "probe", p.Namespace+"/"+p.Name, "outcome", st.Outcome)
			return
		case apierrors.IsNotFound(err):
			return // its requester gave up on it
		case apierrors.IsConflict(err):
			u, gerr := res.Get(ctx, p.Name, metav1.GetOptions{})
			if gerr != nil {
				return
			}
			q, ok := probeOf(u)
			if !ok || q.UID != p.UID || q.Status.Outcome != "" {
				return
			}
			p = q
		default:
			w.log.Warn("write probe status", "probe", p.Namespace+"/"+p.Name, "err", err)
			return
		}
	}
}

// probeOf decodes an informer object as a NanoSegmentProbe.
func probeOf(obj any) (*v1alpha1.NanoSegmentProbe, bool) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, false
	}
	var p v1alpha1.NanoSegmentProbe
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return nil, false
	}
	return &p, true
}
