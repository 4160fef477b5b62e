package kube

import (
	"context"
	"net/netip"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

// listedInventory is an Inventory whose List answers snap.
type listedInventory struct{ snap inventory.Snapshot }

func (l listedInventory) List(context.Context) (inventory.Snapshot, error) { return l.snap, nil }
func (l listedInventory) Watch(ctx context.Context, _ func()) error        { <-ctx.Done(); return nil }
func (l listedInventory) Run(ctx context.Context) error                    { <-ctx.Done(); return nil }
func (l listedInventory) HasSynced() bool                                  { return true }

// TestInventoryNodes: the controller's index gets the Nodes its inventory
// lists (cmd/nanoseg wires inventory/kube with Config.Nodes), so that its
// explain and proposals match a ClusterNetworkPolicy `nodes` peer as the
// node agents enforce it: web's egress to a node labelled role=infra on
// 8080 is denied by the Admin rule, to an unlabelled node's address it is
// not; a relabelled node no longer matches.
func TestInventoryNodes(t *testing.T) {
	shop := controllertest.Shop()
	infra, other := netip.MustParseAddr("198.18.87.2"), netip.MustParseAddr("198.18.87.3")
	snap := inventory.Snapshot{Endpoints: shop.Endpoints(), Namespaces: shop.Namespaces(),
		Nodes: []inventory.Node{{Name: "infra-1", Labels: map[string]string{"role": "infra"}, IPs: []netip.Addr{infra}},
			{Name: "worker-1", IPs: []netip.Addr{other}}}}
	c := &Controller{parts: Parts{Inventory: listedInventory{snap}}, inv: inventory.NewIndex(nil, nil, nil)}
	c.refreshInventory(context.Background())

	var p cnpv1alpha2.ClusterNetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(`apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-infra}
spec:
  tier: Admin
  priority: 7
  subject: {namespaces: {}}
  egress: [{name: infra-8080, action: Deny, to: [{nodes: {matchLabels: {role: infra}}}], protocols: [{tcp: {destinationPort: {number: 8080}}}]}]
`), &p); err != nil {
		t.Fatal(err)
	}
	mem := store.NewMem()
	if _, err := mem.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, By: "test", Policy: &p}); err != nil {
		t.Fatal(err)
	}
	svc := controller.New(controller.Config{}, mem, mem, c.inv, &controllertest.Node{}, nil)
	explain := func(to netip.Addr) (model.Verdict, string) {
		t.Helper()
		v, err := svc.Explain("shop/web", to.String(), "8080/TCP")
		if err != nil {
			t.Fatal(err)
		}
		rule := ""
		if r := v.Egress.ClusterRule; r != nil {
			rule = r.String()
		}
		return v.Action, rule
	}
	if a, rule := explain(infra); a != model.VerdictDeny || rule != `ClusterNetworkPolicy no-infra (Admin, priority 7) rule egress-0 "infra-8080"` {
		t.Errorf("web -> node infra-1 8080: %s by %q, want deny by the Admin rule", a, rule)
	}
	if a, rule := explain(other); a != model.VerdictAllow || rule != "" {
		t.Errorf("web -> node worker-1 8080: %s by %q, want allow, no cluster rule", a, rule)
	}
	snap.Nodes[0].Labels = map[string]string{"role": "edge"}
	c.parts.Inventory = listedInventory{snap}
	c.refreshInventory(context.Background())
	if a, rule := explain(infra); a != model.VerdictAllow || rule != "" {
		t.Errorf("web -> node infra-1 relabelled, 8080: %s by %q, want allow", a, rule)
	}
}
