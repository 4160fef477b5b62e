//go:build linux

package node

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// cnps parses ClusterNetworkPolicy documents.
func cnps(t *testing.T, doc string) []cnpv1alpha2.ClusterNetworkPolicy {
	t.Helper()
	objs, err := policies.ParseObjects("cnp.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return policies.ClusterNetworkPolicies(objs)
}

const guardCNP = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  ingress:
    - {name: no-db-port, action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}
`

const passCNP = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: delegate}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  ingress:
    - {action: Pass, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: shop}}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}
`

const floorCNP = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: floor}
spec:
  tier: Baseline
  priority: 5
  subject: {namespaces: {}}
  ingress:
    - {name: no-6000, action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 6000}}}]}
`

// TestClusterNetworkPolicyThroughNode: the node compiles the
// ClusterNetworkPolicies in force into the endpoint's table, with real
// packets: an Admin Deny beats a NetworkPolicy allow and, once it
// enforces, a nanosegment allow (in audit mode it is audit-deny: the
// connection gets through, issue 15); a Pass of higher priority hands the connection back to the
// NetworkPolicy, which allows it. With Admin and Baseline tiers in force,
// the endpoints stay in sync through several drift passes and none is
// reprogrammed by them (the drift check's State.Equal holds for tiers).
func TestClusterNetworkPolicyThroughNode(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	n, _ := startNode(t, Config{OwnerDir: ownerDir(t)}, nil)
	snap := tp.snapshot()
	snap.Endpoints = append(snap.Endpoints, model.Endpoint{Netns: "shop_client-0", Namespace: "shop", Workload: "client",
		Labels: map[string]string{"app": "client"}, Addrs: []netip.Addr{clientAddr}})
	n.SetInventory(ctx, snap)
	objs, err := policies.ParseObjects("np.yaml", []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: 5432}, {port: 9090}]
`))
	if err != nil {
		t.Fatal(err)
	}
	nps, _ := policies.SplitObjects(objs)
	decided := []string{"shop/db", "shop/client"}
	for _, step := range []struct {
		name       string
		in         policies.InForce
		open, shut uint16
	}{
		{"Admin Deny beats the NetworkPolicy allow", policies.InForce{NetworkPolicies: nps, ClusterNetworkPolicies: cnps(t, guardCNP)}, 9090, 5432},
		{"Admin Deny on a nanosegment in audit mode is logged, not dropped", policies.InForce{NanoSegments: []v1alpha1.NanoSegment{dbPolicy(t, model.ModeAudit, 5432)}, ClusterNetworkPolicies: cnps(t, guardCNP)}, 5432, 0},
		{"Admin Deny beats the nanosegment allow once it enforces", policies.InForce{NanoSegments: []v1alpha1.NanoSegment{dbPolicy(t, model.ModeEnforce, 5432)}, ClusterNetworkPolicies: cnps(t, guardCNP)}, 0, 5432},
		{"Pass hands over to the NetworkPolicy", policies.InForce{NetworkPolicies: nps, ClusterNetworkPolicies: cnps(t, guardCNP+"---\n"+passCNP+"---\n"+floorCNP)}, 5432, 0},
	} {
		if err := n.Enforce(ctx, step.in, decided); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if step.open != 0 && !tp.open(step.open) {
			t.Errorf("%s: port %d closed, want open", step.name, step.open)
		}
		if step.shut != 0 && tp.open(step.shut) {
			t.Errorf("%s: port %d open, want closed", step.name, step.shut)
		}
	}
	repairs := map[string]int{}
	for _, ns := range []string{tp.ep.Netns} {
		st, _ := n.rec.Status(ns)
		repairs[ns] = st.Repairs
	}
	time.Sleep(5 * n.cfg.DriftInterval)
	for _, ns := range []string{tp.ep.Netns} {
		if !n.Read(ns, false).InSync {
			t.Errorf("%s: not in sync with ClusterNetworkPolicies in force", ns)
		}
		if st, _ := n.rec.Status(ns); st.Repairs != repairs[ns] {
			t.Errorf("%s: reprogrammed %d times by %d drift passes", ns, st.Repairs-repairs[ns], 5)
		}
	}
}
