//go:build linux

package kube

// Stand-ins for the parts other branches build (store/kube.Store, the
// transport's Graph), small enough to test the controller against a real
// API server before they land.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// memStore is a store.Mem shared by the test's controller replicas (as
// the API server is), whose request views write each record into the
// promotion's status and the NanoSegment after committing it; Repair
// writes what a commit left unwritten.
type memStore struct {
	*store.Mem
	dyn dynamic.Interface

	mu        sync.Mutex
	unwritten map[uint64]ownedRecord
}

type ownedRecord struct {
	ns, name string
	rec      model.Promotion
}

func newMemStore(dyn dynamic.Interface) *memStore {
	return &memStore{Mem: store.NewMem(), dyn: dyn, unwritten: map[uint64]ownedRecord{}}
}

func (m *memStore) ForRequest(ns, name string) store.PolicyStore { return &reqView{memStore: m, ns: ns, name: name} }

func (m *memStore) Repair(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for seq, o := range m.unwritten {
		if err := m.write(ctx, o); err != nil {
			return err
		}
		delete(m.unwritten, seq)
	}
	return nil
}

type reqView struct {
	*memStore
	ns, name string
}

func (v *reqView) Record(p model.Promotion, expect *store.WorkloadState) (model.Promotion, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p.At = v1alpha1.RecordTime(p.At)
	rec, err := v.Mem.Record(p, expect)
	if err != nil {
		return rec, err
	}
	o := ownedRecord{v.ns, v.name, rec}
	v.unwritten[rec.Seq] = o
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.write(ctx, o); err != nil {
		return rec, fmt.Errorf("recorded seq %d, status not written yet: %w", rec.Seq, err)
	}
	delete(v.unwritten, rec.Seq)
	return rec, nil
}

// write puts o's record into its promotion's status and writes the
// workload's NanoSegment.
func (m *memStore) write(ctx context.Context, o ownedRecord) error {
	api := m.dyn.Resource(PromotionResource).Namespace(o.ns)
	u, err := api.Get(ctx, o.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var p v1alpha1.NanoSegmentPromotion
	if err := toTyped(u, &p); err != nil {
		return err
	}
	if p.Status.Record == nil {
		r := v1alpha1.RecordFrom(o.rec)
		p.Status.Record, p.Status.Phase = &r, v1alpha1.PromotionSucceeded
		nu, err := toUnstructured(&p, v1alpha1.KindPromotion)
		if err != nil {
			return err
		}
		if _, err := api.UpdateStatus(ctx, nu, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	ns, w, _ := strings.Cut(o.rec.Workload, "/")
	segs := m.dyn.Resource(NanoSegmentResource).Namespace(ns)
	if o.rec.ToRevision == 0 {
		if err := segs.Delete(ctx, w, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	}
	r, err := m.Mem.Revision(o.rec.Workload, o.rec.ToRevision)
	if err != nil {
		return err
	}
	seg := &v1alpha1.NanoSegment{ObjectMeta: metav1.ObjectMeta{Name: w, Namespace: ns,
		Labels: map[string]string{v1alpha1.LabelWorkload: w, v1alpha1.LabelRevision: strconv.Itoa(o.rec.ToRevision)}},
		Spec: *r.Policy.Spec.DeepCopy()}
	seg.Spec.Mode = o.rec.ToMode
	cur, err := segs.Get(ctx, w, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		nu, err := toUnstructured(seg, v1alpha1.Kind)
		if err != nil {
			return err
		}
		_, err = segs.Create(ctx, nu, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	}
	seg.ResourceVersion = cur.GetResourceVersion()
	nu, err := toUnstructured(seg, v1alpha1.Kind)
	if err != nil {
		return err
	}
	_, err = segs.Update(ctx, nu, metav1.UpdateOptions{})
	return err
}

// fakeGraph is an observation graph the test fills.
type fakeGraph struct {
	mu      sync.Mutex
	edges   []model.Edge
	spans   []model.ObservedSpan
	reports []NodeReport
}

func (g *fakeGraph) set(edges []model.Edge, spans []model.ObservedSpan, reports []NodeReport) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.edges, g.spans, g.reports = edges, spans, reports
}

func (g *fakeGraph) Edges(since time.Time) ([]model.Edge, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []model.Edge
	for _, e := range g.edges {
		if since.IsZero() || !e.LastSeen.Before(since) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b model.Edge) int { return strings.Compare(string(store.EdgeKey(a)), string(store.EdgeKey(b))) })
	return out, nil
}

func (g *fakeGraph) Verdicts(time.Time) ([]model.VerdictEvent, error) { return nil, nil }

func (g *fakeGraph) Observed(since time.Time) ([]model.ObservedSpan, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []model.ObservedSpan{}
	for _, sp := range g.spans {
		if since.IsZero() || !sp.End.Before(since) {
			out = append(out, sp)
		}
	}
	store.SortSpans(out)
	return out, nil
}

func (g *fakeGraph) Reports() []NodeReport {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.reports)
}
