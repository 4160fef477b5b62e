//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/lab"
)

// labLeftovers lists what of lab name still exists: namespaces, endpoint
// processes, /etc/netns directories, state.
func labLeftovers(t *testing.T, stateDir, name string) []string {
	t.Helper()
	var left []string
	ns, err := nsenter.ListNamed(lab.NetnsPrefix + name + ".")
	if err != nil {
		t.Fatal(err)
	}
	left = append(left, ns...)
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		raw, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(raw), "--lab\x00"+name+"\x00") {
			left = append(left, "process "+d.Name()+": "+strings.ReplaceAll(string(raw), "\x00", " "))
		}
	}
	etc, _ := filepath.Glob("/etc/netns/" + lab.NetnsPrefix + name + ".*")
	left = append(left, etc...)
	if _, err := os.Stat(filepath.Join(stateDir, name)); err == nil {
		left = append(left, "state dir "+filepath.Join(stateDir, name))
	}
	return left
}

func rootLinks(t *testing.T) map[string]bool {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range links {
		out[l.Attrs().Name] = true
	}
	return out
}

// TestLabShop brings up manifests/lab/shop.yaml, checks with real
// connections that every declared client reaches its server over IPv4 and
// IPv6, that the scheduled clients really talk, and that `lab down` leaves
// no namespace, link, process or file behind.
func TestLabShop(t *testing.T) {
	requireRoot(t)
	name := uniqueName("e2e")
	state := t.TempDir()
	topo := labCopy(t, "../manifests/lab/shop.yaml", name)
	before := rootLinks(t)
	t.Cleanup(func() {
		if out, err := nanoseg(t, state, nil, "lab", "down", "--name", name); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
		if left := labLeftovers(t, state, name); len(left) > 0 {
			t.Errorf("lab down left behind: %v", left)
		}
		for l := range rootLinks(t) {
			if !before[l] {
				t.Errorf("link %s appeared in the root namespace", l)
			}
		}
	})
	out, err := nanoseg(t, state, nil, "lab", "up", "-f", topo)
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	for l := range rootLinks(t) {
		if !before[l] {
			t.Errorf("lab up created link %s in the root namespace", l)
		}
	}
	// Up twice is safe and changes nothing.
	if out, err := nanoseg(t, state, nil, "lab", "up", "-f", topo); err != nil || !strings.Contains(out, "already up") {
		t.Fatalf("second lab up: %v\n%s", err, out)
	}

	out, err = nanoseg(t, state, nil, "lab", "check", "--name", name)
	if err != nil {
		t.Fatalf("lab check: %v\n%s", err, out)
	}
	// 2 frontends -> api, api -> db, cache, payments, prometheus -> 6: 11 talks, over IPv4 and IPv6.
	if !strings.Contains(out, "22 of 22 declared connections work") {
		t.Fatalf("lab check did not probe every declared talk over both families:\n%s", out)
	}
	// A port nobody listens on is refused: the probe can fail.
	if out, err := nanoseg(t, state, nil, "lab", "probe", "--name", name, "--from", "shop/api", "--to", "shop/db", "--port", "5433"); err == nil {
		t.Errorf("probe to a closed port succeeded:\n%s", out)
	}

	// The scheduled clients talk on their own: every talk of every endpoint
	// succeeds within a few seconds.
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := nanoseg(t, state, nil, "lab", "status", "--name", name, "-o", "json")
		if err != nil {
			t.Fatalf("lab status: %v\n%s", err, out)
		}
		var st map[string][]lab.EndpointStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("lab status json: %v\n%s", err, out)
		}
		var silent []string
		for _, s := range st[name] {
			if s.PID == 0 || s.Stats == nil || s.RxPackets == 0 {
				silent = append(silent, s.Endpoint.ID()+" (no process or traffic)")
				continue
			}
			for _, tk := range s.Stats.Talks {
				if tk.OK == 0 {
					silent = append(silent, fmt.Sprintf("%s -> %s:%d (%s)", s.Endpoint.ID(), tk.To, tk.Port, tk.LastError))
				}
			}
		}
		if len(st[name]) != 9 {
			t.Fatalf("lab status lists %d endpoints, want 9", len(st[name]))
		}
		if len(silent) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("talks without a successful connection: %v", silent)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestLabDownAfterCrash kills `lab up` half-way with SIGKILL and checks that
