//go:build linux

package nodeagent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// startAgent runs an agent over parts on a free port with a fresh owner
// directory; it stops at cleanup.
func startAgent(t *testing.T, parts Parts) *Agent {
	t.Helper()
	dir := t.TempDir() // owner files
	a, err := NewAgent(Config{NodeName: "node-a", Listen: "127.0.0.1:0", OwnerDir: dir, FlushInterval: 200 * time.Millisecond,
		DriftInterval: 200 * time.Millisecond}, parts, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for a.Addr() == "" {
		time.Sleep(10 * time.Millisecond)
	}
	return a
}

func get(t *testing.T, a *Agent, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNothingBeforeSync: the agent neither lists the inventory, reads the
// policies nor enforces until both caches synced; /readyz says what it
// waits for, then OK once the first Enforce is applied.
func TestNothingBeforeSync(t *testing.T) {
	inv, pol := &fakeInventory{}, &fakePolicies{}
	inv.snap = inventory.Snapshot{Namespaces: map[string]map[string]string{"shop": {"kubernetes.io/metadata.name": "shop"}}}
	a := startAgent(t, Parts{Inventory: inv, Policies: pol})
	if code, body := get(t, a, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	pol.synced.Store(true)
	time.Sleep(300 * time.Millisecond)
	if code, body := get(t, a, "/readyz"); code != 503 || !strings.Contains(body, "inventory") {
		t.Errorf("/readyz before the inventory synced: %d %q", code, body)
	}
	pol.mu.Lock()
	reads := pol.reads
	pol.mu.Unlock()
	if a.Ready() || inv.lists > 0 || reads > 0 {
		t.Fatalf("before sync: ready %v, lists %d, policy reads %d; want nothing", a.Ready(), inv.lists, reads)
	}
	inv.synced.Store(true)
	waitFor(t, "ready after sync", 2*time.Second, a.Ready)
	if code, body := get(t, a, "/readyz"); code != 200 {
		t.Errorf("/readyz after sync: %d %q", code, body)
	}
	if code, body := get(t, a, "/metrics"); code != 200 || !strings.Contains(body, `nanoseg_node_cache_synced{cache="inventory"} 1`) {
		t.Errorf("/metrics: %d, cache_synced missing:\n%s", code, body)
	}
}

// TestChangeWhileUnsynced: a change notified while the policy cache is
// unsynced again (a kind the API server serves anew hands over its
// objects, each a notification, before its informer has synced) is
// enforced once the cache has synced, without a further notification: the
// node agent missed a new ClusterNetworkPolicy that way until its next
// resync (minutes) when the CRD was installed after it started.
func TestChangeWhileUnsynced(t *testing.T) {
	inv, pol := &fakeInventory{}, &fakePolicies{}
	inv.synced.Store(true)
	pol.synced.Store(true)
	a := startAgent(t, Parts{Inventory: inv, Policies: pol})
	waitFor(t, "ready", 2*time.Second, a.Ready)
	reads := func() int { pol.mu.Lock(); defer pol.mu.Unlock(); return pol.reads }
	before := reads()
	pol.synced.Store(false)
	pol.set(policies.InForce{})
	time.Sleep(300 * time.Millisecond)
	if n := reads(); n != before {
		t.Fatalf("policies read %d times while unsynced; want none", n-before)
	}
	pol.synced.Store(true)
	waitFor(t, "the change read once synced, with no further notification", 2*time.Second, func() bool { return reads() > before })
}

// TestUnfoundEvents: each newly unfound pod gets one Event (not one per
// sync), counted in nanoseg_node_pods_unfound; a failing Event (RBAC)
// stops the Events.
func TestUnfoundEvents(t *testing.T) {
	inv, pol := &fakeInventory{}, &fakePolicies{}
	inv.synced.Store(true)
	pol.synced.Store(true)
	var mu sync.Mutex
	unfound := []UnfoundPod{{Pod: "shop/api-0", Code: "not_found", Reason: "no netns holds 198.18.0.2"}}
	var events []string
	a := startAgent(t, Parts{Inventory: inv, Policies: pol,
		Unfound: func() []UnfoundPod { mu.Lock(); defer mu.Unlock(); return unfound },
		Event: func(_ context.Context, u UnfoundPod) error {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, u.Pod+" "+u.Code)
			return nil
		}})
	waitFor(t, "ready", 2*time.Second, a.Ready)
	for range 3 {
		inv.set(inventory.Snapshot{Endpoints: []model.Endpoint{{Netns: "shop_x", Namespace: "shop", Workload: "x"}},
			Namespaces: map[string]map[string]string{"shop": {}}})
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	unfound = append(unfound, UnfoundPod{Pod: "shop/api-1", Code: "partial"})
	mu.Unlock()
	inv.set(inventory.Snapshot{})
	waitFor(t, "second event", 2*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(events) >= 2 })
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	got := strings.Join(events, ", ")
	mu.Unlock()
	if got != "shop/api-0 not_found, shop/api-1 partial" {
		t.Errorf("events: %s", got)
	}
	if _, body := get(t, a, "/metrics"); !strings.Contains(body, "nanoseg_node_pods_unfound 2") {
		t.Errorf("metrics lack nanoseg_node_pods_unfound 2")
	}
}

// syncBuffer is an io.Writer safe for a logger and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// TestWaitingIsLogged: while the caches have not synced, the agent says
// so every waitWarn, naming the caches it waits for and the error Probe
// returns (client-go retries a failing list without a word); once
// synced, it stops.
func TestWaitingIsLogged(t *testing.T) {
	inv, pol := &fakeInventory{}, &fakePolicies{}
	pol.synced.Store(true)
	var probeErr atomic.Value
	probeErr.Store(errors.New("list pods: connection refused"))
	var logs syncBuffer
	dir := t.TempDir()
	a, err := NewAgent(Config{NodeName: "node-a", Listen: "127.0.0.1:0", OwnerDir: dir}, Parts{Inventory: inv, Policies: pol,
		Probe: func(context.Context) error { e, _ := probeErr.Load().(error); return e }},
		nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.waitWarn = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "a warning with the probe's error", 2*time.Second, func() bool {
		return strings.Contains(logs.String(), "connection refused")
	})
	if s := logs.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "caches=[inventory]") {
		t.Errorf("warning lacks its level or the cache it waits for:\n%s", s)
	}
	inv.synced.Store(true)
	waitFor(t, "ready", 2*time.Second, a.Ready)
	time.Sleep(50 * time.Millisecond)
	n := strings.Count(logs.String(), "caches not synced")
	time.Sleep(300 * time.Millisecond)
	if m := strings.Count(logs.String(), "caches not synced"); m != n {
		t.Errorf("still warning after sync: %d warnings, then %d", n, m)
	}
}
