//go:build linux

package nodeagent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/nettest"
	storekube "github.com/nanoseg/nanoseg/store/kube"
)

// The lab addresses of TestClusterNetworkPolicyNodesPeer (no other test
// uses 198.18.86.0/24): a pod, and a network namespace standing for a
// node whose Node object names its address as InternalIP.
var (
	cnpNodesPodV4  = netip.MustParseAddr("198.18.86.1")
	cnpNodesHostV4 = netip.MustParseAddr("198.18.86.2")
)

// TestClusterNetworkPolicyNodesPeer: a ClusterNetworkPolicy `nodes` peer
// in a cluster matches the addresses of the Nodes its selector selects,
// as the node agent reads them from the API server (labels and
// status.addresses), with real packets:
//   - a Node labelled role=infra with InternalIP 198.18.86.2, and an
//     Admin Deny of the pod's egress to nodes role=infra: the pod's
//     connections to that address are dropped (8080), others to it stay
//     open (9090, not in the rule);
//   - the Node relabelled role=edge: the peer selects no node, the
//     connection opens again (the agent recompiles on the label change);
//   - labelled back, then its InternalIP changed to another address: the
//     old address opens again (the agent follows the address).
func TestClusterNetworkPolicyNodesPeer(t *testing.T) {
	nettest.RequireRoot(t)
	c := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	const crdName = "clusternetworkpolicies.policy.networking.k8s.io"
	if _, err := dyn.Resource(crdGVR).Get(ctx, crdName, metav1.GetOptions{}); err == nil {
		deleteCNPCRD(t, ctx, dyn, crdName)
	}
	k := &kcluster{c: c, cs: c.Client, ns: c.Namespace(t, nil)}
	pod, host := nettest.New(t), nettest.New(t)
	nettest.Connect(t, pod, host, []netip.Prefix{netip.PrefixFrom(cnpNodesPodV4, 24)}, []netip.Prefix{netip.PrefixFrom(cnpNodesHostV4, 24)})
	nettest.ServeTCP(t, host, 8080)
	nettest.ServeTCP(t, host, 9090)
	k.pod(t, ctx, "client-0", "node-n", map[string]string{"app": "client"}, cnpNodesPodV4)

	nodes := c.Client.CoreV1().Nodes()
	const nodeName = "cnp-nodes-infra"
	setNode := func(role string, addr netip.Addr) {
		t.Helper()
		n, err := nodes.Get(ctx, nodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			n, err = nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
		n.Labels = map[string]string{"role": role}
		if n, err = nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: nodeName}, {Type: corev1.NodeInternalIP, Address: addr.String()}}
		if _, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := nodes.Delete(context.Background(), nodeName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete node %s: %v", nodeName, err)
		}
	})
	setNode("infra", cnpNodesHostV4)
	installCNPCRD(t, ctx, dyn)

	expect := func(what string, want map[uint16]bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var wrong []uint16
			for port, open := range want {
				if got := nettest.DialTCP(pod, netip.AddrPortFrom(cnpNodesHostV4, port), 300*time.Millisecond) == nil; got != open {
					wrong = append(wrong, port)
				}
			}
			if len(wrong) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: ports %v to %s not as wanted %v after 10s", what, wrong, cnpNodesHostV4, want)
			}
		}
	}

	a, _ := k.agent(t, "node-n", t.TempDir())
	w := a.parts.Policies.(*storekube.PolicyWatcher)
	expect("no policy", map[uint16]bool{8080: true, 9090: true})
	putCNP(t, ctx, dyn, cnpObj(t, "no-infra-8080", k.ns, `{tier: Admin, priority: 10,
  subject: {pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: NS}}, podSelector: {matchLabels: {app: client}}}},
  egress: [{action: Deny, to: [{nodes: {matchLabels: {role: infra}}}], protocols: [{tcp: {destinationPort: {number: 8080}}}]}]}`))
	if err := wait(ctx, func() bool { return len(w.InForce().ClusterNetworkPolicies) == 1 }); err != nil {
		t.Fatal("the policy never came into force")
	}
	expect("Admin Deny to nodes role=infra", map[uint16]bool{8080: false, 9090: true})

	setNode("edge", cnpNodesHostV4)
	expect("the node relabelled role=edge", map[uint16]bool{8080: true, 9090: true})

	setNode("infra", cnpNodesHostV4)
	expect("the node labelled role=infra again", map[uint16]bool{8080: false, 9090: true})

	setNode("infra", netip.MustParseAddr("198.18.86.3"))
	expect("the node's InternalIP moved away", map[uint16]bool{8080: true, 9090: true})
}
