//go:build linux

package nodeagent

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// Two simulated nodes on one host: client-0 (node-a) and server-0
// (node-b), each pod in its own netns, joined by a veth pair, over IPv4
// and IPv6. Each node has its own agent whose inventory lists both pods,
// its own with Path and the other as a peer. The policy watcher and the
// inventory source are fakes here (the kube packages have their own tests
// against a real API server); what is tested is the agent with the
// kernel: real tables, real packets.
var (
	clientV4 = netip.MustParseAddr("198.18.10.1")
	clientV6 = netip.MustParseAddr("2001:db8:10::1")
	serverV4 = netip.MustParseAddr("198.18.10.2")
	serverV6 = netip.MustParseAddr("2001:db8:10::2")
)

type cluster struct {
	client, server *nettest.Netns
	clientEp       model.Endpoint
	serverEp       model.Endpoint
	pols           *fakePolicies
	ownerDir       string
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	nettest.RequireRoot(t)
	c, s := nettest.New(t), nettest.New(t)
	nettest.Connect(t, c, s, []netip.Prefix{netip.PrefixFrom(clientV4, 24), netip.PrefixFrom(clientV6, 64)},
		[]netip.Prefix{netip.PrefixFrom(serverV4, 24), netip.PrefixFrom(serverV6, 64)})
	nettest.ServeTCP(t, s, 8080)
	nettest.ServeTCP(t, s, 9090)
	dir := t.TempDir() // owner files
	cl := &cluster{client: c, server: s, pols: &fakePolicies{}, ownerDir: dir,
		clientEp: model.Endpoint{Netns: "shop_client-0", Namespace: "shop", Workload: "client", Labels: map[string]string{"app": "client"},
			Addrs: []netip.Addr{clientV4, clientV6}},
		serverEp: model.Endpoint{Netns: "shop_server-0", Namespace: "shop", Workload: "server", Labels: map[string]string{"app": "server"},
			Addrs: []netip.Addr{serverV4, serverV6}, Ports: []model.ContainerPort{{Name: "http", Port: 8080, Protocol: "TCP"}}},
	}
	cl.pols.synced.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for nettest.DialTCP(c, netip.AddrPortFrom(serverV4, 8080), 100*time.Millisecond) != nil ||
		nettest.DialTCP(c, netip.AddrPortFrom(serverV6, 8080), 100*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			t.Fatal("client -> server not up after 5s")
		}
	}
	return cl
}

// snapshot is node's view: its own pod with Path, the other a peer.
func (cl *cluster) snapshot(t *testing.T, node string) inventory.Snapshot {
	c, s := cl.clientEp, cl.serverEp
	if node == "node-a" {
		c.Path, c.NetnsInode = cl.client.Path(), inode(t, cl.client.Path())
	} else {
		s.Path, s.NetnsInode = cl.server.Path(), inode(t, cl.server.Path())
	}
	return inventory.Snapshot{Endpoints: []model.Endpoint{c, s},
		Namespaces: map[string]map[string]string{"shop": {"kubernetes.io/metadata.name": "shop"}}}
}

