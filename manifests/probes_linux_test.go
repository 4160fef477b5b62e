//go:build linux

package manifests_test

import (
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/manifests"
)

var probes = schema.GroupVersionResource{Group: "nanoseg.io", Version: "v1alpha1", Resource: "nanosegmentprobes"}

// testProbeStatus: the node agent's ServiceAccount, with a token bound to
// its pod on node A (as a DaemonSet pod's projected token is), may answer
// node A's probes and not node B's, and answers a probe once
// (nanoseg-probe-status); a token bound to no pod names no node.
func testProbeStatus(t *testing.T, c *kubetest.Cluster) {
	ctx := ctxFor(t, time.Minute)
	for _, n := range []string{"probe-node-a", "probe-node-b"} {
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	pod, err := c.Client.CoreV1().Pods(manifests.Namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "nanoseg-node-"},
		Spec: corev1.PodSpec{NodeName: "probe-node-a", ServiceAccountName: manifests.NodeAgent,
			Containers: []corev1.Container{{Name: "agent", Image: manifests.Image}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Pods(manifests.Namespace).Delete(ctxFor(t, 10*time.Second), pod.Name, metav1.DeleteOptions{})
	})
	expiry := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(manifests.Namespace).CreateToken(ctx, manifests.NodeAgent, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = tr.Status.Token
	agent := dynFor(t, cfg)
	_, unbound := clientsFor(t, c, manifests.NodeAgent)
	admin := dynFor(t, c.Config)
	ns := c.Namespace(t, nil)
	create := func(name, node string) {
		t.Helper()
		if _, err := admin.Resource(probes).Namespace(ns).Create(ctx, object("NanoSegmentProbe", name,
			"{node: "+node+", pod: web, address: 198.18.0.9, port: 80, protocol: TCP}"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	answer := func(who string, name string) error {
		t.Helper()
		dyn := agent
		if who == "unbound" {
			dyn = unbound
		}
		u, err := dyn.Resource(probes).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(u.Object, map[string]any{"outcome": "connected", "reached": true}, "status"); err != nil {
			t.Fatal(err)
		}
		_, err = dyn.Resource(probes).Namespace(ns).UpdateStatus(ctx, u, metav1.UpdateOptions{})
		return err
	}
	create("mine", "probe-node-a")
	create("theirs", "probe-node-b")
	create("other", "probe-node-b")
	if err := answer("agent", "theirs"); !apierrors.IsForbidden(err) ||
		!strings.Contains(err.Error(), "the node agent of node probe-node-a may answer only its own node's probes (spec.node is probe-node-b)") {
		t.Errorf("another node's probe: %v", err)
	}
	if err := answer("agent", "mine"); err != nil {
		t.Errorf("its own node's probe: %v", err)
	}
	if err := answer("agent", "mine"); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "a probe is answered once") {
		t.Errorf("a probe answered twice: %v", err)
	}
	// A token bound to no pod names no node: the status is written once.
	if err := answer("unbound", "other"); err != nil {
		t.Errorf("unbound token: %v", err)
	}
	if err := answer("unbound", "other"); !apierrors.IsForbidden(err) {
		t.Errorf("unbound token, twice: %v", err)
	}
}
