//go:build linux

// Lab processes: one `nanoseg lab endpoint` per endpoint.
//
// Design: Up starts each endpoint's process in a session of its own
// (setsid), so it outlives `lab up`, with a command line that names the lab
// and the endpoint: `nanoseg lab endpoint --lab L --endpoint NETNS`. Down
// finds the processes by that command line in /proc, not by pid files
// alone, so processes of a `lab up` that crashed before writing anything
// are found too. Sources: proc(5) (/proc/PID/cmdline), setsid(2).
package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nanoseg/nanoseg/internal/nsenter"
)

// EndpointCommand is the subcommand, under `nanoseg lab`, that runs one
// endpoint; Up starts it and Down finds it by it.
const EndpointCommand = "endpoint"

// testPauseEnv, when set to N, makes Create stop for an hour after its N-th
// endpoint, so that a test can kill `lab up` half-way at a known point.
const testPauseEnv = "NANOSEG_LAB_TEST_PAUSE_AFTER"

func testPause(done int) {
	if n, err := strconv.Atoi(os.Getenv(testPauseEnv)); err == nil && n == done {
		fmt.Fprintf(os.Stderr, "lab: paused after %d endpoints (%s)\n", done, testPauseEnv)
		time.Sleep(time.Hour)
	}
}

// UpOptions tune Up.
type UpOptions struct {
	// Binary is the nanoseg executable to start for each endpoint; empty
	// means the running executable.
	Binary string
	// ReadyTimeout bounds the wait for every endpoint's listeners; 0 means 30s.
	ReadyTimeout time.Duration
	Log          *slog.Logger
}

// UpResult says what Up did.
type UpResult struct {
	Plan *Plan
	// AlreadyUp is true when the same topology was running already; Started
	// then counts the endpoint processes that had died and were restarted.
	AlreadyUp bool
	Started   int
}

// Up brings up the lab of the topology file at path: it validates the file
// (refusing it, with nothing created, on any problem), creates the lab's
// namespaces and links, starts one process per endpoint and waits until
// every endpoint listens. Up on a running lab with the same topology only
// restarts endpoint processes that died; with a different topology it is
// refused. Leftovers of a crashed Up are removed first.
func Up(ctx context.Context, c Config, path string, o UpOptions) (*UpResult, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := Parse(raw)
	if err != nil {
		return nil, prefixLines(path+": ", err)
	}
	if err := RequireRoot(); err != nil {
		return nil, err
	}
	p, err := NewPlan(t, raw)
	if err != nil {
		return nil, prefixLines(path+": ", err)
	}
	if o.Binary == "" {
		if o.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find nanoseg binary: %w", err)
		}
	}
	res := &UpResult{Plan: p}
	if old, err := LoadPlan(c, p.Lab); err == nil {
		if old.TopologyHash != p.TopologyHash {
			return nil, fmt.Errorf("lab %s is up with a different topology; run `nanoseg lab down --name %s` first", p.Lab, p.Lab)
		}
		if complete(old) {
			res.AlreadyUp, res.Plan = true, old
			n, err := startMissing(c, old, o.Binary)
			res.Started = n
			if err != nil {
				return res, err
			}
			return res, waitReady(ctx, c, old, o.ReadyTimeout)
		}
		log.Info("lab is incomplete; removing it before bringing it up again", "lab", p.Lab)
	}
	if _, err := LoadPlan(c, p.Lab); err != nil {
		if procs := findProcesses(p.Lab); len(procs) > 0 {
			return nil, fmt.Errorf("lab %s is running with its state in another directory than %s (%d endpoint processes); use that state directory, or take it down there", p.Lab, c.StateDir, len(procs))
		}
	}
	if err := Down(ctx, c, p.Lab, log); err != nil {
		return nil, fmt.Errorf("remove leftovers of lab %s: %w", p.Lab, err)
	}
	if err := Create(ctx, c, p, log); err != nil {
		return nil, err
	}
	n, err := startMissing(c, p, o.Binary)
	res.Started = n
	if err == nil {
		err = waitReady(ctx, c, p, o.ReadyTimeout)
	}
	if err != nil {
		return nil, errors.Join(err, Down(context.WithoutCancel(ctx), c, p.Lab, log))
	}
	return res, nil
}

// complete reports whether every namespace of p exists.
func complete(p *Plan) bool {
	if _, err := os.Stat(nsenter.Path(p.Switch)); err != nil {
		return false
	}
	for _, e := range p.Endpoints {
		if _, err := os.Stat(nsenter.Path(e.Netns)); err != nil {
			return false
		}
	}
	return true
}

