//go:build linux

// Package containerd starts, for one test, a containerd of the test's own
// (Debian's containerd 1.6, config version 2, the CRI plugin off) and
// removes everything it made at the test's cleanup, and what a killed
// test run left at the next run's start.
//
// Where everything lives: one directory under os.TempDir() named
// <prefix><test pid>-<random> holds containerd's root, state, sockets
// (containerd.sock, containerd.sock.ttrpc), the runc state a test passes
// with --runc-root (Daemon.RuncRoot), config.toml and containerd.log.
// Containers a test runs should get the cgroup Daemon.Cgroup names: one
// level below each cgroup hierarchy's root, named after that directory,
// so runc removes it with the container and a later run finds what a
// killed run left. Outside the directory and the cgroups, only the shims'
// sockets land elsewhere: /run/containerd/s/<sha256 of
// address/namespace/id>, and ctr's fifos in /run/containerd/fifo.
//
// What is removed, at the cleanup of Start: the containers left in the
// namespace (tasks killed, then deleted) while containerd still runs, so
// the shims end cleanly; then containerd (SIGTERM, SIGKILL after 10 s);
// then by force what still runs (every process whose command line names
// the directory: shims; every process in the test's cgroups), what is
// mounted below the directory, the cgroups, the shim sockets of the
// containers in Daemon.IDs and of the tasks whose shim state is still in
// the directory, and, when no other containerd or shim runs, ctr's fifo
// directories holding only those containers' stdio fifos and
// /run/containerd/{fifo,s} and /run/containerd if empty; then the
// directory. After a killed run (SIGKILL of the test binary: containerd
// gets SIGKILL too, by Pdeathsig), Start first sweeps the directories and
// cgroups of the same prefix whose test process is gone and removes them
// the same way.
//
// The package is for tests only; it needs root and the binaries
// containerd, ctr, runc and containerd-shim-runc-v2.
package containerd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Config says how Start makes its containerd.
type Config struct {
	// Prefix starts the name of the test directory and of the cgroups
	// (e.g. "nanoseg-ctrdtest-"); each test package uses its own, so a
	// sweep judges only its own leftovers.
	Prefix string
	// Namespace is the containerd namespace Ctr and the cleanup act in.
	Namespace string
	// DisabledPlugins are plugins disabled besides the CRI plugin
	// (io.containerd.grpc.v1.cri, always off), e.g. snapshotters.
	DisabledPlugins []string
}

// Daemon is a containerd of a test's own, started by Start.
type Daemon struct {
	Dir  string // the test directory (see the package doc)
	Sock string // containerd's gRPC socket: Dir/containerd.sock
	// IDs are the containers made, whose shim sockets the cleanup removes
	// if their shims could not; append what Ctr creates.
	IDs []string

	ns   string
	cmd  *exec.Cmd
	done chan struct{} // closed when containerd has exited
}

// ctrTimeout bounds each ctr command (an image import included).
const ctrTimeout = 2 * time.Minute

// Start runs containerd per cfg with everything under a directory of its
// own (package doc) and waits up to 30 s until it answers `ctr version`;
// it fails the test if it does not. It skips unless root with containerd,
// ctr, runc and containerd-shim-runc-v2 installed. Before starting, it
// sweeps what killed runs of cfg.Prefix left; its cleanup removes
// everything it made (package doc).
func Start(t *testing.T, cfg Config) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containerd test: needs root; run `sudo make test`")
	}
	for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("no %s installed (Debian: containerd, runc): %v", bin, err)
		}
	}
	sweep(t, cfg.Prefix)
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", cfg.Prefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Dir: dir, Sock: filepath.Join(dir, "containerd.sock"), ns: cfg.Namespace, done: make(chan struct{})}
	t.Cleanup(func() { d.remove(t) })
	disabled := strconv.Quote("io.containerd.grpc.v1.cri")
	for _, p := range cfg.DisabledPlugins {
		disabled += ", " + strconv.Quote(p)
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [%s]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, d.Sock, d.Sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if exec.Command("ctr", "--address", d.Sock, "version").Run() == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within 30s; log:\n%s", d.Sock, d.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns the last 20 lines of containerd's log.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "containerd.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// RuncRoot is the runc state directory below Dir, for `ctr run
// --runc-root`.
func (d *Daemon) RuncRoot() string { return filepath.Join(d.Dir, "runc") }

// Cgroup is the cgroup path for container id, for `ctr run --cgroup`:
// /<Dir's name>-<id>, or /<Dir's name> when id is empty.
func (d *Daemon) Cgroup(id string) string {
	if id == "" {
		return "/" + filepath.Base(d.Dir)
	}
	return "/" + filepath.Base(d.Dir) + "-" + id
}

// Ctr runs Debian's ctr with args against the daemon in its namespace
// and returns its combined output; it fails the test on error (or after
// 2 minutes), with the end of containerd's log.
func (d *Daemon) Ctr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := d.TryCtr(args...)
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s\ncontainerd log:\n%s", strings.Join(args, " "), err, out, d.Log())
	}
	return out
}

// TryCtr is Ctr returning ctr's error instead of failing the test.
func (d *Daemon) TryCtr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", d.Sock, "--namespace", d.ns}, args...)...).CombinedOutput()
	return string(out), err
}

