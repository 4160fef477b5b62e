package policies

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseCase feeds arbitrary bytes to the case-file parser and runs what
// parses: neither may panic. The seed corpus is every case file plus
// testdata/fuzz/FuzzParseCase.
func FuzzParseCase(f *testing.F) {
	files, _ := filepath.Glob("testdata/cases/*.yaml")
	cnp, _ := filepath.Glob("testdata/cases/cnp/*.yaml")
	for _, file := range append(files, cnp...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCase("fuzz.yaml", data)
		if err != nil {
			return
		}
		_, _ = c.Run()
	})
}

// FuzzParseObjects feeds arbitrary bytes to the policy parser; what parses
// must compile (ClusterNetworkPolicies too), import, and export without
// panicking.
func FuzzParseObjects(f *testing.F) {
	for _, file := range []string{"testdata/segments/web.yaml", "testdata/cnp/guard.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := ParseObjects("fuzz.yaml", data)
		if err != nil {
			return
		}
		nps, segs := SplitObjects(objs)
		if _, err := NewObjectSet(objs); err != nil {
			t.Fatalf("valid objects do not compile: %v", err)
		}
		for i := range nps {
			s, err := ImportNetworkPolicy(&nps[i])
			if err != nil {
				t.Fatal(err)
			}
			ExportNetworkPolicy(s)
			ExportCilium(s)
		}
		for i := range segs {
			ExportNetworkPolicy(&segs[i])
			ExportCilium(&segs[i])
		}
	})
}
