//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/client/kube"
	ctrlkube "github.com/nanoseg/nanoseg/controller/kube"
	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/lab/kubelab"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/nodeagent"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/transport"
)

// The world of the resilience tests: a real API server, a lab of three
// pods (client, server, dns) in real network namespaces on one node,
// `nanoseg controller` as a process (leader election, the transport
// receiver on 127.0.0.1), and a node agent (nodeagent.New, as `nanoseg
// node` builds it) that programs nftables in the pods' namespaces and
// sends its observations to the controller with a ServiceAccount token.
const resilienceTopology = `kind: LabTopology
name: %[1]s
dns: shop/dns
namespaces:
  - {name: shop}
workloads:
  - {name: dns, namespace: shop, labels: {app: dns}, ports: [{port: 53, protocol: UDP}], ipv4: [198.18.%[2]d.2], ipv6: ["2001:db8:18:%[2]d::2"]}
  - {name: client, namespace: shop, labels: {app: client}, ipv4: [198.18.%[2]d.3], ipv6: ["2001:db8:18:%[2]d::3"]}
  - {name: server, namespace: shop, labels: {app: server}, ports: [{name: http, port: 8080}, {name: admin, port: 9090}], ipv4: [198.18.%[2]d.4], ipv6: ["2001:db8:18:%[2]d::4"]}
`

// Each test's lab has addresses of its own (198.18.211.0/24 for
// TestControllerDownAMinute, 198.18.213.0/24 for TestClusterVerdictsAndRuleHits): a node agent of
// another test, running at the same time in this or another package,
// finds network namespaces by their addresses, and one holding a pod of
// the same address would program this lab's namespaces (seen: the
// server's table rewritten, 9090 let through, while this test ran beside
// TestNodeStopsCleanlyOnSignal, whose pods had the same addresses).

type resilienceWorld struct {
	c              *kubetest.Cluster
	dyn            dynamic.Interface
	agent          *nodeagent.Agent
	plan           *lab.Plan
	client, server *nettest.Netns
	serverAddr     netip.Addr
	ingest         string // the controller's ingest address, the same for every process
	cfg            string // the controller's config file
	ctlSeq         int
	ctl            *kubetest.Process // the controller started last
}

func newResilienceWorld(t *testing.T) *resilienceWorld { return newResilienceWorldAt(t, 211, "") }

