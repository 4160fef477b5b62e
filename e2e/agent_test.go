//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/node"
)

// agentEnv is one lab with an agent, for the story tests.
type agentEnv struct {
	t        *testing.T
	name     string // lab name
	labState string
	dir      string // agent state directory
	sock     string
	extra    []string // extra agent flags
	cmd      *exec.Cmd
	logf     *os.File
}

func (e *agentEnv) env() []string { return []string{"NANOSEG_SERVER=" + e.sock} }

// run runs the CLI against this env's lab and agent.
func (e *agentEnv) run(args ...string) (string, error) {
	e.t.Helper()
	return nanoseg(e.t, e.labState, e.env(), args...)
}

func (e *agentEnv) mustRun(args ...string) string {
	e.t.Helper()
	out, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("nanoseg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// startAgent starts the agent and waits for its socket.
func (e *agentEnv) startAgent() {
	e.t.Helper()
	_ = os.Remove(e.sock)
	args := append([]string{"agent", "--lab", e.name, "--state-file", filepath.Join(e.dir, "state.db"), "--socket", e.sock, "--metrics-addr", ""}, e.extra...)
	e.cmd = exec.Command(bin, args...)
	e.cmd.Env = append(os.Environ(), "NANOSEG_LAB_STATEDIR="+e.labState)
	e.cmd.Stdout, e.cmd.Stderr = e.logf, e.logf
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("unix", e.sock); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("agent did not start; log in %s", e.logf.Name())
}

// stopAgent stops the agent with sig and waits for it.
func (e *agentEnv) stopAgent(sig syscall.Signal) {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(sig)
	_ = e.cmd.Wait()
	e.cmd = nil
}

func newAgentEnv(t *testing.T, prefix string, extra ...string) *agentEnv {
	t.Helper()
	return newAgentEnvFrom(t, "../manifests/lab/shop.yaml", prefix, extra...)
}

// newAgentEnvFrom is newAgentEnv on the lab topology at path.
func newAgentEnvFrom(t *testing.T, path, prefix string, extra ...string) *agentEnv {
	t.Helper()
	requireRoot(t)
	e := &agentEnv{t: t, name: uniqueName(prefix), labState: t.TempDir(), dir: t.TempDir(), extra: extra}
	e.sock = filepath.Join(e.dir, "agent.sock")
	var err error
	if e.logf, err = os.Create(filepath.Join(e.dir, "agent.log")); err != nil {
		t.Fatal(err)
	}
	topo := labCopy(t, path, e.name)
	t.Cleanup(func() {
		e.stopAgent(syscall.SIGKILL)
		if out, err := nanoseg(t, e.labState, nil, "lab", "down", "--name", e.name); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
		sweepOwners(t, e.sock)
		if t.Failed() {
			raw, _ := os.ReadFile(e.logf.Name())
			t.Logf("agent log:\n%s", raw)
		}
	})
	e.mustRun("lab", "up", "-f", topo)
	e.startAgent()
	return e
}

func (e *agentEnv) status() map[string]controller.WorkloadStatus {
	e.t.Helper()
	var st []controller.WorkloadStatus
	if err := json.Unmarshal([]byte(e.mustRun("status", "-o", "json")), &st); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]controller.WorkloadStatus{}
	for _, s := range st {
		out[s.Workload] = s
	}
	return out
}

// TestAgentStory is the demo's story with assertions on real connections:
// observe every edge, propose, audit (the intruder passes and is recorded),
// enforce (the intruder is dropped, every declared connection still works),
// then restart the agent in enforce mode and check enforcement has no
// window and no state is lost.
func TestAgentStory(t *testing.T) {
	e := newAgentEnv(t, "story")
	e.mustRun("lab", "edges", "--name", e.name, "--wait", "40s")
	out := e.mustRun("policy", "propose", "--out", filepath.Join(e.dir, "policies"))
	if !strings.Contains(out, "shop/db") {
		t.Fatalf("no proposal for shop/db:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "policies", "shop_db.yaml")); err != nil {
		t.Fatalf("proposal file: %v", err)
	}

	e.mustRun("promote", "--all", "--to", "audit", "--reason", "test audit")
	e.mustRun("lab", "probe", "--name", e.name, "--from", "shop/intruder", "--to", "shop/db", "--no-dns", "--port", "5432")
	waitFor(t, 10*time.Second, func() error {
		out, err := e.run("verdicts", "--verdict", "audit-deny", "--from", "shop/intruder", "--to", "shop/db", "--expect")
		if err != nil {
			all, _ := e.run("verdicts")
			return fmt.Errorf("%v\n%s\nall verdicts:\n%s", err, out, all)
		}
		return nil
	})
	if st := e.status()["shop/db"]; st.Mode != model.ModeAudit || st.WouldDeny == 0 {
		t.Errorf("shop/db in audit: %+v; want mode audit and would-deny > 0", st)
	}
	e.mustRun("lab", "check", "--name", e.name)
	if out := e.mustRun("policy", "diff"); !strings.Contains(out, "shop{app=intruder} -> shop{app=db,tier=data} TCP/5432") {
		t.Errorf("policy diff does not show that enforcing would break intruder -> db:\n%s", out)
	}

	// Proposing again never re-allows what the policies in force refuse.
	out = e.mustRun("policy", "propose")
	if !strings.Contains(out, "shop/intruder -> shop/db TCP/5432") || !strings.Contains(out, "left out") {
		t.Errorf("propose after the audit-deny does not leave the intruder's edge out:\n%s", out)
	}
	if show := e.mustRun("policy", "show", "shop/db"); strings.Count(show, "\nshop/db ") != 1 {
		t.Errorf("propose stored a new shop/db revision from denied traffic:\n%s", show)
	}

	// The lab was observed for under a minute, far below the default
	// minimum observation: the coverage gate refuses without --force.
	e.mustRun("promote", "--all", "--to", "enforce", "--force", "--reason", "test enforce")
	if out, err := e.run("lab", "probe", "--name", e.name, "--from", "shop/intruder", "--to", "shop/db", "--no-dns", "--port", "5432", "--timeout", "1s"); err == nil {
		t.Fatalf("intruder reached db under enforcement:\n%s", out)
	}
	waitFor(t, 10*time.Second, func() error {
		_, err := e.run("verdicts", "--verdict", "deny", "--from", "shop/intruder", "--to", "shop/db", "--expect")
		return err
	})
	e.mustRun("lab", "check", "--name", e.name)
	for w, st := range e.status() {
		if st.Mode != model.ModeEnforce || st.Revision != 1 {
			t.Errorf("%s: mode %s revision %d, want enforce 1", w, st.Mode, st.Revision)
		}
	}

	// The agent explains its verdicts with the policies in force.
	if out := e.mustRun("policy", "explain", "--from", "shop/api", "--to", "shop/db", "--port", "5432/TCP"); !strings.Contains(out, ": allow") {
		t.Errorf("explain api -> db:\n%s", out)
	}
	if out, _ := e.run("policy", "explain", "--from", "shop/intruder", "--to", "shop/db", "--port", "5432/TCP"); !strings.Contains(out, ": deny") || !strings.Contains(out, "shop/db") {
		t.Errorf("explain intruder -> db:\n%s", out)
	}

	mx := e.mustRun("policy", "matrix", "--ports", "5432/TCP", "-o", "csv")
	if !strings.Contains(mx, "shop/api-0,shop/db-0,5432,TCP,allow") || !strings.Contains(mx, "shop/intruder-0,shop/db-0,5432,TCP,deny") {
		t.Errorf("policy matrix from the agent:\n%s", mx)
	}

	// Rollback undoes shop/db's last promotion (back to audit, where the
	// intruder gets through), and is recorded; promoting again restores.
	out = e.mustRun("rollback", "shop/db", "--reason", "test rollback")
	if !strings.Contains(out, "enforce rev 1 -> audit rev 1") {
		t.Fatalf("rollback of shop/db:\n%s", out)
	}
	if st := e.status()["shop/db"]; st.Mode != model.ModeAudit {
		t.Fatalf("after rollback shop/db is %s, want audit", st.Mode)
	}
	// The intruder's own egress still enforces; shop/db's ingress no longer does.
	e.mustRun("rollback", "shop/intruder", "--reason", "test rollback")
	e.mustRun("lab", "probe", "--name", e.name, "--from", "shop/intruder", "--to", "shop/db", "--no-dns", "--port", "5432")
	e.mustRun("promote", "shop/db", "--to", "enforce", "--force", "--reason", "after rollback")
	e.mustRun("promote", "shop/intruder", "--to", "enforce", "--force", "--reason", "after rollback")
	var hist []model.Promotion
	if err := json.Unmarshal([]byte(e.mustRun("history", "shop/db", "-o", "json")), &hist); err != nil {
		t.Fatal(err)
	}
	if n := len(hist); n != 4 || hist[2].Action != model.ActionRollback || hist[2].Undoes != hist[1].Seq {
		t.Errorf("shop/db history after rollback: %+v", hist)
	}

	// Restart under load: a legitimate client and the intruder connect in
	// a loop while the agent stops and starts again.
	p, err := lab.LoadPlan(lab.Config{StateDir: e.labState}, e.name)
	if err != nil {
		t.Fatal(err)
	}
	var legitFail, intruderOK, tries atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	loop := func(from, to string, port int, bad *atomic.Int64, wantOK bool) {
		defer wg.Done()
		cl, err := lab.NewClient(p, p.Find(from)[0])
		if err != nil {
			t.Error(err)
			return
		}
		defer cl.Close()
		dst := p.Find(to)[0].IPv4.String()
		for ctx.Err() == nil {
			_, err := cl.Talk(ctx, dst, port, "TCP", 4, 0, 300*time.Millisecond)
			if ctx.Err() != nil {
				return
			}
			tries.Add(1)
			if (err == nil) != wantOK {
				bad.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wg.Add(2)
	go loop("shop/api", "shop/db", 5432, &legitFail, true)
	go loop("shop/intruder", "shop/db", 5432, &intruderOK, false)
	time.Sleep(300 * time.Millisecond)
	histBefore := e.mustRun("history", "-o", "json")
	e.stopAgent(syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	e.startAgent()
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	if legitFail.Load() > 0 || intruderOK.Load() > 0 || tries.Load() < 10 {
		t.Errorf("across the restart: %d legitimate connections failed, %d intruder connections succeeded, of %d", legitFail.Load(), intruderOK.Load(), tries.Load())
	}
	if got := e.mustRun("history", "-o", "json"); got != histBefore {
		t.Errorf("history changed across the restart")
	}
	for w, st := range e.status() {
		if st.Mode != model.ModeEnforce || st.Revision != 1 {
			t.Errorf("after restart %s: mode %s revision %d, want enforce 1", w, st.Mode, st.Revision)
		}
		for _, ep := range st.Endpoints {
			if !ep.InSync {
				t.Errorf("after restart %s: endpoint %s not in sync: %s", w, ep.Netns, ep.Error)
			}
		}
	}
}

func waitFor(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", d, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestAgentKillDuringPromotion kills the agent with SIGKILL at different
// moments of a promotion and checks that store and kernel agree on either
// the old or the new state after a restart; then checks that bad policy
// files, unknown workloads and unauthenticated TCP requests are refused
// and change nothing.
func TestAgentKillDuringPromotion(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("e2e-secret-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	e := newAgentEnv(t, "kill", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--token-file", tokenFile)
	e.mustRun("lab", "edges", "--name", e.name, "--wait", "40s")
	e.mustRun("policy", "propose")
	e.mustRun("promote", "shop/db", "--to", "audit", "--reason", "start")
	modes := []model.Mode{model.ModeEnforce, model.ModeAudit}
	for i, delay := range []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond, 40 * time.Millisecond} {
		before := e.status()["shop/db"].Mode
		to := modes[i%2]
		pc := exec.Command(bin, "promote", "shop/db", "--to", string(to), "--force", "--reason", fmt.Sprintf("kill test %d", i))
		pc.Env = append(os.Environ(), e.env()...)
		if err := pc.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		e.stopAgent(syscall.SIGKILL)
		_ = pc.Wait()
		e.startAgent()
		var st controller.WorkloadStatus
		waitFor(t, 10*time.Second, func() error {
			st = e.status()["shop/db"]
			for _, ep := range st.Endpoints {
				if !ep.InSync {
					return fmt.Errorf("shop/db endpoint %s not in sync after restart: %s", ep.Netns, ep.Error)
				}
			}
			return nil
		})
		if st.Mode != before && st.Mode != to {
			t.Fatalf("kill after %s: shop/db is %s; want the old %s or the new %s", delay, st.Mode, before, to)
		}
		// The kernel enforces what the store says: the intruder gets
		// through in audit and not in enforce.
		_, err := e.run("lab", "probe", "--name", e.name, "--from", "shop/intruder", "--to", "shop/db", "--no-dns", "--port", "5432", "--timeout", "1s")
		if (err == nil) != (st.Mode == model.ModeAudit) {
			t.Errorf("kill after %s: store says %s but the intruder probe got err=%v", delay, st.Mode, err)
		}
		if _, err := e.run("history"); err != nil {
			t.Fatalf("history after kill: %v", err)
		}
	}
	// The history still verifies as a chain.
	var hist []model.Promotion
	if err := json.Unmarshal([]byte(e.mustRun("history", "-o", "json")), &hist); err != nil {
		t.Fatal(err)
	}
	if err := model.VerifyPromotions(hist); err != nil {
		t.Errorf("history after kills: %v", err)
	}

	// Applying rules equal to the latest revision stores nothing new.
	good := filepath.Join(t.TempDir(), "db.yaml")
	_ = os.WriteFile(good, []byte(e.mustRun("policy", "show", "shop/db", "--revision", "1")), 0o644)
	first := e.mustRun("policy", "apply", "-f", good)
	if second := e.mustRun("policy", "apply", "-f", good); !strings.Contains(first, "shop/db: revision 1 (proposed") || first != second {
		t.Errorf("applying the same file twice:\n%s\n%s", first, second)
	}

	// Bad input changes nothing.
	revsBefore := e.mustRun("policy", "show")
	histBefore := e.mustRun("history", "-o", "json")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte(`apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  ingress:
    - id: r1
      peers: [{ipBlock: {cidr: 198.18.0.0/33}}]
      colour: red
`), 0o644)
	out, err := e.run("policy", "apply", "-f", bad)
	if err == nil || !strings.Contains(out, "colour") {
		t.Errorf("bad policy file: err=%v\n%s", err, out)
	}
	out, err = e.run("promote", "shop/nosuch", "--to", "enforce", "--reason", "x")
	if err == nil || !strings.Contains(out, `"shop/nosuch" is not in the inventory`) {
		t.Errorf("unknown workload: err=%v\n%s", err, out)
	}
	out, err = e.run("promote", "shop/db", "--to", "enforced", "--reason", "x")
	if err == nil || !strings.Contains(out, `"enforced" is not observe, audit or enforce`) {
		t.Errorf("bad mode: err=%v\n%s", err, out)
	}
	if e.mustRun("policy", "show") != revsBefore || e.mustRun("history", "-o", "json") != histBefore {
		t.Errorf("refused requests changed stored revisions or history")
	}

	// A second agent on the same lab, or on the same socket, is refused.
	for _, args := range [][]string{
		{"agent", "--lab", e.name, "--state-file", filepath.Join(t.TempDir(), "s.db"), "--socket", filepath.Join(t.TempDir(), "a.sock"), "--metrics-addr", ""},
		{"agent", "--lab", e.name, "--state-file", filepath.Join(t.TempDir(), "s.db"), "--socket", e.sock, "--metrics-addr", ""},
	} {
		out, err := nanoseg(t, e.labState, nil, args...)
		if err == nil || !strings.Contains(out, "another agent") {
			t.Errorf("second agent %v: err=%v\n%s", args, err, out)
		}
	}
	if _, err := e.run("status"); err != nil {
		t.Errorf("the first agent is unreachable after a refused second one: %v", err)
	}

	// TCP: unauthenticated and wrong-token requests are refused.
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/status", port)
	for _, tok := range []string{"", "wrong-token-0123456789"} {
		req, _ := http.NewRequest("GET", url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("TCP request with token %q: %s, want 401", tok, resp.Status)
		}
	}
	out, err = nanoseg(t, e.labState, []string{"NANOSEG_SERVER=http://127.0.0.1:" + fmt.Sprint(port), "NANOSEG_TOKEN=e2e-secret-token-0123456789"}, "status")
	if err != nil || !strings.Contains(out, "shop/db") {
		t.Errorf("authenticated TCP status: %v\n%s", err, out)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sweepOwners removes the owner files (node.DefaultOwnerDir) that the
// agent serving sock left: a killed agent cannot remove them, and the
// next agent only sweeps them when it starts.
func sweepOwners(t *testing.T, sock string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(node.DefaultOwnerDir, "*.owner"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(raw), sock) {
			if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
				t.Errorf("remove owner file %s: %v", f, err)
			}
		}
	}
}
