package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadKubeconfig: a kubeconfig that is missing or empty is one clear
// message naming the flag and the file once, from every command that
// takes --kubeconfig.
func TestBadKubeconfig(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kc := range []struct{ path, want string }{{missing, "no such file"}, {empty, "no cluster, context or user in it"}} {
		cmds := []struct {
			prefix string
			args   []string
		}{
			{"status: --kubeconfig ", []string{"status"}},
			{"lab kube register: --kubeconfig ", []string{"lab", "kube", "register", "-f", "../../manifests/lab/shop.yaml"}},
			{"controller.kubeconfig (--kubeconfig) ", []string{"controller"}},
		}
		if os.Geteuid() == 0 {
			cmds = append(cmds, struct {
				prefix string
				args   []string
			}{"node.kubeconfig (--kubeconfig) ", []string{"node", "--node-name", "n"}})
		}
		for _, c := range cmds {
			args := append([]string{"--config", cfg}, c.args...)
			_, err := runCLI(t, append(args, "--kubeconfig", kc.path)...)
			want := c.prefix + kc.path + ": " + kc.want
			if err == nil || err.Error() != want {
				t.Errorf("%s --kubeconfig %s: %v, want %q", strings.Join(c.args, " "), kc.path, err, want)
			}
		}
	}
}
