package main

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/evidence"
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

// TestStatusShowsAdoptedAndRefusedEndpoints (issue 11, items 3 and 4):
// `nanoseg status` shows the mode of an adopted table in the MODE column
// and says so under the table, and names the owner of an endpoint another
// agent manages.
func TestStatusShowsAdoptedAndRefusedEndpoints(t *testing.T) {
	mem := store.NewMem()
	node := &controllertest.Node{
		Adopted: map[string]string{"db-0": "enforce"},
		Errs:    map[string]error{"web-1": errors.New("netns web-1: managed by another nanoseg agent: pid 42")},
		// Counted by the kernel, in no verdict event (e.g. while no agent ran).
		DefaultHits: map[string]map[string]evidence.Count{"db-0": {"ingress": {Packets: 17, Bytes: 1020}}},
	}
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), node, nil)
	ts := httptest.NewServer(server.New(svc, server.Config{}, nil).Handler())
	defer ts.Close()
	out, err := runAgainst(t, ts.URL, "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	// WORKLOAD MODE REV ENDPOINTS IN-SYNC RULE-HITS NO-RULE WOULD-DENY DENIED,
	// the mode being two words here.
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[0], "NO RULE (pkts)") || len(lines) < 2 {
		t.Fatalf("status table header:\n%s", out)
	}
	if f := strings.Fields(lines[1]); len(f) != 10 || f[0] != "shop/db" || f[7] != "17" {
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
