//go:build linux

package nodeagent

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/inventory"
	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// earlyInventory is a fakeInventory that also has pending pods and
// candidate namespaces (EarlyPods).
type earlyInventory struct {
	fakeInventory
	emu     sync.Mutex
	pending []invkube.PendingPod
	cands   []invkube.Candidate
}

func (f *earlyInventory) Pending() []invkube.PendingPod {
	f.emu.Lock()
	defer f.emu.Unlock()
	return f.pending
}

func (f *earlyInventory) Candidates() []invkube.Candidate {
	f.emu.Lock()
	defer f.emu.Unlock()
	return f.cands
}

func (f *earlyInventory) setEarly(snap inventory.Snapshot, pending []invkube.PendingPod, cands []invkube.Candidate) {
	f.emu.Lock()
	// Copies: the test changes its slices later, the agent reads these.
	f.pending, f.cands = slices.Clone(pending), slices.Clone(cands)
	f.emu.Unlock()
	f.set(snap)
}

// isolateClients is an egress NetworkPolicy of namespace shop selecting
// role=client and allowing nothing.
func isolateClients() policies.InForce {
	return policies.InForce{NetworkPolicies: []networkingv1.NetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "clients"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		},
	}}}
}

// TestNewPodPlaceholder: a candidate namespace gets the fail-closed
// placeholder while a pending pod of the node is isolated, loses it when
// none is (a previous agent's placeholder too), never gets it over
// another table already there, and gets the pod's own rules in place of
// it once the pod is matched.
func TestNewPodPlaceholder(t *testing.T) {
	nettest.RequireRoot(t)
	fresh, taken, stale := nettest.New(t), nettest.New(t), nettest.New(t)
	dp := dataplane.New(nil)
	observe := dataplane.RuleSet{Name: "someone-else", Mode: model.ModeObserve}
	if _, err := dp.Apply(taken.Path(), observe); err != nil {
		t.Fatal(err)
	}
	// A placeholder a previous agent left.
	if _, err := dp.Apply(stale.Path(), Placeholder()); err != nil {
		t.Fatal(err)
	}
	inv, pols := &earlyInventory{}, &fakePolicies{}
	inv.synced.Store(true)
	pols.synced.Store(true)
	pols.in = isolateClients()
	nss := map[string]map[string]string{"shop": {"kubernetes.io/metadata.name": "shop"}}
	inv.snap = inventory.Snapshot{Namespaces: nss}
	a := startAgent(t, Parts{Inventory: inv, Policies: pols})
	waitFor(t, "ready", 5*time.Second, a.Ready)

	pending := []invkube.PendingPod{{Namespace: "shop", Name: "client", UIDs: []string{"uid-client"}, Labels: map[string]string{"role": "client"}}}
	cands := []invkube.Candidate{
		{Path: fresh.Path(), Inode: inode(t, fresh.Path()), CRI: true, Since: time.Now()},
		{Path: taken.Path(), Inode: inode(t, taken.Path()), CRI: true, Since: time.Now()},
		{Path: stale.Path(), Inode: inode(t, stale.Path()), CRI: true, Since: time.Now()},
	}
	// state reads the table; a read racing the agent's transaction may
	// fail (a table listed, then gone or replaced): read again.
	state := func(path string) *dataplane.State {
		var err error
		for range 20 {
			var st *dataplane.State
			if st, err = dp.Read(path); err == nil {
				return st
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatal(err)
		return nil
	}
	inv.setEarly(inventory.Snapshot{Namespaces: nss}, pending, cands)
	waitFor(t, "placeholder in the new namespace", 5*time.Second, func() bool { return state(fresh.Path()).Equal(Placeholder()) })
	if st := state(taken.Path()); !st.Equal(observe) {
		t.Errorf("the table already there was replaced: %+v", st.RuleSet)
	}

	// The policy goes: no pending pod is isolated, the placeholder goes.
	pols.set(policies.InForce{})
	waitFor(t, "placeholders removed, the previous agent's too", 5*time.Second, func() bool {
		return !state(fresh.Path()).Present && !state(stale.Path()).Present
	})
	if st := state(taken.Path()); !st.Equal(observe) {
		t.Errorf("the table already there was touched: %+v", st.RuleSet)
	}

	// A pending pod that no policy isolates gets none.
	inv.setEarly(inventory.Snapshot{Namespaces: nss}, []invkube.PendingPod{{Namespace: "shop", Name: "web", UIDs: []string{"uid-web"},
		Labels: map[string]string{"role": "web"}}}, cands)
	pols.set(isolateClients())
	time.Sleep(300 * time.Millisecond)
	if state(fresh.Path()).Present {
		t.Errorf("placeholder while no pending pod is isolated")
	}

	// The isolated pod is pending again: placeholder; then it is matched
	// to the namespace: its own rules replace the placeholder.
	cands[0].UID = "uid-client"
	inv.setEarly(inventory.Snapshot{Namespaces: nss}, pending, cands)
	waitFor(t, "placeholder again", 5*time.Second, func() bool { return state(fresh.Path()).Equal(Placeholder()) })
	ep := model.Endpoint{Netns: "shop_client", Path: fresh.Path(), NetnsInode: cands[0].Inode, Namespace: "shop", Workload: "client",
		Labels: map[string]string{"role": "client"}, Addrs: []netip.Addr{clientV4}}
	inv.setEarly(inventory.Snapshot{Namespaces: nss, Endpoints: []model.Endpoint{ep}}, nil, cands)
	waitFor(t, "the pod's own rules", 5*time.Second, func() bool {
		st := state(fresh.Path())
		return st.Present && st.RuleSet.Mode == model.ModeEnforce && !st.Equal(Placeholder())
	})
	// It stays so (the guard does not come back).
	time.Sleep(300 * time.Millisecond)
	if st := state(fresh.Path()); st.Equal(Placeholder()) {
		t.Errorf("placeholder back over the pod's own rules")
	}
}
