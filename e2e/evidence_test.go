//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/model"
)

// TestEvidence runs the compliance evidence path on the shop lab after
// enforcement: live verification finds no mismatch; exports hold every
// section with values that agree with what the test did (rule counters
// with the connections it made, denied flows with the intruder's attempts);
// `evidence verify` accepts the bundles, their chain and the agent's key,
// and names the file a one-byte edit touched; a rule removed by hand from
// one endpoint's table shows as drift in the next export and as a probe
// mismatch in `nanoseg verify`.
func TestEvidence(t *testing.T) {
	requireRoot(t)
	name := uniqueName("ev")
	state := t.TempDir()
	work := t.TempDir()
	topo := labCopy(t, "../manifests/lab/shop.yaml", name)
	sock := filepath.Join(work, "agent.sock")
	stateFile := filepath.Join(work, "agent", "state.db")
	var agent *exec.Cmd
	t.Cleanup(func() {
		if agent != nil && agent.Process != nil {
			_ = agent.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = agent.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = agent.Process.Kill()
				<-done
			}
		}
		if out, err := nanoseg(t, state, nil, "lab", "down", "--name", name); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
		if left := labLeftovers(t, state, name); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
	if out, err := nanoseg(t, state, nil, "lab", "up", "-f", topo); err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	agentLog := filepath.Join(work, "agent.log")
	logf, err := os.Create(agentLog)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	agent = exec.Command(bin, "agent", "--lab", name, "--state-file", stateFile, "--socket", sock, "--metrics-addr", "")
	agent.Env = append(os.Environ(), "NANOSEG_LAB_STATEDIR="+state, "NANOSEG_AGENT_DRIFTINTERVAL=1h")
	agent.Stdout, agent.Stderr = logf, logf
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			raw, _ := os.ReadFile(agentLog)
			t.Logf("agent log:\n%s", raw)
		}
	})
	api := client.New(sock, "")
	deadline := time.Now().Add(15 * time.Second)
	for {
		var eps []model.Endpoint
		err := api.Do(context.Background(), "GET", "/v1/inventory", nil, nil, &eps)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent API did not come up: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(8 * time.Second) // observe every scheduled talk a few times
	if err := api.Do(context.Background(), "POST", "/v1/propose", nil, nil, nil); err != nil {
		t.Fatalf("propose: %v", err)
	}
	cli := func(args ...string) (string, error) {
		return nanoseg(t, state, nil, append([]string{"--server", sock}, args...)...)
	}
	if out, err := cli("promote", "--all", "--to", "enforce", "--force", "--reason", "e2e evidence"); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}

	plan, err := lab.LoadPlan(lab.Config{StateDir: state}, name)
	if err != nil {
		t.Fatal(err)
	}
	one := func(ref string) lab.Endpoint {
		eps := plan.Find(ref)
		if len(eps) == 0 {
			t.Fatalf("no endpoint %s", ref)
		}
		return eps[0]
	}
	apiEp, dbEp, intruderEp := one("shop/api"), one("shop/db"), one("shop/intruder")

	// The intruder tries the database: denied.
	ic, err := lab.NewClient(plan, intruderEp)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if c, err := ic.Dial("tcp", netip.AddrPortFrom(dbEp.IPv4, 5432).String(), 500*time.Millisecond); err == nil {
			c.Close()
			t.Fatal("the intruder reached shop/db:5432 after enforcement")
		}
	}
	ic.Close()

	out, err := cli("verify", "--parallel", "16")
	if err != nil {
		t.Fatalf("verify after enforcement: %v\n%s", err, out)
	}
	if !strings.Contains(out, " 0 mismatches") {
		t.Fatalf("verify output: %s", out)
	}

	export := func(dir string, args ...string) string {
		t.Helper()
		out, err := cli(append([]string{"evidence", "export", "--out", dir}, args...)...)
		if err != nil {
			t.Fatalf("evidence export %s: %v\n%s", dir, err, out)
		}
		return out
	}
	readBundle := func(dir string) evidence.Bundle {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(dir, "bundle.json"))
		if err != nil {
			t.Fatal(err)
		}
		var b evidence.Bundle
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b1Dir, b2Dir, b3Dir := filepath.Join(work, "b1"), filepath.Join(work, "b2"), filepath.Join(work, "b3")

	// Counters: a snapshot (b1), then connections the test makes from
	// shop/api to shop/db:5432, then b2 over a window that starts before
	// b1. The database's rule for api must count them, plus the lab's own
	// api → db talks in between (from the lab's stats files).
	export(b1Dir, "--no-probes", "--no-pdf")
	talksBefore := talkOK(t, state, name, plan)
	ac, err := lab.NewClient(plan, apiEp)
	if err != nil {
		t.Fatal(err)
	}
	const made = 25
	for i := 0; i < made; i++ {
		if _, err := ac.Talk(context.Background(), dbEp.IPv4.String(), 5432, "TCP", 4, 0, 2*time.Second); err != nil {
			t.Fatalf("api -> db:5432 after enforcement: %v", err)
		}
	}
	ac.Close()
	export(b2Dir, "--no-probes", "--no-pdf", "--window", "10m")
	talksAfter := talkOK(t, state, name, plan)
	b2 := readBundle(b2Dir)
	ruleID := ""
	for _, r := range b2.Rules {
		if r.Netns != dbEp.Netns {
			continue
		}
		for _, p := range r.Programmed {
			if p.Direction == "Ingress" && p.Peer == apiEp.IPv4.String()+"/32" && p.Protocol == "TCP" && p.PortFrom <= 5432 && p.PortTo >= 5432 {
				ruleID = p.RuleID
			}
		}
	}
	if ruleID == "" {
		t.Fatalf("b2 has no programmed ingress entry for shop/api on shop/db:5432: %+v", b2.Rules)
	}
	var got *evidence.RuleCounter
	for i, c := range b2.Counters.Rules {
		if c.Netns == dbEp.Netns && c.RuleID == ruleID {
			got = &b2.Counters.Rules[i]
		}
	}
	if got == nil || got.Baseline != "snapshot" {
		t.Fatalf("b2 counter of %s at %s: %+v", ruleID, dbEp.Netns, got)
	}
	background := int64(0)
	for key, n := range talksAfter {
		if key.to == "shop/db" && (key.port == 5432) && key.from == apiEp.Netns {
			background += int64(n - talksBefore[key])
		}
	}
	want := int64(made) + background
	t.Logf("db rule %s: %d packets in the window from %s; the test made %d connections, the lab %d", ruleID, got.WindowPackets,
		got.CountedFrom.Format(time.RFC3339), made, background)
	if d := int64(got.WindowPackets) - want; got.WindowPackets < made || d < -3 || d > 3 {
		t.Errorf("db rule %s counted %d packets in the window; the test made %d connections and the lab %d more (want %d ± 3)",
			ruleID, got.WindowPackets, made, background, want)
	}

	// b3: the full bundle, with probes and the report.
	export(b3Dir, "--window", "10m", "--tar")
	b3 := readBundle(b3Dir)
	if len(b3.Inventory) != 7 {
		t.Errorf("inventory has %d workloads, want 7", len(b3.Inventory))
	}
	if len(b3.Policies.Active) != 7 || !b3.Policies.Chain.Verified || len(b3.Policies.History) != 7 {
		t.Errorf("policies: %d active, %d history events, chain %+v", len(b3.Policies.Active), len(b3.Policies.History), b3.Policies.Chain)
	}
	for _, a := range b3.Policies.Active {
		if a.Mode != "enforce" || a.PromotedBy == "" || a.Reason != "e2e evidence" {
			t.Errorf("active revision %+v", a)
		}
	}
	for _, r := range b3.Rules {
		if !r.InSync || !r.Present || len(r.Drift) > 0 {
			t.Errorf("endpoint %s drifted before anything was changed: %v", r.Netns, r.Drift)
		}
	}
	intruderDenied := 0
	for _, f := range b3.Denied.Flows {
		if f.Verdict == "deny" && f.Source == "shop/intruder" && f.Destination == "shop/db" && f.Port == 5432 {
			intruderDenied += f.Count
		}
	}
	if intruderDenied < 3 {
		t.Errorf("denied flows hold %d intruder -> shop/db:5432 events, want at least 3: %+v", intruderDenied, b3.Denied.Flows)
	}
	if r := b3.Reachability; r.PathsBefore != r.PathsTotal || r.PathsNow == 0 || r.PathsNow >= r.PathsBefore || r.PathsAuditOnly != 0 {
		t.Errorf("reachability %d total, %d before, %d now, %d audit-only", r.PathsTotal, r.PathsBefore, r.PathsNow, r.PathsAuditOnly)
	}
	if p := b3.Probes; p == nil || p.Mismatches != 0 || p.Probed == 0 || p.ExpectedAllowed == 0 || p.ExpectedDenied == 0 {
		t.Errorf("probes in b3: %+v", p)
	}
	for _, f := range []string{"report.html", "inventory.csv", "rules.csv", "counters.csv", "denied.csv", "reachability.csv", "probes.csv", "history.json"} {
		if _, err := os.Stat(filepath.Join(b3Dir, f)); err != nil {
			t.Errorf("b3 lacks %s", f)
		}
	}
	pub := filepath.Join(filepath.Dir(stateFile), "evidence", "signing.key.pub")
	if st, err := os.Stat(filepath.Join(filepath.Dir(stateFile), "evidence", "signing.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("signing key: %v %v", st, err)
	}
	for _, c := range [][]string{
		{b2Dir, "--previous", b1Dir, "--public-key", pub},
		{b3Dir, "--previous", b2Dir, "--public-key", pub},
		{b3Dir + ".tar.gz", "--previous", b2Dir},
	} {
		out, err := nanoseg(t, state, nil, append([]string{"evidence", "verify"}, c...)...)
		if err != nil || !strings.Contains(out, "OK:") || !strings.Contains(out, "linked to the previous bundle") {
			t.Errorf("evidence verify %v: %v\n%s", c, err, out)
		}
	}
	// A gap in the series and a one-byte edit are named.
	if out, err := nanoseg(t, state, nil, "evidence", "verify", b3Dir, "--previous", b1Dir); err == nil || !strings.Contains(out, "manifest.json") {
		t.Errorf("b3 verified against b1 (a gap): %v\n%s", err, out)
	}
	p := filepath.Join(b3Dir, "counters.csv")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x01
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := nanoseg(t, state, nil, "evidence", "verify", b3Dir); err == nil || !strings.Contains(out, "counters.csv") {
		t.Errorf("edited counters.csv verified: %v\n%s", err, out)
	}

	// A rule removed behind nanoseg's back: shop/db no longer admits
	// shop/api on 5432. The agent's drift repair runs hourly here.
	removed := deleteEntries(t, dbEp.Netns, []netip.Addr{apiEp.IPv4, apiEp.IPv6}, 5432)
	if removed == 0 {
		t.Fatal("found no map element for shop/api on shop/db:5432")
	}
	b4Dir := filepath.Join(work, "b4")
	out = export(b4Dir, "--no-probes", "--no-pdf")
	b4 := readBundle(b4Dir)
	drifted := false
	for _, r := range b4.Rules {
		if r.Netns == dbEp.Netns {
			drifted = !r.InSync && len(r.Missing) == removed && strings.Contains(strings.Join(r.Drift, "\n"), "missing entry")
		} else if !r.InSync {
			t.Errorf("endpoint %s drifted too: %v", r.Netns, r.Drift)
		}
	}
	if !drifted || !strings.Contains(out, "drift: "+dbEp.Netns) {
		t.Errorf("b4 does not show shop/db's removed rule as drift:\n%s", out)
	}
	out, err = cli("verify", "--parallel", "16")
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("verify after removing a rule: %v\n%s", err, out)
	}
	if !strings.Contains(out, "MISMATCH") || !strings.Contains(out, "finding: shop/api -> shop/db 5432/TCP") {
		t.Errorf("verify does not report the api -> db:5432 mismatch:\n%s", out)
	}
}

