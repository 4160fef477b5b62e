//go:build linux

package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	storekube "github.com/nanoseg/nanoseg/store/kube"
)

// The verdict cases of policies/testdata/cases (which cover the shared
// NetworkPolicy cases) replayed through a real API server with packets:
// each case gets a cluster of its own (its namespace names, selectors on
// kubernetes.io/metadata.name included, are used as written), its pods as
// Pods of node-a with status, one netns per pod holding the pod's address
// on a bridge (addresses outside the cluster, or of no pod, as netns too),
// servers on every probed port, its policies through the API, and one node
// agent. Every connection is probed with real packets and compared with its
// expected verdict; then each step's changes go through the API and the
// step's connections are probed.

// envCaseGlob replaces the case files' glob (e.g. the shared cases,
// same format).
const envCaseGlob = "NANOSEG_REPLAY_CASES"

var nanoSegmentGVR = schema.GroupVersionResource{Group: "nanoseg.io", Version: "v1alpha1", Resource: "nanosegments"}

func TestCasesThroughAPIServer(t *testing.T) {
	pattern := "../policies/testdata/cases/*.yaml"
	if g := os.Getenv(envCaseGlob); g != "" {
		pattern = g
	}
	replayCases(t, pattern)
}

// TestClusterNetworkPolicyCasesThroughAPIServer replays the four cases
// recorded from the upstream ClusterNetworkPolicy conformance suite
// (policies/testdata/cases/cnp/cnp-state-*.yaml) as TestCasesThroughAPIServer
// does: their ClusterNetworkPolicies created through the API server (with
// nanoseg's CRD), one node agent programming the tiers, every connection
// probed with real packets. Every pod runs on one node here (the cases'
// node names only place pods; their host-network pods hold their nodes'
// addresses).
func TestClusterNetworkPolicyCasesThroughAPIServer(t *testing.T) {
	replayCases(t, "../policies/testdata/cases/cnp/cnp-state-*.yaml")
}

// TestClusterNetworkPolicyAuditModeThroughAPIServer replays
// cnp/tiers-audit-mode.yaml (issue 15) the same way: a workload whose
// NanoSegment audits lets the connections Admin and Baseline Denies
// decide through (audit-deny), a NetworkPolicy's and an unpoliced pod
// drop them, and the NanoSegment promoted to enforce through the API
// drops them too.
func TestClusterNetworkPolicyAuditModeThroughAPIServer(t *testing.T) {
	replayCases(t, "../policies/testdata/cases/cnp/tiers-audit-mode.yaml")
}

