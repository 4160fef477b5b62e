//go:build linux

package manifests_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/internal/kubetest"
)

// TestDryRunOnAFreshCluster checks what README.md ("Deploying it") says
// about a server-side dry run on a cluster that has never seen nanoseg: a
// server dry run persists nothing, so `kubectl apply -k manifests
// --dry-run=server` alone cannot check the objects of the nanoseg-system
// namespace (the API server refuses them: the namespace is not found),
// and no kustomization order changes that. The documented two steps work:
// create the namespace for real (`kubectl apply -f
// manifests/namespace.yaml`, nothing else), then dry-run everything.
func TestDryRunOnAFreshCluster(t *testing.T) {
	c := kubetest.New(t, kubetest.Options{})
	kubectl := kubectlPath(t)
	ctx := ctxFor(t, 2*time.Minute)
	run := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := run("apply", "--dry-run=server", "-k", ".")
	if err == nil || !strings.Contains(out, `namespaces "nanoseg-system" not found`) {
		t.Errorf("one-step dry run on a fresh cluster: %v\n%s\nwant it refused for the missing namespace (else README's two steps are no longer needed)", err, out)
	}
	if out, err := run("apply", "-f", filepath.Join(".", "namespace.yaml")); err != nil {
		t.Fatalf("step 1, kubectl apply -f manifests/namespace.yaml: %v\n%s", err, out)
	}
	out, err = run("apply", "--dry-run=server", "--validate=strict", "-k", ".")
	if err != nil {
		t.Fatalf("step 2, kubectl apply --dry-run=server -k manifests: %v\n%s", err, out)
	}
	if n, want := strings.Count(out, "(server dry run)"), len(objects(t)); n != want {
		t.Errorf("step 2 dry-ran %d objects, want %d:\n%s", n, want, out)
	}
	// Nothing but the namespace exists.
	if out, err := run("get", "daemonsets,serviceaccounts,deployments", "-n", "nanoseg-system", "-o", "name"); err != nil || strings.Contains(out, "nanoseg") {
		t.Errorf("after the dry run, nanoseg-system holds: %v %s", err, out)
	}
}
