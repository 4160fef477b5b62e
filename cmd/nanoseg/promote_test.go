package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

// runAgainst runs the CLI with args against the API at url.
func runAgainst(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cfg := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.SetArgs(append([]string{"--config", cfg, "--server", url}, args...))
	err := cmd.Execute()
	return out.String(), err
}

// TestPromoteAll: `promote --all` promotes every workload with a revision,
// one recorded event each, through the API server and the Go client.
func TestPromoteAll(t *testing.T) {
	node := &controllertest.Node{}
	mem, svc, ts := testAgent(t, node)
	if out, err := runAgainst(t, ts.URL, "promote", "--all", "--to", "audit", "--reason", "x"); err == nil || !strings.Contains(err.Error(), "no workload has a policy revision") {
		t.Errorf("promote --all without revisions: %v\n%s", err, out)
	}
	for _, app := range []string{"db", "web"} {
		doc := segDoc(app)
		if _, err := svc.ApplyPolicies(app+".yaml", []byte(doc), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runAgainst(t, ts.URL, "promote", "--all", "--to", "audit", "--reason", "everyone")
	if err != nil {
		t.Fatalf("promote --all: %v\n%s", err, out)
	}
	if strings.Count(out, "dataplane converged") != 2 || !strings.Contains(out, "promote shop/db: observe rev 0 -> audit rev 1") {
		t.Errorf("output:\n%s", out)
	}
	for _, w := range []string{"shop/db", "shop/web"} {
		if st, _ := mem.State(w); st.Mode != model.ModeAudit || st.Revision != 1 {
			t.Errorf("%s: %+v", w, st)
		}
	}
	if h, _ := mem.History(""); len(h) != 2 {
		t.Errorf("history has %d events, want 2", len(h))
	}
	if _, err := runAgainst(t, ts.URL, "promote", "--all", "shop/db", "--to", "audit", "--reason", "x"); err == nil {
		t.Error("promote --all with a WORKLOAD accepted")
	}
	// Not converged: recorded, exit code 1.
	node.Errs = map[string]error{"db-0": errFake("boom")}
	out, err = runAgainst(t, ts.URL, "promote", "shop/db", "--to", "enforce", "--reason", "try")
	var ec exitCoder
	if err == nil || !asExitCoder(err, &ec) || ec.ExitCode() != 1 || !strings.Contains(out, "db-0: boom") {
		t.Errorf("promote with a failing endpoint: %v\n%s", err, out)
	}
}

type errFake string

func (e errFake) Error() string { return string(e) }

// TestNegativeRevisionFlags: --revision and --to-revision refuse negative
// numbers before asking the agent, naming the flag (issue 11, item 7).
func TestNegativeRevisionFlags(t *testing.T) {
	mem, svc, ts := testAgent(t, &controllertest.Node{})
	doc := segDoc("db")
	if _, err := svc.ApplyPolicies("db.yaml", []byte(doc), "alice"); err != nil {
		t.Fatal(err)
	}
	if out, err := runAgainst(t, ts.URL, "promote", "shop/db", "--to", "audit", "--reason", "start"); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rollback", "shop/db", "--to-revision", "-5"}, "rollback: --to-revision: -5 is negative"},
		{[]string{"promote", "shop/db", "--to", "enforce", "--revision", "-3", "--reason", "x"}, "promote: --revision: -3 is negative"},
		{[]string{"policy", "show", "shop/db", "--revision", "-1"}, "policy show: --revision: -1 is negative"},
		{[]string{"promote", "shop/db", "--to", "bogus", "--reason", "x"}, `promote: --to: "bogus" is not observe, audit or enforce`},
		{[]string{"promote", "shop/db", "--to", "enforce", "--min-observed", "-5s", "--reason", "x"}, "promote: --min-observed: -5s must not be negative"},
	} {
		if out, err := runAgainst(t, ts.URL, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v\n%s\nwant an error with %q", tc.args, err, out, tc.want)
		}
	}
	if h, _ := mem.History(""); len(h) != 1 {
		t.Errorf("history has %d events after refused commands, want 1", len(h))
	}
	if st, _ := mem.State("shop/db"); st.Mode != model.ModeAudit {
		t.Errorf("state after refused commands = %+v, want audit", st)
	}
}

// TestPromoteAllReportsAlreadyThere: `promote --all` run twice records
// nothing the second time and says which workloads were already there
// (issue 11, item 8).
func TestPromoteAllReportsAlreadyThere(t *testing.T) {
	mem, svc, ts := testAgent(t, &controllertest.Node{})
	for _, app := range []string{"db", "web"} {
		doc := segDoc(app)
		if _, err := svc.ApplyPolicies(app+".yaml", []byte(doc), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runAgainst(t, ts.URL, "promote", "shop/db", "--to", "audit", "--reason", "first"); err != nil {
		t.Fatalf("promote shop/db: %v\n%s", err, out)
	}
	out, err := runAgainst(t, ts.URL, "promote", "--all", "--to", "audit", "--reason", "everyone")
	if err != nil {
		t.Fatalf("promote --all: %v\n%s", err, out)
	}
	if !strings.Contains(out, "promote shop/db: no change: already audit rev 1 (event 1") || !strings.Contains(out, "promote shop/web: observe rev 0 -> audit rev 1") {
		t.Errorf("promote --all output:\n%s", out)
	}
	if !strings.Contains(out, "already there (nothing recorded): shop/db") {
		t.Errorf("promote --all does not list the workloads already there:\n%s", out)
	}
	if h, _ := mem.History(""); len(h) != 2 {
		t.Errorf("history has %d events, want 2 (shop/db once, shop/web once)", len(h))
	}
}

// dropAfter wraps an API handler so that the nth POST /v1/promote loses
// its answer: the connection is closed after the handler ran (commit) or
// before (noCommit). After that, dead makes every request fail the same
// way (the agent is gone).
type dropAfter struct {
	h              http.Handler
	n              int
	noCommit, dead bool

	mu       sync.Mutex
	promotes int
	dropped  bool
}

func (d *dropAfter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	if r.Method == "POST" && r.URL.Path == "/v1/promote" {
		d.promotes++
	}
	drop := d.promotes == d.n && !d.dropped && r.URL.Path == "/v1/promote"
	gone := d.dropped && d.dead
	d.dropped = d.dropped || drop
	d.mu.Unlock()
	if drop && !d.noCommit {
		d.h.ServeHTTP(httptest.NewRecorder(), r) // committed; the answer is lost
	}
	if drop || gone {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	d.h.ServeHTTP(w, r)
}

// TestPromoteAllSaysWhatCommitted: when the connection to the agent drops
// during `promote --all`, the CLI asks the agent's history (when it still
// answers) whether that promotion committed, prints what was promoted,
// what was already there, what failed and what was not attempted, and
// exits non-zero (issue 11, item 6).
func TestPromoteAllSaysWhatCommitted(t *testing.T) {
	for _, tc := range []struct {
		name           string
		noCommit, dead bool
		want           []string
		events         int
	}{
		{"committed, agent still answers", false, false, []string{
			"promote shop/intruder: no answer from the agent (EOF); the agent's history has event 2: it committed",
			"promoted: shop/intruder", "already there (nothing recorded): shop/db", "not attempted: shop/web"}, 2},
		{"not committed, agent still answers", true, false, []string{
			"promote shop/intruder: no answer from the agent (EOF); the agent's history has no such event: not recorded",
			"already there (nothing recorded): shop/db", "failed: shop/intruder", "not attempted: shop/web"}, 1},
		{"committed, agent gone", false, true, []string{
			"promote shop/intruder: no answer from the agent (EOF), and its history cannot be read",
			"already there (nothing recorded): shop/db", "unknown (check `nanoseg history`): shop/intruder", "not attempted: shop/web"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := store.NewMem()
			svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
			for _, app := range []string{"db", "intruder", "web"} {
				doc := segDoc(app)
				if _, err := svc.ApplyPolicies(app+".yaml", []byte(doc), "alice"); err != nil {
					t.Fatal(err)
				}
			}
			// shop/db is in audit already: event 1.
			if _, err := svc.Promote(context.Background(), controller.PromoteRequest{Workload: "shop/db", To: model.ModeAudit, Revision: 1, Reason: "start"}, "alice"); err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(&dropAfter{h: server.New(svc, server.Config{}, nil).Handler(), n: 2, noCommit: tc.noCommit, dead: tc.dead})
			defer ts.Close()
			out, err := runAgainst(t, ts.URL, "promote", "--all", "--to", "audit", "--reason", "everyone")
			if err == nil || !strings.Contains(err.Error(), "not promoted") {
				t.Errorf("promote --all with a lost answer: %v, want an error saying how many were not promoted\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if h, _ := mem.History(""); len(h) != tc.events {
				t.Errorf("history has %d events, want %d", len(h), tc.events)
			}
			if st, _ := mem.State("shop/web"); st.Seq != 0 {
				t.Errorf("shop/web was promoted after the agent stopped answering: %+v", st)
			}
		})
	}
}

// TestPromoteOneSaysWhetherItCommitted: a single promotion whose answer is
// lost is checked against the agent's history too.
func TestPromoteOneSaysWhetherItCommitted(t *testing.T) {
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	doc := segDoc("db")
	if _, err := svc.ApplyPolicies("db.yaml", []byte(doc), "alice"); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(&dropAfter{h: server.New(svc, server.Config{}, nil).Handler(), n: 1})
	defer ts.Close()
	out, err := runAgainst(t, ts.URL, "promote", "shop/db", "--to", "enforce", "--reason", "go")
	if err == nil || !strings.Contains(err.Error(), "promote shop/db: no answer from the agent (EOF); the agent's history has event 1: it committed") {
		t.Errorf("promote with a lost answer: %v\n%s", err, out)
	}
}

// TestReadsWarnWhenFlushFails: `status` and `verdicts` answer from what
// is stored when the agent cannot commit pending observations, and print
// the agent's warning (issue 11, item 11).
func TestReadsWarnWhenFlushFails(t *testing.T) {
	node := &controllertest.Node{FlushErr: errFake("write state.db: no space left on device")}
	mem, _, ts := testAgent(t, node)
	if err := mem.AddVerdicts([]model.VerdictEvent{{At: time.Now(), Verdict: "deny", Source: "shop/intruder", SrcPort: 40000, Destination: "shop/db", Protocol: "tcp", Port: 5432}}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"verdicts"}} {
		out, err := runAgainst(t, ts.URL, args...)
		if err != nil {
			t.Errorf("%v with a failing flush: %v\n%s", args, err, out)
			continue
		}
		if !strings.Contains(out, "warning: ") || !strings.Contains(out, "no space left on device") {
			t.Errorf("%v does not print the agent's warning:\n%s", args, out)
		}
	}
	if out, _ := runAgainst(t, ts.URL, "verdicts"); !strings.Contains(out, "shop/intruder") {
		t.Errorf("verdicts lacks the stored deny:\n%s", out)
	}
}

// TestStatusShowsAdoptedAndRefusedEndpoints (issue 11, items 3 and 4):
// `nanoseg status` shows the mode of an adopted table in the MODE column
// and says so under the table, and names the owner of an endpoint another
// agent manages.
func TestStatusShowsAdoptedAndRefusedEndpoints(t *testing.T) {
	node := &controllertest.Node{
		Adopted: map[string]string{"db-0": "enforce"},
		Errs:    map[string]error{"web-1": errors.New("netns web-1: managed by another nanoseg agent: pid 42")},
		// Counted by the kernel, in no verdict event (e.g. while no agent ran).
		DefaultHits: map[string]map[model.Direction]evidence.Count{"db-0": {model.Ingress: {Packets: 17, Bytes: 1020}}},
	}
	_, _, ts := testAgent(t, node)
	out, err := runAgainst(t, ts.URL, "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	// WORKLOAD MODE REV ENDPOINTS IN-SYNC RULE-HITS NO-RULE WOULD-DENY DENIED
	// OBSERVED NEW-PEER, the mode being two words here.
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[0], "NO RULE (pkts)") || len(lines) < 2 {
		t.Fatalf("status table header:\n%s", out)
	}
	if f := strings.Fields(lines[1]); len(f) != 12 || f[0] != "shop/db" || f[7] != "17" {
		t.Errorf("shop/db row %q: want 17 packets under NO RULE", lines[1])
	}
	for _, want := range []string{
		"enforce (adopted)",
		"shop/db: endpoint db-0: adopted, unknown to the store: enforce",
		"shop/web: endpoint web-1: netns web-1: managed by another nanoseg agent: pid 42",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
}

// TestStatusSeparatesWhatEnforcingWouldBreak: in audit mode, only
// audit-denied attempts are listed as what enforcing would break; attempts
// already denied (here by a policy enforced whatever the workload's mode)
// are listed apart.
func TestStatusSeparatesWhatEnforcingWouldBreak(t *testing.T) {
	mem, svc, ts := testAgent(t, &controllertest.Node{})
	doc := segDoc("db")
	if _, err := svc.ApplyPolicies("db.yaml", []byte(doc), "alice"); err != nil {
		t.Fatal(err)
	}
	if out, err := runAgainst(t, ts.URL, "promote", "shop/db", "--to", "audit", "--reason", "review"); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	now := time.Now().Add(time.Second)
	if err := mem.AddVerdicts([]model.VerdictEvent{
		{At: now, Verdict: model.VerdictAuditDeny, Source: "shop/intruder", SrcPort: 40000, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432},
		{At: now, Verdict: model.VerdictDeny, Source: "shop/web", SrcPort: 40001, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 9090},
	}); err != nil {
		t.Fatal(err)
	}
	out, err := runAgainst(t, ts.URL, "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	// shop/web, never promoted, was denied too (as the source): not "since
	// promotion", which it never had.
	if !strings.Contains(out, "shop/web: denied (never promoted: by a policy enforced whatever its mode):") || strings.Contains(out, "shop/web: denied since") {
		t.Errorf("status of never promoted shop/web:\n%s", out)
	}
	would, denied, ok := strings.Cut(out, "shop/db: denied since promotion at ")
	if !ok || !strings.Contains(would, "shop/db: enforcing would break:") {
		t.Fatalf("status lacks the two lists:\n%s", out)
	}
	_, would, _ = strings.Cut(would, "shop/db: enforcing would break:")
	if !strings.Contains(would, "shop/intruder -> shop/db TCP/5432") || strings.Contains(would, "shop/web") {
		t.Errorf("enforcing would break lists %q, want only the audit-denied attempt", would)
	}
	if !strings.Contains(denied, "shop/web -> shop/db TCP/9090") {
		t.Errorf("denied since promotion lacks the denied attempt:\n%s", out)
	}
}

// testAgent returns an in-memory store, a service over it, node (converging
// at once unless told otherwise) and the shop inventory, and the API over
// that service on a test server closed when t ends.
func testAgent(t *testing.T, node *controllertest.Node) (*store.Mem, *controller.Service, *httptest.Server) {
	t.Helper()
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), node, nil)
	ts := httptest.NewServer(server.New(svc, server.Config{}, nil).Handler())
	t.Cleanup(ts.Close)
	return mem, svc, ts
}

// segDoc is a NanoSegment selecting app in namespace shop, with no rules.
func segDoc(app string) string {
	return "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: " + app + ", namespace: shop}\nspec:\n  selector: {matchLabels: {app: " + app + "}}\n"
}

// cancelAfter wraps an API handler so that the first POST /v1/promote
// cancels the CLI's context once it is carried out, as Ctrl-C during
// `promote --all` does.
type cancelAfter struct {
	h      http.Handler
	cancel context.CancelFunc
}

func (c *cancelAfter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.h.ServeHTTP(w, r)
	if r.Method == "POST" && r.URL.Path == "/v1/promote" {
		c.cancel()
	}
}

// TestPromoteAllInterrupted: Ctrl-C during `promote --all` stops after
// the promotion in flight and says what was and was not done.
func TestPromoteAllInterrupted(t *testing.T) {
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	for _, app := range []string{"db", "intruder", "web"} {
		if _, err := svc.ApplyPolicies(app+".yaml", []byte(segDoc(app)), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := httptest.NewServer(&cancelAfter{h: server.New(svc, server.Config{}, nil).Handler(), cancel: cancel})
	defer ts.Close()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cfg := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.SetArgs([]string{"--config", cfg, "--server", ts.URL, "promote", "--all", "--to", "audit", "--reason", "everyone"})
	err := cmd.ExecuteContext(ctx)
	if err == nil || !strings.Contains(err.Error(), "2 of 3 workloads not promoted (2 not attempted)") {
		t.Errorf("promote --all interrupted: %v", err)
	}
	for _, want := range []string{"interrupted: stopped after the promotion in flight", "promoted: shop/db\n", "not attempted: shop/intruder, shop/web\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if h, _ := mem.History(""); len(h) != 1 {
		t.Errorf("history has %d events, want 1", len(h))
	}
}
