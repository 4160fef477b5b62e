//go:build linux

package node

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// TestAdoptsEnforcementUnknownToTheStore (issue 11, item 4): an agent
// enforced shop/db and stopped; another starts over the same namespace
// with an empty store (a new state file). It keeps the enforcing table as
// it found it: a denied connection is still dropped, and status says the
// endpoint is adopted and in which mode. An operator's promotion of the
// workload in the new store then replaces it.
func TestAdoptsEnforcementUnknownToTheStore(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	dir := ownerDir(t)
	before, stop := startNode(t, Config{OwnerDir: dir}, nil)
	before.SetInventory(ctx, tp.snapshot())
	if err := before.Enforce(ctx, policies.InForce{NanoSegments: []v1alpha1.NanoSegment{dbPolicy(t, model.ModeEnforce, 5432)}}, []string{"shop/db"}); err != nil {
		t.Fatal(err)
	}
	enforced, _ := before.Desired(tp.ep.Netns)
	stop()
	if !tp.open(5432) || tp.open(9090) {
		t.Fatalf("under the first agent's enforce: 5432 open %v (want true), 9090 open %v (want false)", tp.open(5432), tp.open(9090))
	}

	// The new agent: empty store, same start sequence as agent.Run.
	var logs syncBuffer
	n, _ := startNode(t, Config{OwnerDir: dir, AdoptedWarnInterval: 100 * time.Millisecond}, slog.New(slog.NewTextHandler(&logs, nil)))
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir()}, mem, mem, n.inv, n, nil)
	n.SetInventory(ctx, tp.snapshot())
	if err := svc.Enforce(ctx); err != nil {
		t.Fatal(err)
	}
	if tp.open(9090) {
		t.Errorf("client -> db 9090 open after a start with an empty store: enforcement dropped")
	}
	st, err := dataplane.New(nil).Read(tp.ep.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Equal(enforced) {
		t.Errorf("table after the start with an empty store: mode %s, %d ingress entries; want the enforcing one as found", st.RuleSet.Mode, len(st.RuleSet.Ingress))
	}
	if got := endpointStatus(t, svc); got.Adopted != "enforce" || !got.InSync || got.Error != "" {
		t.Errorf("status of the endpoint: %+v, want adopted: enforce, in sync", got)
	}
	// The denied attempt on 9090 made while no node ran is in no verdict
	// event (nobody read the log), but the kernel counted it.
	if ws := workloadStatus(t, svc); ws.Denied != 0 || len(ws.DefaultHits) == 0 || ws.DefaultHits[0].Direction != model.Egress ||
		ws.DefaultHits[1].Direction != model.Ingress || ws.DefaultHits[1].Packets == 0 {
		t.Errorf("status after a deny while no agent ran: denied %d, default hits %+v; want 0 and ingress > 0", ws.Denied, ws.DefaultHits)
	}
	if v := gaugeValue(t, n.metrics.adopted.WithLabelValues("enforce")); v != 1 {
		t.Errorf("nanoseg_node_endpoints_adopted{mode=enforce} = %v, want 1", v)
	}
	// Drift passes keep it as found, and so does an inventory refresh;
	// the warning is repeated meanwhile.
	time.Sleep(5 * n.cfg.DriftInterval)
	for _, want := range []string{"level=WARN msg=\"adopted a table unknown to the store", "level=WARN msg=\"tables adopted, unknown to the store"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	n.SetInventory(ctx, tp.snapshot())
	if tp.open(9090) || !tp.open(5432) {
		t.Errorf("after drift passes and a refresh: 9090 open %v (want false), 5432 open %v (want true)", tp.open(9090), tp.open(5432))
	}

	// The operator decides: a policy and a promotion in the new store.
	if _, err := svc.ApplyPolicies("db.yaml", []byte(dbPolicyYAML(model.ModeAudit, 5432)), "ops"); err != nil {
		t.Fatal(err)
	}
	res, err := svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: model.ModeAudit, Reason: "take over"}, "ops")
	if err != nil || !res.Converged {
		t.Fatalf("promote: %+v, %v", res, err)
	}
	if st, err = dataplane.New(nil).Read(tp.ep.Path); err != nil || st.RuleSet.Mode != model.ModeAudit {
		t.Fatalf("table after the promotion: %+v, %v; want audit", st, err)
	}
	if !tp.open(9090) {
		t.Errorf("client -> db 9090 closed in audit mode")
	}
	if got := endpointStatus(t, svc); got.Adopted != "" || !got.InSync {
		t.Errorf("status after the promotion: %+v, want not adopted, in sync", got)
	}
	if v := gaugeValue(t, n.metrics.adopted.WithLabelValues("enforce")); v != 0 {
		t.Errorf("nanoseg_node_endpoints_adopted{mode=enforce} = %v after the promotion, want 0", v)
	}
}

