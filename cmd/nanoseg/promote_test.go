package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
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
	mem := store.NewMem()
	node := &controllertest.Node{}
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), node, nil)
	ts := httptest.NewServer(server.New(svc, server.Config{}, nil).Handler())
	defer ts.Close()
	if out, err := runAgainst(t, ts.URL, "promote", "--all", "--to", "audit", "--reason", "x"); err == nil || !strings.Contains(err.Error(), "no workload has a policy revision") {
		t.Errorf("promote --all without revisions: %v\n%s", err, out)
	}
	for _, app := range []string{"db", "web"} {
		doc := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: " + app + ", namespace: shop}\nspec:\n  selector: {matchLabels: {app: " + app + "}}\n"
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
		if st, _ := mem.State(w); st.Mode != v1alpha1.ModeAudit || st.Revision != 1 {
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
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	ts := httptest.NewServer(server.New(svc, server.Config{}, nil).Handler())
	defer ts.Close()
	doc := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n"
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
	} {
		if out, err := runAgainst(t, ts.URL, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v\n%s\nwant an error with %q", tc.args, err, out, tc.want)
		}
	}
	if h, _ := mem.History(""); len(h) != 1 {
		t.Errorf("history has %d events after refused commands, want 1", len(h))
	}
	if st, _ := mem.State("shop/db"); st.Mode != v1alpha1.ModeAudit {
		t.Errorf("state after refused commands = %+v, want audit", st)
	}
}

// TestPromoteAllReportsAlreadyThere: `promote --all` run twice records
// nothing the second time and says which workloads were already there
// (issue 11, item 8).
func TestPromoteAllReportsAlreadyThere(t *testing.T) {
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	ts := httptest.NewServer(server.New(svc, server.Config{}, nil).Handler())
	defer ts.Close()
	for _, app := range []string{"db", "web"} {
		doc := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: " + app + ", namespace: shop}\nspec:\n  selector: {matchLabels: {app: " + app + "}}\n"
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
