//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/nanoseg/nanoseg/client/kube"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/manifests"
)

// TestControllerPage: `nanoseg controller` with controller.uiListen serves
// the page's API; a ServiceAccount bound to nanoseg-operate logs in with
// its token, reads the status, and promotes the observed server to audit:
// the real controller carries out the NanoSegmentPromotion the page
// created with the caller's token, and the record names that
// ServiceAccount (admission stamped it), as from the CLI.
func TestControllerPage(t *testing.T) {
	nettest.RequireRoot(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ui := l.Addr().String()
	l.Close()
	w := newResilienceWorldAt(t, 237, "  uiListen: "+ui+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := &clusterFixture{c: w.c, dyn: w.dyn}
	f.apply(t, "rbac")
	f.admission(t)
	if _, err := w.c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "page-op"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "shop", Name: "op"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: manifests.OperateRole},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, err := w.c.ServiceAccountConfig(ctx, "shop", "op")
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+ui+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+rc.BearerToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	for range 3 {
		w.dial(8080)
	}
	waitUntil(t, "the proposal of server", 30*time.Second, func() error { _, _, err := w.proposalEdge(8080); return err })
	waitUntil(t, "the page's status", 30*time.Second, func() error {
		if code, body := call("GET", "/v1/status", ""); code != http.StatusOK || !strings.Contains(body, `"shop/server"`) {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	who := "system:serviceaccount:shop:op"
	code, body := call("POST", "/v1/promote", `{"workload":"shop/server","to":"audit","reason":"from the page"}`)
	if code != http.StatusOK || !strings.Contains(body, `"who": "`+who+`"`) || !strings.Contains(body, `"converged": true`) {
		t.Fatalf("promote from the page: %d %s", code, body)
	}
	l2, err := w.dyn.Resource(kube.Promotions).Namespace("shop").List(ctx, metav1.ListOptions{})
	if err != nil || len(l2.Items) != 1 {
		t.Fatalf("promotions: %v %v", l2, err)
	}
	if got, _, _ := unstructured.NestedString(l2.Items[0].Object, "spec", "requestedBy", "username"); got != who {
		t.Errorf("spec.requestedBy.username %q, want %q", got, who)
	}
	if code, body := call("GET", "/v1/history?workload=shop/server", ""); code != http.StatusOK || !strings.Contains(body, who) {
		t.Errorf("history from the page: %d %s", code, body)
	}
}
