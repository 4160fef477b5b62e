//go:build linux

package nodeagent

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/internal/kubetest"
)

// TestAPIServerOutageVisible: an agent whose policies are enforced loses
// the real API server (kubetest's StopAPIServer) and gets it back: the
// gauge nanoseg_node_apiserver_reachable goes 1 → 0 → 1, the last-contact
// timestamp stands still meanwhile, one warning says contact is lost (and
// that enforcement stays as it is) and one line says it is back, and
// /readyz stays 200 with a warning line while it is gone.
func TestAPIServerOutageVisible(t *testing.T) {
	c := kubetest.Shared(t)
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	inv, pol := &fakeInventory{}, &fakePolicies{}
	inv.synced.Store(true)
	pol.synced.Store(true)
	var logs syncBuffer
	a, err := NewAgent(Config{NodeName: "node-a", Listen: "127.0.0.1:0", OwnerDir: t.TempDir(), APIServerCheckInterval: 100 * time.Millisecond},
		Parts{Inventory: inv, Policies: pol, Ping: Ping(client)}, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "ready", 5*time.Second, a.Ready)
	waitFor(t, "API server reachable", 5*time.Second, func() bool { ok, _, _ := a.APIServerContact(); return ok })
	if v := testutil.ToFloat64(a.mReachable); v != 1 {
		t.Errorf("nanoseg_node_apiserver_reachable = %v with the API server up, want 1", v)
	}
	if code, body := get(t, a, "/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz with the API server up: %d %q", code, body)
	}

	if err := c.StopAPIServer(); err != nil {
		t.Logf("stop the API server: %v", err) // killed after the grace period: as gone
	}
	stopped := true
	defer func() {
		if stopped {
			_ = c.StartAPIServer(context.Background())
		}
	}()
	waitFor(t, "API server unreachable", 10*time.Second, func() bool { ok, _, _ := a.APIServerContact(); return !ok })
	_, lastUp, _ := a.APIServerContact()
	if v := testutil.ToFloat64(a.mReachable); v != 0 {
		t.Errorf("nanoseg_node_apiserver_reachable = %v with the API server stopped, want 0", v)
	}
	stamp := testutil.ToFloat64(a.mLastContact)
	time.Sleep(300 * time.Millisecond)
	if now := testutil.ToFloat64(a.mLastContact); now != stamp || stamp == 0 {
		t.Errorf("last contact timestamp moved or is unset while the API server is stopped: %v then %v", stamp, now)
	}
	code, body := get(t, a, "/readyz")
	if code != 200 || !strings.HasPrefix(body, "ok\n") || !strings.Contains(body, "API server unreachable since") ||
		!strings.Contains(body, "last contact "+lastUp.UTC().Format(time.RFC3339)) {
		t.Errorf("/readyz with the API server stopped: %d %q; want 200 with a warning line", code, body)
	}
	if !a.Ready() {
		t.Errorf("not ready while the API server is stopped; readiness must not follow the contact")
	}
	if n := strings.Count(logs.String(), "API server unreachable"); n != 1 {
		t.Errorf("%d lines saying the API server is unreachable, want 1:\n%s", n, logs.String())
	}
	if s := logs.String(); !strings.Contains(s, "enforcement stays as it is") || !strings.Contains(s, "level=WARN") {
		t.Errorf("the lost-contact line lacks its level or what enforcement does:\n%s", s)
	}

	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = false
	waitFor(t, "API server reachable again", 10*time.Second, func() bool { ok, _, _ := a.APIServerContact(); return ok })
	waitFor(t, "the line saying it is back", 2*time.Second, func() bool { return strings.Contains(logs.String(), "API server reachable again") })
	if v := testutil.ToFloat64(a.mReachable); v != 1 {
		t.Errorf("nanoseg_node_apiserver_reachable = %v after the API server came back, want 1", v)
	}
	if now := testutil.ToFloat64(a.mLastContact); now <= stamp {
		t.Errorf("last contact timestamp %v not after %v once the API server is back", now, stamp)
	}
	if code, body := get(t, a, "/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz after the API server came back: %d %q", code, body)
	}
	if _, body := get(t, a, "/metrics"); !strings.Contains(body, "nanoseg_node_apiserver_reachable 1") ||
		!strings.Contains(body, "nanoseg_node_apiserver_last_contact_timestamp_seconds") {
		t.Errorf("/metrics lacks the contact gauges")
	}
}