func replayCases(t *testing.T, pattern string) {
	nettest.RequireRoot(t)
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files: %v", err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		t.Run(strings.TrimSuffix(base, ".yaml"), func(t *testing.T) {
			c, err := policies.LoadCase(f)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			replayCase(t, c)
			t.Logf("replayed in %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

// replay is one case's world: its cluster, netns and servers.
type replay struct {
	t       *testing.T
	ctx     context.Context
	cs      kubernetes.Interface
	dyn     dynamic.Interface
	hub     *nettest.Netns
	bridge  int // bridge link index in hub
	links   int
	netns   map[string]*nettest.Netns // endpoint ("ns/pod" or address) -> netns
	pods    map[string]policies.CasePod
	served  map[string]bool // "endpoint proto port"
	servers map[string][]servePort
}

type servePort struct {
	proto model.Protocol
	port  int32
}

func replayCase(t *testing.T, c *policies.Case) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// nanoseg's CRDs and its ClusterNetworkPolicy CRD (manifests/crds/cnp).
	kc := kubetest.New(t, kubetest.Options{CRDDirs: []string{"../manifests/crds", "../manifests/crds/cnp"}})
	dyn, err := dynamic.NewForConfig(kc.Config)
	if err != nil {
		t.Fatal(err)
	}
	r := &replay{t: t, ctx: ctx, cs: kc.Client, dyn: dyn, netns: map[string]*nettest.Netns{}, pods: map[string]policies.CasePod{},
		served: map[string]bool{}, servers: map[string][]servePort{}}
	r.hub = nettest.New(t)
	h := r.hub.Netlink(t)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	l, err := h.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	r.bridge = l.Attrs().Index

	// Every port probed at each endpoint, over all steps.
	conns := append([]policies.CaseConnection(nil), c.Connections...)
	for _, s := range c.Steps {
		conns = append(conns, s.Connections...)
	}
	for _, cn := range conns {
		sp := servePort{protoOf(cn.Protocol), cn.Port}
		key := fmt.Sprintf("%s %s %d", cn.To, sp.proto, sp.port)
		if !r.served[key] {
			r.served[key] = true
			r.servers[cn.To] = append(r.servers[cn.To], sp)
		}
	}

	for _, ns := range c.Namespaces {
		r.setNamespace(ns, true)
	}
	for _, p := range c.Pods {
		r.addPod(p)
	}
	for _, o := range c.Policies {
		r.apply(o)
	}
	// Addresses of no pod (outside the cluster, or an ipBlock's) get their
	// netns before the agent starts.
	for _, cn := range conns {
		for _, e := range []string{cn.From, cn.To} {
			if _, err := netip.ParseAddr(e); err == nil {
				r.endpointNetns(e)
			}
		}
	}
	dir := t.TempDir() // owner files
	// Before any agent runs, every connection whose ends exist opens: a
	// denied probe later is the agent's doing, not a missing server or
	// route.
	var now []policies.CaseConnection
	for _, cn := range conns {
		if r.exists(cn.From) && r.exists(cn.To) {
			now = append(now, cn)
		}
	}
	for i, g := range r.confirmDenies(now, r.probe(now), func(int) bool { return true }) {
		if g == "deny" {
			t.Errorf("without an agent, %s -> %s %s/%d does not open: the world is broken", now[i].From, now[i].To, protoOf(now[i].Protocol), now[i].Port)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("without an agent, all %d connections whose ends exist open", len(now))
	k := &kcluster{c: kc, cs: kc.Client}
	k.agent(t, "node-a", dir)
	r.waitTables()
	bad := r.check("connections", conns[:len(c.Connections)])
	for i, s := range c.Steps {
		for _, d := range s.Delete {
			r.deletePolicy(d)
		}
		for _, o := range s.Apply {
			r.apply(o)
		}
		for _, ns := range s.SetNamespaceLabels {
			r.setNamespace(ns, false)
		}
		for _, pl := range s.SetPodLabels {
			r.setPodLabels(pl)
		}
		for _, ns := range s.AddNamespaces {
			r.setNamespace(ns, true)
		}
		for _, p := range s.AddPods {
			r.addPod(p)
		}
		for _, p := range s.DeletePods {
			r.deletePod(p)
		}
		for _, ns := range s.DeleteNamespaces {
			r.deleteNamespace(ns)
		}
		r.waitTables()
		bad += r.check(fmt.Sprintf("step %d", i+1), s.Connections)
	}
	if bad > 0 {
		t.Errorf("case %s: %d connections got another verdict than expected", c.Name, bad)
	}
}

func protoOf(p model.Protocol) model.Protocol {
	if p == "" {
		return "TCP"
	}
	return model.Protocol(strings.ToUpper(string(p)))
}

// netnsFor creates endpoint's netns on the bridge with addrs (each as a
// /15: every address of 198.18.0.0/15 is on the link) and its servers.
func (r *replay) netnsFor(endpoint string, addrs []string) *nettest.Netns {
	t := r.t
	t.Helper()
	if n, ok := r.netns[endpoint]; ok {
		return n
	}
	n := nettest.New(t)
	r.links++
	hubSide := fmt.Sprintf("p%d", r.links)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hubSide, MasterIndex: r.bridge}, PeerName: "eth0", PeerNamespace: netlink.NsFd(n.Handle)}
	hh := r.hub.Netlink(t)
	if err := hh.LinkAdd(veth); err != nil {
		t.Fatalf("veth for %s: %v", endpoint, err)
	}
	hl, err := hh.LinkByName(hubSide)
	if err == nil {
		err = hh.LinkSetMaster(hl, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Index: r.bridge}})
	}
	if err == nil {
		err = hh.LinkSetUp(hl)
	}
	if err != nil {
		t.Fatalf("hub side of %s: %v", endpoint, err)
	}
	nh := n.Netlink(t)
	l, err := nh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if err := nh.AddrAdd(l, nettest.Addr(netip.PrefixFrom(netip.MustParseAddr(a), 15))); err != nil {
			t.Fatalf("address %s of %s: %v", a, endpoint, err)
		}
	}
	if err := nh.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	for _, sp := range r.servers[endpoint] {
		switch sp.proto {
		case "TCP":
			nettest.ServeTCP(t, n, int(sp.port))
		case "UDP":
			serveUDP(t, n, int(sp.port))
		case "SCTP":
			if err := serveSCTP(t, n, int(sp.port)); err != nil {
				t.Logf("%s: no SCTP server on %d: %v (its SCTP connections are not probed)", endpoint, sp.port, err)
			}
		}
	}
	r.netns[endpoint] = n
	return n
}

