//go:build linux

package kubelab_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/lab/kubelab"
)

func TestMain(m *testing.M) { kubetest.Main(m, kubetest.Options{}) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func plan(t *testing.T, raw []byte) *lab.Plan {
	t.Helper()
	top, err := lab.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := lab.NewPlan(top, raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pods(t *testing.T, cs kubernetes.Interface, ns string) map[string]corev1.Pod {
	t.Helper()
	l, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Pod{}
	for _, p := range l.Items {
		out[p.Name] = p
	}
	return out
}

// TestRegisterShop: the shop lab, registered, is its namespaces (with their
// labels; kube-system, which the API server made, labelled but not taken
// over), one Ready node named after the lab, and a Running, Ready pod per
// replica with the lab's labels, the agreed owner, the declared ports and
// both addresses. Registering again changes nothing; Unregister removes the
// pods and the node and deletes only the namespaces it created.
func TestRegisterShop(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := ctxFor(t)
	raw, err := os.ReadFile("../../manifests/lab/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := plan(t, raw)
	start := time.Now()
	if err := kubelab.Register(ctx, c.Client, p); err != nil {
		t.Fatal(err)
	}
	t.Logf("registered %d endpoints in %s", len(p.Endpoints), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { _ = kubelab.Unregister(context.Background(), c.Client, p.Lab) })

	for _, ns := range p.Topology.Namespaces {
		got, err := c.Client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range ns.Labels {
			if got.Labels[k] != v {
				t.Errorf("namespace %s label %s=%q, want %q", ns.Name, k, got.Labels[k], v)
			}
		}
		if created := got.Annotations[kubelab.Annotation] == p.Lab; created == (ns.Name == "kube-system") {
			t.Errorf("namespace %s: annotation %q (kube-system is the API server's, the others the lab's)", ns.Name, got.Annotations[kubelab.Annotation])
		}
	}
	node, err := c.Client.CoreV1().Nodes().Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the lab's node: %v", err)
	}
	if len(node.Status.Conditions) == 0 || node.Status.Conditions[0].Type != corev1.NodeReady || node.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Errorf("node shop conditions %+v, want Ready", node.Status.Conditions)
	}

	uids := map[string]types.UID{}
	for _, e := range p.Endpoints {
		if e.External {
			continue
		}
		pod, err := c.Client.CoreV1().Pods(e.Namespace).Get(ctx, kubelab.PodName(e), metav1.GetOptions{})
		if err != nil {
			t.Errorf("pod of %s: %v", e.ID(), err)
			continue
		}
		uids[e.ID()] = pod.UID
		for k, v := range e.Labels {
			if pod.Labels[k] != v {
				t.Errorf("%s label %s=%q, want %q", pod.Name, k, pod.Labels[k], v)
			}
		}
		hash := pod.Labels[kubelab.HashLabel]
		if want := e.Labels[kubelab.HashLabel]; (want != "" && hash != want) || (want == "" && hash != kubelab.DefaultHash) {
			t.Errorf("%s pod-template-hash %q", pod.Name, hash)
		}
		ref := metav1.GetControllerOf(pod)
		if ref == nil || ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" || ref.Name != e.Workload+"-"+hash || ref.UID != kubelab.OwnerUID {
			t.Errorf("%s controller %+v, want ReplicaSet %s-%s", pod.Name, ref, e.Workload, hash)
		}
		if pod.Spec.NodeName != "shop" {
			t.Errorf("%s on node %q, want shop", pod.Name, pod.Spec.NodeName)
		}
		if got := len(pod.Spec.Containers[0].Ports); got != len(e.Ports) {
			t.Errorf("%s has %d ports, want %d", pod.Name, got, len(e.Ports))
		}
		ips := []string{}
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		if want := []string{e.IPv4.String(), e.IPv6.String()}; !slices.Equal(ips, want) || pod.Status.PodIP != want[0] {
			t.Errorf("%s podIP %s podIPs %v, want %v", pod.Name, pod.Status.PodIP, ips, want)
		}
		if pod.Status.Phase != corev1.PodRunning || !ready(pod) {
			t.Errorf("%s phase %s ready %v, want Running and Ready", pod.Name, pod.Status.Phase, ready(pod))
		}
	}

	if err := kubelab.Register(ctx, c.Client, p); err != nil {
		t.Fatalf("register again: %v", err)
	}
	for id, uid := range uids {
		ns, _, _ := strings.Cut(id, "/")
		pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, strings.TrimPrefix(id, ns+"/"), metav1.GetOptions{})
		if err != nil || pod.UID != uid {
			t.Errorf("%s after a second Register: %v (uid %s, was %s)", id, err, pod.UID, uid)
		}
	}

	if err := kubelab.Unregister(ctx, c.Client, p.Lab); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"shop", "monitoring", "kube-system"} {
		if left := pods(t, c.Client, ns); len(left) != 0 {
			t.Errorf("pods left in %s after Unregister: %d", ns, len(left))
		}
	}
	if _, err := c.Client.CoreV1().Nodes().Get(ctx, "shop", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node shop after Unregister: %v", err)
	}
	for ns, deleted := range map[string]bool{"shop": true, "monitoring": true, "kube-system": false} {
		got, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		gone := apierrors.IsNotFound(err) || (err == nil && got.DeletionTimestamp != nil)
		if gone != deleted {
			t.Errorf("namespace %s deleted=%v after Unregister, want %v (%v)", ns, gone, deleted, err)
		}
	}
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