// agent starts the agent of node with a synced fake inventory.
func (cl *cluster) agent(t *testing.T, node string) (*Agent, *fakeInventory, func()) {
	t.Helper()
	inv := &fakeInventory{snap: cl.snapshot(t, node)}
	inv.synced.Store(true)
	a, err := NewAgent(Config{NodeName: node, Listen: "127.0.0.1:0", OwnerDir: cl.ownerDir, FlushInterval: 200 * time.Millisecond,
		DriftInterval: time.Second}, Parts{Inventory: inv, Policies: cl.pols}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	waitFor(t, node+" ready", 5*time.Second, a.Ready)
	return a, inv, stop
}

func netpols(t *testing.T, docs string) policies.InForce {
	t.Helper()
	if docs == "" {
		return policies.InForce{}
	}
	objs, err := policies.ParseObjects("np.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	nps, segs := policies.SplitObjects(objs)
	return policies.InForce{NetworkPolicies: nps, NanoSegments: segs}
}

// open reports whether client -> server addr:port opens and echoes.
func (cl *cluster) open(addr netip.Addr, port uint16) bool {
	return nettest.DialTCP(cl.client, netip.AddrPortFrom(addr, port), 300*time.Millisecond) == nil
}

// expect waits until every path has the wanted state and returns how long
// it took; it fails after 5 s.
func (cl *cluster) expect(t *testing.T, what string, want map[uint16]bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok := true
		for port, open := range want {
			for _, a := range []netip.Addr{serverV4, serverV6} {
				if cl.open(a, port) != open {
					ok = false
				}
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: paths %v not reached after 5s", what, want)
		}
	}
}

const serverIngress = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: shop}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: PORT}]
`

const clientEgress = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client, namespace: shop}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {role: api}}}]
      ports: [{port: http}]
`

