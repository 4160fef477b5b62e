//go:build linux

package kube

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// TestLiveFeedLateKind: the page's change feed, started on an API server
// without the ClusterNetworkPolicy CRD, publishes once the CRD is
// installed and then at every ClusterNetworkPolicy change (it followed
// them only after a restart of the controller).
func TestLiveFeedLateKind(t *testing.T) {
	c := kubetest.New(t, kubetest.Options{CRDDirs: []string{filepath.Join("..", "..", "manifests", "crds")}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(c.Config)
	l := NewLive(c.Config, LiveConfig{KindPoll: 200 * time.Millisecond}, nil)
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ch := l.Changes()
	waitSeq := func(what string, after uint64) uint64 {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for ch.Seq() <= after {
			if time.Now().After(deadline) {
				t.Fatalf("no change published within 20 s after %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return ch.Seq()
	}

	seq := ch.Seq()
	if err := c.ApplyCRDs(ctx, filepath.Join("..", "..", "manifests", "crds", "cnp")); err != nil {
		t.Fatal(err)
	}
	seq = waitSeq("the CRD was installed", seq)
	// The informer of the kind is running once the change was published.
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cnpv1alpha2.APIVersion, "kind": cnpv1alpha2.Kind,
		"metadata": map[string]any{"name": "late"},
		"spec": map[string]any{"tier": "Admin", "priority": int64(10),
			"subject": map[string]any{"namespaces": map[string]any{}},
			"ingress": []any{map[string]any{"action": "Deny", "from": []any{map[string]any{"namespaces": map[string]any{}}}}}},
	}}
	if _, err := dyn.Resource(ClusterNetworkPolicies).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSeq("a ClusterNetworkPolicy was created", seq)
}
