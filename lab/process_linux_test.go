//go:build linux

package lab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpNamesFileOnEveryProblem checks that Up refuses a bad topology before
// creating anything, naming the file and the field on each line.
func TestUpNamesFileOnEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	bad := strings.Replace(base, "ports: [{name: http, port: 8080}]",
		"ports: [{name: http, port: 8080}]\n    ipv4: [198.18.0.10, 10.0.0.1]", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Up(context.Background(), Config{StateDir: t.TempDir()}, path, UpOptions{})
	if err == nil {
		t.Fatal("bad topology accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 {
		t.Errorf("want 2 problems (count, range), got %d:\n%v", len(lines), err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, path+": workloads[1].ipv4") {
			t.Errorf("line %q does not name the file and field", l)
		}
	}
}
