package controller_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// TestCaptureShownAndLogged: db's policy in force selects {app: db}; a
// workload added later with app=db is captured: status names the policy
// and the mode it enforces (not its own observe rev 0), the log warns
// once, and says when the capture ends.
func TestCaptureShownAndLogged(t *testing.T) {
	mem := store.NewMem()
	inv := controllertest.Shop()
	var logs bytes.Buffer
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, inv, &controllertest.Node{},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if _, err := svc.ApplyPolicies("db.yaml", []byte(dbPolicy), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Promote(context.Background(), controller.PromoteRequest{Workload: "shop/db", To: model.ModeEnforce, Reason: "test"}, "ops"); err != nil {
		t.Fatal(err)
	}
	status := func() map[string]controller.WorkloadStatus {
		st, err := svc.Status()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]controller.WorkloadStatus{}
		for _, s := range st {
			out[s.Workload] = s
		}
		return out
	}
	if st := status(); len(st["shop/web"].CapturedBy) != 0 || st["shop/web"].EffectiveMode != model.ModeObserve || st["shop/db"].EffectiveMode != model.ModeEnforce {
		t.Fatalf("before: %+v %+v", st["shop/web"], st["shop/db"])
	}
	eps := inv.Endpoints()
	later := model.Endpoint{Netns: "dbcopy-0", Path: "/run/netns/dbcopy-0", Namespace: "shop", Workload: "dbcopy",
		Labels: map[string]string{"app": "db", "version": "copy"}, Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.9")}}
	inv.Replace(append(eps, later), inv.Namespaces(), nil)
	svc.WarnCaptures()
	svc.WarnCaptures() // once only
	st := status()["shop/dbcopy"]
	if len(st.CapturedBy) != 1 || st.CapturedBy[0].Workload != "shop/db" || st.CapturedBy[0].Mode != model.ModeEnforce ||
		st.CapturedBy[0].Selector != "app=db" || st.EffectiveMode != model.ModeEnforce || st.Mode != "" && st.Mode != model.ModeObserve {
		t.Errorf("captured workload status: %+v", st)
	}
	if n := strings.Count(logs.String(), "captures a workload"); n != 1 || !strings.Contains(logs.String(), "workload=shop/dbcopy") {
		t.Errorf("capture warnings: %d\n%s", n, logs.String())
	}
	inv.Replace(eps, inv.Namespaces(), nil)
	svc.WarnCaptures()
	if !strings.Contains(logs.String(), "capture ended") {
		t.Errorf("no end of capture logged:\n%s", logs.String())
	}
}

// TestProposeUsesDeclaredPorts: the service hands the inventory's declared
// ports to inference, so spread-out ports to a server become ranges only
// over what it declares.
func TestProposeUsesDeclaredPorts(t *testing.T) {
	mem := store.NewMem()
	eps := controllertest.Shop().Endpoints()
	for i := range eps {
		if eps[i].Workload == "db" {
			eps[i].Ports = nil
			for p := int32(7000); p <= 7010; p++ {
				eps[i].Ports = append(eps[i].Ports, model.ContainerPort{Port: p, Protocol: model.ProtocolTCP})
			}
		}
	}
	inv := controllertest.Shop()
	inv.Replace(eps, inv.Namespaces(), nil)
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir()}, mem, mem, inv, &controllertest.Node{}, nil)
	var edges []model.Edge
	for _, p := range []uint16{7000, 7002, 7005, 7009, 7020} {
		edges = append(edges, edge("web", "db", p, model.VerdictCounts{}))
	}
	if err := mem.MergeEdges(edges); err != nil {
		t.Fatal(err)
	}
	rep, err := svc.Propose(0, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Proposals {
		if r.Workload != "shop/db" {
			continue
		}
		ps := r.Revision.Policy.Spec.Ingress[0].Ports
		if len(ps) != 2 || ps[0].Port.IntVal != 7000 || ps[0].EndPort == nil || *ps[0].EndPort != 7009 || ps[1].Port.IntVal != 7020 || ps[1].EndPort != nil {
			t.Errorf("db ingress ports %+v", ps)
		}
		if w := r.Revision.Policy.Spec.Ingress[0].Provenance.Widened; w == nil || len(w.SeenPorts) != 5 {
			t.Errorf("db ingress widened %+v", w)
		}
		return
	}
	t.Fatalf("no proposal for shop/db: %+v", rep)
}
