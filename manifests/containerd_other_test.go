//go:build !linux

package manifests_test

import "testing"

func runInContainerd(t *testing.T, archive string) { t.Skip("containerd runs on Linux only") }
