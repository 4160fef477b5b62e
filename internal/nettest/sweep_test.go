//go:build linux

package nettest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nanoseg/nanoseg/internal/nsenter"
)

// TestSweepRemovesNamespacesOfDeadTests: a namespace whose owner file
// names a process that is gone (a test binary killed before its cleanup)
// is removed by sweep; one owned by a live process stays.
func TestSweepRemovesNamespacesOfDeadTests(t *testing.T) {
	RequireRoot(t)
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	dead := Prefix + "sweep-dead"
	alive := New(t) // owned by this process
	h, err := nsenter.NewNamed(dead)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	t.Cleanup(func() { _ = nsenter.DeleteNamed(dead); _ = os.Remove(filepath.Join(OwnerDir, dead)) })
	if err := os.WriteFile(filepath.Join(OwnerDir, dead), []byte(strconv.Itoa(done.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sweep()
	if _, err := os.Stat(nsenter.Path(dead)); !os.IsNotExist(err) {
		t.Errorf("the namespace of a dead test process is still there: %v", err)
	}
	if _, err := os.Stat(alive.Path()); err != nil {
		t.Errorf("sweep removed a live test's namespace: %v", err)
	}
}
