//go:build linux

package nodeagent

import (
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/manifests"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	storekube "github.com/nanoseg/nanoseg/store/kube"
)

// ClusterNetworkPolicies through a real API server: the lab addresses of
// these tests (no other test uses 198.18.79.0/24 or 2001:db8:79::/64).
var (
	cnpClientV4 = netip.MustParseAddr("198.18.79.1")
	cnpClientV6 = netip.MustParseAddr("2001:db8:79::1")
	cnpServerV4 = netip.MustParseAddr("198.18.79.2")
	cnpServerV6 = netip.MustParseAddr("2001:db8:79::2")
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCNPCRD creates nanoseg's ClusterNetworkPolicy CRD
// (manifests/crds/cnp) and waits until the kind is served; it returns
// the CRD's name.
func installCNPCRD(t *testing.T, ctx context.Context, dyn dynamic.Interface) string {
	t.Helper()
	raw, err := fs.ReadFile(manifests.FS, manifests.ClusterNetworkPolicyCRD)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	crd := objs[0]
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteCNPCRD(t, context.Background(), dyn, crd.GetName()) })
	waitFor(t, "ClusterNetworkPolicies served", 30*time.Second, func() bool {
		_, err := dyn.Resource(storekube.ClusterNetworkPolicyResource).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil
	})
	return crd.GetName()
}