const twoNodes = `kind: LabTopology
name: mv
dns: mv-sys/dns
namespaces:
  - {name: mv-sys}
  - {name: mv-app, labels: {team: a}}
workloads:
  - name: dns
    namespace: mv-sys
    ports: [{port: 53, protocol: UDP}]
    node: node-a
  - name: web
    namespace: mv-app
    labels: {app: web}
    replicas: 3
    ports: [{name: http, port: 80}]
    node: [node-a, node-b, node-b]
`

// TestRegisterFollowsChanges: registered again with a changed topology,
// the pods follow (a replica moved to another node is replaced, a removed
// replica and a node left empty are deleted, changed labels are written),
// and a pod of the same name that is not the lab's is refused.
func TestRegisterFollowsChanges(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := ctxFor(t)
	p := plan(t, []byte(twoNodes))
	if err := kubelab.Register(ctx, c.Client, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kubelab.Unregister(context.Background(), c.Client, p.Lab) })
	before := pods(t, c.Client, "mv-app")
	if len(before) != 3 || before["web-1"].Spec.NodeName != "node-b" || before["web-0"].Spec.NodeName != "node-a" {
		t.Fatalf("pods before: %v", before)
	}

	changed := strings.Replace(twoNodes, "replicas: 3", "replicas: 2", 1)
	changed = strings.Replace(changed, "node: [node-a, node-b, node-b]", "node: node-a", 1)
	changed = strings.Replace(changed, "labels: {app: web}", "labels: {app: web, tier: front}", 1)
	p2 := plan(t, []byte(changed))
	if err := kubelab.Register(ctx, c.Client, p2); err != nil {
		t.Fatal(err)
	}
	after := pods(t, c.Client, "mv-app")
	if len(after) != 2 {
		t.Errorf("pods after dropping a replica: %d, want 2", len(after))
	}
	if after["web-0"].UID != before["web-0"].UID {
		t.Error("web-0 stayed on node-a but was replaced")
	}
	if after["web-1"].UID == before["web-1"].UID || after["web-1"].Spec.NodeName != "node-a" {
		t.Errorf("web-1 moved to node-a: node %s, replaced %v", after["web-1"].Spec.NodeName, after["web-1"].UID != before["web-1"].UID)
	}
	for name, pod := range after {
		if pod.Labels["tier"] != "front" || !ready(&pod) {
			t.Errorf("%s labels %v ready %v", name, pod.Labels, ready(&pod))
		}
	}
	if _, err := c.Client.CoreV1().Nodes().Get(ctx, "node-b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node-b has no lab pod left but is still there: %v", err)
	}

	stranger := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "dns-0", Namespace: "mv-app"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}},
	}
	if _, err := c.Client.CoreV1().Pods("mv-app").Create(ctx, stranger, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(changed, "namespace: mv-sys\n    ports", "namespace: mv-app\n    ports", 1)
	moved = strings.Replace(moved, "dns: mv-sys/dns", "dns: mv-app/dns", 1)
	err := kubelab.Register(ctx, c.Client, plan(t, []byte(moved)))
	if err == nil || !strings.Contains(err.Error(), "mv-app/dns-0") || !strings.Contains(err.Error(), "not lab mv's") {
		t.Errorf("register over a stranger's pod: %v, want a refusal naming mv-app/dns-0", err)
	}
}

// TestRegisterManyPods registers 200 pods on 4 nodes, again, and removes
// them, logging how long each step takes (the node agent's benchmarks
// register labs of this size and larger).
func TestRegisterManyPods(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := ctxFor(t)
	var b strings.Builder
	b.WriteString("kind: LabTopology\nname: many\ndns: many/dns\nnamespaces: [{name: many, labels: {team: many}}]\nworkloads:\n")
	b.WriteString("  - {name: dns, namespace: many, ports: [{port: 53, protocol: UDP}]}\n")
	for i := range 4 {
		fmt.Fprintf(&b, "  - {name: w%d, namespace: many, labels: {app: w%d}, replicas: 50, node: n%d, ports: [{port: 80}]}\n", i, i, i)
	}
	p := plan(t, []byte(b.String()))
	start := time.Now()
	if err := kubelab.Register(ctx, c.Client, p); err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	t.Cleanup(func() { _ = kubelab.Unregister(context.Background(), c.Client, p.Lab) })
	start = time.Now()
	if err := kubelab.Register(ctx, c.Client, p); err != nil {
		t.Fatal(err)
	}
	again := time.Since(start)
	if got := len(pods(t, c.Client, "many")); got != 201 {
		t.Errorf("%d pods registered, want 201", got)
	}
	start = time.Now()
	if err := kubelab.Unregister(ctx, c.Client, p.Lab); err != nil {
		t.Fatal(err)
	}
	t.Logf("201 pods on 5 nodes: registered in %s, again in %s, unregistered in %s",
		first.Round(time.Millisecond), again.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if got := len(pods(t, c.Client, "many")); got != 0 {
		t.Errorf("%d pods left after Unregister", got)
	}
}
