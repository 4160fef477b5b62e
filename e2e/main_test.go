//go:build linux

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bin is the nanoseg binary built for this test run; empty when not root.
var bin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "nanoseg-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		_ = os.Chmod(dir, 0o755) // the non-root test runs the binary as nobody
		bin = filepath.Join(dir, "nanoseg")
		out, err := exec.Command("go", "build", "-o", bin, "../cmd/nanoseg").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build nanoseg: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test: needs root to create network namespaces; run `make test` as root")
	}
}

// uniqueName returns a lab name no other test or lab uses.
func uniqueName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// labCopy writes a copy of the topology at path under dir with its lab
// name replaced by name, and returns the copy's path.
func labCopy(t *testing.T, path, name string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	found := false
	for i, l := range lines {
		if strings.HasPrefix(l, "name: ") {
			lines[i], found = "name: "+name, true
			break
		}
	}
	if !found {
		t.Fatalf("%s has no top-level name", path)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(out, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// nanoseg runs the binary with args and the lab state under stateDir, and
// returns combined output and the error of the run.
func nanoseg(t *testing.T, stateDir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "NANOSEG_LAB_STATEDIR="+stateDir), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
