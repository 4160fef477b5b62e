//go:build linux

package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

// TestClusterStoreClusterNetworkPolicies: on a real API server with
// nanoseg's ClusterNetworkPolicy CRD, the cluster store (the controller's)
// and the policy watcher (the node agent's) agree: a valid policy created
// through the API is in both; one that passes the CRD's schema and fails
// our validation is in neither; the store writes and deletes through the
// API, refusing an invalid one before writing.
func TestClusterStoreClusterNetworkPolicies(t *testing.T) {
	e := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := NewStore(e.c.Client, e.dyn, StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	api := e.dyn.Resource(ClusterNetworkPolicyResource)
	t.Cleanup(func() { _ = api.DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{}) })
	if _, err := api.Create(ctx, cnpObject(t, "guard", denyShop), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	badSel := strings.Replace(denyShop, "{matchLabels: {team: shop}}", "{matchExpressions: [{key: team, operator: In}]}", 1)
	if _, err := api.Create(ctx, cnpObject(t, "bad", badSel), metav1.CreateOptions{}); err != nil {
		t.Fatalf("the CRD refuses what only our validation should: %v", err)
	}
	waitFor(t, "the watcher judged both", func() bool {
		return len(e.w.InForce().ClusterNetworkPolicies) == 1 && len(e.w.Rejected()) == 1
	})
	got, err := st.ClusterNetworkPolicies()
	if err != nil || len(got) != 1 || got[0].Name != "guard" || got[0].Spec.Ingress[0].Action != cnpv1alpha2.ActionDeny {
		t.Fatalf("store: %+v, %v", got, err)
	}
	if w := e.w.InForce().ClusterNetworkPolicies[0]; w.Name != "guard" {
		t.Errorf("watcher: %s", w.Name)
	}

	// The store writes through the API: the watcher sees it.
	p := got[0].DeepCopy()
	p.Name = "guard-2"
	p.Spec.Priority = 20
	if err := st.PutClusterNetworkPolicy(p); err != nil {
		t.Fatal(err)
	}
	p.Spec.Priority = 21
	if err := st.PutClusterNetworkPolicy(p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "guard-2 in force at 21", func() bool {
		in := e.w.InForce().ClusterNetworkPolicies
		return len(in) == 2 && in[1].Name == "guard-2" && in[1].Spec.Priority == 21
	})
	p.Spec.Priority = 5000
	if err := st.PutClusterNetworkPolicy(p); !errors.Is(err, policies.ErrInvalid) {
		t.Errorf("put of priority 5000: %v", err)
	}
	if err := st.DeleteClusterNetworkPolicy("guard-2"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteClusterNetworkPolicy("guard-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	waitFor(t, "guard-2 gone", func() bool { return len(e.w.InForce().ClusterNetworkPolicies) == 1 })
}
