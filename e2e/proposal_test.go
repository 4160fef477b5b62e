//go:build linux

package e2e

// The shapes of a proposal on labs built for each case, with real
// connections before and after enforcement: shared servers (a metrics
// gateway, DNS) stay reachable by a client that was silent while the
// agent learned, spread-out ports become a range bounded by the server's
// declared ports, and a workload added later with a label of an enforced
// one is not captured (and when a hand-written selector does capture it,
// status and the agent log say so).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// newTopologyEnv is newAgentEnv on the topology text topo (its name line
// "name: %s" filled with the env's lab name).
func newTopologyEnv(t *testing.T, prefix, topo string, extra ...string) *agentEnv {
	t.Helper()
	requireRoot(t)
	e := &agentEnv{t: t, name: uniqueName(prefix), labState: t.TempDir(), dir: t.TempDir(), extra: extra}
	e.sock = filepath.Join(e.dir, "agent.sock")
	var err error
	if e.logf, err = os.Create(filepath.Join(e.dir, "agent.log")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, "topology.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(topo, e.name)), 0o644); err != nil {
		t.Fatal(err)
	}
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
	e.mustRun("lab", "up", "-f", path)
	return e
}

// proposal returns the latest revision of workload's nanosegment.
func (e *agentEnv) proposal(workload string) *v1alpha1.NanoSegment {
	e.t.Helper()
	dir := filepath.Join(e.dir, "policies")
	raw, err := os.ReadFile(filepath.Join(dir, strings.ReplaceAll(workload, "/", "_")+".yaml"))
	if err != nil {
		e.t.Fatalf("proposal of %s: %v", workload, err)
	}
	var seg v1alpha1.NanoSegment
	if err := yaml.Unmarshal(raw, &seg); err != nil {
		e.t.Fatalf("proposal of %s: %v\n%s", workload, err, raw)
	}
	return &seg
}

func (e *agentEnv) probe(from, to string, port int, wantOK bool, more ...string) {
	e.t.Helper()
	args := append([]string{"lab", "probe", "--name", e.name, "--from", from, "--to", to, "--port", fmt.Sprint(port), "--timeout", "1s"}, more...)
	out, err := e.run(args...)
	if (err == nil) != wantOK {
		e.t.Errorf("probe %s -> %s:%d: want ok=%v, got: %v\n%s", from, to, port, wantOK, err, out)
	}
}

const sharedTopology = `kind: LabTopology
name: %s
dns: kube-system/dns
namespaces:
  - {name: kube-system, labels: {kubernetes.io/metadata.name: kube-system}}
  - {name: monitoring, labels: {kubernetes.io/metadata.name: monitoring}}
  - {name: team-a, labels: {kubernetes.io/metadata.name: team-a, tenant: "yes"}}
  - {name: team-b, labels: {kubernetes.io/metadata.name: team-b, tenant: "yes"}}
  - {name: team-c, labels: {kubernetes.io/metadata.name: team-c, tenant: "yes"}}
workloads:
  - name: dns
    namespace: kube-system
    labels: {k8s-app: kube-dns}
    ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]
  - name: gateway
    namespace: monitoring
    labels: {app: gateway}
    ports: [{name: push, port: 9091}, {name: admin, port: 9100}]
  - name: files
    namespace: team-a
    labels: {app: files}
    ports:
      - {port: 8000}
      - {port: 8001}
      - {port: 8002}
      - {port: 8003}
      - {port: 8004}
      - {port: 8005}
      - {port: 8006}
      - {port: 8007}
      - {port: 8008}
      - {port: 8009}
  - name: a
    namespace: team-a
    labels: {app: a}
    talks:
      - {to: monitoring/gateway, port: push, every: 1s}
      - {to: monitoring/gateway, port: admin, every: 1s}
      - {to: files, port: 8000, every: 1s}
      - {to: files, port: 8001, every: 1s}
      - {to: files, port: 8003, every: 1s}
      - {to: files, port: 8004, every: 1s}
      - {to: files, port: 8006, every: 1s}
      - {to: files, port: 8009, every: 1s}
  - name: b
    namespace: team-b
    labels: {app: b}
    talks: [{to: monitoring/gateway, port: push, every: 1s}]
  - name: c
    namespace: team-c
    labels: {app: c}
    talks: [{to: monitoring/gateway, port: push, every: 1s}]
  - name: quiet
    namespace: team-c
    labels: {app: quiet}
    ports: [{name: http, port: 8080}]
`

