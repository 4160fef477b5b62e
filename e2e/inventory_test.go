//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/model"
)

// TestAgentPicksUpEndpoints runs the agent on a labels file that names a
// network namespace which does not exist yet, creates it, and checks that
// the agent picks it up (observe-mode table programmed) and drops it again
// when it disappears.
func TestAgentPicksUpEndpoints(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	name := uniqueName(nettest.Prefix + "inv")
	labels := filepath.Join(dir, "labels.yaml")
	if err := os.WriteFile(labels, []byte(fmt.Sprintf(`namespaces: [{name: web, labels: {team: web}}]
endpoints:
  - netns: %s
    namespace: web
    workload: site
    labels: {app: site}
    addrs: [198.18.250.1]
    ports: [{name: http, port: 8080}]
`, name)), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(bin, "agent", "--labels", labels, "--state-file", filepath.Join(dir, "state.db"), "--socket", sock, "--metrics-addr", "")
	logf, _ := os.Create(filepath.Join(dir, "agent.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = nsenter.DeleteNamed(name)
		if t.Failed() {
			raw, _ := os.ReadFile(logf.Name())
			t.Logf("agent log:\n%s", raw)
		}
	})
	env := []string{"NANOSEG_SERVER=" + sock}
	inventory := func() []model.Endpoint {
		out, err := nanoseg(t, dir, env, "status", "-o", "json")
		if err != nil {
			return nil
		}
		var st []controller.WorkloadStatus
		_ = json.Unmarshal([]byte(out), &st)
		var eps []model.Endpoint
		for _, s := range st {
			for _, e := range s.Endpoints {
				eps = append(eps, model.Endpoint{Netns: e.Netns, Workload: s.Workload})
			}
		}
		return eps
	}
	waitFor(t, 10*time.Second, func() error {
		if c, err := net.Dial("unix", sock); err != nil {
			return err
		} else {
			c.Close()
		}
		if eps := inventory(); len(eps) != 0 {
			return fmt.Errorf("inventory before the netns exists: %v", eps)
		}
		return nil
	})

	h, err := nsenter.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	waitFor(t, 10*time.Second, func() error {
		eps := inventory()
		if len(eps) != 1 || eps[0].Netns != name || eps[0].Workload != "web/site" {
			return fmt.Errorf("inventory after the netns appeared: %v", eps)
		}
		st, err := dataplane.New(nil).Read(nsenter.Path(name))
		if err != nil || !st.Present || st.RuleSet.Mode != model.ModeObserve {
			return fmt.Errorf("table in the new netns: %+v, %v", st, err)
		}
		return nil
	})

	// Deleted and created again under the same name at once: a new
	// namespace, which gets its own table.
	if err := nsenter.DeleteNamed(name); err != nil {
		t.Fatal(err)
	}
	if h, err = nsenter.NewNamed(name); err != nil {
		t.Fatal(err)
	}
	h.Close()
	waitFor(t, 10*time.Second, func() error {
		st, err := dataplane.New(nil).Read(nsenter.Path(name))
		if err != nil || !st.Present {
			return fmt.Errorf("table in the re-created netns: %+v, %v", st, err)
		}
		return nil
	})

	if err := nsenter.DeleteNamed(name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		if eps := inventory(); len(eps) != 0 {
			return fmt.Errorf("inventory after the netns disappeared: %v", eps)
		}
		return nil
	})
}
