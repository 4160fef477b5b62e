//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/inventory/host"
	"github.com/nanoseg/nanoseg/node"
)

// testAgentConfig returns the configuration of an agent over the labels
// file labels, with its state and socket in a directory of its own and no
// metrics listener.
func testAgentConfig(t *testing.T, labels string) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := Defaults()
	cfg.StateFile = filepath.Join(dir, "state.db")
	cfg.Socket = filepath.Join(dir, "agent.sock")
	cfg.MetricsAddr = ""
	cfg.LabelsFile = labels
	return cfg
}

// runTestAgent starts an agent, waits until it serves its socket and
// stops it at cleanup. It fails t when the agent stops while starting.
func runTestAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := New(cfg, host.LabSource{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(time.Minute):
			t.Errorf("agent did not stop within a minute")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(cfg.Socket); err == nil {
			return a
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("agent stopped while starting: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("agent not ready after 30s")
		}
	}
}

// writeLabels writes a labels file naming the netns in names as
// endpoints of workload ns/w, in a directory of its own.
func writeLabels(t *testing.T, ns, w string, names ...string) string {
	t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "namespaces: [{name: %s}]\nendpoints:\n", ns)
	for _, n := range names {
		fmt.Fprintf(&sb, "  - {netns: %s, namespace: %s, workload: %s, labels: {app: %s}}\n", n, ns, w, w)
	}
	path := filepath.Join(t.TempDir(), "labels.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSecondAgentRefused (issue 11, item 3): an agent runs over a labels
// file; a second agent over another labels file naming the same network
// namespace (another source, another identity for it) does not manage it.
// When that namespace is all it has, it refuses to start, naming the
// first agent; when it has others, it manages those and its status shows
// the refused endpoint with the owner.
func TestSecondAgentRefused(t *testing.T) {
	shared, own := nettest.New(t), nettest.New(t)
	first := testAgentConfig(t, writeLabels(t, "shop", "db", shared.Name))
	runTestAgent(t, first)

	second := testAgentConfig(t, writeLabels(t, "other", "cache", shared.Name))
	a, err := New(second, host.LabSource{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !errors.Is(err, node.ErrOwned) {
		t.Fatalf("second agent over the same netns only: Run returned %v, want a refusal", err)
	}
	t.Logf("refusal: %v", err)
	for _, want := range []string{fmt.Sprintf("pid %d", os.Getpid()), "socket " + first.Socket, "state file " + first.StateFile} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name the owner (%q)", err, want)
		}
	}

	third := testAgentConfig(t, writeLabels(t, "other", "cache", shared.Name, own.Name))
	b := runTestAgent(t, third)
	st, err := b.Service().Status()
	if err != nil {
		t.Fatal(err)
	}
	var refused, managed int
	for _, w := range st {
		for _, e := range w.Endpoints {
			switch e.Netns {
			case shared.Name:
				if strings.Contains(e.Error, "socket "+first.Socket) {
					refused++
				} else {
					t.Errorf("status of the shared endpoint: %+v, want the owner named", e)
				}
			case own.Name:
				if e.Error == "" && e.InSync {
					managed++
				} else {
					t.Errorf("status of the third agent's own endpoint: %+v", e)
				}
			}
		}
	}
	if refused != 1 || managed != 1 {
		t.Errorf("status: %d refused, %d managed endpoints; want 1 and 1: %+v", refused, managed, st)
	}
}
