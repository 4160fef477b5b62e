package nanoseg_test

import (
	"strings"
	"testing"
)

// TestVocabularyIsALeaf fails when model (the vocabulary every package may
// import) imports anything but the standard library, or when
// internal/verdictlog (the verdict-log grammar shared by dataplane and
// observer) imports anything but the standard library and model.
// DESIGN.md ("Layout and who may import whom") is the source.
func TestVocabularyIsALeaf(t *testing.T) {
	allowed := map[string][]string{"model": nil, "internal/verdictlog": {mod + "model"}}
	seen := map[string]bool{}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		ok, listed := allowed[rel]
		if !listed {
			continue
		}
		seen[rel] = true
		for _, d := range p.Deps {
			std := !strings.Contains(strings.Split(d, "/")[0], ".")
			if !std && !contains(ok, d) {
				t.Errorf("%s imports %s: it may import only the standard library and %v", p.ImportPath, d, ok)
			}
		}
	}
	for rel := range allowed {
		if !seen[rel] {
			t.Errorf("package %s no longer exists: update this fence", rel)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
