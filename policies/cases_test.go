package policies

import (
	"path/filepath"
	"testing"
)

// TestCases runs every case file of testdata/cases and fails on every
// mismatch.
func TestCases(t *testing.T) {
	files, err := filepath.Glob("testdata/cases/*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("glob cases: %v, %d files", err, len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := LoadCase(f)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := c.Run()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				t.Error(m)
			}
		})
	}
}

// TestClusterCases runs the ClusterNetworkPolicy cases of
// testdata/cases/cnp (recorded from the upstream network-policy-api
// conformance suite; see its README) and fails on every mismatch. They
// live apart from testdata/cases because the compiler and the node agent,
// which replay those, do not enforce ClusterNetworkPolicy yet.
func TestClusterCases(t *testing.T) {
	files, err := filepath.Glob("testdata/cases/cnp/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("glob cases: %v, %d files", err, len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := LoadCase(f)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := c.Run()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				t.Error(m)
			}
		})
	}
}
