package nanoseg_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/nanoseg/nanoseg/"

// fence says which imports a folder must never reach, directly or not, and
// why. DESIGN.md ("Layout and who may import whom") and STYLE.md ("Package
// boundaries") are the source.
var fence = []struct {
	dir       string // package path below the module, and its subpackages
	forbidden []string
	why       string
}{
	{"policies", []string{"k8s.io/client-go", "sigs.k8s.io/controller-runtime", "github.com/google/nftables", "github.com/vishvananda/netlink", "github.com/ti-mo/", "github.com/spf13/viper", mod + "dataplane", mod + "observer", mod + "controller", mod + "lab"},
		"policies is pure: API types, validation, evaluation and inference are tested without root or a cluster"},
	{"dataplane", []string{"k8s.io/client-go", "github.com/spf13/viper", mod + "policies", mod + "observer", mod + "controller"},
		"the dataplane understands rule sets only; what policies mean is decided above it"},
	{"observer", []string{"k8s.io/client-go", "github.com/spf13/viper", mod + "dataplane", mod + "controller"},
		"the observer reads the verdict log by its documented prefix, never the dataplane's code"},
	{"lab", []string{"k8s.io/client-go", "github.com/spf13/viper", mod + "controller", mod + "dataplane", mod + "observer", mod + "policies"},
		"the lab is the world under test; it must not depend on what it tests"},
	{"controller", []string{"github.com/spf13/viper", mod + "node", mod + "agent", mod + "server", mod + "store/bolt", "go.etcd.io/bbolt"},
		"the controller service runs over the seams (store, inventory, Node interfaces), never over their standalone implementations; only cmd/ reads configuration sources"},
	{"compile", []string{"github.com/spf13/viper", mod + "observer", mod + "lab", mod + "controller", mod + "store"},
		"compile is pure: policies and the inventory in, rule sets out"},
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestImportFences fails when a package reaches an import its folder must
// not have, and when a package outside cmd/ imports viper or os/signal
// directly.
func TestImportFences(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages; the fence would check nothing", len(pkgs))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		for _, f := range fence {
			if rel != f.dir && !strings.HasPrefix(rel, f.dir+"/") {
				continue
			}
			for _, d := range p.Deps {
				for _, bad := range f.forbidden {
					if d == bad || strings.HasPrefix(d, strings.TrimSuffix(bad, "/")+"/") || (strings.HasSuffix(bad, "/") && strings.HasPrefix(d, bad)) {
						t.Errorf("%s imports %s: %s", p.ImportPath, d, f.why)
					}
				}
			}
		}
		if strings.HasPrefix(rel, "cmd/") {
			continue
		}
		for _, imp := range p.Imports {
			if imp == "os/signal" || imp == "github.com/spf13/viper" {
				t.Errorf("%s imports %s: only cmd/ handles signals and configuration sources", p.ImportPath, imp)
			}
		}
	}
}

// leaves are the packages that may import only the standard library and
// the module packages listed: model is the vocabulary every package may
// import, internal/verdictlog the verdict-log grammar shared by dataplane
// and observer. DESIGN.md ("Layout and who may import whom") is the source.
var leaves = map[string][]string{
	"model":               nil,
	"internal/verdictlog": {mod + "model"},
}

// TestVocabularyIsALeaf fails when a leaf package reaches anything but the
// standard library and the packages its entry in leaves allows, and when a
// leaf no longer exists.
func TestVocabularyIsALeaf(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		ok, listed := leaves[rel]
		if !listed {
			continue
		}
		seen[rel] = true
		for _, d := range p.Deps {
			std := !strings.Contains(strings.Split(d, "/")[0], ".")
			if !std && !slices.Contains(ok, d) {
				t.Errorf("%s imports %s: it may import only the standard library and %v", p.ImportPath, d, ok)
			}
		}
	}
	for rel := range leaves {
		if !seen[rel] {
			t.Errorf("package %s no longer exists: update this fence", rel)
		}
	}
}
