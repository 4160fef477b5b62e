//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLabUpUnderFlockAndDownWithoutAPIServer: a lab brought up by a
// command that holds a lock on an inherited descriptor (as under
// `flock FILE nanoseg lab up ...`) does not keep the lock once that
// command is done: its endpoint processes inherit no stray descriptor.
// And `lab down --kubernetes` with an API server it cannot reach still
// removes the lab's namespaces and processes, then fails naming the
// API part.
func TestLabUpUnderFlockAndDownWithoutAPIServer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab up needs root")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	top := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(top, []byte(`kind: LabTopology
name: kfixfd
dns: kfixfd-sys/dns
namespaces:
  - {name: kfixfd-sys}
workloads:
  - {name: dns, namespace: kfixfd-sys, ports: [{port: 53, protocol: UDP}]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	t.Cleanup(func() { _, _ = runCLI(t, "--config", cfg, "lab", "down", "--name", "kfixfd", "--state-dir", state) })
	// `flock x.lock nanoseg lab up ...`: the command gets the locked
	// descriptor as its fd 3, without close-on-exec.
	lock := filepath.Join(dir, "x.lock")
	f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	up := exec.Command(os.Args[0], "--config", cfg, "lab", "up", "-f", top, "--state-dir", state)
	up.Env = append(os.Environ(), runMainEnv+"=1")
	up.ExtraFiles = []*os.File{f}
	got, err := up.CombinedOutput()
	f.Close()
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, got)
	}
	probe, err := syscall.Open(lock, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(probe)
	if err := syscall.Flock(probe, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Errorf("the lab's processes keep the lock of the command that started them: %v", err)
	}

	out, err := runCLI(t, "--config", cfg, "lab", "down", "--name", "kfixfd", "--state-dir", state, "--kubernetes", "--kubeconfig", filepath.Join(dir, "missing"))
	if err == nil || !strings.Contains(err.Error(), "lab down kfixfd: unregister from Kubernetes: --kubeconfig") || !strings.Contains(out, "lab kfixfd is down") {
		t.Errorf("lab down --kubernetes without an API server: %v\n%s", err, out)
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "nanoseg-lab-kfixfd") {
			t.Errorf("netns %s left by lab down", e.Name())
		}
	}
}
