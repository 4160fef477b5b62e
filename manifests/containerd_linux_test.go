//go:build linux

package manifests_test

import (
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/internal/ctrtest/containerd"
	"github.com/nanoseg/nanoseg/manifests"
)

// testDirPrefix names the directory (under os.TempDir()) and the cgroup
// of the private containerd of runInContainerd (internal/ctrtest/containerd).
const testDirPrefix = "nanoseg-imagetest-"

// runInContainerd imports archive into a containerd of its own
// (containerd.Start: its root, state, sockets and cgroup under a temp dir;
// the CRI plugin off) the way a node loads the image (`ctr -n k8s.io image
// import`), checks that the image is complete and unpacked, and runs
// `/nanoseg version` in a container of it with runc. It skips unless root
// with containerd, ctr and runc installed. Everything it made is removed
// at cleanup, and what a killed run left is removed by the next one.
func runInContainerd(t *testing.T, archive string) {
	d := containerd.Start(t, containerd.Config{Prefix: testDirPrefix, Namespace: "k8s.io"})
	d.Ctr(t, "image", "import", archive)
	if out := d.Ctr(t, "image", "check"); !strings.Contains(out, manifests.Image) || !strings.Contains(out, "complete") {
		t.Errorf("ctr image check: want %s complete:\n%s", manifests.Image, out)
	}
	// The container's cgroup is one level below the root, named after the
	// test directory, so runc removes it with the container and a sweep
	// finds it.
	d.IDs = append(d.IDs, "version")
	out := d.Ctr(t, "run", "--rm", "--cgroup", d.Cgroup(""), manifests.Image, "version", "/nanoseg", "version")
	if !strings.HasPrefix(out, "nanoseg ") {
		t.Errorf("/nanoseg version in the image printed %q, want nanoseg <version>", out)
	}
}
