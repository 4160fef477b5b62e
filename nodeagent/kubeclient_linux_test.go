//go:build linux

package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nanoseg/nanoseg/internal/kubetest"
)

// TestPodEventOnRealAPIServer: the Event on an unfound pod is accepted by
// a real API server (through RESTConfig from a kubeconfig) and names the
// pod and the reason; an identity without RBAC for events is refused, and
// the agent then stops recording Events.
func TestPodEventOnRealAPIServer(t *testing.T) {
	c := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := RESTConfig(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RESTConfig(filepath.Join(t.TempDir(), "nosuch")); err == nil || !strings.Contains(err.Error(), "node.kubeconfig") {
		t.Errorf("RESTConfig of a missing file: %v, want an error naming node.kubeconfig", err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	ns := c.Namespace(t, nil)
	if _, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-0", Namespace: ns},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	u := UnfoundPod{Pod: ns + "/api-0", Code: "not_found", Reason: "no network namespace of the node holds 198.18.0.2"}
	if err := PodEvent(client, "node-a")(ctx, u); err != nil {
		t.Fatal(err)
	}
	evs, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=api-0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) != 1 || evs.Items[0].Reason != "NetnsNotFound" || !strings.Contains(evs.Items[0].Message, "198.18.0.2") {
		t.Fatalf("events: %+v", evs.Items)
	}
	// An identity without RBAC for events.
	denied := kubernetes.NewForConfigOrDie(c.UserConfig("nanoseg-test-nobody"))
	if err := PodEvent(denied, "node-x")(ctx, UnfoundPod{Pod: ns + "/api-0", Code: "not_found"}); err == nil {
		t.Fatal("an identity without RBAC created an Event")
	}
	dir, _ := os.MkdirTemp("", "nanoseg-owners-")
	defer os.RemoveAll(dir)
	inv, pol := &fakeInventory{}, &fakePolicies{}
	inv.synced.Store(true)
	pol.synced.Store(true)
	calls := 0
	unfound := []UnfoundPod{{Pod: ns + "/api-0", Code: "not_found"}}
	a, err := NewAgent(Config{NodeName: "node-x", Listen: "127.0.0.1:0", OwnerDir: dir}, Parts{Inventory: inv, Policies: pol,
		Unfound: func() []UnfoundPod { return unfound },
		Event: func(ctx context.Context, u UnfoundPod) error {
			calls++
			return PodEvent(denied, "node-x")(ctx, u)
		}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.reportUnfound(ctx)
	unfound = append(unfound, UnfoundPod{Pod: ns + "/api-1", Code: "partial"})
	a.reportUnfound(ctx)
	if calls != 1 {
		t.Errorf("Event called %d times after a refusal, want 1 (no more Events once refused)", calls)
	}
}

// TestProbeOnRealAPIServer: Probe passes for an identity with the node
// agent's rights and names the list that fails for one without RBAC
// and for an API server that does not answer.
func TestProbeOnRealAPIServer(t *testing.T) {
	c := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	probe := func(cfg *rest.Config) error {
		return Probe(kubernetes.NewForConfigOrDie(cfg), dynamic.NewForConfigOrDie(cfg))(ctx)
	}
	if err := probe(c.Config); err != nil {
		t.Errorf("admin: %v", err)
	}
	if err := probe(c.UserConfig("nanoseg-test-nobody")); err == nil || !strings.Contains(err.Error(), "list pods") ||
		!strings.Contains(err.Error(), "forbidden") {
		t.Errorf("identity without RBAC: %v, want a forbidden list of pods", err)
	}
	gone := rest.CopyConfig(c.Config)
	gone.Host = "https://127.0.0.1:1"
	if err := probe(gone); err == nil || !strings.Contains(err.Error(), "list pods") {
		t.Errorf("unreachable API server: %v, want an error naming the list", err)
	}
}
