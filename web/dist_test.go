package web

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDistIsBuiltFromSources builds the page from web/src and the pinned
// packages (node build.mjs into a temporary directory) and fails when the
// committed web/dist differs: dist is committed so that `go build` needs
// no node, and this keeps it honest. Without node or web/node_modules
// (`npm ci` in web/, which `make build` runs) it skips, except in CI
// (CI set), where .ci/run installs node and npm and make build installs
// the packages.
func TestDistIsBuiltFromSources(t *testing.T) {
	node, err := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join("node_modules", "cytoscape"))
	if err != nil || modErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: node (%v) and web/node_modules (%v) are required to check web/dist: .ci/run installs node and npm, make build runs npm ci", err, modErr)
		}
		t.Skip("node or web/node_modules missing (run `make build` with npm installed): web/dist not checked against its sources")
	}
	out := t.TempDir()
	cmd := exec.Command(node, "build.mjs", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node build.mjs: %v\n%s", err, b)
	}
	for _, name := range []string{"app.js", "app.css", "index.html", "licenses.txt"} {
		built, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("dist", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(built, committed) {
			t.Errorf("web/dist/%s is not what web/src builds: run `make build` (or `cd web && node build.mjs`) and commit web/dist", name)
		}
	}
	entries, err := os.ReadDir("dist")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Errorf("web/dist has %d files, want the 4 the build writes", len(entries))
	}
}