// TestProposalSharedServersAndRanges: a gateway pushed to from three
// namespaces and the DNS server are proposed as shared (with the clients
// as evidence); a client silent while the agent learned resolves and
// pushes after everything proposed is enforced, and is still kept off
// the gateway's admin port that one client used. Six spread-out ports of
// a server that declares ten become one range, and a declared port never
// seen works after enforcement.
func TestProposalSharedServersAndRanges(t *testing.T) {
	e := newTopologyEnv(t, "shr", sharedTopology)
	e.startAgent()
	e.mustRun("lab", "edges", "--name", e.name, "--wait", "40s")
	out := e.mustRun("policy", "propose", "--out", filepath.Join(e.dir, "policies"))
	for _, want := range []string{"widened beyond what was observed", "monitoring/gateway from-namespaces-tenant-yes", "clients seen: team-a/a, team-b/b, team-c/c",
		"kube-system/dns from-any-namespace-dns", "team-a/files from-a", "ports seen: TCP/8000, TCP/8001, TCP/8003"} {
		if !strings.Contains(out, want) {
			t.Errorf("propose output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, "policies", "team-c_quiet.yaml")); err == nil {
		t.Errorf("the silent workload got a proposal:\n%s", out)
	}
	gw := e.proposal("monitoring/gateway")
	var shared, admin *v1alpha1.Rule
	for i, r := range gw.Spec.Ingress {
		switch r.ID {
		case "from-namespaces-tenant-yes":
			shared = &gw.Spec.Ingress[i]
		case "from-team-a-a":
			admin = &gw.Spec.Ingress[i]
		}
	}
	if shared == nil || admin == nil || shared.Provenance.Widened == nil || len(shared.Provenance.Widened.Clients) != 3 ||
		shared.Peers[0].NamespaceSelector == nil || shared.Peers[0].NamespaceSelector.MatchLabels["tenant"] != "yes" {
		t.Fatalf("gateway proposal: %+v", gw.Spec.Ingress)
	}
	files := e.proposal("team-a/files")
	if p := files.Spec.Ingress[0].Ports; len(p) != 1 || p[0].Port.IntVal != 8000 || p[0].EndPort == nil || *p[0].EndPort != 8009 {
		t.Errorf("files ingress ports: %+v", files.Spec.Ingress[0].Ports)
	}
	if !strings.Contains(gw.Annotations["nanoseg.io/review"], "shared-server") {
		t.Errorf("gateway review annotation: %v", gw.Annotations)
	}

	// Forced: the coverage gate asks for more than the test's ~40 s of
	// observation (and quiet is silent on purpose).
	e.mustRun("promote", "--all", "--to", "enforce", "--force", "--reason", "test shared servers")
	e.mustRun("lab", "check", "--name", e.name)
	// The silent client: resolves (DNS ingress from any pod), pushes
	// (shared port), and is kept off the admin port only a used.
	e.probe("team-c/quiet", "monitoring/gateway", 9091, true)
	e.probe("team-c/quiet", "monitoring/gateway", 9100, false)
	e.probe("team-c/quiet", "monitoring/gateway", 9100, false, "--no-dns")
	// A declared port of files that a never used: inside the range.
	e.probe("team-a/a", "team-a/files", 8005, true)
	// b never used files: its egress policy refuses.
	e.probe("team-b/b", "team-a/files", 8005, false, "--no-dns")
	st := e.status()
	if s := st["monitoring/gateway"]; s.Mode != model.ModeEnforce {
		t.Errorf("gateway status %+v", s)
	}
}

const captureTopology = `kind: LabTopology
name: %s
dns: kube-system/dns
namespaces:
  - {name: kube-system, labels: {kubernetes.io/metadata.name: kube-system}}
  - {name: shop, labels: {kubernetes.io/metadata.name: shop}}
workloads:
  - name: dns
    namespace: kube-system
    labels: {k8s-app: kube-dns}
    ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]
  - name: web-v1
    namespace: shop
    labels: {app: web, version: v1}
    ports: [{name: http, port: 80}]
  - name: web-v2
    namespace: shop
    labels: {app: web, version: v2}
    ports: [{name: http, port: 80}]
  - name: client
    namespace: shop
    labels: {app: client}
    talks: [{to: web-v1, port: http, every: 1s}, {to: web-v2, port: http, every: 1s}]
`

// laterTopology is a second lab whose endpoints join the agent's
// inventory through a labels file: a workload deployed after web's
// policies are enforced. Its addresses are pinned away from the first
// lab's.
const laterTopology = `kind: LabTopology
name: %s
dns: infra/resolver
namespaces:
  - {name: infra, labels: {kubernetes.io/metadata.name: infra}}
  - {name: shop, labels: {kubernetes.io/metadata.name: shop}}
workloads:
  - name: resolver
    namespace: infra
    labels: {app: resolver}
    ports: [{name: dns, port: 53, protocol: UDP}]
    ipv4: 198.18.222.1
    ipv6: 2001:db8:18:222::1
  - name: api-v1
    namespace: shop
    labels: {app: api, version: v1}
    ports: [{name: http, port: 8080}]
    ipv4: 198.18.222.2
    ipv6: 2001:db8:18:222::2
  - name: apiclient
    namespace: shop
    labels: {app: apiclient}
    ipv4: 198.18.222.3
    ipv6: 2001:db8:18:222::3
    talks: [{to: api-v1, port: http, every: 1s}]
`

// labelsFileOf writes the endpoints of lab name (state in stateDir) as a
// labels file at path.
func labelsFileOf(t *testing.T, stateDir, name, path string) {
	t.Helper()
	p, err := lab.LoadPlan(lab.Config{StateDir: stateDir}, name)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("endpoints:\n")
	for _, ep := range p.Endpoints {
		if ep.External {
			continue
		}
		labels, _ := json.Marshal(ep.Labels)
		var ports []string
		for _, pt := range ep.Ports {
			ports = append(ports, fmt.Sprintf("{name: %q, port: %d, protocol: %s}", pt.Name, pt.Port, strings.ToUpper(cmpOr(pt.Protocol, "TCP"))))
		}
		fmt.Fprintf(&b, "  - {netns: %s, namespace: %s, workload: %s, labels: %s, addrs: [%q, %q], ports: [%s]}\n",
			ep.Netns, ep.Namespace, ep.Workload, labels, ep.IPv4.String(), ep.IPv6.String(), strings.Join(ports, ", "))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestProposalNoCapture is the case: two versions of web are
// proposed and enforced; a workload {app: api, version: v1} deployed
// later is not selected by web-v1's policy (it stays observe, its client
// reaches it, status says so). Then a hand-written web-v1 policy selecting
// {version: v1} is enforced: the later workload is captured, its client
// is denied, and status and the agent log name the policy; rolling back
// ends the capture.
func TestProposalNoCapture(t *testing.T) {
	labels := filepath.Join(t.TempDir(), "later.yaml")
	if err := os.WriteFile(labels, []byte("endpoints: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newTopologyEnv(t, "cap", captureTopology, "--labels", labels)
	later := newTopologyEnv(t, "late", laterTopology)
	e.startAgent()
	e.mustRun("lab", "edges", "--name", e.name, "--wait", "40s")
	e.mustRun("policy", "propose", "--out", filepath.Join(e.dir, "policies"))
	v1 := e.proposal("shop/web-v1")
	if v1.Name != "web-v1" || v1.Spec.Selector.MatchLabels["app"] != "web" || v1.Spec.Selector.MatchLabels["version"] != "v1" {
		t.Fatalf("web-v1 proposal: name %s selector %v", v1.Name, v1.Spec.Selector)
	}
	e.mustRun("promote", "--all", "--to", "enforce", "--force", "--reason", "test capture (short observation)")

	// The later workload appears.
	labelsFileOf(t, later.labState, later.name, labels)
	waitFor(t, 15*time.Second, func() error {
		st := e.status()["shop/api-v1"]
		if len(st.Endpoints) != 1 || !st.Endpoints[0].InSync {
			return fmt.Errorf("shop/api-v1 not in the inventory or not programmed: %+v", st)
		}
		return nil
	})
	st := e.status()["shop/api-v1"]
	if len(st.CapturedBy) != 0 || st.EffectiveMode != model.ModeObserve {
		t.Errorf("proposed policies capture the later workload: %+v", st)
	}
	later.probe("shop/apiclient", "shop/api-v1", 8080, true)

	// A hand-written selector that drops app: web captures it.
	handWritten := `apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: v1, namespace: shop}
spec:
  selector: {matchLabels: {version: v1}}
  ingress:
    - id: from-client
      peers: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: 80}]
`
	// Applying it now is refused: it selects two workloads.
	hw := filepath.Join(e.dir, "v1.yaml")
	if err := os.WriteFile(hw, []byte(handWritten), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := e.run("policy", "apply", "-f", hw); err == nil || !strings.Contains(out, "selects 2 workloads") {
		t.Fatalf("apply of a selector that selects two workloads: %v\n%s", err, out)
	}
	// Applied while the later workload is away, then it comes back.
	if err := os.WriteFile(labels, []byte("endpoints: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, func() error {
		if _, ok := e.status()["shop/api-v1"]; ok {
			return fmt.Errorf("shop/api-v1 still in the inventory")
		}
		return nil
	})
	e.mustRun("policy", "apply", "-f", hw)
	e.mustRun("promote", "shop/web-v1", "--to", "enforce", "--reason", "hand-written selector")
	labelsFileOf(t, later.labState, later.name, labels)
	waitFor(t, 15*time.Second, func() error {
		st := e.status()["shop/api-v1"]
		if len(st.CapturedBy) != 1 || st.CapturedBy[0].Workload != "shop/web-v1" || st.EffectiveMode != model.ModeEnforce {
			return fmt.Errorf("shop/api-v1 not shown as captured: %+v", st)
		}
		if len(st.Endpoints) != 1 || !st.Endpoints[0].InSync {
			return fmt.Errorf("shop/api-v1 not programmed: %+v", st)
		}
		return nil
	})
	table := e.mustRun("status")
	if !strings.Contains(table, "enforce (captured)") || !strings.Contains(table, "shop/api-v1 is captured") || !strings.Contains(table, "nanosegment shop/v1 of shop/web-v1") {
		t.Errorf("status table does not show the capture:\n%s", table)
	}
	later.probe("shop/apiclient", "shop/api-v1", 8080, false, "--no-dns")
	waitFor(t, 10*time.Second, func() error {
		out, err := e.run("verdicts", "--verdict", "deny", "--to", "shop/api-v1", "--expect")
		if err != nil || !strings.Contains(out, "shop/v1 captures shop/api-v1") {
			return fmt.Errorf("verdicts do not name the capture: %v\n%s", err, out)
		}
		return nil
	})
	waitFor(t, 5*time.Second, func() error {
		raw, _ := os.ReadFile(e.logf.Name())
		if !strings.Contains(string(raw), "captures a workload it was not made for") || !strings.Contains(string(raw), "workload=shop/api-v1") {
			return fmt.Errorf("agent log has no capture warning")
		}
		return nil
	})
	e.mustRun("rollback", "shop/web-v1", "--reason", "undo the hand-written selector")
	waitFor(t, 10*time.Second, func() error {
		if st := e.status()["shop/api-v1"]; len(st.CapturedBy) != 0 {
			return fmt.Errorf("still captured after rollback: %+v", st.CapturedBy)
		}
		return nil
	})
	later.probe("shop/apiclient", "shop/api-v1", 8080, true, "--no-dns")
}