// Stop ends containerd (SIGTERM, then SIGKILL after 10 s) and waits for
// it; the directory stays until the cleanup. Stopping twice is a no-op.
func (d *Daemon) Stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// remove deletes what the test left in containerd while it still runs
// (so the shims end cleanly and remove their sockets), stops it, and
// removes the rest by force.
func (d *Daemon) remove(t *testing.T) {
	select {
	case <-d.done:
	default:
		if d.cmd != nil {
			out, _ := d.TryCtr("task", "ls", "-q")
			for _, id := range strings.Fields(out) {
				_, _ = d.TryCtr("task", "kill", "-s", "SIGKILL", id)
				_, _ = d.TryCtr("task", "delete", "-f", id)
			}
			out, _ = d.TryCtr("container", "ls", "-q")
			for _, id := range strings.Fields(out) {
				_, _ = d.TryCtr("container", "delete", id)
			}
		}
		d.Stop()
	}
	if err := removeDir(d.Dir, d.Sock, d.ns, d.IDs); err != nil {
		t.Errorf("clean up %s: %v", d.Dir, err)
	}
}

// removeDir kills what still runs of a test containerd (its shims by
// command line, its containers by cgroup), unmounts what is mounted below
// dir, removes the containers' cgroups, the shims' sockets of ids in
// namespace ns (containerd 1.6 puts them at /run/containerd/s/<sha256 of
// address/namespace/id>) and dir.
func removeDir(dir, sock, ns string, ids []string) error {
	for deadline := time.Now().Add(5 * time.Second); killNaming(dir) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", filepath.Base(dir)))
	perContainer, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", filepath.Base(dir)+"-*"))
	cgroups = append(cgroups, perContainer...)
	for _, c := range cgroups {
		b, _ := os.ReadFile(filepath.Join(c, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	var errs []error
	for _, m := range mountsBelow(dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	for _, c := range cgroups {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			err := os.Remove(c)
			if err == nil || os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", c, err))
				break
			}
		}
	}
	// The shims' sockets: of ids, and of the tasks whose shim state is
	// still in dir (a killed run's: <state>/io.containerd.runtime.v2.task/<namespace>/<id>).
	sockets := map[string]bool{}
	for _, id := range ids {
		sockets[filepath.Join(sock, ns, id)] = true
	}
	tasks, _ := filepath.Glob(filepath.Join(dir, "state", "io.containerd.runtime.v2.task", "*", "*"))
	for _, task := range tasks {
		sockets[filepath.Join(sock, filepath.Base(filepath.Dir(task)), filepath.Base(task))] = true
	}
	for s := range sockets {
		_ = os.Remove(filepath.Join("/run/containerd/s", fmt.Sprintf("%x", sha256.Sum256([]byte(s)))))
	}
	// ctr's stdio fifos and the shims' sockets: only when no other
	// containerd or shim runs (ours are gone by now), which may be about
	// to put something there or use it. A fifo directory of ctr goes when
	// its fifos are all <id>-stdin, -stdout or -stderr of a container of
	// dir (a killed run's, whose tasks ctr never deleted); then the
	// directories go if empty.
	if !containerdRuns() {
		removeFifos(ids, tasks)
		_ = os.Remove("/run/containerd/fifo")
		_ = os.Remove("/run/containerd/s")
		_ = os.Remove("/run/containerd")
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeFifos removes ctr's fifo directories below /run/containerd/fifo
// whose entries are all stdio fifos (<id>-stdin, -stdout, -stderr) of a
// container in ids or of a task whose state directory is in tasks.
func removeFifos(ids, tasks []string) {
	ours := map[string]bool{}
	for _, id := range ids {
		ours[id] = true
	}
	for _, task := range tasks {
		ours[filepath.Base(task)] = true
	}
	dirs, _ := filepath.Glob("/run/containerd/fifo/*")
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil || len(entries) == 0 {
			continue
		}
		all := true
		for _, e := range entries {
			id, ok := "", false
			for _, suffix := range []string{"-stdin", "-stdout", "-stderr"} {
				if before, found := strings.CutSuffix(e.Name(), suffix); found {
					id, ok = before, true
				}
			}
			if !ok || !ours[id] || e.Type()&os.ModeNamedPipe == 0 {
				all = false
				break
			}
		}
		if all {
			_ = os.RemoveAll(d)
		}
	}
}

// sweep removes what runs of dead test processes left: directories of
// prefix under os.TempDir() (with all removeDir removes) and cgroups of
// prefix whose directory is already gone.
func sweep(t *testing.T, prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", prefix+"*"))
	for _, p := range append(dirs, cgroups...) {
		rest := strings.TrimPrefix(filepath.Base(p), prefix)
		pid, err := strconv.Atoi(rest[:max(0, strings.IndexByte(rest, '-'))])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // not ours to judge, or its owner lives
		}
		if strings.HasPrefix(p, "/sys/fs/cgroup/") {
			_ = os.Remove(p)
			continue
		}
		if err := removeDir(p, filepath.Join(p, "containerd.sock"), "", nil); err != nil {
			t.Logf("sweep %s (test process %d is gone): %v", p, pid, err)
		}
	}
}

// containerdRuns reports whether a containerd or one of its shims runs.
func containerdRuns() bool {
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range comms {
		if b, err := os.ReadFile(p); err == nil && (string(b) == "containerd\n" || strings.HasPrefix(string(b), "containerd-shim")) {
			if st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat")); err == nil && !strings.Contains(string(st), ") Z ") {
				return true
			}
		}
	}
	return false
}

// killNaming kills every live process whose command line names dir and
// reports whether it found any.
func killNaming(dir string) bool {
	found := false
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			found = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return found
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
