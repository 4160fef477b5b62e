package nanoseg_test

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoMergeConflictMarkers fails when a source or documentation file
// of the repository (.go, .md, .js, .yaml, .sh; not node_modules, web/dist
// or testdata) has a line that is a merge conflict marker ("<<<<<<< ",
// "=======", ">>>>>>> "): a merge committed with a conflict left in it
// (docs/api.md held both sides of POST /v1/policies).
func TestNoMergeConflictMarkers(t *testing.T) {
	exts := map[string]bool{".go": true, ".md": true, ".js": true, ".yaml": true, ".yml": true, ".sh": true}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "node_modules", "dist", "testdata", ".git", "out":
				return filepath.SkipDir
			}
			return nil
		}
		if !exts[filepath.Ext(path)] {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
		for n := 1; sc.Scan(); n++ {
			l := sc.Text()
			if strings.HasPrefix(l, "<<<<<<< ") || strings.HasPrefix(l, ">>>>>>> ") || l == "=======" {
				t.Errorf("%s:%d: a merge conflict marker: %q", path, n, l)
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}
