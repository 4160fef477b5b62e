//go:build linux

package main

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/lab/kubelab"
)

// runMainEnv makes the test binary run nanoseg's main with its arguments
// instead of the tests (TestMain), so a test can start `nanoseg ...` as a
// real process and signal it. (Not NANOSEG_*: nanoseg refuses unknown
// settings of its own prefix.)
const runMainEnv = "GO_TEST_RUN_NANOSEG_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run())
	}
	// klog's logger may only be set before client-go's goroutines read it.
	// The tests run CLI commands in a process where node agents' informers
	// already watch, so the logger is set here, before any test, and the
	// CLI's klogOnce finds it done (in a real CLI process nothing watches
	// before the CLI sets it).
	klogOnce.Do(func() { klog.SetSlogLogger(slog.New(slog.DiscardHandler)) })
	os.Exit(m.Run())
}

// lockedBuffer collects a child's output for a test that reads it while
// the child writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNodeStopsCleanlyOnSignal: `nanoseg node` on a real API server,
// once it enforces, gets SIGTERM (then, in a second run, SIGINT): it
// logs the signal and that the tables stay in the kernel, then that it
// stopped, and exits 0; with pods on its node and a batch to the
// controller in flight at the signal, nothing after it is a warning.
func TestNodeStopsCleanlyOnSignal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("nanoseg node needs root")
	}
	// Not parallel: its agent finds network namespaces by address, and
	// would take another test's lab namespaces of the same addresses.
	c := kubetest.New(t, kubetest.Options{CRDDirs: []string{"../../manifests/crds"}})
	// Pods on the agent's node (their netns is nowhere: the agent keeps
	// looking), and a controller that answers slowly, so the stop comes
	// while a batch is in flight.
	top, err := lab.Parse([]byte(clusterTopology))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := lab.NewPlan(top, []byte(clusterTopology))
	if err != nil {
		t.Fatal(err)
	}
	if err := kubelab.Register(context.Background(), c.Client, plan); err != nil {
		t.Fatal(err)
	}
	slow := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer slow.Close()
	dir := t.TempDir()
	ca, token := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: slow.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "node", "--kubeconfig", c.Kubeconfig, "--node-name", "kc", "--listen", "127.0.0.1:0",
				"--owner-dir", t.TempDir(), "--log-format", "text", "--controller", slow.URL, "--controller-ca", ca, "--token-file", token)
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			var out lockedBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			defer func() {
				if cmd.ProcessState == nil {
					_ = cmd.Process.Kill()
				}
			}()
			deadline := time.Now().Add(60 * time.Second)
			for !strings.Contains(out.String(), "caches synced, policies enforced") {
				if time.Now().After(deadline) {
					t.Fatalf("not enforcing after 60s:\n%s", out.String())
				}
				select {
				case err := <-done:
					t.Fatalf("exited before enforcing (%v):\n%s", err, out.String())
				case <-time.After(20 * time.Millisecond):
				}
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("exit after %s: %v, want 0\n%s", sig, err, out.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("still running 30s after %s:\n%s", sig, out.String())
			}
			logs := out.String()
			for _, want := range []string{"node agent stopping: the pods' tables stay in the kernel", sig.String() + " signal received", "node agent stopped"} {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			// A clean stop is no problem: nothing after the signal is
			// logged as a warning or an error.
			_, after, _ := strings.Cut(logs, "node agent stopping")
			for _, line := range strings.Split(after, "\n") {
				if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
					t.Errorf("a clean stop logs %q\n%s", line, logs)
				}
			}
		})
	}
}
