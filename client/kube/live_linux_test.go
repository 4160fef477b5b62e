//go:build linux

package kube

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/internal/browsertest"
	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/manifests"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/web"
)

// TestLivePage: the cluster controller's page against a real API server,
// the controller with the rights of its manifests (its ServiceAccount's
// token) and callers with ServiceAccount tokens bound to nanoseg-operate
// and nanoseg-view. A garbage token is 401 with the API server's refusal,
// an unbound ServiceAccount's 401 names the role to bind;
// the viewer reads status, edges and a workload's detail (its own
// credential) and is refused a promotion (403); the operator's promotion
// to audit is a NanoSegmentPromotion whose spec.requestedBy is the
// operator's ServiceAccount (admission stamps it: created with the
// caller's token, not the controller's); a NetworkPolicy created in the
// cluster arrives as an event on /v1/events, and the next read shows it;
// a token revoked after its login is 401 at that read; evidence export
// names why it is not served. Then headless Chromium: the operator logs in with the
// token, the graph shows the workloads and their edge, and a promotion
// from the page reaches the (stand-in) controller as the operator.
func TestLivePage(t *testing.T) {
	c := kubetest.New(t, kubetest.Options{CRDDirs: []string{filepath.Join("..", "..", "manifests", "crds")}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn := dynamic.NewForConfigOrDie(c.Config)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: manifests.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyManifestDir(t, dyn, "controller", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
	applyManifestDir(t, dyn, "rbac")
	applyManifestDir(t, dyn, "admission")

	ns := c.Namespace(t, nil)
	for i, w := range []string{"web", "db"} {
		pod, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: w, Labels: map[string]string{"app": w}},
			Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := fmt.Sprintf("198.18.214.%d", 10+i)
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		if _, err := c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// What the controller observed: web talks to db.
	edge := model.Edge{Source: model.Peer{Namespace: ns, Workload: "web"}, Destination: model.Peer{Namespace: ns, Workload: "db"}, Protocol: model.ProtocolTCP, Port: 5432,
		Traffic: model.Traffic{FirstSeen: time.Now().Add(-time.Hour), LastSeen: time.Now(), Flows: 3}}
	pr := &v1alpha1.NanoSegmentProposal{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindProposal},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{v1alpha1.LabelWorkload: "web"}},
		Spec: v1alpha1.NanoSegmentProposalSpec{Workload: "web", Edges: []v1alpha1.ObservedEdge{v1alpha1.EdgeFrom(edge, "")},
			Segment: v1alpha1.NanoSegmentSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
	}
	if _, err := dyn.Resource(Proposals).Namespace(ns).Create(ctx, toUnstructured(t, pr), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The callers: ServiceAccounts bound cluster-wide, as README says.
	token := func(sa, role string) string {
		t.Helper()
		if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + sa},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), ns+"-"+sa, metav1.DeleteOptions{})
		})
		rc, err := c.ServiceAccountConfig(ctx, ns, sa)
		if err != nil {
			t.Fatal(err)
		}
		return rc.BearerToken
	}
	opToken, viewToken := token("op", manifests.OperateRole), token("viewer", manifests.ViewRole)
	waitStamped(t, dyn, ns)
	operator := "system:serviceaccount:" + ns + ":op"

	// The stand-in controller refuses every promotion, naming who asked
	// (as the API server stamped it).
	standIn(t, ctx, dyn, ns)

	own, err := c.ServiceAccountConfig(ctx, manifests.Namespace, manifests.Controller)
	if err != nil {
		t.Fatal(err)
	}
	live := NewLive(own, LiveConfig{Wait: 20 * time.Second}, nil)
	if err := live.Run(ctx); err != nil {
		t.Fatal(err)
	}
	srv := server.New(nil, server.Config{API: live, Authenticate: live.Authenticate, Changes: live.Changes(), UI: web.Handler(), EventInterval: 50 * time.Millisecond}, nil)
	ts := httptest.NewServer(srv.TCPHandler())
	t.Cleanup(ts.Close)

	call := func(tok, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	if code, body := call("garbage-token", "GET", "/v1/status", ""); code != http.StatusUnauthorized || !strings.Contains(body, "does not accept this token") {
		t.Errorf("a garbage token: %d %s", code, body)
	}
	// A ServiceAccount bound to nothing: the API server knows it, RBAC
	// lets it read nothing, and the login says what to bind.
	nobody, err := c.ServiceAccountConfig(ctx, ns, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := call(nobody.BearerToken, "GET", "/v1/status", ""); code != http.StatusUnauthorized ||
		!strings.Contains(body, "user system:serviceaccount:"+ns+":nobody may not list nanosegments in every namespace") || !strings.Contains(body, "nanoseg-view") {
		t.Errorf("an unbound ServiceAccount: %d %s", code, body)
	}
	start := time.Now()
	code, body := call(viewToken, "GET", "/v1/status", "")
	first := time.Since(start)
	start = time.Now()
	call(viewToken, "GET", "/v1/status", "")
	t.Logf("the viewer's first status (review and read of the cluster) %s, the next (cached) %s", first.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	var st []controller.WorkloadStatus
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil || len(st) != 2 || st[0].Workload != ns+"/db" || st[1].Workload != ns+"/web" {
		t.Errorf("the viewer's status: %d %s", code, body)
	}
	if code, body := call(viewToken, "GET", "/v1/edges", ""); code != http.StatusOK || !strings.Contains(body, `"port": 5432`) {
		t.Errorf("the viewer's edges: %d %s", code, body)
	}
	if code, body := call(viewToken, "GET", "/v1/workloads/detail?workload="+ns+"/web", ""); code != http.StatusOK || !strings.Contains(body, ns+"/web") {
		t.Errorf("the viewer's detail of web: %d %s", code, body)
	}
	promote := `{"workload":"` + ns + `/web","to":"audit","reason":"from the page"}`
	if code, body := call(viewToken, "POST", "/v1/promote", promote); code != http.StatusForbidden {
		t.Errorf("the viewer's promotion: %d %s, want 403", code, body)
	}
	if code, body := call(opToken, "POST", "/v1/promote", promote); code != http.StatusConflict || !strings.Contains(body, "requested by "+operator) {
		t.Errorf("the operator's promotion: %d %s, want the stand-in's refusal naming %s", code, body, operator)
	}
	l, err := dyn.Resource(Promotions).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("promotions: %v %v", l, err)
	}
	if who, _, _ := unstructured.NestedString(l.Items[0].Object, "spec", "requestedBy", "username"); who != operator {
		t.Errorf("the promotion's spec.requestedBy is %q, want %q", who, operator)
	}
	if code, body := call(opToken, "POST", "/v1/evidence/export", `{}`); code != http.StatusNotImplemented || !strings.Contains(body, "kubectl nanoseg evidence export") {
		t.Errorf("evidence export: %d %s", code, body)
	}

	// A token revoked after its login (its ServiceAccount deleted) is
	// 401 at the next read, so that the page asks for a new one.
	tempToken := token("temp", manifests.ViewRole)
	if code, body := call(tempToken, "GET", "/v1/status", ""); code != http.StatusOK {
		t.Fatalf("temp's status: %d %s", code, body)
	}
	if err := c.Client.CoreV1().ServiceAccounts(ns).Delete(ctx, "temp", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// A change in the cluster is an event.
	events := liveEvents(t, ctx, ts.URL, viewToken)
	if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-db"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for seen := false; !seen; {
		select {
		case topics := <-events:
			seen = strings.Contains(topics, `"`+controller.TopicPolicies+`"`)
		case <-time.After(30 * time.Second):
			t.Fatal("no event with the topic policies after a NetworkPolicy was created")
		}
	}
	if code, body := call(viewToken, "GET", "/v1/networkpolicies", ""); code != http.StatusOK || !strings.Contains(body, "deny-db") {
		t.Errorf("the NetworkPolicies after the change: %d %s", code, body)
	}

	// The page in Chromium.
	b := browsertest.Start(t, 60*time.Second)
	b.State = `"status: " + document.querySelector("#status").textContent + "; dialog error: " + document.querySelector("#dialog-error").textContent`
	b.Do(t, "open the page", chromedp.Navigate(ts.URL+"/"))
	browsertest.Wait(t, b, "the login form", `document.body.classList.contains("logged-out")`, 10*time.Second)
	b.Do(t, "log in", chromedp.SendKeys(chromedp.CSS("#login-token"), opToken), chromedp.Click(chromedp.CSS("#login-submit")))
	browsertest.Wait(t, b, "the drawing", `!document.body.classList.contains("logged-out") && window.nanoseg && nanoseg.view && nanoseg.view.cy && nanoseg.view.cy.edges().length > 0`, 20*time.Second)
	if role := browsertest.Eval[string](t, b, `nanoseg.role`); role != "operator" {
		t.Errorf("the operator's session has role %q", role)
	}
	ids := browsertest.Eval[[]string](t, b, `[...nanoseg.model.nodes.keys()]`)
	if !strings.Contains(strings.Join(ids, " "), ns+"/web") || !strings.Contains(strings.Join(ids, " "), ns+"/db") {
		t.Errorf("the graph's nodes: %v", ids)
	}
	b.Do(t, "open web", chromedp.Evaluate[chromedp.Void](`void nanoseg.view.cy.getElementById("`+ns+`/web").emit("tap")`))
	browsertest.Wait(t, b, "web's details", `document.querySelector("#act-audit") !== null`, 10*time.Second)
	b.Do(t, "promote to audit", chromedp.Evaluate[chromedp.Void](`document.querySelector("#act-audit").click()`))
	browsertest.Wait(t, b, "the promotion dialog", `document.querySelector("#dialog").open && document.querySelector("#dialog-reason") !== null`, 20*time.Second)
	browsertest.Wait(t, b, "the reachability change", `document.querySelector("#reachability") !== null`, 20*time.Second)
	b.Do(t, "give a reason and commit", chromedp.SendKeys(chromedp.CSS("#dialog-reason"), "from the browser"), chromedp.Click(chromedp.CSS("#dialog-confirm")))
	browsertest.Wait(t, b, "the controller's answer, naming the operator", `(document.querySelector("#dialog-error").textContent + document.querySelector("#status").textContent).includes("requested by `+operator+`")`, 30*time.Second)
	for _, p := range b.Problems() {
		// The stand-in's refusal is the one error the page logs.
		if !strings.Contains(p, "409 (Conflict)") || !strings.Contains(p, "/v1/promote") {
			t.Errorf("the page's problem: %s", p)
		}
	}
	if f := b.Foreign(ts.URL); len(f) > 0 {
		t.Errorf("the page fetched from elsewhere: %v", f)
	}

	// The revoked token: the API server refuses it once its token cache
	// (10 s) forgets it; the page reads again at a change.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		np, err := c.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, "deny-db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		np.Labels = map[string]string{"touched": fmt.Sprint(i)}
		if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Update(ctx, np, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the watch event
		code, body := call(tempToken, "GET", "/v1/status", "")
		if code == http.StatusUnauthorized && strings.Contains(body, "no longer accepts your token") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked token after changes: %d %s", code, body)
		}
	}
}

