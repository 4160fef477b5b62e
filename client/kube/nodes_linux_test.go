//go:build linux

package kube

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/manifests"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// The addresses of TestSessionNodesPeer (no other test uses
// 198.18.87.0/24; nothing is sent to them): a pod and two nodes.
const (
	nodesPodV4   = "198.18.87.1"
	nodesInfraV4 = "198.18.87.2"
	nodesOtherV4 = "198.18.87.3"
)

// TestSessionNodesPeer: `kubectl nanoseg policy explain` (the Session over
// a real API server) from a pod to a node's address names the Admin rule
// whose `nodes` peer selects that Node by its labels, as the node agents
// enforce it (nodeagent's TestClusterNetworkPolicyNodesPeer):
//   - the admin: web -> the InternalIP of the Node labelled role=infra on
//     8080 is denied by ClusterNetworkPolicy no-infra (Admin, priority 7)
//     rule "infra-8080"; the ExternalIP of the same Node too; another
//     Node's address is allowed;
//   - a user with nanoseg-view bound cluster-wide but not
//     nanoseg-view-nodes: the Nodes are not listed, the answer is allow,
//     and the Session warns that the nodes peers of no-infra are left out,
//     naming the role to bind;
//   - with nanoseg-view-nodes bound cluster-wide too: the rule again, no
//     warning.
func TestSessionNodesPeer(t *testing.T) {
	if NodesRole != manifests.ViewNodesRole {
		t.Fatalf("NodesRole %q, the manifests' role %q", NodesRole, manifests.ViewNodesRole)
	}
	c := kubetest.New(t, kubetest.Options{CRDDirs: []string{filepath.Join("..", "..", "manifests", "crds"), filepath.Join("..", "..", "manifests", "crds", "cnp")}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := c.Namespace(t, nil)
	pod, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "worker-1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: nodesPodV4, PodIPs: []corev1.PodIP{{IP: nodesPodV4}}}
	if _, err := c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]struct {
		labels map[string]string
		addrs  []corev1.NodeAddress
	}{
		"infra-1":  {map[string]string{"role": "infra"}, []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "infra-1"}, {Type: corev1.NodeInternalIP, Address: nodesInfraV4}, {Type: corev1.NodeExternalIP, Address: "2001:db8:87::2"}}},
		"worker-1": {nil, []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodesOtherV4}}},
	} {
		node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: n.labels}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node.Status.Addresses = n.addrs
		if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dyn := dynamic.NewForConfigOrDie(c.Config)
	var cnp map[string]any
	if err := yaml.Unmarshal([]byte(`apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-infra}
spec:
  tier: Admin
  priority: 7
  subject: {namespaces: {}}
  egress: [{name: infra-8080, action: Deny, to: [{nodes: {matchLabels: {role: infra}}}], protocols: [{tcp: {destinationPort: {number: 8080}}}]}]
`), &cnp); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(ClusterNetworkPolicies).Create(ctx, &unstructured.Unstructured{Object: cnp}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	const rule = `ClusterNetworkPolicy no-infra (Admin, priority 7) rule egress-0 "infra-8080"`
	// explain opens a Session as user (the admin when nil) and explains
	// web -> to:8080 through its client, as the CLI does; it returns the
	// verdict, the deciding cluster rule and what the Session logged.
	explain := func(cfg kubernetes.Interface, dyn dynamic.Interface, to string) (model.Verdict, string, string) {
		t.Helper()
		var logs bytes.Buffer
		s, err := OpenClients(ctx, Config{EvidenceDir: t.TempDir()}, cfg, dyn, ns, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			t.Fatal(err)
		}
		var v policies.Evaluation
		if err := s.Client().Do(ctx, "GET", "/v1/explain", url.Values{"from": {ns + "/web"}, "to": {to}, "port": {"8080/TCP"}}, nil, &v); err != nil {
			t.Fatal(err)
		}
		r := ""
		if v.Egress.ClusterRule != nil {
			r = v.Egress.ClusterRule.String()
		}
		return v.Action, r, logs.String()
	}
	for _, tc := range []struct {
		to, rule string
		verdict  model.Verdict
	}{{nodesInfraV4, rule, model.VerdictDeny}, {"2001:db8:87::2", rule, model.VerdictDeny}, {nodesOtherV4, "", model.VerdictAllow}} {
		if got, r, logs := explain(c.Client, dyn, tc.to); got != tc.verdict || r != tc.rule || logs != "" {
			t.Errorf("admin: explain web -> %s 8080: %s by %q, want %s by %q (logs %q)", tc.to, got, r, tc.verdict, tc.rule, logs)
		}
	}

	// A viewer bound cluster-wide, without the Nodes role.
	objs, err := manifests.Render(manifests.FS, "rbac")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, err := dyn.Resource(schema.GroupVersionResource{Group: rbacv1.GroupName, Version: "v1", Resource: "clusterroles"}).Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	bind := func(role string) {
		t.Helper()
		if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "viewer-" + role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind(manifests.ViewRole)
	vc := c.UserConfig("viewer")
	vkc, vdyn := kubernetes.NewForConfigOrDie(vc), dynamic.NewForConfigOrDie(vc)
	// RBAC takes effect at once on the API server's authorizer cache
	// refresh: wait until the viewer may list pods.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := vkc.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the viewer may not list pods: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, r, logs := explain(vkc, vdyn, nodesInfraV4)
	if got != model.VerdictAllow || r != "" {
		t.Errorf("viewer without %s: explain web -> infra-1 8080: %s by %q, want allow (the nodes peer left out)", NodesRole, got, r)
	}
	for _, want := range []string{"Nodes not readable with these credentials", "leave the nodes peers of these ClusterNetworkPolicies out",
		"bind the ClusterRole nanoseg-view-nodes cluster-wide", "policies=[no-infra]", `cannot list resource \"nodes\"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("viewer without %s: the warning lacks %q:\n%s", NodesRole, want, logs)
		}
	}
	bind(manifests.ViewNodesRole)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := vkc.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the viewer may not list nodes with %s: %v", NodesRole, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, r, logs := explain(vkc, vdyn, nodesInfraV4); got != model.VerdictDeny || r != rule || logs != "" {
		t.Errorf("viewer with %s: explain web -> infra-1 8080: %s by %q, want deny by %q (logs %q)", NodesRole, got, r, rule, logs)
	}
}
