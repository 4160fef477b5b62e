package main

import (
	"os"
	"testing"
)

// envRunMain makes the test binary run nanoseg's main instead of the
// tests: the cluster tests link it as kubectl-nanoseg and let a real
// kubectl run it as a plugin.
const envRunMain = "GO_TEST_NANOSEG_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		os.Exit(run())
	}
	os.Exit(m.Run())
}
