//go:build linux

package manifests_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/nanoseg/nanoseg/manifests"
)

// envProbePID makes TestCapabilityProbe run: the pid of the process whose
// network namespace it works on.
const envProbePID = "NANOSEG_CAPPROBE_PID"

// capabilityOps are what the node agent does in a pod's network namespace,
// each with the capability the DaemonSet adds for it (its comment says
// why). The probe does them in order; a failed step stops the later ones
// that depend on it.
var capabilityOps = []struct{ op, capability string }{
	{"open /proc/PID/ns/net", "SYS_PTRACE"},
	{"setns", "SYS_ADMIN"},
	{"AF_PACKET socket", "NET_RAW"},
	{"nftables table", "NET_ADMIN"},
}

// TestDaemonSetCapabilities checks the DaemonSet's capability list against
// the kernel: a process with exactly the added capabilities (as root, the
// rest of the bounding set dropped, as the container runtime does) does
// everything of capabilityOps in the network namespace of a process of uid
// 65535 (a pod's pause process), and without any one of them the step that
// needs it fails. Needs root (skipped otherwise) and setpriv (util-linux).
func TestDaemonSetCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the probe drops capabilities root has")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("no setpriv (util-linux): %v", err)
	}
	var ds appsv1.DaemonSet
	find(t, "DaemonSet", manifests.NodeAgent, &ds)
	var added []string
	for _, c := range ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add {
		added = append(added, string(c))
	}
	var needed []string
	for _, o := range capabilityOps {
		needed = append(needed, o.capability)
	}
	slices.Sort(needed)
	if !slices.Equal(added, needed) {
		t.Fatalf("the DaemonSet adds %v, the probe knows why for %v: explain each added capability here", added, needed)
	}

	// The "pod": a process of uid 65535 alone in a new network namespace.
	pod := exec.Command("sleep", "300")
	pod.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		Credential: &syscall.Credential{Uid: 65535, Gid: 65535},
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := pod.Start(); err != nil {
		t.Fatalf("start a process in a new netns: %v", err)
	}
	t.Cleanup(func() { _ = pod.Process.Kill(); _ = pod.Wait() })

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	probe := func(caps []string) map[string]string {
		t.Helper()
		list := "-all"
		for _, c := range caps {
			list += ",+" + strings.ToLower(c)
		}
		cmd := exec.Command(setpriv, "--bounding-set="+list, "--inh-caps="+list, "--",
			self, "-test.run=^TestCapabilityProbe$", "-test.v")
		cmd.Env = append(os.Environ(), envProbePID+"="+strconv.Itoa(pod.Process.Pid))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("probe with %v: %v\n%s", caps, err, out)
		}
		_, js, ok := strings.Cut(string(out), "PROBE ")
		if !ok {
			t.Fatalf("probe with %v printed no result:\n%s", caps, out)
		}
		js, _, _ = strings.Cut(js, "\n")
		res := map[string]string{}
		if err := json.Unmarshal([]byte(js), &res); err != nil {
			t.Fatalf("probe result %q: %v", js, err)
		}
		return res
	}

	all := probe(added)
	for _, o := range capabilityOps {
		if all[o.op] != "ok" {
			t.Errorf("with %v: %s: %s, want ok", added, o.op, all[o.op])
		}
	}
	for _, o := range capabilityOps {
		without := slices.DeleteFunc(slices.Clone(added), func(c string) bool { return c == o.capability })
		if got := probe(without)[o.op]; got == "ok" {
			t.Errorf("without %s: %s succeeded, so the DaemonSet need not add it", o.capability, o.op)
		} else {
			t.Logf("without %s: %s: %s", o.capability, o.op, got)
		}
	}
}

// TestCapabilityProbe is the probe TestDaemonSetCapabilities runs under
// setpriv; it does nothing in a normal run. It prints "PROBE " and a JSON
// object from each of capabilityOps to "ok" or the error.
func TestCapabilityProbe(t *testing.T) {
	pid := os.Getenv(envProbePID)
	if pid == "" {
		t.Skip("run by TestDaemonSetCapabilities only")
	}
	res := map[string]string{}
	result := func(op string, err error) bool {
		res[op] = "ok"
		if err != nil {
			res[op] = err.Error()
		}
		return err == nil
	}
	defer func() { b, _ := json.Marshal(res); fmt.Printf("PROBE %s\n", b) }()

	f, err := os.Open("/proc/" + pid + "/ns/net")
	if !result(capabilityOps[0].op, err) {
		return
	}
	defer f.Close()
	// setns on a thread of its own that never returns to the scheduler
	// (the goroutine ends locked, so the runtime drops the thread).
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if !result(capabilityOps[1].op, unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)) {
			return
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if result(capabilityOps[2].op, err) {
			unix.Close(fd)
		}
	}()
	<-done
	// nftables through the netns file, as the dataplane does.
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err == nil {
		c.AddTable(&nftables.Table{Name: "nanoseg_capprobe", Family: nftables.TableFamilyINet})
		err = c.Flush()
	}
	result(capabilityOps[3].op, err)
}
