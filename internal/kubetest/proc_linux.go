//go:build linux

// Child processes and what a killed test leaves behind.
//
// Design: etcd and kube-apiserver are started with PR_SET_PDEATHSIG =
// SIGKILL, so the kernel kills them when the test binary dies, whatever
// kills it. The kernel ties that signal to the thread that forked the child,
// not to the process (prctl(2)), and the Go runtime ends a thread whose
// goroutine exits while locked to it (netns code does that on purpose), so
// every child is forked from one goroutine locked to its thread for the
// life of the process: that thread never exits before the process does.
//
// Each cluster's etcd data lives in "<shm>/nanoseg-kubetest-<pid>-<random>"
// with an owner file naming the test process (pid and start time, so a
// reused pid is not taken for the owner) and the cluster's temp dir. Start
// sweeps the directories of owners that are gone: it kills any process
// whose command line names one of their directories (none should survive
// PDEATHSIG; this covers a child forked while its parent was dying) and
// removes both directories. Sources: prctl(2) PR_SET_PDEATHSIG, proc(5)
// (/proc/PID/stat field 22 starttime, /proc/PID/cmdline),
// https://github.com/golang/go/issues/27505 (Pdeathsig and threads).
package kubetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	forkOnce sync.Once
	forkReqs chan func()
)

// onForkThread runs fn on the one thread that forks every child.
func onForkThread(fn func()) {
	forkOnce.Do(func() {
		forkReqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for f := range forkReqs {
				f()
			}
		}()
	})
	done := make(chan struct{})
	forkReqs <- func() { fn(); close(done) }
	<-done
}

// Process is one child process a test harness runs (etcd, kube-apiserver,
// and realnode's containerd, kubelet, kube-proxy, …) with its log file.
type Process struct {
	name string
	log  string // path of the file that gets its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
	err  error         // its exit status, valid after done
}

// StartProcess starts bin with args and env (appended to the test's
// environment), its stdout and stderr appended to logPath. The child has
// its own process group and gets SIGKILL when the test process dies
// (PR_SET_PDEATHSIG, tied to the thread that forked it: every child is
// forked from one locked thread that lives as long as the process).
func StartProcess(name, bin string, args, env []string, logPath string) (*Process, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	defer lf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL,
		// Its own process group: a ^C at the terminal reaches the test
		// binary, whose cleanup stops the children in order.
		Setpgid: true,
	}
	onForkThread(func() { err = cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether p has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits up to grace for p to exit, then kills it.
// An exit caused by the SIGTERM is no error; a nil p is stopped already.
func (p *Process) Stop(grace time.Duration) error {
	if p == nil {
		return nil
	}
	if done, _ := p.Exited(); done {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stop %s: still running %s after SIGTERM, killed", p.name, grace)
	}
}

// Kill ends p with SIGKILL, as a crash would (nothing of its own stop
// runs), and waits until it exited; a nil or exited p is left alone.
func (p *Process) Kill() {
	if p == nil {
		return
	}
	if done, _ := p.Exited(); done {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Failed returns err naming p, with the last lines of its log.
func (p *Process) Failed(err error) error {
	return fmt.Errorf("%s: %w\n--- last lines of %s ---\n%s", p.name, err, p.log, Tail(p.log, 30))
}

// Tail returns the last n lines of the log file at path, for errors.
func Tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Names of the owner records.
const (
	dataPrefix = "nanoseg-kubetest-"
	ownerFile  = "owner"
)

// shmDir returns where etcd data dirs go: /dev/shm when it exists (etcd
// 3.4 fsyncs every write and has no switch to stop it), else the temp dir.
func shmDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// startTime returns field 22 of /proc/PID/stat (clock ticks after boot),
// which tells a process from a later one with the same pid.
func startTime(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22, counted from field 3
}

// owner is the record of the test process that made a cluster's dirs.
type owner struct {
	pid   int
	start uint64
	dirs  []string // directories of the cluster, removed with it
}

func (o owner) encode() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %d\n", o.pid, o.start)
	for _, d := range o.dirs {
		b.WriteString(d + "\n")
	}
	return []byte(b.String())
}

func parseOwner(raw []byte) (owner, error) {
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	var o owner
	if _, err := fmt.Sscanf(lines[0], "%d %d", &o.pid, &o.start); err != nil {
		return o, fmt.Errorf("owner line %q: %w", lines[0], err)
	}
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); filepath.IsAbs(l) && strings.Contains(filepath.Base(l), dataPrefix) {
			o.dirs = append(o.dirs, l)
		}
	}
	return o, nil
}

// alive reports whether the owner process still runs.
func (o owner) alive() bool {
	st, err := startTime(o.pid)
	return err == nil && (o.start == 0 || st == o.start)
}

// newDataDir makes this process's etcd data dir under shm and its owner
// record; tempDir is removed with it by a sweep.
func newDataDir(shm, tempDir string) (string, error) {
	dir, err := os.MkdirTemp(shm, fmt.Sprintf("%s%d-", dataPrefix, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("make etcd data dir: %w", err)
	}
	st, _ := startTime(os.Getpid())
	o := owner{pid: os.Getpid(), start: st, dirs: []string{dir, tempDir}}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), o.encode(), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("write owner record: %w", err)
	}
	return dir, nil
}

// sweep removes what clusters of dead test processes left under shm:
// processes that name their directories, and the directories. It returns
// what it removed, for the log and the tests.
func sweep(shm string) (removed []string) {
	ents, err := os.ReadDir(shm)
	if err != nil {
		return nil
	}
	var stale []owner
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), dataPrefix) {
			continue
		}
		dir := filepath.Join(shm, e.Name())
		raw, err := os.ReadFile(filepath.Join(dir, ownerFile))
		var o owner
		if err == nil {
			o, err = parseOwner(raw)
		}
		if err != nil {
			// No readable record: a process that died between mkdir and
			// write, or a stranger. The pid in the name decides.
			pid, perr := strconv.Atoi(strings.SplitN(strings.TrimPrefix(e.Name(), dataPrefix), "-", 2)[0])
			if perr != nil {
				continue
			}
			o = owner{pid: pid}
		}
		if o.alive() {
			continue
		}
		if len(o.dirs) == 0 || o.dirs[0] != dir {
			o.dirs = append([]string{dir}, o.dirs...)
		}
		stale = append(stale, o)
	}
	if len(stale) == 0 {
		return nil
	}
	killNaming(stale)
	for _, o := range stale {
		for _, d := range o.dirs {
			if err := os.RemoveAll(d); err == nil {
				removed = append(removed, d)
			}
		}
	}
	return removed
}

// killNaming SIGKILLs every process whose command line names a directory
// of a stale owner, and waits briefly for them to go.
func killNaming(stale []owner) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var killed []int
	for _, f := range procs {
		raw, err := os.ReadFile(f)
		if err != nil || len(raw) == 0 {
			continue
		}
		cmdline := string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if pid == os.Getpid() {
			continue
		}
		for _, o := range stale {
			if namesAny(cmdline, o.dirs) {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed = append(killed, pid)
				}
				break
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range killed {
		for !gone(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// namesAny reports whether cmdline names one of dirs or a path below it.
func namesAny(cmdline string, dirs []string) bool {
	for _, d := range dirs {
		if strings.Contains(cmdline+" ", d+"/") || strings.Contains(cmdline+" ", d+" ") {
			return true
		}
	}
	return false
}

// gone reports whether pid no longer runs; a zombie (exited, not yet
// reaped by its parent) counts as gone.
func gone(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(raw, ')')
	return i >= 0 && bytes.HasPrefix(raw[i+1:], []byte(" Z"))
}