// applyManifestDir creates the objects of manifests directory dir (of
// kinds, when given).
func applyManifestDir(t *testing.T, dyn dynamic.Interface, dir string, kinds ...string) {
	t.Helper()
	objs, err := manifests.Render(manifests.FS, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if len(kinds) > 0 && !contains(kinds, o.GetKind()) {
			continue
		}
		gv, err := schema.ParseGroupVersion(o.GetAPIVersion())
		if err != nil {
			t.Fatal(err)
		}
		plural := strings.ToLower(o.GetKind())
		if p, ok := strings.CutSuffix(plural, "y"); ok {
			plural = p + "ies"
		} else {
			plural += "s"
		}
		var ri dynamic.ResourceInterface = dyn.Resource(gv.WithResource(plural))
		if o.GetNamespace() != "" {
			ri = dyn.Resource(gv.WithResource(plural)).Namespace(o.GetNamespace())
		}
		if _, err := ri.Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		t.Cleanup(func() { _ = ri.Delete(context.Background(), o.GetName(), metav1.DeleteOptions{}) })
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func toUnstructured(t *testing.T, obj any) *unstructured.Unstructured {
	t.Helper()
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: raw}
}

// waitStamped waits until the admission policies stamp spec.requestedBy
// (the API server loads them asynchronously).
func waitStamped(t *testing.T, dyn dynamic.Interface, ns string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := dyn.Resource(Promotions).Namespace(ns).Create(context.Background(), toUnstructured(t, &v1alpha1.NanoSegmentPromotion{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindPromotion},
			ObjectMeta: metav1.ObjectMeta{Name: "dry-run"}, Spec: v1alpha1.NanoSegmentPromotionSpec{Workload: "db", Mode: model.ModeAudit, Reason: "x"},
		}), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			if user, _, _ := unstructured.NestedString(got.Object, "spec", "requestedBy", "username"); user != "" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admission policies never took effect (last error: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// standIn marks every new promotion of ns Failed with "stand-in
// controller: requested by USER", until the test ends.
func standIn(t *testing.T, ctx context.Context, dyn dynamic.Interface, ns string) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			l, err := dyn.Resource(Promotions).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range l.Items {
					u := &l.Items[i]
					if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase != "" {
						continue
					}
					who, _, _ := unstructured.NestedString(u.Object, "spec", "requestedBy", "username")
					u.Object["status"] = map[string]any{"phase": string(v1alpha1.PromotionFailed), "message": "stand-in controller: requested by " + who}
					if _, err := dyn.Resource(Promotions).Namespace(ns).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
						t.Logf("stand-in controller: %v", err)
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// liveEvents opens GET /v1/events with token and returns a channel of
// each change event's data.
func liveEvents(t *testing.T, ctx context.Context, base, token string) <-chan string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events: %v %v", resp, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	out := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "change":
				select {
				case out <- strings.TrimPrefix(line, "data: "):
				default:
				}
			}
		}
	}()
	return out
}
