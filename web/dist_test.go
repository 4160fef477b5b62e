package web

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
)

// TestDistStamp: web/dist.sha256 holds the SHA-256 of every input of the
// page's build (sha256sum's format, paths relative to web/), so that
// `make build` rebuilds web/dist (with npm) only when they changed; a
// source changed without `make web` fails here, without node.
func TestDistStamp(t *testing.T) {
	src, err := filepath.Glob("src/*")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(src)
	var want bytes.Buffer
	for _, name := range append(src, "build.mjs", "package.json", "package-lock.json") {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&want, "%x  %s\n", sha256.Sum256(b), name)
	}
	got, err := os.ReadFile("dist.sha256")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("web/dist.sha256 does not match web/src: run `make web` and commit web/dist and web/dist.sha256\ngot:\n%s\nwant:\n%s", got, want.Bytes())
	}
}

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
			t.Errorf("web/dist/%s is not what web/src builds: run `make web` and commit web/dist and web/dist.sha256", name)
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
