//go:build linux

package nodeagent

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/nettest"
)

// The real thing: two node agents (New, as `nanoseg node` builds them)
// against a real API server, pods registered as the kubelet would
// (spec.nodeName, status.podIPs), each in a netns of this host with its
// addresses (found by the agents' netns finders), real packets.
var (
	kClientV4 = netip.MustParseAddr("198.18.77.1")
	kClientV6 = netip.MustParseAddr("2001:db8:77::1")
	kServerV4 = netip.MustParseAddr("198.18.77.2")
	kServerV6 = netip.MustParseAddr("2001:db8:77::2")
)

type kcluster struct {
	c              *kubetest.Cluster
	cs             kubernetes.Interface
	ns             string
	client, server *nettest.Netns
}

func (k *kcluster) pod(t *testing.T, ctx context.Context, name, node string, labels map[string]string, ips ...netip.Addr) {
	t.Helper()
	p, err := k.cs.CoreV1().Pods(k.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: k.ns, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ips[0].String()
	for _, a := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: a.String()})
	}
	if _, err := k.cs.CoreV1().Pods(k.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func newKCluster(t *testing.T) *kcluster {
	t.Helper()
	nettest.RequireRoot(t)
	c := kubetest.Shared(t)
	k := &kcluster{c: c, cs: c.Client, ns: c.Namespace(t, map[string]string{"team": "shop"})}
	k.client, k.server = nettest.New(t), nettest.New(t)
	nettest.Connect(t, k.client, k.server, []netip.Prefix{netip.PrefixFrom(kClientV4, 24), netip.PrefixFrom(kClientV6, 64)},
		[]netip.Prefix{netip.PrefixFrom(kServerV4, 24), netip.PrefixFrom(kServerV6, 64)})
	nettest.ServeTCP(t, k.server, 8080)
	nettest.ServeTCP(t, k.server, 9090)
	ctx := context.Background()
	k.pod(t, ctx, "client-0", "node-a", map[string]string{"app": "client"}, kClientV4, kClientV6)
	k.pod(t, ctx, "server-0", "node-b", map[string]string{"app": "server"}, kServerV4, kServerV6)
	return k
}

// agent starts the node agent of node against the API server.
func (k *kcluster) agent(t *testing.T, node, ownerDir string) (*Agent, func()) {
	t.Helper()
	a, err := New(Config{NodeName: node, Listen: "127.0.0.1:0", OwnerDir: ownerDir, FlushInterval: time.Second, DriftInterval: time.Second,
		APIServerCheckInterval: 500 * time.Millisecond},
		k.c.Config, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	waitFor(t, node+" ready", 30*time.Second, a.Ready)
	return a, stop
}

func (k *kcluster) open(addr netip.Addr, port uint16) bool {
	return nettest.DialTCP(k.client, netip.AddrPortFrom(addr, port), 300*time.Millisecond) == nil
}

func (k *kcluster) expect(t *testing.T, what string, want map[uint16]bool) time.Duration {
	t.Helper()
	return k.expectWithin(t, what, want, 10*time.Second)
}

func (k *kcluster) expectWithin(t *testing.T, what string, want map[uint16]bool, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok := true
		for port, open := range want {
			for _, a := range []netip.Addr{kServerV4, kServerV6} {
				if k.open(a, port) != open {
					ok = false
				}
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			var tables []string
			for _, n := range []*nettest.Netns{k.client, k.server} {
				st, err := dataplane.New(nil).Read(n.Path())
				if err != nil {
					tables = append(tables, err.Error())
					continue
				}
				tables = append(tables, fmt.Sprintf("%s: mode %s, ingress %v, egress %v", n.Name, st.RuleSet.Mode, st.RuleSet.Ingress, st.RuleSet.Egress))
			}
			t.Fatalf("%s: paths %v not reached after %s; tables:\n%s", what, want, limit, strings.Join(tables, "\n"))
		}
	}
}

// tableChange runs change and returns how long until the server's table
// changed in the kernel.
func (k *kcluster) tableChange(t *testing.T, change func()) time.Duration {
	t.Helper()
	dp := dataplane.New(nil)
	before, err := dp.Read(k.server.Path())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	change()
	for time.Since(start) < 10*time.Second {
		if st, err := dp.Read(k.server.Path()); err == nil && !st.Equal(before.RuleSet) {
			return time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the server's table did not change within 10s")
	return 0
}

func serverPolicy(ns string, port int32, from networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
	p := intstr.FromInt32(port)
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "server", Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{from},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &p}}}}}}
}

