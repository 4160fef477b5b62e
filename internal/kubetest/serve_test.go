//go:build linux

package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServe is how a person gets an API server to try nanoseg against
// (`make kube-up`, README "Trying the node agent on a lab"), not a test:
// skipped unless NANOSEG_KUBE_UP names a file. It writes the admin
// kubeconfig of this package's cluster (nanoseg's CRDs installed) there
// and keeps the cluster up until that file is removed, then stops it
// like any test cluster.
func TestServe(t *testing.T) {
	path := os.Getenv("NANOSEG_KUBE_UP")
	if path == "" {
		t.Skip("NANOSEG_KUBE_UP is not set (make kube-up sets it)")
	}
	if !filepath.IsAbs(path) {
		t.Fatalf("NANOSEG_KUBE_UP=%s: an absolute path, please (go test runs in the package's directory)", path)
	}
	c := Shared(t)
	if err := WriteKubeconfig(path, c.Config, "nanoseg-dev"); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	// Not t.Log: go test shows it only at the end.
	fmt.Fprintf(os.Stderr, "kube-up: API server %s is up (CRDs of manifests/crds installed); kubeconfig %s\n"+
		"kube-up: rm %s to stop it (or Ctrl-C: the next start sweeps what is left)\n", c.Server, path, path)
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		defer cancel()
	}
	if err := waitRemoved(ctx, path, time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "kube-up: %v: stopping\n", err)
		return
	}
	fmt.Fprintln(os.Stderr, "kube-up: kubeconfig removed: stopping")
}

// waitRemoved polls every interval until path no longer exists or ctx
// ends (its error).
func waitRemoved(ctx context.Context, path string, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// TestWaitRemoved: waitRemoved returns once the file is gone, and with
// ctx's error when it stays.
func TestWaitRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := waitRemoved(ctx, path, 10*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("file still there: %v, want the deadline", err)
	}
	time.AfterFunc(30*time.Millisecond, func() { os.Remove(path) })
	if err := waitRemoved(context.Background(), path, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// TestKubeBinsKeepsCurrentKubectl: hack/kube-bins.sh does not rebuild a
// kubectl that is already at the version (it once did on every run: its
// version check died of SIGPIPE under pipefail).
func TestKubeBinsKeepsCurrentKubectl(t *testing.T) {
	if os.Getenv("NANOSEG_KUBE_BIN") != "" {
		t.Skip("NANOSEG_KUBE_BIN points elsewhere than the script's cache")
	}
	if _, err := os.Stat(filepath.Join(Bin(), "kubectl")); err != nil {
		t.Skipf("no kubectl built: %v", err)
	}
	for range 5 { // the SIGPIPE was a race: it struck one run in 1 to 5
		out, err := exec.Command("../../hack/kube-bins.sh", "kubectl").CombinedOutput()
		if err != nil {
			t.Fatalf("kube-bins.sh kubectl: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "building") {
			t.Fatalf("kube-bins.sh rebuilt a current kubectl:\n%s", out)
		}
	}
}