// newResilienceWorldAt makes the world with its lab in 198.18.<octet>.0/24
// (and 2001:db8:18:<octet>::/64), extra appended to the controller's
// configuration file (YAML lines under controller:).
func newResilienceWorldAt(t *testing.T, octet int, extra string) *resilienceWorld {
	t.Helper()
	c := kubetest.New(t, kubetest.Options{CRDDirs: []string{filepath.Join("..", "..", "manifests", "crds")}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := &resilienceWorld{c: c, dyn: dynamic.NewForConfigOrDie(c.Config)}

	// The lab: its namespaces (no lab processes), registered as pods.
	name := fmt.Sprintf("kr%d", time.Now().UnixNano()%100000)
	raw := []byte(fmt.Sprintf(resilienceTopology, name, octet))
	top, err := lab.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := lab.NewPlan(top, raw)
	if err != nil {
		t.Fatal(err)
	}
	lcfg := lab.Config{StateDir: t.TempDir()}
	if err := lab.Create(ctx, lcfg, p, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Down(context.Background(), lcfg, name, nil) })
	if w.plan, err = lab.LoadPlan(lcfg, name); err != nil {
		t.Fatal(err)
	}
	if err := kubelab.Register(ctx, c.Client, w.plan); err != nil {
		t.Fatal(err)
	}
	w.client, w.server = w.netns(t, "shop/client"), w.netns(t, "shop/server")
	w.serverAddr = w.plan.Find("shop/server")[0].IPv4
	nettest.ServeTCP(t, w.server, 8080)
	nettest.ServeTCP(t, w.server, 9090)

	// The node agents' identity towards the controller.
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nanoseg-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts("nanoseg-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nanoseg-node"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts("nanoseg-system").CreateToken(ctx, "nanoseg-node", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{transport.Audience}, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	w.cfg = filepath.Join(dir, "nanoseg.yaml")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.cfg, []byte("controller:\n  statusInterval: 1s\n  convergeTimeout: 20s\n"+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.ingest = l.Addr().String()
	l.Close()

	w.startController(t)
	a, err := nodeagent.New(nodeagent.Config{NodeName: name, Listen: "127.0.0.1:0", OwnerDir: t.TempDir(), FlushInterval: time.Second,
		DriftInterval: time.Second, Controller: "https://" + w.ingest, ControllerCA: "configmap", TokenFile: tokenFile, SendInterval: time.Second,
		CounterInterval: time.Second},
		c.Config, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(actx) }()
	t.Cleanup(func() { stop(); <-done })
	w.agent = a
	waitUntil(t, "the node agent enforces", time.Minute, func() error {
		if !a.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	return w
}

// netns wraps the lab namespace of workload key's first replica.
func (w *resilienceWorld) netns(t *testing.T, key string) *nettest.Netns {
	t.Helper()
	e := w.plan.Find(key)[0]
	h, err := netns.GetFromName(e.Netns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &nettest.Netns{Name: e.Netns, Handle: h}
}

// startController starts `nanoseg controller` (a new identity each time)
// with short leader-election timings, proposals every second; it dies
// with the test process (kubetest.StartProcess).
func (w *resilienceWorld) startController(t *testing.T) {
	t.Helper()
	w.ctlSeq++
	id := fmt.Sprintf("controller-%d", w.ctlSeq)
	logPath := filepath.Join(t.TempDir(), id+".log")
	p, err := kubetest.StartProcess(id, os.Args[0], []string{"--config", w.cfg, "controller", "--kubeconfig", w.c.Kubeconfig,
		"--namespace", "nanoseg-system", "--id", id, "--listen", "127.0.0.1:0", "--ingest", w.ingest,
		"--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms", "--propose-interval", "1s", "--log-format", "text"},
		[]string{runMainEnv + "=1"}, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s's log:\n%s", id, kubetest.Tail(logPath, 60))
		}
	})
	w.ctl = p
}

// waitUntil calls check every 200 ms until it returns nil, failing t
// with its last error after limit.
func waitUntil(t *testing.T, what string, limit time.Duration, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s: %v", what, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dial connects from the client to the server's port (IPv4).
func (w *resilienceWorld) dial(port uint16) bool {
	return nettest.DialTCP(w.client, netip.AddrPortFrom(w.serverAddr, port), 300*time.Millisecond) == nil
}

// counterValues masks what traffic changes in an nft listing.
var counterValues = regexp.MustCompile(`packets \d+ bytes \d+`)

// tables lists table inet nanoseg of every pod's namespace as the kernel
// holds it (`nft -a`: with the handles, so a table rebuilt with the same
// rules differs), counter values masked.
func (w *resilienceWorld) tables(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, e := range w.plan.Endpoints {
		if e.External {
			continue
		}
		out, err := exec.Command("ip", "netns", "exec", e.Netns, "nft", "-a", "list", "table", "inet", "nanoseg").CombinedOutput()
		if err != nil {
			t.Fatalf("list the table of %s: %v\n%s", e.ID(), err, out)
		}
		fmt.Fprintf(&b, "# %s\n%s", e.ID(), counterValues.ReplaceAllString(string(out), "packets N bytes N"))
	}
	return b.String()
}

// proposalEdge returns the flows of edge client → server:port in the
// server's NanoSegmentProposal, and its last-seen time.
func (w *resilienceWorld) proposalEdge(port int32) (int64, time.Time, error) {
	u, err := w.dyn.Resource(kube.Proposals).Namespace("shop").Get(context.Background(), "server", metav1.GetOptions{})
	if err != nil {
		return 0, time.Time{}, err
	}
	var p v1alpha1.NanoSegmentProposal
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return 0, time.Time{}, err
	}
	for _, e := range p.Spec.Edges {
		if e.Source.Workload == "client" && e.Destination.Workload == "server" && e.Port == port && e.Protocol == model.ProtocolTCP {
			return e.Flows, e.LastSeen.Time, nil
		}
	}
	return 0, time.Time{}, fmt.Errorf("no edge client -> server:%d in the proposal (%d edges)", port, len(p.Spec.Edges))
}

// sinkEdge returns the flows of edge client → server:port as the node
// agent holds it.
func (w *resilienceWorld) sinkEdge(port uint16) int64 {
	es, _ := w.agent.Sink().Edges(time.Time{})
	var n int64
	for _, e := range es {
		if e.Source.Workload == "client" && e.Destination.Workload == "server" && e.Port == port && e.Protocol == model.ProtocolTCP {
			n += int64(e.Flows)
		}
	}
	return n
}

// sinkDenied counts the deny verdict events of the server's endpoint the
// node agent holds.
func (w *resilienceWorld) sinkDenied() int64 {
	key := "shop_server-0"
	evs, _ := w.agent.Sink().Verdicts(time.Time{})
	var n int64
	for _, ev := range evs {
		if ev.Endpoint == key && ev.Verdict == model.VerdictDeny {
			n++
		}
	}
	return n
}

// dropped returns the packets the server's table dropped on ingress (its
// default verdict's counter: one per refused connection attempt, each
// logged within the deny log's rate).
func (w *resilienceWorld) dropped(t *testing.T) int64 {
	t.Helper()
	st, err := dataplane.New(nil).Read(w.server.Path())
	if err != nil {
		t.Fatal(err)
	}
	return int64(st.Defaults[model.Ingress].Packets)
}

// segment returns the NanoSegment server.
func (w *resilienceWorld) segment(t *testing.T) (*unstructured.Unstructured, *v1alpha1.NanoSegment) {
	t.Helper()
	u, err := w.dyn.Resource(kube.NanoSegments).Namespace("shop").Get(context.Background(), "server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var s v1alpha1.NanoSegment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
		t.Fatal(err)
	}
	return u, &s
}

func condition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

// caughtUp waits until the controller's proposal holds what the node
// agent holds of client → server:8080, and the server NanoSegment's
// status is Programmed for its generation and counts every deny the
// agent holds (at least one); it returns the flows and denies.
func (w *resilienceWorld) caughtUp(t *testing.T, what string, limit time.Duration) (flows, denied int64, took time.Duration) {
	t.Helper()
	took = waitUntil(t, what, limit, func() error {
		want := w.sinkEdge(8080)
		got, _, err := w.proposalEdge(8080)
		if err != nil {
			return err
		}
		if got != want || want == 0 {
			return fmt.Errorf("client -> server:8080: %d flows in the proposal, %d at the agent", got, want)
		}
		_, s := w.segment(t)
		if c := condition(s.Status.Conditions, ctrlkube.ConditionProgrammed); c == nil || c.Status != metav1.ConditionTrue || s.Status.ObservedGeneration != s.Generation {
			return fmt.Errorf("server NanoSegment: Programmed %+v, observedGeneration %d of %d", c, s.Status.ObservedGeneration, s.Generation)
		}
		if d := w.sinkDenied(); s.Status.Denied != d || d == 0 {
			return fmt.Errorf("server NanoSegment status: %d denied, %d deny events at the agent", s.Status.Denied, d)
		}
		flows, denied = want, s.Status.Denied
		return nil
	})
	return flows, denied, took
}

// TestControllerDownAMinute (issue 13: "controller down for a minute
// changes nothing in the kernel and loses no observation that a node
// agent still holds"). The server is promoted to enforce through a
// NanoSegmentPromotion the controller carries out from its proposal;
// then the controller is killed (SIGKILL) for 60 s while the client
// keeps connecting: the kernel's tables (nft -a, counters masked) do not
// change, the allowed port stays open and the denied one closed, the
// agent keeps its observations (nothing dropped, pending growing); a new
// controller process takes over, the agent resends its whole sink, and
// the proposal and the NanoSegment status hold exactly what the agent
// holds, down-time flows and denies included, with the kernel still
// unchanged. Then an edit of the NanoSegment that passes the schema but
// fails nanoseg's validation is refused by the agent (PolicyRejected),
// the kernel keeps the previous rules, and the status says
// Accepted=False for the new generation.
func TestControllerDownAMinute(t *testing.T) {
	nettest.RequireRoot(t)
	t.Parallel()
	start := time.Now()
	w := newResilienceWorld(t)
	ctx := context.Background()

	// Learn client → server:8080, promote the server's proposal to enforce.
	for range 3 {
		if !w.dial(8080) {
			t.Fatal("client -> server:8080 refused before any policy")
		}
	}
	waitUntil(t, "the proposal of server", 30*time.Second, func() error { _, _, err := w.proposalEdge(8080); return err })
	prom := &v1alpha1.NanoSegmentPromotion{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindPromotion},
		ObjectMeta: metav1.ObjectMeta{Name: "server-enforce"},
		Spec: v1alpha1.NanoSegmentPromotionSpec{Workload: "server", Mode: model.ModeEnforce, Reason: "lock down", Force: true,
			RequestedBy: &v1alpha1.RequestUser{Username: "alice"}}}
	if _, err := w.dyn.Resource(kube.Promotions).Namespace("shop").Create(ctx, unstructuredOf(t, prom), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the promotion carried out", 60*time.Second, func() error {
		u, err := w.dyn.Resource(kube.Promotions).Namespace("shop").Get(ctx, "server-enforce", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ph, _, _ := unstructured.NestedString(u.Object, "status", "phase"); ph != string(v1alpha1.PromotionSucceeded) {
			msg, _, _ := unstructured.NestedString(u.Object, "status", "message")
			return fmt.Errorf("phase %q %s", ph, msg)
		}
		return nil
	})
	waitUntil(t, "8080 allowed, 9090 denied", 20*time.Second, func() error {
		if !w.dial(8080) || w.dial(9090) {
			return fmt.Errorf("8080 open %v, 9090 open %v", w.dial(8080), w.dial(9090))
		}
		return nil
	})
	time.Sleep(2 * time.Second) // two agent flushes: the sink holds every connection made
	flows0, denied0, _ := w.caughtUp(t, "the controller holds what the agent holds", 30*time.Second)
	_, seg0 := w.segment(t)
	before := w.tables(t)
	ready := time.Since(start)

	// The controller crashes and stays down a minute; traffic goes on.
	w.ctl.Kill() // a crash: the Lease stays held until it expires
	down := time.Now()
	dropped0 := w.dropped(t)
	allowed, denied := 0, 0
	for time.Since(down) < time.Minute {
		if !w.dial(8080) {
			t.Fatalf("client -> server:8080 refused %s after the controller went down", time.Since(down).Round(time.Second))
		}
		allowed++
		if w.dial(9090) {
			t.Fatalf("client -> server:9090 let through %s after the controller went down", time.Since(down).Round(time.Second))
		}
		denied++
		if allowed%10 == 0 {
			if now := w.tables(t); now != before {
				t.Fatalf("the kernel changed %s after the controller went down:\n%s", time.Since(down).Round(time.Second), lineDiff(before, now))
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if now := w.tables(t); now != before {
		t.Fatalf("the kernel changed while the controller was down:\n%s", lineDiff(before, now))
	}
	dropped := w.dropped(t) - dropped0 // the SYNs to 9090 the server's table dropped
	st := w.agent.Sender().Stats()
	pe, _, pv := w.agent.Sink().PendingCount()
	de, dv := w.agent.Sink().Dropped()
	if !st.Failing || pe == 0 || pv == 0 || de+dv != 0 {
		t.Errorf("after a minute without controller: sender %+v; pending %d edges, %d verdict events; dropped %d, %d: want failing, pending, none dropped",
			st, pe, pv, de, dv)
	}

	// A new controller process: it leads, the agent resends its sink.
	back := time.Now()
	w.startController(t)
	flows, deniedAfter, took := w.caughtUp(t, "the new controller holds what the agent holds", 90*time.Second)
	// Every refused attempt is a dropped SYN the verdict log records; the
	// observer counts a repeat of one 4-tuple within two minutes once (a
	// retransmission), and the client's kernel may reuse a source port.
	if flows < flows0+int64(allowed) || deniedAfter <= denied0 || deniedAfter > denied0+dropped {
		t.Errorf("after the restart: %d flows (%d before + %d connections while down), %d denied (%d before + at most the %d packets the kernel dropped while down, of %d attempts)",
			flows, flows0, allowed, deniedAfter, denied0, dropped, denied)
	}
	if now := w.tables(t); now != before {
		t.Errorf("the kernel changed when the new controller took over:\n%s", lineDiff(before, now))
	}
	_, seg := w.segment(t)
	if seg.Generation != seg0.Generation || !equality.Semantic.DeepEqual(seg.Spec, seg0.Spec) {
		t.Errorf("the new leader changed the NanoSegment: generation %d -> %d", seg0.Generation, seg.Generation)
	}
	t.Logf("ready after %s; down %s: %d connections allowed, %d refused (%d packets dropped), the kernel unchanged; the new controller caught up %s after its start (%d flows, %d denied)",
		ready.Round(time.Second), back.Sub(down).Round(time.Second), allowed, denied, dropped, took.Round(time.Second), flows, deniedAfter)

	// An edit that passes the schema, fails nanoseg's validation.
	u, _ := w.segment(t)
	if err := unstructured.SetNestedStringMap(u.Object, map[string]string{"app": "not a label value!"}, "spec", "selector", "matchLabels"); err != nil {
		t.Fatal(err)
	}
	edited, err := w.dyn.Resource(kube.NanoSegments).Namespace("shop").Update(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("the API server refused an edit its schema allows: %v", err)
	}
	waitUntil(t, "the agent refuses the edit", 20*time.Second, func() error {
		l, err := w.c.Client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=server,reason=PolicyRejected"})
		if err != nil || len(l.Items) == 0 {
			return fmt.Errorf("no PolicyRejected event (%v)", err)
		}
		return nil
	})
	waitUntil(t, "Accepted=False in the status", 20*time.Second, func() error {
		_, s := w.segment(t)
		c := condition(s.Status.Conditions, ctrlkube.ConditionAccepted)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ctrlkube.ReasonInvalidSpec || c.ObservedGeneration != edited.GetGeneration() ||
			s.Status.ObservedGeneration != edited.GetGeneration() || !strings.Contains(c.Message, "spec.selector.matchLabels") ||
			!strings.Contains(c.Message, "previous valid version") {
			return fmt.Errorf("Accepted %+v, observedGeneration %d of %d", c, s.Status.ObservedGeneration, edited.GetGeneration())
		}
		return nil
	})
	if now := w.tables(t); now != before {
		t.Errorf("the kernel changed after a refused edit:\n%s", lineDiff(before, now))
	}
	if !w.dial(8080) || w.dial(9090) {
		t.Errorf("after a refused edit: 8080 open %v, 9090 open %v; want the previous rules", w.dial(8080), w.dial(9090))
	}
	t.Logf("whole test %s", time.Since(start).Round(time.Second))
}