// setPolicies hands in to the fake watcher and returns how long until a
// table of either pod changed in the kernel.
func (cl *cluster) setPolicies(t *testing.T, in policies.InForce) time.Duration {
	t.Helper()
	dp := dataplane.New(nil)
	before := map[string]*dataplane.State{}
	for _, n := range []*nettest.Netns{cl.client, cl.server} {
		st, err := dp.Read(n.Path())
		if err != nil {
			t.Fatal(err)
		}
		before[n.Path()] = st
	}
	start := time.Now()
	cl.pols.set(in)
	for time.Since(start) < 5*time.Second {
		for _, n := range []*nettest.Netns{cl.client, cl.server} {
			st, err := dp.Read(n.Path())
			if err == nil && !st.Equal(before[n.Path()].RuleSet) {
				return time.Since(start)
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no table changed within 5s of the policy change")
	return 0
}

func replace(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	return s
}

// TestPoliciesAcrossNodes: NetworkPolicies created, changed and deleted
// are enforced with real packets between pods of two nodes, over IPv4
// and IPv6, ingress at the server's node and egress at the client's (a
// named port resolved at the peer of the other node); pod label changes
// move pods in and out of policies. Each change's time to take effect is
// logged.
func TestPoliciesAcrossNodes(t *testing.T) {
	cl := newCluster(t)
	_, invA, _ := cl.agent(t, "node-a")
	_, invB, _ := cl.agent(t, "node-b")
	cl.expect(t, "no policy", map[uint16]bool{8080: true, 9090: true})

	took := cl.setPolicies(t, netpols(t, replace(serverIngress, "PORT", "8080")))
	t.Logf("ingress policy created: table changed in %s, probes agree %s later", took, cl.expect(t, "create", map[uint16]bool{8080: true, 9090: false}))
	took = cl.setPolicies(t, netpols(t, replace(serverIngress, "PORT", "9090")))
	t.Logf("ingress policy changed: table changed in %s, probes agree %s later", took, cl.expect(t, "change", map[uint16]bool{8080: false, 9090: true}))
	took = cl.setPolicies(t, netpols(t, ""))
	t.Logf("ingress policy deleted: table changed in %s, probes agree %s later", took, cl.expect(t, "delete", map[uint16]bool{8080: true, 9090: true}))

	// Egress at node-a to a pod of node-b by a label the server lacks yet.
	took = cl.setPolicies(t, netpols(t, clientEgress))
	t.Logf("egress policy created: table changed in %s, probes agree %s later", took, cl.expect(t, "egress", map[uint16]bool{8080: false, 9090: false}))
	cl.serverEp.Labels = map[string]string{"app": "server", "role": "api"}
	invA.set(cl.snapshot(t, "node-a"))
	invB.set(cl.snapshot(t, "node-b"))
	t.Logf("server labelled role=api: allowed in %s", cl.expect(t, "label in", map[uint16]bool{8080: true, 9090: false}))
	cl.clientEp.Labels = map[string]string{"app": "other"}
	invA.set(cl.snapshot(t, "node-a"))
	invB.set(cl.snapshot(t, "node-b"))
	t.Logf("client relabelled out of the policy: open in %s", cl.expect(t, "label out", map[uint16]bool{8080: true, 9090: true}))
}

// TestRestartNoWindow: while node-b's agent restarts, a connect loop
// never sees an allowed connection refused nor a denied one pass.
func TestRestartNoWindow(t *testing.T) {
	cl := newCluster(t)
	cl.pols.set(netpols(t, replace(serverIngress, "PORT", "8080")))
	_, _, stop := cl.agent(t, "node-b")
	cl.expect(t, "enforced", map[uint16]bool{8080: true, 9090: false})
	probes := probeAcross(cl.client, []netip.Addr{serverV4, serverV6}, 8080, 9090)
	time.Sleep(300 * time.Millisecond)
	stop()
	time.Sleep(300 * time.Millisecond)
	cl.agent(t, "node-b")
	time.Sleep(500 * time.Millisecond)
	probes.check(t)
}

// TestNewPodAndReusedIP: a new pod's table is programmed soon after its
// netns appears in the inventory (the time is logged); when its address
// is reused by another pod (new netns, other labels), none of the old
// pod's rules apply to it.
func TestNewPodAndReusedIP(t *testing.T) {
	cl := newCluster(t)
	cl.pols.set(netpols(t, replace(serverIngress, "PORT", "8080")))
	a, inv, _ := cl.agent(t, "node-b")
	// A new server pod: a new netns with the address of server-0, which
	// leaves (its netns is deleted; the address is reused).
	repl := nettest.New(t)
	dp := dataplane.New(nil)
	start := time.Now()
	snap := cl.snapshot(t, "node-b")
	snap.Endpoints[1] = model.Endpoint{Netns: "shop_web-0", Namespace: "shop", Workload: "web", Labels: map[string]string{"app": "web"},
		Addrs: []netip.Addr{serverV4, serverV6}, Path: repl.Path(), NetnsInode: inode(t, repl.Path())}
	inv.set(snap)
	var took time.Duration
	for {
		st, err := dp.Read(repl.Path())
		if err == nil && st.Present {
			took = time.Since(start)
			if st.RuleSet.Mode != model.ModeObserve || len(st.RuleSet.Ingress) > 0 || len(st.RuleSet.Egress) > 0 {
				t.Errorf("the new pod at the old pod's address got rules: mode %s, %d ingress, %d egress entries", st.RuleSet.Mode, len(st.RuleSet.Ingress), len(st.RuleSet.Egress))
			}
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("new pod's table not programmed after 5s (last read: %v)", err)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("new pod: table programmed %s after its netns appeared in the inventory", took)
	if _, ok := a.Node().Desired("shop_server-0"); ok {
		t.Errorf("the node still holds the old pod's rule set")
	}
}

// TestServiceClusterIP: the client's egress to a Service address is
// judged by the Service's backends. As with kube-proxy, the translation
// happens after the client's egress hook: here a DNAT in the server's
// netns (prerouting, before its ingress hook) turns ClusterIP:80 into
// server-0:8080 and ClusterIP:81 into server-0:9090. The client's egress
// policy allows app=server on the named port http (8080 at server-0), so
// ClusterIP:80 opens and ClusterIP:81 stays closed, as server-0:9090 does.
func TestServiceClusterIP(t *testing.T) {
	cl := newCluster(t)
	clusterIP := netip.MustParseAddr("198.18.200.10")
	run := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("", "ip", "-n", cl.client.Name, "route", "add", clusterIP.String()+"/32", "via", serverV4.String())
	run(`table ip svc {
	chain pre {
		type nat hook prerouting priority dstnat;
		ip daddr `+clusterIP.String()+` tcp dport 80 dnat to `+serverV4.String()+`:8080
		ip daddr `+clusterIP.String()+` tcp dport 81 dnat to `+serverV4.String()+`:9090
	}
}
`, "ip", "netns", "exec", cl.server.Name, "nft", "-f", "-")
	svcOpen := func(port uint16) bool {
		return nettest.DialTCP(cl.client, netip.AddrPortFrom(clusterIP, port), 300*time.Millisecond) == nil
	}
	if !svcOpen(80) || !svcOpen(81) {
		t.Fatal("the Service address does not work without policies")
	}
	cl.serverEp.Labels = map[string]string{"app": "server", "role": "api"}
	cl.pols.set(netpols(t, clientEgress))
	a, inv, _ := cl.agent(t, "node-a")
	svc := model.Service{Namespace: "shop", Name: "server", Addrs: []netip.Addr{clusterIP}, Ports: []model.ServicePort{
		{Name: "http", Protocol: "TCP", Port: 80, Backends: []model.ServiceBackend{{Addr: serverV4, Port: 8080}, {Addr: serverV6, Port: 8080}}},
		{Name: "admin", Protocol: "TCP", Port: 81, Backends: []model.ServiceBackend{{Addr: serverV4, Port: 9090}}},
	}}
	snap := cl.snapshot(t, "node-a")
	snap.Services = []model.Service{svc}
	inv.set(snap)
	start := time.Now()
	for !svcOpen(80) || svcOpen(81) {
		if time.Since(start) > 5*time.Second {
			rs, _ := a.Node().Desired(cl.clientEp.Netns)
			t.Fatalf("ClusterIP:80 open %v (want true), :81 open %v (want false); client rule set: %+v", svcOpen(80), svcOpen(81), rs.Egress)
		}
	}
	if cl.open(serverV4, 9090) {
		t.Errorf("server-0:9090 open to the client, which its egress policy does not allow")
	}
	// The Service loses its ready backend on 80: the ClusterIP closes.
	// (A new value: snapshots are never modified in place.)
	gone := svc
	gone.Ports = []model.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}, svc.Ports[1]}
	snap.Services = []model.Service{gone}
	inv.set(snap)
	start = time.Now()
	for svcOpen(80) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("ClusterIP:80 still open after its backends left")
		}
	}
}

// restartProbes connects from a client to servers in a loop while a node
// agent restarts: one port must stay open, the other closed.
type restartProbes struct {
	cancel               context.CancelFunc
	wg                   sync.WaitGroup
	bad, allowed, denied atomic.Int64
}

// probeAcross starts the loops from client to every server address: open
// must connect (300 ms timeout), closed must not (50 ms).
func probeAcross(client *nettest.Netns, servers []netip.Addr, open, closed uint16) *restartProbes {
	ctx, cancel := context.WithCancel(context.Background())
	p := &restartProbes{cancel: cancel}
	for _, a := range servers {
		p.wg.Go(func() {
			for ctx.Err() == nil {
				if nettest.DialTCP(client, netip.AddrPortFrom(a, open), 300*time.Millisecond) != nil {
					p.bad.Add(1)
				}
				p.allowed.Add(1)
			}
		})
		p.wg.Go(func() {
			for ctx.Err() == nil {
				if nettest.DialTCP(client, netip.AddrPortFrom(a, closed), 50*time.Millisecond) == nil {
					p.bad.Add(1)
				}
				p.denied.Add(1)
			}
		})
	}
	return p
}

// check stops the loops and fails t when any probe saw a wrong verdict.
func (p *restartProbes) check(t *testing.T) {
	t.Helper()
	p.cancel()
	p.wg.Wait()
	t.Logf("%d allowed and %d denied probes across the restart", p.allowed.Load(), p.denied.Load())
	if p.bad.Load() > 0 {
		t.Errorf("%d probes saw an allowed path closed or a denied one open across the restart", p.bad.Load())
	}
}