// TestNodeAgentsOnAPIServer: NetworkPolicies created, changed and deleted
// through the API server are enforced with real packets between pods of
// two nodes over IPv4 and IPv6; namespace label changes move pods in and
// out of a policy; with the API server stopped enforcement stays as it
// is (the agent says it lost contact, and stays ready), and a change made
// after it is back is caught up.
func TestNodeAgentsOnAPIServer(t *testing.T) {
	k := newKCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir() // owner files
	agentA, _ := k.agent(t, "node-a", dir)
	k.agent(t, "node-b", dir)
	k.expect(t, "no policy", map[uint16]bool{8080: true, 9090: true})
	nps := k.cs.NetworkingV1().NetworkPolicies(k.ns)
	reachable := func() bool { ok, _, _ := agentA.APIServerContact(); return ok }
	waitFor(t, "node-a reaches the API server", 10*time.Second, reachable)

	byPod := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}
	took := k.tableChange(t, func() {
		if _, err := nps.Create(ctx, serverPolicy(k.ns, 8080, byPod), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("NetworkPolicy created through the API: server table changed in %s, probes agree %s later", took,
		k.expect(t, "created", map[uint16]bool{8080: true, 9090: false}))
	took = k.tableChange(t, func() {
		if _, err := nps.Update(ctx, serverPolicy(k.ns, 9090, byPod), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("NetworkPolicy changed: table changed in %s, probes agree %s later", took, k.expect(t, "changed", map[uint16]bool{8080: false, 9090: true}))

	// By namespace label: the namespace lacks env=prod until labelled.
	byNS := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}
	k.tableChange(t, func() {
		if _, err := nps.Update(ctx, serverPolicy(k.ns, 8080, byNS), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	k.expect(t, "namespace not labelled", map[uint16]bool{8080: false, 9090: false})
	label := func(v string) {
		nsObj, err := k.cs.CoreV1().Namespaces().Get(ctx, k.ns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v == "" {
			delete(nsObj.Labels, "env")
		} else {
			nsObj.Labels["env"] = v
		}
		if _, err := k.cs.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	took = k.tableChange(t, func() { label("prod") })
	t.Logf("namespace labelled into the policy: table changed in %s, probes agree %s later", took, k.expect(t, "ns in", map[uint16]bool{8080: true, 9090: false}))
	took = k.tableChange(t, func() { label("") })
	t.Logf("namespace label removed: table changed in %s, probes agree %s later", took, k.expect(t, "ns out", map[uint16]bool{8080: false, 9090: false}))

	// API server unreachable: nothing changes.
	if err := k.c.StopAPIServer(); err != nil {
		// Open watches can hold a graceful stop past the harness's wait;
		// it kills the server then, which is as unreachable.
		t.Logf("stop the API server: %v", err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = k.c.StartAPIServer(context.Background())
		}
	}()
	waitFor(t, "node-a sees the API server gone", 10*time.Second, func() bool { return !reachable() })
	for range 5 {
		k.expect(t, "API server stopped", map[uint16]bool{8080: false, 9090: false})
		time.Sleep(time.Second)
	}
	if !agentA.Ready() {
		t.Errorf("node-a not ready while the API server is stopped: readiness must not follow the contact")
	}
	if err := k.c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = false
	waitFor(t, "node-a reaches the API server again", 10*time.Second, reachable)
	back := time.Now()
	if err := nps.Delete(ctx, "server", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The informers reconnect with client-go's backoff (up to 30 s after
	// a long outage), then catch up.
	k.expectWithin(t, "deleted after the API server came back", map[uint16]bool{8080: true, 9090: true}, 60*time.Second)
	t.Logf("after the API server came back, a deletion was enforced %s later", time.Since(back))
}

// TestNewPodOnAPIServer: a new pod of node-b (registered in the API with
// its addresses, then its netns created with them, as a CNI would) gets
// its table programmed; the time from the netns having its addresses to
// the table is logged. Then server-0 leaves and a new pod takes its
// addresses in a new netns: none of server-0's rules apply to it.
func TestNewPodOnAPIServer(t *testing.T) {
	k := newKCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir() // owner files
	a, _ := k.agent(t, "node-b", dir)
	p := intstr.FromInt32(8080)
	if _, err := k.cs.NetworkingV1().NetworkPolicies(k.ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "isolate", Namespace: k.ns},
		Spec: networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &p}}}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k.expect(t, "isolated", map[uint16]bool{8080: true, 9090: false})
	dp := dataplane.New(nil)
	tableUp := func(path string, start time.Time) time.Duration {
		for time.Since(start) < 20*time.Second {
			if st, err := dp.Read(path); err == nil && st.Present && st.RuleSet.Mode == "enforce" {
				return time.Since(start)
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("no enforce table in %s after 20s", path)
		return 0
	}

	// A new pod: API first (as the kubelet reports the IP), netns second.
	newV4 := netip.MustParseAddr("198.18.77.3")
	k.pod(t, ctx, "server-1", "node-b", map[string]string{"app": "server"}, newV4)
	n := nettest.New(t)
	peer := nettest.New(t)
	start := time.Now()
	nettest.Connect(t, n, peer, []netip.Prefix{netip.PrefixFrom(newV4, 24)}, []netip.Prefix{netip.MustParsePrefix("198.18.77.254/24")})
	t.Logf("new pod: enforce table programmed %s after its netns got its address", tableUp(n.Path(), start))

	// server-0 leaves; web-0 takes its addresses in a new netns, selected by no policy but the namespace-wide one.
	if err := k.cs.CoreV1().Pods(k.ns).Delete(ctx, "server-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "server-0 gone from the node", 10*time.Second, func() bool { _, ok := a.Index().Endpoint(k.ns + "_server-0"); return !ok })
	// Its netns goes (as the CNI deletes it): its addresses leave.
	for _, to := range []string{"198.18.77.0/24", "2001:db8:77::/64"} {
		if out, err := exec.Command("ip", "-n", k.server.Name, "addr", "flush", "to", to).CombinedOutput(); err != nil {
			t.Fatalf("flush server-0's addresses: %v\n%s", err, out)
		}
	}
	k.pod(t, ctx, "web-0", "node-b", map[string]string{"app": "web"}, kServerV4, kServerV6)
	web := nettest.New(t)
	wpeer := nettest.New(t)
	nettest.Connect(t, web, wpeer, []netip.Prefix{netip.PrefixFrom(kServerV4, 24), netip.PrefixFrom(kServerV6, 64)},
		[]netip.Prefix{netip.MustParsePrefix("198.18.77.253/24"), netip.MustParsePrefix("2001:db8:77::fd/64")})
	tableUp(web.Path(), time.Now())
	rs, ok := a.Node().Desired(k.ns + "_web-0")
	if !ok || rs.Name != k.ns+"/"+k.ns+"_web-0" {
		t.Errorf("web-0's rule set: %+v (known %v), want its own", rs, ok)
	}
	if _, ok := a.Node().Desired(k.ns + "_server-0"); ok {
		t.Errorf("the node still holds server-0's rule set")
	}
}

// TestRestartOnAPIServer: node-b's agent (New, real API server) restarts
// under a connect loop: no allowed connection is refused, no denied one
// passes, as the new agent enforces nothing before its caches synced and
// then updates the table in place.
func TestRestartOnAPIServer(t *testing.T) {
	k := newKCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir() // owner files
	byPod := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}
	if _, err := k.cs.NetworkingV1().NetworkPolicies(k.ns).Create(ctx, serverPolicy(k.ns, 8080, byPod), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, stop := k.agent(t, "node-b", dir)
	k.expect(t, "enforced", map[uint16]bool{8080: true, 9090: false})
	probes := probeAcross(k.client, []netip.Addr{kServerV4, kServerV6}, 8080, 9090)
	time.Sleep(300 * time.Millisecond)
	stop()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	k.agent(t, "node-b", dir)
	t.Logf("restarted agent ready (caches synced, policies enforced) in %s", time.Since(start))
	time.Sleep(500 * time.Millisecond)
	probes.check(t)
}
