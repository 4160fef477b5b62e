//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/internal/kubetest"
)

// TestLabKubeRegister: `lab kube register -f` writes a topology's pods into
// an API server without running the lab (no root), twice without harm,
// and `lab kube unregister` removes them; a bad topology is refused
// naming the field.
func TestLabKubeRegister(t *testing.T) {
	c := kubetest.New(t, kubetest.Options{})
	cfg := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(t.TempDir(), "lab.yaml")
	const topology = `kind: LabTopology
name: cli
dns: cli-sys/dns
namespaces:
  - {name: cli-sys}
  - {name: cli-app, labels: {team: a}}
workloads:
  - {name: dns, namespace: cli-sys, ports: [{port: 53, protocol: UDP}]}
  - {name: web, namespace: cli-app, labels: {app: web}, replicas: 2, node: [n1, n2], ports: [{name: http, port: 80}]}
`
	if err := os.WriteFile(top, []byte(topology), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		out, err := runCLI(t, "--config", cfg, "lab", "kube", "register", "-f", top, "--kubeconfig", c.Kubeconfig)
		if err != nil || !strings.Contains(out, "lab cli registered: 2 namespaces, nodes [cli n1 n2], 3 pods") {
			t.Fatalf("register: %v\n%s", err, out)
		}
	}
	pods, err := c.Client.CoreV1().Pods("cli-app").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods in cli-app: %v, %v", pods, err)
	}
	out, err := runCLI(t, "--config", cfg, "lab", "kube", "unregister", "--name", "cli", "--kubeconfig", c.Kubeconfig)
	if err != nil {
		t.Fatalf("unregister: %v\n%s", err, out)
	}
	pods, err = c.Client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(pods.Items) != 0 {
		t.Errorf("pods after unregister: %d, %v", len(pods.Items), err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(topology, "node: [n1, n2]", "node: [n1, n2, n3]", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "--config", cfg, "lab", "kube", "register", "-f", bad, "--kubeconfig", c.Kubeconfig); err == nil || !strings.Contains(err.Error(), "workloads[1].node: 3 nodes for 2 replicas") {
		t.Errorf("bad topology: %v\n%s", err, out)
	}
}
