//go:build linux

package node

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

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
// shows the rule's kernel counter; once it is deleted the
// endpoint's table is reprogrammed before the call returns and 5432
// opens.
func TestDeleteClusterNetworkPolicyThroughNode(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	n, _ := startNode(t, Config{OwnerDir: ownerDir(t)}, nil)
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: 5 * time.Second}, mem, mem, n.inv, n, nil)
	snap := tp.snapshot()
	snap.Endpoints = append(snap.Endpoints, model.Endpoint{Netns: "shop_client-0", Namespace: "shop", Workload: "client",
		Labels: map[string]string{"app": "client"}, Addrs: []netip.Addr{clientAddr}})
	n.SetInventory(ctx, snap)
	res, err := svc.Apply(ctx, "guard.yaml", []byte(guardNetworkCNP), "alice")
	if err != nil || !res.Converged {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	if tp.open(5432) || !tp.open(9090) {
		t.Fatalf("under the Admin Deny: 5432 open %v (want false), 9090 open %v (want true)", tp.open(5432), tp.open(9090))
	}
	// The evidence bundle reads the rule's kernel counter: the dropped
	// attempts counted under cnp/admin/guard-net/ingress-0.
	exp, err := svc.Export(ctx, controller.ExportRequest{NoProbes: true, NoPDF: true}, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	var b evidence.Bundle
	if err := json.Unmarshal(exp.Files["bundle.json"], &b); err != nil {
		t.Fatal(err)
	}
	if c := b.Policies.ClusterNetworkPolicies; len(c) != 1 || len(c[0].Rules) != 1 || c[0].Rules[0].RuleID != "cnp/admin/guard-net/ingress-0" ||
		c[0].Rules[0].Endpoints != 1 || c[0].Rules[0].TotalPackets == 0 {
		t.Errorf("evidence of the Admin Deny: %+v, want its rule with the dropped packets counted", c)
	}
	del, err := svc.DeleteClusterNetworkPolicy(ctx, "guard-net", "alice")
	if err != nil || !del.Converged || del.Policy == nil || del.Policy.Name != "guard-net" {
		t.Fatalf("delete: %+v, %v", del, err)
	}
	if !tp.open(5432) {
		t.Errorf("client -> db 5432 still dropped after the Admin Deny was deleted")
	}
}
