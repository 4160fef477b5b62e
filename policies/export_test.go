package policies

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

// golden compares got with testdata/golden/name, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update): %v", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", name, d)
	}
}

func loadSegment(t *testing.T, file string) *v1alpha1.NanoSegment {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := ParseObjects(file, data)
	if err != nil || len(objs) != 1 || objs[0].NanoSegment == nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return objs[0].NanoSegment
}

func TestExportGolden(t *testing.T) {
	s := loadSegment(t, "testdata/segments/web.yaml")
	np, probs := ExportNetworkPolicy(s)
	out, err := yaml.Marshal(np)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "web.networkpolicy.yaml", append(out, []byte(problemsComment(probs))...))
	// DNS names, the host peer, ICMP and the mode must be reported.
	for _, w := range []string{"spec.egress[1].peers[0].dnsName", "spec.egress[1]: rule payments left out", "spec.egress[3].peers[0].host", "spec.egress[3].ports[0]", "spec.mode"} {
		if !strings.Contains(problemsComment(probs), w) {
			t.Errorf("problems lack %q", w)
		}
	}
	cnp, probs := ExportCilium(s)
	out, err = yaml.Marshal(cnp)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "web.cilium.yaml", append(out, []byte(problemsComment(probs))...))
}

func problemsComment(probs []Problem) string {
	var b strings.Builder
	for _, p := range probs {
		b.WriteString("# problem: " + p.String() + "\n")
	}
	return b.String()
}

// TestRoundTrip imports every NetworkPolicy of every case, exports it back,
// and checks that the original, the imported NanoSegments and the exported
// NetworkPolicies give the same verdict for every pair of pods (and some
// outside addresses) on every port the case mentions, in every step.
func TestRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/cases/*.yaml")
	for _, f := range files {
		c, err := LoadCase(f)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.NewCaseState()
		if err != nil {
			t.Fatal(err)
		}
		ports := map[int32]bool{53: true, 80: true}
		for _, cc := range c.Connections {
			ports[cc.Port] = true
		}
		for _, s := range c.Steps {
			for _, cc := range s.Connections {
				ports[cc.Port] = true
			}
		}
		for step := -1; step < len(c.Steps); step++ {
			if step >= 0 {
				if err := st.Apply(c.Steps[step]); err != nil {
					t.Fatal(err)
				}
			}
			var orig, back []networkingv1.NetworkPolicy
			var imported []v1alpha1.NanoSegment
			for _, o := range st.Policies {
				if o.NetworkPolicy == nil {
					continue
				}
				orig = append(orig, *o.NetworkPolicy)
				s, err := ImportNetworkPolicy(o.NetworkPolicy)
				if err != nil {
					t.Fatal(err)
				}
				s.Spec.Mode = model.ModeEnforce // as promoted to enforce
				imported = append(imported, *s)
				np, probs := ExportNetworkPolicy(s)
				if len(probs) > 0 {
					t.Errorf("%s: export of an imported policy reports %v", f, probs)
				}
				back = append(back, *np)
			}
			sets := make([]PolicySet, 3)
			for i, in := range []struct {
				nps  []networkingv1.NetworkPolicy
				segs []v1alpha1.NanoSegment
			}{{orig, nil}, {nil, imported}, {back, nil}} {
				if sets[i], err = NewPolicySet(in.nps, in.segs); err != nil {
					t.Fatal(err)
				}
			}
			var eps []string
			for _, p := range st.World.Pods() {
				eps = append(eps, p.Key())
			}
			eps = append(eps, "198.19.0.10", "198.18.2.7")
			n := 0
			for _, from := range eps {
				for _, to := range eps {
					for port := range ports {
						for _, proto := range []model.Protocol{"TCP", "UDP", "SCTP"} {
							cn := conn(from, to, proto, port)
							want := Evaluate(st.World, sets[0], cn).Action
							for i := 1; i < 3; i++ {
								if got := Evaluate(st.World, sets[i], cn).Action; got != want {
									t.Errorf("%s step %d set %d: %s: got %s, want %s", f, step, i, cn, got, want)
								}
							}
							n++
						}
					}
				}
			}
			if n == 0 {
				t.Errorf("%s: compared nothing", f)
			}
		}
	}
}

// TestImportIsNotEnforcing: `policy import` turns a NetworkPolicy into a
// nanosegment in observe mode (promotions decide a nanosegment's mode), so
// an imported file never enforces on its own; its rules keep their
// meaning once promoted to enforce.
func TestImportIsNotEnforcing(t *testing.T) {
	np := &networkingv1.NetworkPolicy{}
	np.Namespace, np.Name = "shop", "default-deny"
	s, err := ImportNetworkPolicy(np)
	if err != nil {
		t.Fatal(err)
	}
	if s.Spec.Mode != model.ModeObserve {
		t.Errorf("imported mode = %q, want observe", s.Spec.Mode)
	}
	p, err := CompileNetworkPolicy(np)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != model.ModeEnforce || p.Ref.Kind != "NetworkPolicy" {
		t.Errorf("the NetworkPolicy itself compiles to %s %s, want an enforcing NetworkPolicy", p.Ref.Kind, p.Mode)
	}
}
