package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

// TestBoolFlagsHaveNoPlaceholder: a backquoted word in a flag's usage
// becomes its value placeholder in --help (pflag.UnquoteUsage), which
// makes a boolean flag read as if it took a value.
func TestBoolFlagsHaveNoPlaceholder(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); f.Value.Type() == "bool" && name != "" {
				t.Errorf("%s --%s: help shows %q as its value", c.CommandPath(), f.Name, name)
			}
		})
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCmd())
}
