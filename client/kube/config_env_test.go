package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRESTEmptyKubeconfigEnv: an empty file named by $KUBECONFIG is named
// in the error, not answered with the hint to set KUBECONFIG.
func TestRESTEmptyKubeconfigEnv(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", dir)
	t.Setenv("KUBECONFIG", empty)
	_, _, err := Config{}.REST()
	if err == nil || !strings.Contains(err.Error(), "$KUBECONFIG "+empty) {
		t.Errorf("REST with an empty $KUBECONFIG: %v", err)
	}
}
