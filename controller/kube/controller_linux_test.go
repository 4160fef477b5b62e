//go:build linux

package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/internal/kubetest"
	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/lab/kubelab"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	storekube "github.com/nanoseg/nanoseg/store/kube"
)

func TestMain(m *testing.M) {
	kubetest.Main(m, kubetest.Options{CRDDirs: []string{"../../manifests/crds"}})
}

// Leader election timings of the tests: short, within client-go's rules.
const (
	testLease = 2 * time.Second
	testRenew = 1500 * time.Millisecond
	testRetry = 300 * time.Millisecond
)

var labSeq atomic.Int32

// harness is one test's world: a lab of three workloads (web ×2, db,
// intruder) registered as pods in a namespace of its own, the Lease in
// another, the shared stand-in store and a graph the test fills.
type harness struct {
	c       *kubetest.Cluster
	ns      string
	leaseNS string
	st      *storekube.Store
	graph   *fakeGraph
}

const topology = `kind: LabTopology
name: %[1]s
dns: %[2]s/dns
namespaces:
  - name: %[2]s
    labels: {kubernetes.io/metadata.name: %[2]s}
workloads:
  - name: dns
    namespace: %[2]s
    labels: {app: dns}
    ports: [{name: dns, port: 53, protocol: UDP}]
  - name: web
    namespace: %[2]s
    labels: {app: web}
    replicas: 2
    ports: [{name: http, port: 80}]
  - name: db
    namespace: %[2]s
    labels: {app: db}
    ports: [{name: postgres, port: 5432}]
  - name: intruder
    namespace: %[2]s
    labels: {app: intruder}
`

func newHarness(t *testing.T) *harness {
	t.Helper()
	c := kubetest.Shared(t)
	n := labSeq.Add(1)
	name := fmt.Sprintf("ctl%d-%d", n, time.Now().UnixNano()%100000)
	ns := name + "-shop"
	raw := []byte(fmt.Sprintf(topology, name, ns))
	top, err := lab.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := lab.NewPlan(top, raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kubelab.Register(ctx, c.Client, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kubelab.Unregister(context.Background(), c.Client, p.Lab) })
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	leaseNS := c.Namespace(t, nil)
	st, err := storekube.NewStore(c.Client, dyn, storekube.StoreConfig{Namespace: leaseNS, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{c: c, ns: ns, leaseNS: leaseNS, st: st, graph: &fakeGraph{}}
}

// replica is one running controller.
type replica struct {
	*Controller
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with err
	err    error
}

// stop cancels the replica's context and waits for Run (a crash when
// keepLease).
func (r *replica) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(20 * time.Second):
		t.Fatal("controller did not stop within 20 s")
		return nil
	}
}

