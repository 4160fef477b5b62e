package policies

import (
	"path/filepath"
	"testing"
)

// TestCases runs every case file of testdata/cases and fails on every
// mismatch.
func TestCases(t *testing.T) { runCaseFiles(t, "testdata/cases/*.yaml", 5) }

// TestClusterCases runs the ClusterNetworkPolicy cases of
// testdata/cases/cnp (recorded from the upstream network-policy-api
// conformance suite; see its README) and fails on every mismatch. They
// live apart from testdata/cases because the node agent's replay of
// those through the API server does not read ClusterNetworkPolicies yet.
func TestClusterCases(t *testing.T) { runCaseFiles(t, "testdata/cases/cnp/*.yaml", 4) }

// runCaseFiles runs each case file matching glob (at least min of them)
// as a subtest and reports every mismatch.
func runCaseFiles(t *testing.T, glob string, min int) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) < min {
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