// talkKey identifies one scheduled talk of the lab.
type talkKey struct {
	from, to string // netns, workload key
	port     int
}

// talkOK reads the lab's stats files: successful connections per talk.
func talkOK(t *testing.T, state, name string, plan *lab.Plan) map[talkKey]uint64 {
	t.Helper()
	out := map[talkKey]uint64{}
	c := lab.Config{StateDir: state}
	for _, e := range plan.Endpoints {
		raw, err := os.ReadFile(c.StatsPath(name, e))
		if err != nil {
			continue
		}
		var s lab.Stats
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		for _, tk := range s.Talks {
			to := tk.To
			if !strings.Contains(to, "/") && !strings.Contains(to, ".") {
				to = e.Namespace + "/" + to
			}
			out[talkKey{e.Netns, to, tk.Port}] += tk.OK
		}
	}
	return out
}

// deleteEntries deletes from the verdict maps of netns's nanoseg table
// every element whose peer starts at one of addrs and whose port range
// holds port, in one transaction, and returns how many it deleted.
func deleteEntries(t *testing.T, netns string, addrs []netip.Addr, port uint16) int {
	t.Helper()
	f, err := os.Open("/run/netns/" + netns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: dataplane.TableName}
	n := 0
	for _, setName := range []string{dataplane.SetIngressExact4, dataplane.SetIngressExact6, dataplane.SetIngress4, dataplane.SetIngress6} {
		set, err := c.GetSetByName(table, setName)
		if err != nil {
			t.Fatalf("get set %s: %v", setName, err)
		}
		els, err := c.GetSetElements(set)
		if err != nil {
			t.Fatalf("get elements of %s: %v", setName, err)
		}
		var del []nftables.SetElement
		for _, el := range els {
			for _, a := range addrs {
				raw := a.AsSlice()
				if len(el.Key) < len(raw)+8 || !bytes.Equal(el.Key[:len(raw)], raw) {
					continue
				}
				// Exact maps hold single keys; interval maps key ranges.
				lo := binary.BigEndian.Uint16(el.Key[len(raw)+4:])
				hi := lo
				if len(el.KeyEnd) >= len(raw)+6 {
					hi = binary.BigEndian.Uint16(el.KeyEnd[len(raw)+4:])
				}
				if lo <= port && port <= hi {
					del = append(del, el)
				}
			}
		}
		if len(del) > 0 {
			if err := c.SetDeleteElements(set, del); err != nil {
				t.Fatalf("delete elements of %s: %v", setName, err)
			}
			n += len(del)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("flush deletion in %s: %v", netns, err)
	}
	return n
}
