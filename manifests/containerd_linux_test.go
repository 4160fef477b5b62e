//go:build linux

package manifests_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/manifests"
)

// testDirPrefix names the directories (under os.TempDir()) and cgroups of
// the private containerd of runInContainerd: <prefix><pid>-<random>, so a
// later run can tell whose they are and remove those of dead test
// processes (sweepContainerd).
const testDirPrefix = "nanoseg-imagetest-"

// runInContainerd imports archive into a containerd of its own (its root,
// state, sockets and cgroup under a temp dir; the CRI plugin off) the way
// a node loads the image (`ctr -n k8s.io image import`), checks that the image is
// complete and unpacked, and runs `/nanoseg version` in a container of it
// with runc. It skips unless root with containerd, ctr and runc installed.
// Everything it made is removed at cleanup, and what a killed run left is
// removed by the next one.
func runInContainerd(t *testing.T, archive string) {
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("no %s installed (Debian: containerd, runc): %v", bin, err)
		}
	}
	sweepContainerd(t)
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", testDirPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeContainerdDir(dir); err != nil {
			t.Errorf("clean up %s: %v", dir, err)
		}
	})
	sock := filepath.Join(dir, "containerd.sock")
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	d.Stdout, d.Stderr = logf, logf
	d.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := d.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		_ = d.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = d.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = d.Process.Kill()
			<-done
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctr := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", sock, "--namespace", "k8s.io"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("ctr %s: %v\n%s\ncontainerd log:\n%s", strings.Join(args, " "), err, out, tail(string(log), 20))
		}
		return string(out)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if exec.CommandContext(ctx, "ctr", "--address", sock, "version").Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("containerd did not answer on %s within 30s; log:\n%s", sock, tail(string(log), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}

	ctr("image", "import", archive)
	if out := ctr("image", "check"); !strings.Contains(out, manifests.Image) || !strings.Contains(out, "complete") {
		t.Errorf("ctr image check: want %s complete:\n%s", manifests.Image, out)
	}
	// The container's cgroup is one level below the root, named after the
	// test directory, so runc removes it with the container and a sweep
	// finds it.
	cgroup := "/" + filepath.Base(dir)
	out := ctr("run", "--rm", "--cgroup", cgroup, manifests.Image, "version", "/nanoseg", "version")
	if !strings.HasPrefix(out, "nanoseg ") {
		t.Errorf("/nanoseg version in the image printed %q, want nanoseg <version>", out)
	}
}

// removeContainerdDir stops whatever still runs from dir (containerd, a
// shim), unmounts what is mounted below it, removes it and its cgroups.
func removeContainerdDir(dir string) error {
	killNaming(dir)
	for _, m := range mountsBelow(dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", filepath.Base(dir)))
	for _, c := range cgroups {
		if err := os.Remove(c); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove cgroup %s: %w", c, err)
		}
	}
	return os.RemoveAll(dir)
}

// sweepContainerd removes what runs of dead test processes left.
func sweepContainerd(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), testDirPrefix+"*"))
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", testDirPrefix+"*"))
	for _, p := range append(dirs, cgroups...) {
		rest := strings.TrimPrefix(filepath.Base(p), testDirPrefix)
		pid, err := strconv.Atoi(rest[:max(0, strings.IndexByte(rest, '-'))])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // not ours to judge, or its owner lives
		}
		if strings.HasPrefix(p, "/sys/fs/cgroup/") {
			_ = os.Remove(p)
			continue
		}
		if err := removeContainerdDir(p); err != nil {
			t.Logf("sweep %s (test process %d is gone): %v", p, pid, err)
		}
	}
}

// killNaming kills every process whose command line names dir.
func killNaming(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// mountsBelow lists the mount points at or below dir, deepest first.
func mountsBelow(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append([]string{fields[4]}, out...)
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