// startMissing starts the process of every endpoint of p that has none.
func startMissing(c Config, p *Plan, binary string) (int, error) {
	running := findProcesses(p.Lab)
	logs := filepath.Join(c.Dir(p.Lab), "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return 0, fmt.Errorf("create log dir: %w", err)
	}
	// The endpoint processes outlive this command: they must not hold
	// what it inherited (a lock fd of `flock FILE nanoseg lab up`, a
	// pipe of a caller waiting for EOF).
	closeInheritedOnExec()
	started := 0
	for _, e := range p.Endpoints {
		if _, ok := running[e.Netns]; ok {
			continue
		}
		// A restarted endpoint must not be reported ready from old stats.
		_ = os.Remove(c.StatsPath(p.Lab, e))
		lf, err := os.OpenFile(filepath.Join(logs, e.Netns+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return started, fmt.Errorf("open endpoint log: %w", err)
		}
		cmd := exec.Command(binary, "lab", EndpointCommand, "--state-dir", c.StateDir, "--lab", p.Lab, "--endpoint", e.Netns)
		cmd.Stdout, cmd.Stderr = lf, lf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		err = cmd.Start()
		lf.Close()
		if err != nil {
			return started, fmt.Errorf("start endpoint %s: %w", e.ID(), err)
		}
		_ = cmd.Process.Release()
		started++
	}
	return started, nil
}

// waitReady waits until every endpoint of p reports its listeners open.
func waitReady(ctx context.Context, c Config, p *Plan, timeout time.Duration) error {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, e := range p.Endpoints {
			s, err := readStats(c, p.Lab, e)
			if err != nil || !s.Ready {
				missing = append(missing, e.ID())
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab %s: endpoints not ready after %s: %v (see %s)", p.Lab, timeout, missing, filepath.Join(c.Dir(p.Lab), "logs"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func readStats(c Config, lab string, e Endpoint) (Stats, error) {
	var s Stats
	raw, err := os.ReadFile(c.StatsPath(lab, e))
	if err != nil {
		return s, err
	}
	err = json.Unmarshal(raw, &s)
	return s, err
}

// findProcesses returns the pids of lab's endpoint processes by netns name,
// read from /proc/*/cmdline.
func findProcesses(lab string) map[string]int {
	out := map[string]int{}
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(bytes.TrimRight(raw, "\x00"), []byte{0})
		if ep, ok := endpointArgs(args, lab); ok {
			out[ep] = pid
		}
	}
	return out
}

// endpointArgs reports whether args is `... lab endpoint ... --lab L
// --endpoint E` for lab, and returns E.
func endpointArgs(args [][]byte, lab string) (string, bool) {
	isLab, isEp := false, false
	labArg, ep := "", ""
	for i, a := range args {
		s := string(a)
		switch {
		case s == "lab" && i+1 < len(args) && string(args[i+1]) == EndpointCommand:
			isLab = true
		case s == EndpointCommand:
			isEp = true
		case s == "--lab" && i+1 < len(args):
			labArg = string(args[i+1])
		case s == "--endpoint" && i+1 < len(args):
			ep = string(args[i+1])
		}
	}
	return ep, isLab && isEp && labArg == lab && ep != ""
}

// killProcesses stops every endpoint process of lab: SIGTERM, then SIGKILL
// after two seconds, and waits until they are gone.
func killProcesses(ctx context.Context, lab string, log *slog.Logger) error {
	procs := findProcesses(lab)
	for ep, pid := range procs {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		log.Debug("lab process stopped", "endpoint", ep, "pid", pid)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(procs) > 0 {
		for ep, pid := range procs {
			if syscall.Kill(pid, 0) != nil {
				delete(procs, ep)
			}
		}
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pid := range procs {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if time.Now().After(deadline.Add(3 * time.Second)) {
				return fmt.Errorf("stop lab %s processes: %d still running", lab, len(procs))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// EndpointStatus is one endpoint of a running lab, for `lab status`.
type EndpointStatus struct {
	Endpoint Endpoint `json:"endpoint"`
	PID      int      `json:"pid"` // 0 when no process runs
	Stats    *Stats   `json:"stats,omitempty"`
	// Link counters of the endpoint's eth0: packets and bytes.
	RxPackets uint64 `json:"rxPackets"`
	TxPackets uint64 `json:"txPackets"`
	RxBytes   uint64 `json:"rxBytes"`
	TxBytes   uint64 `json:"txBytes"`
	Problem   string `json:"problem,omitempty"`
}

// Status reports every endpoint of lab with its process, counters and
// problems (a missing namespace or a dead process).
func Status(c Config, lab string) (*Plan, []EndpointStatus, error) {
	p, err := LoadPlan(c, lab)
	if err != nil {
		return nil, nil, err
	}
	procs := findProcesses(lab)
	var out []EndpointStatus
	for _, e := range p.Endpoints {
		st := EndpointStatus{Endpoint: e, PID: procs[e.Netns]}
		if st.PID == 0 {
			st.Problem = "no endpoint process running"
		}
		if s, err := readStats(c, lab, e); err == nil {
			st.Stats = &s
		}
		if err := linkCounters(e, &st); err != nil {
			st.Problem = err.Error()
		}
		out = append(out, st)
	}
	return p, out, nil
}

func linkCounters(e Endpoint, st *EndpointStatus) error {
	h, err := openNetns(e.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", e.Netns, err)
	}
	defer nl.Close()
	l, err := nl.LinkByName(EndpointLink)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", EndpointLink, e.Netns, err)
	}
	if s := l.Attrs().Statistics; s != nil {
		st.RxPackets, st.TxPackets, st.RxBytes, st.TxBytes = s.RxPackets, s.TxPackets, s.RxBytes, s.TxBytes
	}
	return nil
}

// closeInheritedOnExec marks every descriptor of this process above
// stderr close-on-exec. Go opens its own descriptors close-on-exec and
// exec.Cmd passes a child only stdin, stdout, stderr and ExtraFiles; but
// a descriptor this process inherited without the flag (flock(1) hands
// its command the lock that way) would pass on to every child, and the
// lab's endpoint processes live on after the command: the lock would
// outlive it.
func closeInheritedOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