// start runs a replica with its own clients and identity id; tweak
// adjusts its configuration. It holds the Lease on stop (a crash) unless
// release.
func (h *harness) start(t *testing.T, id string, release bool, tweak func(*Config)) *replica {
	t.Helper()
	rc := rest.CopyConfig(h.c.Config)
	rc.UserAgent = "nanoseg-controller-test/" + id
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := invkube.New(client, invkube.Config{Nodes: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Namespace: h.leaseNS, ID: id, Listen: "127.0.0.1:0", LeaseDuration: testLease, RenewDeadline: testRenew, RetryPeriod: testRetry,
		ProposeInterval: 300 * time.Millisecond, StatusInterval: 300 * time.Millisecond, Window: 24 * time.Hour, MinObserved: time.Hour,
		ConvergeTimeout: time.Second, CatchUp: time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := New(cfg, client, dyn, Parts{Store: StoreOf(h.st), Graph: h.graph, Inventory: inv}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	c.keepLease = !release
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{Controller: c, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = c.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// observe fills the graph: web talks to db on 5432 for two hours, every
// endpoint observed all that time (ending a minute ago).
func (h *harness) observe(extra ...model.Edge) {
	now := time.Now()
	peer := func(w string) model.Peer {
		return model.Peer{Namespace: h.ns, Workload: w, Labels: map[string]string{"app": w}}
	}
	edges := []model.Edge{{Source: peer("web"), Destination: peer("db"), Protocol: model.ProtocolTCP, Port: 5432,
		Traffic: model.Traffic{FirstSeen: now.Add(-2 * time.Hour), LastSeen: now.Add(-time.Minute), Flows: 40}}}
	for _, e := range extra {
		if e.Source.Workload != "" {
			e.Source = peer(e.Source.Workload)
		}
		if e.Destination.Workload != "" {
			e.Destination = peer(e.Destination.Workload)
		}
		edges = append(edges, e)
	}
	var spans []model.ObservedSpan
	for _, ep := range []struct{ pod, w string }{{"web-0", "web"}, {"web-1", "web"}, {"db-0", "db"}, {"intruder-0", "intruder"}} {
		spans = append(spans, model.ObservedSpan{Endpoint: h.ns + "_" + ep.pod, Workload: h.ns + "/" + ep.w, Start: now.Add(-2 * time.Hour), End: now.Add(-time.Minute)})
	}
	h.graph.set(edges, spans, nil)
}

// eventually calls check every 100 ms until it returns nil or timeout
// passes, then fails with its last error.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *harness) lease(t *testing.T) string {
	t.Helper()
	l, err := h.c.Client.CoordinationV1().Leases(h.leaseNS).Get(context.Background(), LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// TestLeaderFailover: of two replicas only one leads; when the leader
// crashes (its context cancelled, the Lease not released) the other takes
// over once the Lease expires, within about one lease duration; a replica
// stopped cleanly releases the Lease.
func TestLeaderFailover(t *testing.T) {
	h := newHarness(t)
	a := h.start(t, "replica-a", false, nil)
	b := h.start(t, "replica-b", true, nil)
	eventually(t, 10*time.Second, "one leader", func() error {
		if a.Leading() == b.Leading() {
			return fmt.Errorf("a leading %v, b leading %v", a.Leading(), b.Leading())
		}
		return nil
	})
	if !a.Leading() {
		// Make a the leader for the crash: stop b cleanly (release) and
		// restart it as the standby.
		if err := b.stop(t); err != nil {
			t.Fatalf("clean stop of the leader: %v", err)
		}
		eventually(t, 5*time.Second, "a leads after b released", func() error {
			if !a.Leading() {
				return errors.New("a not leading")
			}
			return nil
		})
		b = h.start(t, "replica-b", true, nil)
	}
	time.Sleep(3 * testRetry)
	if b.Leading() {
		t.Fatal("both replicas lead")
	}
	if got := h.lease(t); got != "replica-a" {
		t.Fatalf("lease holder %q, want replica-a", got)
	}
	crashed := time.Now()
	if err := a.stop(t); err != nil {
		t.Fatalf("crashed leader's Run: %v", err)
	}
	if got := h.lease(t); got != "replica-a" {
		t.Fatalf("after the crash the lease holder is %q: a crash must not release it", got)
	}
	eventually(t, 3*testLease, "standby takes over", func() error {
		if !b.Leading() {
			return errors.New("b not leading")
		}
		return nil
	})
	took := time.Since(crashed)
	t.Logf("standby took over %s after the crash (lease duration %s, retry period %s)", took.Round(time.Millisecond), testLease, testRetry)
	if took > testLease+4*testRetry+time.Second {
		t.Errorf("takeover after %s: more than the lease duration (%s) and a few retry periods", took, testLease)
	}
	if got := h.lease(t); got != "replica-b" {
		t.Fatalf("lease holder %q, want replica-b", got)
	}
	if err := b.stop(t); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if got := h.lease(t); got != "" {
		t.Errorf("after a clean stop the lease holder is %q, want none (released)", got)
	}
}

func (h *harness) proposal(ctx context.Context, name string) (*v1alpha1.NanoSegmentProposal, error) {
	dyn, err := dynamic.NewForConfig(h.c.Config)
	if err != nil {
		return nil, err
	}
	u, err := dyn.Resource(ProposalResource).Namespace(h.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var p v1alpha1.NanoSegmentProposal
	return &p, toTyped(u, &p)
}

func counter(t *testing.T, c *Controller, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := c.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			} else if m.GetGauge() != nil {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// TestProposalsFromObservations: fed observations become proposals (spec:
// the segment, the window, the edges with leftOut reasons; status:
// coverage and Settled, here False with the coverage gate's reasons), a quiet graph causes no further writes, and the
// proposal of a workload that left the cluster is deleted.
func TestProposalsFromObservations(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	failed := model.Edge{Source: model.Peer{Workload: "intruder"}, Destination: model.Peer{Workload: "db"}, Protocol: model.ProtocolTCP, Port: 5432,
		Traffic: model.Traffic{FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-2 * time.Minute), Flows: 3, Failed: 3, Reset: 3}}
	h.observe(failed)
	h.start(t, "replica-a", true, nil)
	ctx := context.Background()
	var db *v1alpha1.NanoSegmentProposal
	// Observed 2h of the 24h window, with silent workloads beside it:
	// not Settled, saying what the coverage gate of a promotion to
	// enforce would say.
	eventually(t, 15*time.Second, "db's proposal not settled, with the gate's reasons", func() error {
		p, err := h.proposal(ctx, "db")
		if err != nil {
			return err
		}
		db = p
		c := findCond(p.Status.Conditions, ConditionSettled)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonLearning ||
			!strings.Contains(c.Message, "asked for a 24h window (--window) but it was observed for only") ||
			!strings.Contains(c.Message, "intruder, in its namespace, had no observed traffic") {
			return fmt.Errorf("settled: %+v", p.Status.Conditions)
		}
		return nil
	})
	if db.Spec.Workload != "db" || db.Labels[v1alpha1.LabelWorkload] != "db" || db.Spec.Window.Duration != 24*time.Hour {
		t.Errorf("db proposal: workload %q, labels %v, window %s", db.Spec.Workload, db.Labels, db.Spec.Window.Duration)
	}
	if len(db.Spec.Segment.Ingress) != 1 || len(db.Spec.Edges) != 2 || db.Status.Edges != 2 {
		t.Fatalf("db proposal: %d ingress rules, %d edges (status %d); want 1 rule from web and 2 edges", len(db.Spec.Segment.Ingress), len(db.Spec.Edges), db.Status.Edges)
	}
	for _, e := range db.Spec.Edges {
		switch e.Source.Workload {
		case "web":
			if e.LeftOut != "" || e.Flows != 40 {
				t.Errorf("web -> db: leftOut %q, flows %d; want allowed, 40", e.LeftOut, e.Flows)
			}
		case "intruder":
			if e.LeftOut != controller.LeftOutFailed {
				t.Errorf("intruder -> db: leftOut %q; want %q", e.LeftOut, controller.LeftOutFailed)
			}
		}
	}
	if cv := db.Status.Coverage; cv == nil || cv.Observed.Duration < time.Hour || cv.Flows == 0 || db.Status.ObservedGeneration != db.Generation {
		t.Errorf("db status: coverage %+v, observedGeneration %d of %d", cv, db.Status.ObservedGeneration, db.Generation)
	}
	if _, err := h.proposal(ctx, "web"); err != nil {
		t.Errorf("web's proposal: %v", err)
	}

	// Quiet: nothing changes but the observed time, nothing of the
	// namespace is written. (The
	// written-proposals counter also counts the proposals of other tests'
	// namespaces on the shared API server, whose pods come and go.)
	versions := func() map[string]string {
		t.Helper()
		dyn, err := dynamic.NewForConfig(h.c.Config)
		if err != nil {
			t.Fatal(err)
		}
		l, err := dyn.Resource(ProposalResource).Namespace(h.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, u := range l.Items {
			out[u.GetName()] = u.GetResourceVersion()
		}
		return out
	}
	// The agents go on observing an idle cluster: the observation spans
	// grow every round (so the proposals' observed time and the Settled
	// message quoting it), nothing else changes. A status change of only
	// that is written at most every ProposalStatusRefresh.
	before := versions()
	for range 6 {
		h.graph.mu.Lock()
		for i := range h.graph.spans {
			h.graph.spans[i].End = time.Now()
		}
		h.graph.mu.Unlock()
		time.Sleep(300 * time.Millisecond)
	}
	if after := versions(); !maps.Equal(before, after) {
		t.Errorf("proposals rewritten in six idle rounds while observation went on (name → resourceVersion): %v, then %v; want none", before, after)
	}

	// db leaves the cluster: its proposal goes.
	if err := h.c.Client.CoreV1().Pods(h.ns).Delete(ctx, "db-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "db's proposal deleted", func() error {
		if _, err := h.proposal(ctx, "db"); err == nil {
			return errors.New("still there")
		}
		return nil
	})
}

func findCond(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

// promote creates a promotion and returns its name.
func (h *harness) promote(t *testing.T, name string, spec v1alpha1.NanoSegmentPromotionSpec) string {
	t.Helper()
	dyn, err := dynamic.NewForConfig(h.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.NanoSegmentPromotion{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns}, Spec: spec}
	u, err := toUnstructured(p, v1alpha1.KindPromotion)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(PromotionResource).Namespace(h.ns).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create promotion %s: %v", name, err)
	}
	return name
}

func (h *harness) promotion(t *testing.T, name string) *v1alpha1.NanoSegmentPromotion {
	t.Helper()
	dyn, err := dynamic.NewForConfig(h.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	u, err := dyn.Resource(PromotionResource).Namespace(h.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.NanoSegmentPromotion
	if err := toTyped(u, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// done waits until promotion name has a phase and returns it.
func (h *harness) done(t *testing.T, name string) *v1alpha1.NanoSegmentPromotion {
	t.Helper()
	var p *v1alpha1.NanoSegmentPromotion
	eventually(t, 15*time.Second, "promotion "+name+" carried out", func() error {
		p = h.promotion(t, name)
		if p.Status.Phase == v1alpha1.PromotionSucceeded || p.Status.Phase == v1alpha1.PromotionFailed {
			if findCond(p.Status.Conditions, ConditionComplete) == nil || p.Status.Message == "" {
				return errors.New("phase set, Complete condition or message not yet")
			}
			return nil
		}
		return fmt.Errorf("phase %q", p.Status.Phase)
	})
	return p
}

func (h *harness) segment(t *testing.T, name string) (*v1alpha1.NanoSegment, error) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(h.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	u, err := dyn.Resource(NanoSegmentResource).Namespace(h.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var s v1alpha1.NanoSegment
	return &s, toTyped(u, &s)
}

func (h *harness) events(t *testing.T, object, reason string) int {
	t.Helper()
	l, err := h.c.Client.CoreV1().Events(h.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range l.Items {
		if e.InvolvedObject.Name == object && e.Reason == reason {
			n++
		}
	}
	return n
}

var alice = &v1alpha1.RequestUser{Username: "alice", Groups: []string{"ops"}}

// TestPromotions: a promotion of the current proposal becomes revision 1
// and the NanoSegment in audit, with its record, change and Events; a
// refused promotion (the coverage gate, no requestedBy, an unknown
// revision) is Failed with its reason and leaves the NanoSegment and the
// history as they were; a rollback undoes the promotion; the
// NanoSegment's status reports its endpoints from the agents' reports.
func TestPromotions(t *testing.T) {
	h := newHarness(t)
	h.observe()
	h.start(t, "replica-a", true, func(c *Config) { c.MinObserved = 3 * time.Hour })
	ctx := context.Background()
	eventually(t, 15*time.Second, "db's proposal", func() error { _, err := h.proposal(ctx, "db"); return err })

	p := h.done(t, h.promote(t, "db-audit", v1alpha1.NanoSegmentPromotionSpec{Workload: "db", Mode: model.ModeAudit, Reason: "learn", RequestedBy: alice}))
	if p.Status.Phase != v1alpha1.PromotionSucceeded || p.Status.Record == nil || p.Status.Record.Seq != 1 || p.Status.Record.Who != "alice" ||
		p.Status.Record.ToRevision != 1 || p.Status.Record.ToMode != model.ModeAudit {
		t.Fatalf("db-audit: %+v", p.Status)
	}
	if p.Status.Change == nil || findCond(p.Status.Conditions, ConditionComplete).Reason != ReasonPromoted {
		t.Errorf("db-audit: change %+v, conditions %+v", p.Status.Change, p.Status.Conditions)
	}
	seg, err := h.segment(t, "db")
	if err != nil || seg.Spec.Mode != model.ModeAudit || seg.Labels[v1alpha1.LabelRevision] != "1" {
		t.Fatalf("NanoSegment db after the promotion: %+v, %v", seg, err)
	}
	eventually(t, 5*time.Second, "Promoted events", func() error { // recorded after the status
		if p, s := h.events(t, "db-audit", EventPromoted), h.events(t, "db", EventPromoted); p != 1 || s != 1 {
			return fmt.Errorf("%d on the promotion, %d on the NanoSegment; want 1 each", p, s)
		}
		return nil
	})

	// The agents report db-0 in sync in audit: the status says so.
	h.graph.mu.Lock()
	h.graph.reports = []NodeReport{{Node: "node-1", Endpoints: []EndpointReport{{Key: h.ns + "_db-0", Workload: h.ns + "/db", Mode: model.ModeAudit, Revision: 1, InSync: true}}}}
	h.graph.mu.Unlock()
	eventually(t, 10*time.Second, "db's status", func() error {
		s, err := h.segment(t, "db")
		if err != nil {
			return err
		}
		if s.Status.Endpoints != 1 || s.Status.InSync != 1 || s.Status.Revision != 1 || len(s.Status.Nodes) != 1 || s.Status.ObservedGeneration != s.Generation {
			return fmt.Errorf("status %+v", s.Status)
		}
		for _, typ := range []string{ConditionAccepted, ConditionProgrammed} {
			if c := findCond(s.Status.Conditions, typ); c == nil || c.Status != metav1.ConditionTrue {
				return fmt.Errorf("%s: %+v", typ, c)
			}
		}
		if c := findCond(s.Status.Conditions, ConditionDegraded); c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("Degraded: %+v", c)
		}
		return nil
	})
	seg, _ = h.segment(t, "db")

	for _, tc := range []struct {
		name, reason string
		spec         v1alpha1.NanoSegmentPromotionSpec
	}{
		{"db-enforce", ReasonCoverageGate, v1alpha1.NanoSegmentPromotionSpec{Workload: "db", Mode: model.ModeEnforce, Revision: 1, Reason: "lock down", RequestedBy: alice}},
		{"db-anonymous", ReasonNoRequestedBy, v1alpha1.NanoSegmentPromotionSpec{Workload: "db", Mode: model.ModeEnforce, Revision: 1, Reason: "who?", Force: true}},
		{"db-r9", ReasonInvalid, v1alpha1.NanoSegmentPromotionSpec{Workload: "db", Mode: model.ModeAudit, Revision: 9, Reason: "no such", RequestedBy: alice}},
		{"ghost", ReasonInvalid, v1alpha1.NanoSegmentPromotionSpec{Workload: "ghost", Mode: model.ModeAudit, Revision: 1, Reason: "no such", RequestedBy: alice}},
	} {
		p := h.done(t, h.promote(t, tc.name, tc.spec))
		c := findCond(p.Status.Conditions, ConditionComplete)
		if p.Status.Phase != v1alpha1.PromotionFailed || p.Status.Record != nil || c.Status != metav1.ConditionFalse || c.Reason != tc.reason || p.Status.Message == "" {
			t.Errorf("%s: phase %s, record %v, condition %+v; want Failed, %s", tc.name, p.Status.Phase, p.Status.Record, c, tc.reason)
		}
		eventually(t, 5*time.Second, tc.name+": PromotionFailed event", func() error {
			if n := h.events(t, tc.name, EventPromotionFailed); n != 1 {
				return fmt.Errorf("%d events, want 1", n)
			}
			return nil
		})
		after, err := h.segment(t, "db")
		// Its status may be refreshed; its spec, labels and generation not.
		if err != nil || after.Generation != seg.Generation || !sameJSON(after.Spec, seg.Spec) || !sameJSON(after.Labels, seg.Labels) {
			t.Errorf("%s: the NanoSegment changed (generation %d -> %d, %v)", tc.name, seg.Generation, after.Generation, err)
		}
		if hist, _ := h.st.History(h.ns + "/db"); len(hist) != 1 {
			t.Errorf("%s: history has %d records, want 1", tc.name, len(hist))
		}
	}
	if c := findCond(h.promotion(t, "db-enforce").Status.Conditions, ConditionComplete); !strings.Contains(c.Message, "coverage") {
		t.Errorf("the coverage gate's refusal says %q", c.Message)
	}

	p = h.done(t, h.promote(t, "db-back", v1alpha1.NanoSegmentPromotionSpec{Workload: "db", Rollback: true, Reason: "undo", RequestedBy: alice}))
	if p.Status.Phase != v1alpha1.PromotionSucceeded || p.Status.Record == nil || p.Status.Record.Seq != 2 || p.Status.Record.Undoes != 1 ||
		findCond(p.Status.Conditions, ConditionComplete).Reason != ReasonRolledBack {
		t.Fatalf("rollback: %+v", p.Status)
	}
	if s, err := h.segment(t, "db"); err == nil && (len(s.Spec.Ingress)+len(s.Spec.Egress) > 0 || (s.Spec.Mode != "" && s.Spec.Mode != model.ModeObserve)) {
		t.Errorf("the NanoSegment of db after rolling back its first promotion: %+v; want none, or an empty one in observe", s.Spec)
	}
	eventually(t, 5*time.Second, "RolledBack event", func() error {
		if n := h.events(t, "db-back", EventRolledBack); n != 1 {
			return fmt.Errorf("%d events, want 1", n)
		}
		return nil
	})
}

// TestFailoverUnderPromotionLoad: promotions keep coming while the leader
// crashes; every one ends Succeeded or Failed exactly once (its phase
// never changes once set), the history verifies, and its sequence numbers
// are 1..n, each in exactly one promotion's status. (Issue 13's "leader
// failover under promotion load with no lost or doubled record";
// docs/architecture.md, "What the tests prove", lists the others.)
func TestFailoverUnderPromotionLoad(t *testing.T) {
	h := newHarness(t)
	h.observe()
	a := h.start(t, "replica-a", false, nil)
	eventually(t, 10*time.Second, "a leads", func() error {
		if !a.Leading() {
			return errors.New("a not leading")
		}
		return nil
	})
	b := h.start(t, "replica-b", false, nil)
	ctx := context.Background()
	eventually(t, 15*time.Second, "proposals", func() error {
		if _, err := h.proposal(ctx, "db"); err != nil {
			return err
		}
		_, err := h.proposal(ctx, "web")
		return err
	})

	// Watch every phase change: once set, a phase never changes.
	dyn, err := dynamic.NewForConfig(h.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changed []string
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, h.ns, nil)
	inf := f.ForResource(PromotionResource).Informer()
	phase := func(o any) string {
		u, _ := o.(*unstructured.Unstructured)
		if u == nil {
			return ""
		}
		ph, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		return ph
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(o, n any) {
		if po, pn := phase(o), phase(n); po != "" && po != pn {
			mu.Lock()
			changed = append(changed, fmt.Sprintf("%s: %s -> %s", n.(*unstructured.Unstructured).GetName(), po, pn))
			mu.Unlock()
		}
	}}); err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	f.Start(wctx.Done())
	defer func() { stopWatch(); f.Shutdown() }()
	cache.WaitForCacheSync(wctx.Done(), inf.HasSynced)

	modes := []model.Mode{model.ModeAudit, model.ModeObserve, model.ModeEnforce}
	var names []string
	for i := range 12 {
		wl := []string{"db", "web"}[i%2]
		spec := v1alpha1.NanoSegmentPromotionSpec{Workload: wl, Mode: modes[(i/2)%3], Reason: fmt.Sprintf("step %d", i), RequestedBy: alice, Force: true}
		if i == 9 {
			spec = v1alpha1.NanoSegmentPromotionSpec{Workload: "db", Rollback: true, Reason: "undo", RequestedBy: alice}
		}
		names = append(names, h.promote(t, fmt.Sprintf("p%02d", i), spec))
		time.Sleep(120 * time.Millisecond)
		if i == 5 {
			if err := a.stop(t); err != nil { // a crash: the Lease stays held until it expires
				t.Fatalf("crashed leader: %v", err)
			}
		}
	}
	for _, n := range names {
		h.done(t, n)
	}
	if !b.Leading() {
		t.Error("b does not lead after the crash")
	}
	time.Sleep(time.Second) // more time for a second phase to show
	mu.Lock()
	for _, c := range changed {
		t.Errorf("a phase changed once set: %s", c)
	}
	mu.Unlock()

	all, err := h.st.History("")
	if err != nil {
		t.Fatal(err)
	}
	var hist []model.Promotion // this test's chain (its own head ConfigMap)
	for _, p := range all {
		if strings.HasPrefix(p.Workload, h.ns+"/") {
			hist = append(hist, p)
		}
	}
	if err := model.VerifyPromotions(hist); err != nil {
		t.Fatalf("history: %v", err)
	}
	bySeq := map[int64]string{}
	succeeded, failed := 0, 0
	for _, n := range names {
		p := h.promotion(t, n)
		switch p.Status.Phase {
		case v1alpha1.PromotionSucceeded:
			succeeded++
			if p.Status.Record == nil {
				continue // unchanged: nothing recorded
			}
			if other, ok := bySeq[p.Status.Record.Seq]; ok {
				t.Errorf("seq %d in %s and %s", p.Status.Record.Seq, other, n)
			}
			bySeq[p.Status.Record.Seq] = n
		case v1alpha1.PromotionFailed:
			failed++
		default:
			t.Errorf("%s: phase %q", n, p.Status.Phase)
		}
	}
	for i, rec := range hist {
		if rec.Seq != uint64(i+1) {
			t.Errorf("history[%d] has seq %d: a gap or a double", i, rec.Seq)
		}
		if _, ok := bySeq[int64(rec.Seq)]; !ok {
			t.Errorf("seq %d is in no promotion's status", rec.Seq)
		}
	}
	if len(bySeq) != len(hist) {
		t.Errorf("%d records in promotions, %d in the history", len(bySeq), len(hist))
	}
	t.Logf("%d promotions: %d succeeded, %d failed; %d records", len(names), succeeded, failed, len(hist))
}

// TestStatusAcceptedFalse: a NanoSegment the schema lets through but the
// deeper validation refuses (a selector label value that is no label
// value) gets Accepted=False naming the field, and Degraded=True. The
// same with a real node agent keeping the previous rules in the kernel:
// cmd/nanoseg TestControllerDownAMinute.
func TestStatusAcceptedFalse(t *testing.T) {
	h := newHarness(t)
	h.start(t, "replica-a", true, nil)
	seg := &v1alpha1.NanoSegment{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: h.ns},
		Spec: v1alpha1.NanoSegmentSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "not a label value!"}}}}
	u, err := toUnstructured(seg, v1alpha1.Kind)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(h.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(NanoSegmentResource).Namespace(h.ns).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the schema refuses it (the test needs one it lets through): %v", err)
	}
	eventually(t, 10*time.Second, "Accepted=False", func() error {
		s, err := h.segment(t, "bad")
		if err != nil {
			return err
		}
		a, d := findCond(s.Status.Conditions, ConditionAccepted), findCond(s.Status.Conditions, ConditionDegraded)
		if a == nil || a.Status != metav1.ConditionFalse || a.Reason != ReasonInvalidSpec || !strings.Contains(a.Message, "spec.selector") {
			return fmt.Errorf("Accepted %+v", a)
		}
		if d == nil || d.Status != metav1.ConditionTrue || s.Status.ObservedGeneration != s.Generation {
			return fmt.Errorf("Degraded %+v, observedGeneration %d of %d", d, s.Status.ObservedGeneration, s.Generation)
		}
		return nil
	})
}

// TestCatchUp: a new leader writes no NanoSegment status (and no
// proposal) before the nodes that the status names have sent their state,
// or Config.CatchUp has passed: it keeps what the previous leader wrote
// instead of saying NotReported from an empty graph.
func TestCatchUp(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(h.c.Config)
	if err != nil {
		t.Fatal(err)
	}
	seg := &v1alpha1.NanoSegment{ObjectMeta: metav1.ObjectMeta{Name: "held", Namespace: h.ns},
		Spec: v1alpha1.NanoSegmentSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "held"}}}}
	u, err := toUnstructured(seg, v1alpha1.Kind)
	if err != nil {
		t.Fatal(err)
	}
	u, err = dyn.Resource(NanoSegmentResource).Namespace(h.ns).Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What the previous leader wrote: one endpoint on a node whose agent
	// has not sent its state to the new leader yet.
	if err := toTyped(u, seg); err != nil {
		t.Fatal(err)
	}
	seg.Status = v1alpha1.NanoSegmentStatus{Nodes: []v1alpha1.NodeSync{{Node: "node-catch-up", Endpoints: 1, InSync: 1}}}
	if u, err = toUnstructured(seg, v1alpha1.Kind); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(NanoSegmentResource).Namespace(h.ns).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	h.start(t, "replica-a", true, func(c *Config) { c.CatchUp = 4 * time.Second })
	kept := func() bool {
		s, err := h.segment(t, "held")
		return err == nil && len(s.Status.Nodes) == 1 && s.Status.Nodes[0].Node == "node-catch-up"
	}
	for time.Since(started) < 2*time.Second {
		if !kept() {
			t.Fatalf("status rewritten %s after the leader started, before node-catch-up reported or CatchUp (4s) passed", time.Since(started))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The agent never reports: after CatchUp the leader writes what it
	// knows.
	eventually(t, 10*time.Second, "status written after CatchUp", func() error {
		if kept() {
			return errors.New("still the previous leader's status")
		}
		return nil
	})
	if d := time.Since(started); d < 4*time.Second {
		t.Errorf("status written after %s, before CatchUp (4s)", d)
	}
}
