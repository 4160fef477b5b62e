//go:build linux

package node

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// guardNetworkCNP denies pods app=client reaching any pod on TCP 5432.
const guardNetworkCNP = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard-net}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {}}
  ingress:
    - {name: no-client, action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}
`

// TestDeleteClusterNetworkPolicyThroughNode: `policy delete
// clusternetworkpolicy` as the standalone agent runs it (controller
// service over a real node): while the Admin Deny is in force the kernel
// drops client -> db 5432 (9090 stays open) and the evidence bundle
// shows the rule's kernel counter and a live probe of the rule that
// held; once it is deleted the
// endpoint's table is reprogrammed before the call returns and 5432
// opens.
func TestDeleteClusterNetworkPolicyThroughNode(t *testing.T) {
	tp, svc := nodeWithClient(t)
	ctx := context.Background()
	res, err := svc.Apply(ctx, "guard.yaml", []byte(guardNetworkCNP), "alice")
	if err != nil || !res.Converged {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	if tp.open(5432) || !tp.open(9090) {
		t.Fatalf("under the Admin Deny: 5432 open %v (want false), 9090 open %v (want true)", tp.open(5432), tp.open(9090))
	}
	// The evidence bundle reads the rule's kernel counter (the dropped
	// attempts counted under cnp/admin/guard-net/ingress-0) and probes
	// the Admin Deny live: client -> db 5432 blocked, 9090 connects.
	exp, err := svc.Export(ctx, controller.ExportRequest{NoPDF: true, Probe: controller.VerifyRequest{TimeoutMS: 300, Parallel: 2}}, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	var b evidence.Bundle
	if err := json.Unmarshal(exp.Files["bundle.json"], &b); err != nil {
		t.Fatal(err)
	}
	if c := b.Policies.ClusterNetworkPolicies; len(c) != 1 || len(c[0].Rules) != 1 || c[0].Rules[0].RuleID != "cnp/admin/guard-net/ingress-0" ||
		c[0].Rules[0].Endpoints != 2 || c[0].Rules[0].TotalPackets == 0 {
		t.Errorf("evidence of the Admin Deny: %+v, want its rule at both subjects (db, client) with the dropped packets counted", c[0].Rules)
	}
	if b.Probes == nil || len(b.Probes.AdminDenies) != 1 {
		t.Fatalf("probes: %+v", b.Probes)
	}
	if c := b.Probes.AdminDenies[0]; c.Probe == nil || !c.Held || c.Probe.Port != 5432 || c.Probe.SourceNetns != tp.client.Name || c.Probe.Outcome != "timeout" {
		t.Errorf("Admin Deny check: %+v (probe %+v), want a held probe client -> db 5432 that timed out", c, c.Probe)
	}
	reached := false
	for _, r := range b.Probes.Results {
		reached = reached || (r.Port == 9090 && r.Source == "shop/client" && r.Reached)
	}
	if !reached || b.Probes.Mismatches != 0 {
		t.Errorf("probes: client -> db 9090 reached %v, %d mismatches: %+v", reached, b.Probes.Mismatches, b.Probes.Results)
	}
	del, err := svc.DeleteClusterNetworkPolicy(ctx, "guard-net", "alice")
	if err != nil || !del.Converged || del.Policy == nil || del.Policy.Name != "guard-net" {
		t.Fatalf("delete: %+v, %v", del, err)
	}
	if !tp.open(5432) {
		t.Errorf("client -> db 5432 still dropped after the Admin Deny was deleted")
	}
}

// nodeWithClient starts a node over newTopo with a controller service on
// an in-memory store. shop/db declares 5432 (postgres) and 9090 (metrics);
// the client's real netns is an endpoint too (shop/client, app=client), so
// the evidence export's live probes can run from it.
func nodeWithClient(t *testing.T) (topo, *controller.Service) {
	t.Helper()
	tp := newTopo(t)
	n, _ := startNode(t, Config{OwnerDir: ownerDir(t)}, nil)
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: 5 * time.Second}, mem, mem, n.inv, n, nil)
	var st unix.Stat_t
	if err := unix.Stat(tp.client.Path(), &st); err != nil {
		t.Fatal(err)
	}
	snap := tp.snapshot()
	snap.Endpoints[0].Ports = []model.ContainerPort{{Name: "postgres", Port: 5432, Protocol: model.ProtocolTCP}, {Name: "metrics", Port: 9090, Protocol: model.ProtocolTCP}}
	snap.Endpoints = append(snap.Endpoints, model.Endpoint{Netns: tp.client.Name, Path: tp.client.Path(), NetnsInode: st.Ino, Namespace: "shop", Workload: "client",
		Labels: map[string]string{"app": "client"}, Addrs: []netip.Addr{clientAddr}})
	n.SetInventory(context.Background(), snap)
	return tp, svc
}