// exists reports whether e (a pod or an address) has its netns.
func (r *replay) exists(e string) bool {
	_, ok := r.netns[e]
	return ok
}

// endpointNetns returns the netns of a connection's end: a pod's, or an
// address's (created at first use).
func (r *replay) endpointNetns(e string) *nettest.Netns {
	if n, ok := r.netns[e]; ok {
		return n
	}
	if _, err := netip.ParseAddr(e); err == nil {
		return r.netnsFor(e, []string{e})
	}
	r.t.Fatalf("connection end %s: no such pod (yet)", e)
	return nil
}

func (r *replay) endpointAddr(e string) netip.Addr {
	if a, err := netip.ParseAddr(e); err == nil {
		return a
	}
	p, ok := r.pods[e]
	if !ok || len(p.IPs) == 0 {
		r.t.Fatalf("connection end %s: no pod with an address", e)
	}
	return netip.MustParseAddr(p.IPs[0])
}

func (r *replay) setNamespace(ns policies.CaseNamespace, create bool) {
	t := r.t
	t.Helper()
	api := r.cs.CoreV1().Namespaces()
	cur, err := api.Get(r.ctx, ns.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && create:
		_, err = api.Create(r.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, Labels: ns.Labels}}, metav1.CreateOptions{})
	case err == nil:
		cur.Labels = map[string]string{}
		for k, v := range ns.Labels {
			cur.Labels[k] = v
		}
		cur.Labels["kubernetes.io/metadata.name"] = ns.Name
		_, err = api.Update(r.ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("namespace %s: %v", ns.Name, err)
	}
}

func (r *replay) addPod(p policies.CasePod) {
	t := r.t
	t.Helper()
	key := p.Namespace + "/" + p.Name
	r.pods[key] = p
	var ports []corev1.ContainerPort
	for _, cp := range p.Ports {
		ports = append(ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: cp.Port, Protocol: corev1.Protocol(protoOf(cp.Protocol))})
	}
	pod, err := r.cs.CoreV1().Pods(p.Namespace).Create(r.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels},
		Spec: corev1.PodSpec{NodeName: "node-a", HostNetwork: p.HostNetwork, Containers: []corev1.Container{{Name: "c", Image: "busybox", Ports: ports}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod %s: %v", key, err)
	}
	pod.Status.Phase = p.Phase
	if pod.Status.Phase == "" {
		pod.Status.Phase = corev1.PodRunning
	}
	for i, a := range p.IPs {
		if i == 0 {
			pod.Status.PodIP = a
		}
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: a})
		if p.HostNetwork { // the node's addresses
			if i == 0 {
				pod.Status.HostIP = a
			}
			pod.Status.HostIPs = append(pod.Status.HostIPs, corev1.HostIP{IP: a})
		}
	}
	if _, err := r.cs.CoreV1().Pods(p.Namespace).UpdateStatus(r.ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("pod %s status: %v", key, err)
	}
	// Its netns second, as a CNI would (a hostNetwork pod's stands for
	// its node's).
	r.netnsFor(key, p.IPs)
}

