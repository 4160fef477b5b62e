//go:build linux

package e2e

// Learning that knows what it has not seen (issue 17), on the coverage lab
// (testdata/coverage.yaml): web calls api every second; batch, a job that
// calls api only now and then, is silent while the agent learns.

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/graph"
	"github.com/nanoseg/nanoseg/model"
)

// coverageOf returns workload w's coverage as `status -o json` reports it.
func (e *agentEnv) coverageOf(w string) model.Coverage {
	e.t.Helper()
	st, ok := e.status()[w]
	if !ok || st.Coverage == nil {
		e.t.Fatalf("status has no coverage for %s: %+v", w, st)
	}
	return *st.Coverage
}

// TestCoverageRareTalker: a proposal learnt in a short window while the
// batch job was silent is reported as such (the coverage report names
// batch silent and says how little of the 24h window asked was observed);
// audit goes ahead, enforce is refused with every reason until forced,
// and the forced reasons are in the history. A restart of the agent
// neither resets nor stretches the observed time. Then the rare talker
// calls, and enforcement breaks it, as it was warned.
func TestCoverageRareTalker(t *testing.T) {
	e := newAgentEnvFrom(t, "testdata/coverage.yaml", "covrare")
	e.mustRun("lab", "edges", "--name", e.name, "--wait", "40s")

	// A restart: the time without an agent is not observed time.
	before := e.coverageOf("cov/api").Observed()
	stopped := time.Now()
	e.stopAgent(syscall.SIGTERM)
	time.Sleep(4 * time.Second)
	e.startAgent()
	waitFor(t, 10*time.Second, func() error {
		if st := e.status()["cov/api"]; st.Coverage == nil || st.Coverage.Observed() <= before {
			return fmt.Errorf("cov/api observed %v after the restart, want more than the %v before", st.Coverage, before)
		}
		return nil
	})
	after := e.coverageOf("cov/api").Observed()
	if wall := before + time.Since(stopped); after > wall-3*time.Second {
		t.Errorf("cov/api observed %v after a 4s stop; at most %v (the %v before and the time since, less the stop)", after, wall-3*time.Second, before)
	}

	out := e.mustRun("policy", "propose", "--window", "24h")
	t.Logf("policy propose --window 24h:\n%s", out)
	for _, want := range []string{"coverage (of the 24h window asked):", "cov/api", "window not fully observed",
		"silent in the window", "cov/batch: observed"} {
		if !strings.Contains(out, want) {
			t.Errorf("propose output lacks %q:\n%s", want, out)
		}
	}
	// Audit is how to learn safely: never gated.
	e.mustRun("promote", "--all", "--to", "audit", "--reason", "learn in audit")

	out, err := e.run("promote", "cov/api", "--to", "enforce", "--reason", "too early")
	t.Logf("promote cov/api --to enforce:\n%s", out)
	if err == nil {
		t.Fatalf("promote to enforce after under a minute of a 24h window went ahead:\n%s", out)
	}
	for _, want := range []string{"cov/api", "less than the 1h required (--min-observed)", "asked for a 24h window (--window)",
		"cov/batch, in its namespace, had no observed traffic", "--force"} {
		if !strings.Contains(out, want) {
			t.Errorf("refusal lacks %q:\n%s", want, out)
		}
	}
	if st := e.status()["cov/api"]; st.Mode != model.ModeAudit {
		t.Fatalf("refused promotion left cov/api in %s, want audit", st.Mode)
	}
	// --all names each workload refused.
	out, err = e.run("promote", "--all", "--to", "enforce", "--reason", "too early")
	if err == nil || !strings.Contains(out, "promote cov/api:") || !strings.Contains(out, "promote cov/web:") || !strings.Contains(out, "failed: ") {
		t.Errorf("promote --all to enforce: %v\n%s", err, out)
	}

	out = e.mustRun("promote", "cov/api", "--to", "enforce", "--force", "--reason", "forced by the test")
	if !strings.Contains(out, "warning: forced (recorded in the history)") || !strings.Contains(out, "coverage of its proposal: observed") {
		t.Errorf("forced promotion output:\n%s", out)
	}
	var hist []model.Promotion
	if err := json.Unmarshal([]byte(e.mustRun("history", "cov/api", "-o", "json")), &hist); err != nil {
		t.Fatal(err)
	}
	last := hist[len(hist)-1]
	if last.ToMode != model.ModeEnforce || len(last.Forced) != 3 || !strings.Contains(strings.Join(last.Forced, "\n"), "cov/batch") {
		t.Errorf("history of the forced promotion: %+v", last)
	}
	var all []model.Promotion
	if err := json.Unmarshal([]byte(e.mustRun("history", "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	if err := model.VerifyPromotions(all); err != nil {
		t.Errorf("history with a forced event: %v", err)
	}
	if out := e.mustRun("status"); !strings.Contains(out, "cov/batch: silent") {
		t.Errorf("status does not name the silent workload:\n%s", out)
	}

	// The rare talker calls: enforcement drops it, as the refusal warned.
	if out, err := e.run("lab", "probe", "--name", e.name, "--from", "cov/batch", "--to", "cov/api", "--no-dns", "--port", "8080", "--timeout", "1s"); err == nil {
		t.Errorf("the rare talker reached api under the forced enforcement:\n%s", out)
	}
	e.mustRun("lab", "probe", "--name", e.name, "--from", "cov/web", "--to", "cov/api", "--no-dns", "--port", "8080")
}

// TestCoverageRefusedPortNotLearned: connections to a port where nothing
// listens (refused: a scan looks the same) are counted as failed, drawn
// as such in the graph, left out of the proposal with the reason, and
// stay closed once the proposal is enforced.
func TestCoverageRefusedPortNotLearned(t *testing.T) {
	e := newAgentEnvFrom(t, "testdata/coverage.yaml", "covscan")
	e.mustRun("lab", "edges", "--name", e.name, "--wait", "40s")
	for range 3 {
		out, err := e.run("lab", "probe", "--name", e.name, "--from", "cov/web", "--to", "cov/api", "--no-dns", "--port", "9999", "--timeout", "1s")
		if err == nil || !strings.Contains(out, "refused") {
			t.Fatalf("probe to a closed port: %v\n%s", err, out)
		}
	}
	var failed graph.Link
	waitFor(t, 10*time.Second, func() error {
		var g graph.Graph
		if err := json.Unmarshal([]byte(e.mustRun("graph", "-o", "json")), &g); err != nil {
			return err
		}
		for _, l := range g.Edges {
			if l.Source == "cov/web" && l.Destination == "cov/api" && l.Port == 9999 && l.Failed >= 3 {
				failed = l
				return nil
			}
		}
		return fmt.Errorf("no cov/web -> cov/api TCP/9999 edge with 3 failed connections in %d edges", len(g.Edges))
	})
	if failed.Reset < 3 || !failed.OnlyFailed() || !strings.Contains(failed.Label, "3 failed") {
		t.Errorf("graph edge to the closed port: %+v, want 3 failed, all reset, and said so in its label", failed)
	}

	out := e.mustRun("policy", "propose")
	if !strings.Contains(out, "left out, because every connection failed") || !strings.Contains(out, "cov/web -> cov/api TCP/9999: 3 connections in the window, all failed (3 refused (reset))") {
		t.Errorf("propose does not say it left the refused port out:\n%s", out)
	}
	for _, w := range []string{"cov/api", "cov/web"} {
		if show := e.mustRun("policy", "show", w, "-o", "yaml"); strings.Contains(show, "9999") || !strings.Contains(show, "8080") {
			t.Errorf("%s proposal allows the refused port, or not the served one:\n%s", w, show)
		}
	}

	// Enforced (forced past the gate: the lab ran for a minute), the port
	// that only refused is closed by policy: dropped, not refused.
	e.mustRun("promote", "--all", "--to", "enforce", "--force", "--reason", "test enforce")
	out, err := e.run("lab", "probe", "--name", e.name, "--from", "cov/web", "--to", "cov/api", "--no-dns", "--port", "9999", "--timeout", "1s")
	if err == nil || strings.Contains(out, "refused") {
		t.Errorf("probe to the refused port under enforcement: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, func() error {
		_, err := e.run("verdicts", "--verdict", "deny", "--from", "cov/web", "--to", "cov/api", "--expect")
		return err
	})
	e.mustRun("lab", "probe", "--name", e.name, "--from", "cov/web", "--to", "cov/api", "--no-dns", "--port", "8080")
	var st []controller.WorkloadStatus
	if err := json.Unmarshal([]byte(e.mustRun("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Workload == "cov/api" && (s.Coverage == nil || s.Coverage.Failed < 3) {
			t.Errorf("status coverage of cov/api: %+v, want its failed connections counted", s.Coverage)
		}
	}
}
