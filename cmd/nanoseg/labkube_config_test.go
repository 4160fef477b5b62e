package main

import (
	"os"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// TestKubeClientWithoutKubeconfig: with no kubeconfig anywhere the error
// says which flag or variable to set, not client-go's KUBERNETES_MASTER.
func TestKubeClientWithoutKubeconfig(t *testing.T) {
	if _, err := os.Stat(clientcmd.RecommendedHomeFile); err == nil {
		t.Skipf("%s exists", clientcmd.RecommendedHomeFile)
	}
	t.Setenv("KUBECONFIG", "")
	_, err := kubeClient("")
	if err == nil || !strings.Contains(err.Error(), "--kubeconfig") || strings.Contains(err.Error(), "KUBERNETES_MASTER") {
		t.Fatalf("kubeClient without a kubeconfig: %v", err)
	}
}