// deleteCNPCRD deletes the CRD and waits until it is gone (its objects
// are deleted first, by the API server).
func deleteCNPCRD(t *testing.T, ctx context.Context, dyn dynamic.Interface, name string) {
	t.Helper()
	err := dyn.Resource(crdGVR).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("delete CRD %s: %v", name, err)
		return
	}
	waitFor(t, "CRD "+name+" gone", 30*time.Second, func() bool {
		_, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

// cnpObj is a ClusterNetworkPolicy named name with spec (YAML written by a
// test; NS in it stands for the test's namespace).
func cnpObj(t *testing.T, name, ns, spec string) *unstructured.Unstructured {
	t.Helper()
	var s map[string]any
	if err := yaml.Unmarshal([]byte(strings.ReplaceAll(spec, "NS", ns)), &s); err != nil {
		t.Fatalf("spec of %s: %v", name, err)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cnpv1alpha2.APIVersion, "kind": cnpv1alpha2.Kind,
		"metadata": map[string]any{"name": name}, "spec": s,
	}}
}

// putCNP creates or replaces the ClusterNetworkPolicy u.
func putCNP(t *testing.T, ctx context.Context, dyn dynamic.Interface, u *unstructured.Unstructured) {
	t.Helper()
	api := dyn.Resource(storekube.ClusterNetworkPolicyResource)
	cur, err := api.Get(ctx, u.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, u, metav1.CreateOptions{})
	case err == nil:
		u.SetResourceVersion(cur.GetResourceVersion())
		_, err = api.Update(ctx, u, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("put ClusterNetworkPolicy %s: %v", u.GetName(), err)
	}
}

// cnpLab is a client and a server pod of node-c in one netns each, with
// servers on 8080 and 9090, and node-c's agent.
type cnpLab struct {
	k              *kcluster
	dyn            dynamic.Interface
	client, server *nettest.Netns
}

func (l *cnpLab) pod(t *testing.T, ctx context.Context, name string, labels map[string]string, ips ...netip.Addr) {
	t.Helper()
	l.k.pod(t, ctx, name, "node-c", labels, ips...)
}

// expect probes client -> server on every port of want over IPv4 and IPv6
// until each opens or not as want says (10 s at most).
func (l *cnpLab) expect(t *testing.T, what string, want map[uint16]bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var wrong []string
		for port, open := range want {
			for _, a := range []netip.Addr{cnpServerV4, cnpServerV6} {
				got := nettest.DialTCP(l.client, netip.AddrPortFrom(a, port), 300*time.Millisecond) == nil
				if got != open {
					wrong = append(wrong, fmt.Sprintf("%s:%d open=%v", a, port, got))
				}
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			st, err := dataplane.New(nil).Read(l.server.Path())
			t.Fatalf("%s: %v after 10s (want %v); server table: %+v %v", what, wrong, want, st.RuleSet, err)
		}
	}
}

// TestClusterNetworkPoliciesOnAPIServer: ClusterNetworkPolicies created,
// changed and deleted through a real API server are programmed by the node
// agent (New, as `nanoseg node` builds it) in the per-tier kernel maps,
// checked with real packets over IPv4 and IPv6:
//   - without the CRD the agent starts and is ready (the kind counts as
//     synced, empty), and picks the kind up once the CRD is installed;
//   - an Admin Deny beats a NetworkPolicy allow;
//   - the same rule turned into a Pass hands the decision to the
//     NetworkPolicy;
//   - a Baseline Deny loses to a NetworkPolicy allow and decides once the
//     NetworkPolicy is gone;
//   - two Admin policies on one port, Accept before Deny, then their
//     priorities swapped through the API: the Deny decides;
//   - an update that passes the CRD's schema but fails our validation
//     leaves the kernel's table as it was, and is logged, counted and
//     recorded as an Event;
//   - the CRD deleted: its policies go, the agent keeps running and
//     enforcing NetworkPolicies.
func TestClusterNetworkPoliciesOnAPIServer(t *testing.T) {
	nettest.RequireRoot(t)
	c := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	// A CRD left by an earlier run of this test in the shared cluster.
	if _, err := dyn.Resource(crdGVR).Get(ctx, "clusternetworkpolicies.policy.networking.k8s.io", metav1.GetOptions{}); err == nil {
		deleteCNPCRD(t, ctx, dyn, "clusternetworkpolicies.policy.networking.k8s.io")
	}
	k := &kcluster{c: c, cs: c.Client, ns: c.Namespace(t, nil)}
	l := &cnpLab{k: k, dyn: dyn, client: nettest.New(t), server: nettest.New(t)}
	nettest.Connect(t, l.client, l.server, []netip.Prefix{netip.PrefixFrom(cnpClientV4, 24), netip.PrefixFrom(cnpClientV6, 64)},
		[]netip.Prefix{netip.PrefixFrom(cnpServerV4, 24), netip.PrefixFrom(cnpServerV6, 64)})
	nettest.ServeTCP(t, l.server, 8080)
	nettest.ServeTCP(t, l.server, 9090)
	l.pod(t, ctx, "client-0", map[string]string{"app": "client"}, cnpClientV4, cnpClientV6)
	l.pod(t, ctx, "server-0", map[string]string{"app": "server"}, cnpServerV4, cnpServerV6)

	start := time.Now()
	ownerDir := t.TempDir()
	a, stopA := k.agent(t, "node-c", ownerDir)
	w := a.parts.Policies.(*storekube.PolicyWatcher)
	if w.ClusterNetworkPoliciesServed() {
		t.Error("the watcher says ClusterNetworkPolicies are served before their CRD exists")
	}
	t.Logf("agent ready without the CRD in %s", time.Since(start).Round(time.Millisecond))
	l.expect(t, "no policy", map[uint16]bool{8080: true, 9090: true})

	crd := installCNPCRD(t, ctx, dyn)
	// The NetworkPolicy: server-0 isolated, 8080 from client-0 allowed.
	byPod := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}
	nps := k.cs.NetworkingV1().NetworkPolicies(k.ns)
	if _, err := nps.Create(ctx, serverPolicy(k.ns, 8080, byPod), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "NetworkPolicy", map[uint16]bool{8080: true, 9090: false})

	// Admin Deny on 8080 beats the NetworkPolicy's allow. Installed
	// right after the agent started, the CRD is picked up within the
	// informer's retry (client-go's backoff).
	const guard = `{tier: Admin, priority: 10,
  subject: {pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: NS}}, podSelector: {matchLabels: {app: server}}}},
  ingress: [{name: no-8080, action: ACTION, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: NS}}}], protocols: [{tcp: {destinationPort: {number: 8080}}}]}]}`
	start = time.Now()
	putCNP(t, ctx, dyn, cnpObj(t, "guard", k.ns, strings.Replace(guard, "ACTION", "Deny", 1)))
	waitFor(t, "the agent sees the CRD", 40*time.Second, w.ClusterNetworkPoliciesServed)
	l.expect(t, "Admin Deny", map[uint16]bool{8080: false, 9090: false})
	t.Logf("Admin Deny enforced %s after the CRD was installed and the policy created", time.Since(start).Round(time.Millisecond))

	// The same rule as a Pass: the NetworkPolicy decides again.
	putCNP(t, ctx, dyn, cnpObj(t, "guard", k.ns, strings.Replace(guard, "ACTION", "Pass", 1)))
	l.expect(t, "Admin Pass", map[uint16]bool{8080: true, 9090: false})

	// A Baseline Deny of everything loses to the NetworkPolicy's allow,
	// and decides once the NetworkPolicy is gone.
	putCNP(t, ctx, dyn, cnpObj(t, "baseline", k.ns, `{tier: Baseline, priority: 10,
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: NS}}},
  ingress: [{action: Deny, from: [{namespaces: {}}]}]}`))
	if err := wait(ctx, func() bool { return len(w.InForce().ClusterNetworkPolicies) == 2 }); err != nil {
		t.Fatal("the baseline policy never came into force")
	}
	l.expect(t, "Baseline Deny under a NetworkPolicy allow", map[uint16]bool{8080: true, 9090: false})
	if err := nps.Delete(ctx, "server", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "Baseline Deny alone", map[uint16]bool{8080: false, 9090: false})

	// Priorities: Accept at 20 before Deny at 30 on 9090; swapped, the
	// Deny comes first.
	const onPort = `{tier: Admin, priority: PRIO,
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: NS}}},
  ingress: [{action: ACTION, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 9090}}}]}]}`
	port := func(action, prio string) string {
		return strings.NewReplacer("ACTION", action, "PRIO", prio).Replace(onPort)
	}
	putCNP(t, ctx, dyn, cnpObj(t, "accept-9090", k.ns, port("Accept", "20")))
	putCNP(t, ctx, dyn, cnpObj(t, "deny-9090", k.ns, port("Deny", "30")))
	l.expect(t, "Accept at 20, Deny at 30", map[uint16]bool{8080: false, 9090: true})
	putCNP(t, ctx, dyn, cnpObj(t, "accept-9090", k.ns, port("Accept", "40")))
	l.expect(t, "Accept moved to 40", map[uint16]bool{8080: false, 9090: false})

	// An update the CRD's schema lets through and our validation
	// refuses (a selector without values): the kernel keeps its table.
	dp := dataplane.New(nil)
	before, err := dp.Read(l.server.Path())
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(port("Accept", "5"), "from: [{namespaces: {}}]", "from: [{namespaces: {matchExpressions: [{key: team, operator: In}]}}]", 1)
	putCNP(t, ctx, dyn, cnpObj(t, "deny-9090", k.ns, bad))
	putCNP(t, ctx, dyn, cnpObj(t, "new-bad", k.ns, bad))
	if err := wait(ctx, func() bool { return len(w.Rejected()) == 2 }); err != nil {
		t.Fatalf("rejections: %v", w.Rejected())
	}
	if got := kindMetric(t, a, "nanoseg_policy_watcher_rejections_total", cnpv1alpha2.Kind); got != 2 {
		t.Errorf("nanoseg_policy_watcher_rejections_total{kind=ClusterNetworkPolicy} = %v, want 2", got)
	}
	time.Sleep(time.Second) // a sync the rejection might (wrongly) cause
	after, err := dp.Read(l.server.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !after.RuleSet.Equal(before.RuleSet) || !slices.Equal(after.Elements, before.Elements) {
		t.Errorf("an invalid ClusterNetworkPolicy changed the kernel's table:\nbefore %+v\nafter  %+v", before.RuleSet, after.RuleSet)
	}
	l.expect(t, "after the invalid update", map[uint16]bool{8080: false, 9090: false})
	// The kernel holds what the agent wants (its drift check agrees), and
	// the Admin Deny's own counter counted the dropped probes.
	sync := a.Node().Read(k.ns+"_server-0", false)
	if !sync.InSync || sync.ReadErr != nil || sync.Counters["cnp/admin/deny-9090/ingress-0"].Packets == 0 {
		t.Errorf("server-0: in sync %v (%v), counter of cnp/admin/deny-9090/ingress-0 %+v; counters %v",
			sync.InSync, sync.ReadErr, sync.Counters["cnp/admin/deny-9090/ingress-0"], sync.Counters)
	}
	// The agent restarted (a DaemonSet rollout) while deny-9090's
	// latest version is still the invalid one: the last valid version,
	// kept in the owner directory, stays in force, and the kernel's table
	// is the same as before.
	stopA()
	a, stopA = k.agent(t, "node-c", ownerDir)
	defer stopA()
	w = a.parts.Policies.(*storekube.PolicyWatcher)
	l.expect(t, "after a restart of the agent", map[uint16]bool{8080: false, 9090: false})
	if rs := w.Rejected(); len(rs) != 2 || !rs[0].KeptPrevious || rs[0].Key() != "ClusterNetworkPolicy deny-9090" || rs[1].KeptPrevious {
		t.Errorf("rejections after the restart: %v; want deny-9090 with its previous version kept, new-bad with none", rs)
	}
	restarted, err := dp.Read(l.server.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !restarted.RuleSet.Equal(before.RuleSet) || !slices.Equal(restarted.Elements, before.Elements) {
		t.Errorf("a restart under an invalid ClusterNetworkPolicy changed the kernel's table:\nbefore %+v\nafter  %+v", before.RuleSet, restarted.RuleSet)
	}
	var ev *corev1.Event
	if err := wait(ctx, func() bool {
		evs, err := k.cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=deny-9090"})
		if err != nil || len(evs.Items) == 0 {
			return false
		}
		ev = &evs.Items[0]
		return true
	}); err != nil {
		t.Fatal("no Event on the rejected ClusterNetworkPolicy in namespace default")
	}
	if ev.Reason != storekube.ReasonPolicyRejected || ev.InvolvedObject.Kind != cnpv1alpha2.Kind || ev.InvolvedObject.APIVersion != cnpv1alpha2.APIVersion ||
		!strings.Contains(ev.Message, "previous version") || !strings.Contains(ev.Message, "matchExpressions[0].values") {
		t.Errorf("Event: reason %s on %+v: %s", ev.Reason, ev.InvolvedObject, ev.Message)
	}

	// The CRD deleted: its objects go with it, the agent runs on.
	deleteCNPCRD(t, ctx, dyn, crd)
	l.expect(t, "CRD deleted", map[uint16]bool{8080: true, 9090: true})
	if _, err := nps.Create(ctx, serverPolicy(k.ns, 9090, byPod), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "a NetworkPolicy after the CRD went", map[uint16]bool{8080: false, 9090: true})
	if !a.Ready() {
		t.Error("the agent is not ready after the CRD went")
	}
	waitFor(t, "the watcher notices the CRD went", 40*time.Second, func() bool { return !w.ClusterNetworkPoliciesServed() })
}

// wait polls cond every 20 ms until it holds or ctx ends.
func wait(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// kindMetric returns the value of the agent's metric name with label
// kind=kind (0 when there is none).
func kindMetric(t *testing.T, a *Agent, name, kind string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "kind" && lp.GetValue() == kind {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}