func (r *replay) setPodLabels(pl policies.CasePodLabels) {
	t := r.t
	t.Helper()
	ns, name, _ := strings.Cut(pl.Pod, "/")
	pod, err := r.cs.CoreV1().Pods(ns).Get(r.ctx, name, metav1.GetOptions{})
	if err == nil {
		pod.Labels = pl.Labels
		_, err = r.cs.CoreV1().Pods(ns).Update(r.ctx, pod, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("labels of pod %s: %v", pl.Pod, err)
	}
}

// deletePod deletes the pod and takes its addresses from its netns, as
// its netns goes with it.
func (r *replay) deletePod(key string) {
	t := r.t
	t.Helper()
	ns, name, _ := strings.Cut(key, "/")
	if err := r.cs.CoreV1().Pods(ns).Delete(r.ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete pod %s: %v", key, err)
	}
	if n, ok := r.netns[key]; ok {
		h := n.Netlink(t)
		if l, err := h.LinkByName("eth0"); err == nil {
			_ = h.LinkSetDown(l)
		}
		delete(r.netns, key)
	}
	delete(r.pods, key)
}

// deleteNamespace deletes a namespace's pods and policies, then the
// namespace: no namespace controller runs to do the former.
func (r *replay) deleteNamespace(ns string) {
	t := r.t
	t.Helper()
	var keys []string
	for k := range r.pods {
		if strings.HasPrefix(k, ns+"/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.deletePod(k)
	}
	if err := r.cs.NetworkingV1().NetworkPolicies(ns).DeleteCollection(r.ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatalf("delete policies of %s: %v", ns, err)
	}
	if err := r.dyn.Resource(nanoSegmentGVR).Namespace(ns).DeleteCollection(r.ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatalf("delete nanosegments of %s: %v", ns, err)
	}
	if err := r.cs.CoreV1().Namespaces().Delete(r.ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete namespace %s: %v", ns, err)
	}
}

// apply creates or replaces a policy: NetworkPolicies typed, NanoSegments
// and ClusterNetworkPolicies through the dynamic client.
func (r *replay) apply(o policies.Object) {
	t := r.t
	t.Helper()
	if np := o.NetworkPolicy; np != nil {
		np = np.DeepCopy()
		api := r.cs.NetworkingV1().NetworkPolicies(np.Namespace)
		cur, err := api.Get(r.ctx, np.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.Create(r.ctx, np, metav1.CreateOptions{})
		case err == nil:
			np.ResourceVersion = cur.ResourceVersion
			_, err = api.Update(r.ctx, np, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("apply NetworkPolicy %s: %v", o.Key(), err)
		}
		return
	}
	var obj any = o.NanoSegment
	var api dynamic.ResourceInterface
	if o.ClusterNetworkPolicy != nil {
		obj, api = o.ClusterNetworkPolicy, r.dyn.Resource(storekube.ClusterNetworkPolicyResource)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		t.Fatal(err)
	}
	if api == nil {
		api = r.dyn.Resource(nanoSegmentGVR).Namespace(u.GetNamespace())
	}
	cur, err := api.Get(r.ctx, u.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(r.ctx, u, metav1.CreateOptions{})
	case err == nil:
		u.SetResourceVersion(cur.GetResourceVersion())
		_, err = api.Update(r.ctx, u, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("apply %s %s: %v", u.GetKind(), o.Key(), err)
	}
}

func (r *replay) deletePolicy(key string) {
	t := r.t
	t.Helper()
	ns, name, namespaced := strings.Cut(key, "/")
	if !namespaced { // a ClusterNetworkPolicy, by name
		if err := r.dyn.Resource(storekube.ClusterNetworkPolicyResource).Delete(r.ctx, key, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete ClusterNetworkPolicy %s: %v", key, err)
		}
		return
	}
	err := r.cs.NetworkingV1().NetworkPolicies(ns).Delete(r.ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		err = r.dyn.Resource(nanoSegmentGVR).Namespace(ns).Delete(r.ctx, name, metav1.DeleteOptions{})
	}
	if err != nil {
		t.Fatalf("delete policy %s: %v", key, err)
	}
}

// waitTables waits until every running pod (not on the host network) has
// a table.
func (r *replay) waitTables() {
	t := r.t
	t.Helper()
	dp := dataplane.New(nil)
	for key, p := range r.pods {
		if p.HostNetwork || (p.Phase != "" && p.Phase != corev1.PodRunning) {
			continue
		}
		path := r.netns[key].Path()
		waitFor(t, key+" table", 20*time.Second, func() bool {
			st, err := dp.Read(path)
			return err == nil && st.Present
		})
	}
}

// settle is how long a round of probes must keep agreeing with the
// expectations before it counts (the agent applies changes within a
// second); limit is how long to wait for a first agreeing round.
const (
	settle = 1500 * time.Millisecond
	limit  = 10 * time.Second
)

// check probes conns until all agree with their expected verdicts (or
// limit passes), waits settle, probes once more and reports each
// connection whose final verdict differs. It returns how many differ.
func (r *replay) check(what string, conns []policies.CaseConnection) int {
	t := r.t
	t.Helper()
	start := time.Now()
	var got []string
	for {
		got = r.probe(conns)
		if agree(conns, got) || time.Since(start) > limit {
			break
		}
	}
	time.Sleep(settle)
	got = r.probe(conns)
	got = r.confirmDenies(conns, got, func(i int) bool { return conns[i].Expect != "deny" })
	bad, probed := 0, 0
	for i, cn := range conns {
		if got[i] != "skip" {
			probed++
		}
		want := string(cn.Expect)
		if want == "audit-deny" {
			want = "allow" // audit mode lets it through
		}
		switch {
		case got[i] == "skip":
			t.Logf("%s: %s -> %s %s/%d: not probed (no %s server)", what, cn.From, cn.To, protoOf(cn.Protocol), cn.Port, protoOf(cn.Protocol))
		case got[i] != want:
			bad++
			t.Errorf("MISMATCH %s: %s -> %s %s/%d: got %s, want %s", what, cn.From, cn.To, protoOf(cn.Protocol), cn.Port, got[i], cn.Expect)
		}
	}
	t.Logf("%s: %d of %d connections probed, %d mismatches (%s to agree and settle)", what, probed, len(conns), bad, time.Since(start).Round(time.Millisecond))
	return bad
}

func agree(conns []policies.CaseConnection, got []string) bool {
	for i, cn := range conns {
		want := string(cn.Expect)
		if want == "audit-deny" {
			want = "allow"
		}
		if got[i] != want && got[i] != "skip" {
			return false
		}
	}
	return true
}

// confirmTimeout is how long a second try of a connection that did not
// open within the probe's 500 ms may take: on a loaded 2-core box a
// connect through two network namespaces can take longer than 500 ms.
const confirmTimeout = 3 * time.Second

// confirmDenies tries again, with confirmTimeout, every connection of
// conns that got "deny" and for which retry(i) is true (those expected to
// open), so that a slow answer is not taken for a drop; it returns got
// with their new verdicts. Expected drops are not tried again: they
// would only cost time.
func (r *replay) confirmDenies(conns []policies.CaseConnection, got []string, retry func(i int) bool) []string {
	var again []policies.CaseConnection
	var at []int
	for i := range conns {
		if got[i] == "deny" && retry(i) {
			again, at = append(again, conns[i]), append(at, i)
		}
	}
	if len(again) == 0 {
		return got
	}
	for j, g := range r.probeWithin(again, confirmTimeout) {
		got[at[j]] = g
	}
	return got
}

// probe is probeWithin with a timeout of 500 ms per connection.
func (r *replay) probe(conns []policies.CaseConnection) []string {
	return r.probeWithin(conns, 500*time.Millisecond)
}

// probeWithin tries every connection concurrently: "allow" when the request got
// its reply, "deny" when not, "skip" when it cannot be tried.
func (r *replay) probeWithin(conns []policies.CaseConnection, timeout time.Duration) []string {
	got := make([]string, len(conns))
	type job struct {
		n   *nettest.Netns
		dst netip.AddrPort
	}
	jobs := make([]job, len(conns))
	for i, cn := range conns {
		jobs[i] = job{r.endpointNetns(cn.From), netip.AddrPortFrom(r.endpointAddr(cn.To), uint16(cn.Port))}
	}
	var wg sync.WaitGroup
	for i, cn := range conns {
		wg.Go(func() {
			j := jobs[i]
			var err error
			switch protoOf(cn.Protocol) {
			case "TCP":
				err = nettest.DialTCP(j.n, j.dst, timeout)
			case "UDP":
				err = dialUDP(j.n, j.dst, timeout)
			case "SCTP":
				err = dialSCTP(j.n, j.dst, timeout)
				if errors.Is(err, errNoSCTP) {
					got[i] = "skip"
					return
				}
			}
			if err == nil {
				got[i] = "allow"
			} else {
				got[i] = "deny"
			}
		})
	}
	wg.Wait()
	return got
}

// serveUDP answers every datagram to UDP port in n with the same bytes.
func serveUDP(t *testing.T, n *nettest.Netns, port int) {
	t.Helper()
	var pc net.PacketConn
	n.Do(t, func() error {
		var err error
		pc, err = net.ListenPacket("udp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 1500)
		for {
			m, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(b[:m], from)
		}
	}()
}

// dialUDP sends one datagram from n to dst and waits for its echo.
func dialUDP(n *nettest.Netns, dst netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	var derr error
	if err := nsenter.Do(n.Handle, func() error {
		c, derr = net.Dial("udp", dst.String())
		return nil
	}); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	b := make([]byte, 16)
	_, err := c.Read(b)
	return err
}

var errNoSCTP = errors.New("no SCTP in this kernel")

// serveSCTP listens on SCTP port in n (IPv4) and accepts associations
// until cleanup; an association that comes up is the verdict.
func serveSCTP(t *testing.T, n *nettest.Netns, port int) error {
	t.Helper()
	var fd int
	var serr error
	n.Do(t, func() error {
		fd, serr = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
		if serr != nil {
			return nil
		}
		if serr = unix.Bind(fd, &unix.SockaddrInet4{Port: port}); serr == nil {
			serr = unix.Listen(fd, 64)
		}
		return nil
	})
	if serr != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return serr
	}
	t.Cleanup(func() { unix.Shutdown(fd, unix.SHUT_RDWR); unix.Close(fd) })
	go func() {
		for {
			c, _, err := unix.Accept(fd)
			if err != nil {
				return
			}
			unix.Close(c)
		}
	}()
	return nil
}

// dialSCTP sets up an SCTP association from n to dst (IPv4) within
// timeout; errNoSCTP when the kernel has no SCTP.
func dialSCTP(n *nettest.Netns, dst netip.AddrPort, timeout time.Duration) error {
	var cerr error
	if err := nsenter.Do(n.Handle, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
		if err != nil {
			cerr = fmt.Errorf("%w: %v", errNoSCTP, err)
			return nil
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval(timeout.Nanoseconds())
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		cerr = unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
		return nil
	}); err != nil {
		return err
	}
	return cerr
}