// TestStoreDecidesWhatItKnows: a start over an enforcing table that a
// policy in force in the store selects programs what the policies make,
// weaker or not: the store has a recorded decision for the endpoint.
func TestStoreDecidesWhatItKnows(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	dir := ownerDir(t)
	before, stop := startNode(t, Config{OwnerDir: dir}, nil)
	before.SetInventory(ctx, tp.snapshot())
	if err := before.Enforce(ctx, policies.InForce{NanoSegments: []v1alpha1.NanoSegment{dbPolicy(t, model.ModeEnforce, 5432)}}, []string{"shop/db"}); err != nil {
		t.Fatal(err)
	}
	stop()
	// The new store's policy in force selects shop/db, in observe mode:
	// the operator's recorded decision, which the node follows.
	n, _ := startNode(t, Config{OwnerDir: dir}, nil)
	n.SetInventory(ctx, tp.snapshot())
	if err := n.Enforce(ctx, policies.InForce{NanoSegments: []v1alpha1.NanoSegment{dbPolicy(t, model.ModeObserve, 5432)}}, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := dataplane.New(nil).Read(tp.ep.Path); err != nil || st.RuleSet.Mode != model.ModeObserve {
		t.Fatalf("table: %+v, %v; want observe", st, err)
	}
	if a := n.Applied(tp.ep.Netns).Adopted; a != "" {
		t.Errorf("adopted %q, want none", a)
	}
}

// TestStoreDecidesAfterRollbackToNothing: the store's last decision for
// shop/db was a rollback of its first promotion (observe, revision 0: no
// policy in force), recorded just before the agent died, while the kernel
// still enforced. The restarted agent follows its store: the workload is
// known to it, so the table goes back to observe, nothing is adopted.
func TestStoreDecidesAfterRollbackToNothing(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	dir := ownerDir(t)
	before, stop := startNode(t, Config{OwnerDir: dir}, nil)
	before.SetInventory(ctx, tp.snapshot())
	if err := before.Enforce(ctx, policies.InForce{NanoSegments: []v1alpha1.NanoSegment{dbPolicy(t, model.ModeEnforce, 5432)}}, []string{"shop/db"}); err != nil {
		t.Fatal(err)
	}
	stop()
	mem := store.NewMem()
	seg := dbPolicy(t, model.ModeEnforce, 5432)
	if _, err := mem.AddRevision(store.Revision{Workload: "shop/db", Origin: store.OriginDeclared, CreatedAt: time.Now(), CreatedBy: "ops", Policy: &seg}); err != nil {
		t.Fatal(err)
	}
	p, err := mem.Record(model.Promotion{At: time.Now(), Who: "ops", Workload: "shop/db", Action: model.ActionPromote, ToMode: model.ModeEnforce, ToRevision: 1, Reason: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Record(model.Promotion{At: time.Now(), Who: "ops", Workload: "shop/db", Action: model.ActionRollback, ToMode: model.ModeObserve, ToRevision: 0, Undoes: p.Seq, Reason: "undo"}, nil); err != nil {
		t.Fatal(err)
	}
	n, _ := startNode(t, Config{OwnerDir: dir}, nil)
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir()}, mem, mem, n.inv, n, nil)
	n.SetInventory(ctx, tp.snapshot())
	if err := svc.Enforce(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := dataplane.New(nil).Read(tp.ep.Path); err != nil || st.RuleSet.Mode != model.ModeObserve {
		t.Errorf("table: mode %s, %v; want observe, as the store's last decision says", st.RuleSet.Mode, err)
	}
	if a := n.Applied(tp.ep.Netns).Adopted; a != "" {
		t.Errorf("adopted %q, want none: the store knows shop/db", a)
	}
}

func endpointStatus(t *testing.T, svc *controller.Service) controller.EndpointState {
	t.Helper()
	ws := workloadStatus(t, svc)
	if len(ws.Endpoints) != 1 {
		t.Fatalf("shop/db endpoints in status: %+v", ws.Endpoints)
	}
	return ws.Endpoints[0]
}

func workloadStatus(t *testing.T, svc *controller.Service) controller.WorkloadStatus {
	t.Helper()
	sts, err := svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		if s.Workload == "shop/db" {
			return s
		}
	}
	t.Fatalf("no shop/db in status %+v", sts)
	return controller.WorkloadStatus{}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
