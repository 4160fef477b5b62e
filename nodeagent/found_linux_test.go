//go:build linux

package nodeagent

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
)

// TestFoundEvents: a pod reported unfound gets one NetnsFound Event when
// its netns is found (the endpoint has its path), none while it stays
// found; a pod reported unfound that is deleted gets none.
func TestFoundEvents(t *testing.T) {
	nettest.RequireRoot(t)
	netns := nettest.New(t)
	inv, pol := &fakeInventory{}, &fakePolicies{}
	inv.synced.Store(true)
	pol.synced.Store(true)
	var mu sync.Mutex
	unfound := []UnfoundPod{
		{Pod: "shop/api-0", Code: "not_found", Reason: "no netns holds 198.18.0.2", Netns: "shop_api-0"},
		{Pod: "shop/api-1", Code: "not_found", Reason: "no netns holds 198.18.0.3", Netns: "shop_api-1"},
	}
	var events []string
	record := func(what string) func(context.Context, UnfoundPod) error {
		return func(_ context.Context, u UnfoundPod) error {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, what+" "+u.Pod)
			return nil
		}
	}
	a := startAgent(t, Parts{Inventory: inv, Policies: pol,
		Unfound: func() []UnfoundPod { mu.Lock(); defer mu.Unlock(); return unfound },
		Event:   record("NetnsNotFound"), Found: record("NetnsFound")})
	waitFor(t, "ready", 2*time.Second, a.Ready)
	ns := map[string]map[string]string{"shop": {}}
	pod := func(name, path string) model.Endpoint {
		return model.Endpoint{Netns: "shop_" + name, Namespace: "shop", Workload: "api", Path: path}
	}
	inv.set(inventory.Snapshot{Endpoints: []model.Endpoint{pod("api-0", ""), pod("api-1", "")}, Namespaces: ns})
	waitFor(t, "two NetnsNotFound", 2*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(events) == 2 })

	// api-0 found, api-1 deleted.
	mu.Lock()
	unfound = nil
	mu.Unlock()
	for range 3 {
		inv.set(inventory.Snapshot{Endpoints: []model.Endpoint{pod("api-0", netns.Path())}, Namespaces: ns})
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	got := strings.Join(events, ", ")
	mu.Unlock()
	if want := "NetnsNotFound shop/api-0, NetnsNotFound shop/api-1, NetnsFound shop/api-0"; got != want && got != strings.Replace(want, "api-0, NetnsNotFound shop/api-1", "api-1, NetnsNotFound shop/api-0", 1) {
		t.Errorf("events: %s\nwant %s", got, want)
	}
	if _, body := get(t, a, "/metrics"); !strings.Contains(body, "nanoseg_node_pods_unfound 0") {
		t.Errorf("metrics lack nanoseg_node_pods_unfound 0")
	}
}

// TestNetnsFoundEventOnAPIServer: a pod of node-b registered in the real
// API server before its netns exists gets a Warning NetnsNotFound Event;
// once a netns holds its address, a Normal NetnsFound Event follows, and
// its table is programmed.
func TestNetnsFoundEventOnAPIServer(t *testing.T) {
	k := newKCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, _ := k.agent(t, "node-b", t.TempDir())
	addr := netip.MustParseAddr("198.18.77.5")
	k.pod(t, ctx, "late-0", "node-b", map[string]string{"app": "late"}, addr)
	events := func() []string {
		l, err := k.cs.CoreV1().Events(k.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=late-0"})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range l.Items {
			out = append(out, e.Type+" "+e.Reason)
		}
		slices.Sort(out)
		return out
	}
	waitFor(t, "NetnsNotFound", 20*time.Second, func() bool { return slices.Equal(events(), []string{"Warning NetnsNotFound"}) })
	n, peer := nettest.New(t), nettest.New(t)
	nettest.Connect(t, n, peer, []netip.Prefix{netip.PrefixFrom(addr, 24)}, []netip.Prefix{netip.MustParsePrefix("198.18.77.252/24")})
	waitFor(t, "NetnsFound", 20*time.Second, func() bool {
		return slices.Equal(events(), []string{"Normal NetnsFound", "Warning NetnsNotFound"})
	})
	if _, ok := a.Node().Desired(k.ns + "_late-0"); !ok {
		t.Errorf("late-0 has its NetnsFound Event but no table")
	}
	time.Sleep(time.Second)
	if got := events(); len(got) != 2 {
		t.Errorf("events on late-0 after a second: %v; want no more", got)
	}
}