// `lab down` still removes everything, and that `lab up` after a crash
// cleans up and succeeds.
func TestLabDownAfterCrash(t *testing.T) {
	requireRoot(t)
	name := uniqueName("crash")
	state := t.TempDir()
	topo := labCopy(t, "../manifests/lab/shop.yaml", name)
	t.Cleanup(func() {
		_, _ = nanoseg(t, state, nil, "lab", "down", "--name", name)
	})
	for _, then := range []string{"down", "up"} {
		cmd := exec.Command(bin, "lab", "up", "-f", topo)
		cmd.Env = append(os.Environ(), "NANOSEG_LAB_STATEDIR="+state, "NANOSEG_LAB_TEST_PAUSE_AFTER=3")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			ns, _ := nsenter.ListNamed(lab.NetnsPrefix + name + ".")
			if len(ns) >= 4 { // switch + 3 endpoints
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("lab up did not reach its pause point; namespaces: %v", ns)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if left := labLeftovers(t, state, name); len(left) < 4 {
			t.Fatalf("after the crash only %v exist; the test did not crash mid-way", left)
		}
		if then == "down" {
			if out, err := nanoseg(t, state, nil, "lab", "down", "--name", name); err != nil {
				t.Fatalf("lab down after crash: %v\n%s", err, out)
			}
		} else {
			if out, err := nanoseg(t, state, nil, "lab", "up", "-f", topo); err != nil {
				t.Fatalf("lab up after crash: %v\n%s", err, out)
			}
			if out, err := nanoseg(t, state, nil, "lab", "probe", "--name", name, "--from", "shop/api", "--to", "shop/db", "--port", "5432"); err != nil {
				t.Fatalf("lab up after crash does not carry traffic: %v\n%s", err, out)
			}
			if out, err := nanoseg(t, state, nil, "lab", "down", "--name", name); err != nil {
				t.Fatalf("lab down: %v\n%s", err, out)
			}
		}
		if left := labLeftovers(t, state, name); len(left) > 0 {
			t.Fatalf("after crash and %s, left behind: %v", then, left)
		}
	}
}

// TestLabRefusesBadInput checks that a bad topology is refused with the
// file and field named and nothing created, and that a non-root user is
// told plainly that the lab needs root.
func TestLabRefusesBadInput(t *testing.T) {
	requireRoot(t)
	name := uniqueName("bad")
	state := t.TempDir()
	topo := labCopy(t, "../manifests/lab/shop.yaml", name)
	raw, _ := os.ReadFile(topo)
	bad := strings.Replace(string(raw), "port: 5432}", "port: 99999}", 1)
	if err := os.WriteFile(topo, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := nanoseg(t, state, nil, "lab", "up", "-f", topo)
	if err == nil {
		t.Fatalf("bad topology accepted:\n%s", out)
	}
	for _, want := range []string{topo, "workloads[", "ports[0].port", "99999 is out of range"} {
		if !strings.Contains(out, want) {
			t.Errorf("error does not name %q:\n%s", want, out)
		}
	}
	if left := labLeftovers(t, state, name); len(left) > 0 {
		t.Errorf("a refused topology created %v", left)
	}

	cmd := exec.Command(bin, "lab", "up", "-f", "../manifests/lab/shop.yaml")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = append(os.Environ(), "NANOSEG_LAB_STATEDIR="+state)
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "needs root") {
		t.Errorf("lab up as nobody: %v\n%s", err, b)
	}
}
