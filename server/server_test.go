package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

func newServer(t *testing.T) (*server.Server, *store.Mem) {
	t.Helper()
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	return server.New(svc, server.Config{}, nil), mem
}

// TestErrorsAndEmptyLists: error kinds map to status codes with the API's
// error body, and an empty list is [] (never null).
func TestErrorsAndEmptyLists(t *testing.T) {
	srv, _ := newServer(t)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	if code, body := get("/v1/history"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("empty history: %d %s", code, body)
	}
	if code, body := get("/v1/revisions?workload=shop/db&revision=1"); code != 404 {
		t.Errorf("missing revision: %d %s, want 404", code, body)
	}
	code, body := get("/v1/explain?from=shop/web&to=shop/db&port=5432")
	var e client.APIError
	if code != 400 || json.Unmarshal([]byte(body), &e) != nil || !strings.HasPrefix(e.Error, "port: ") {
		t.Errorf("bad explain: %d %s, want 400 with the message without the invalid-request prefix", code, body)
	}
	if code, body := get("/v1/edges?window=yesterday"); code != 400 {
		t.Errorf("bad window: %d %s", code, body)
	}
}

// TestClientRoundTrip: the Go client against the server, promotion
// conflicts and all.
func TestClientRoundTrip(t *testing.T) {
	srv, _ := newServer(t)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	c := client.New(ts.URL, "")
	ctx := context.Background()
	pol := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n"
	var applied controller.ApplyResult
	if err := c.Do(ctx, "POST", "/v1/policies", nil, []byte(pol), &applied); err != nil || len(applied.Revisions) != 1 {
		t.Fatalf("apply: %+v %v", applied, err)
	}
	res, err := c.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: "enforce", Reason: "go"})
	if err != nil || !res.Converged || res.Promotion.Seq != 1 {
		t.Fatalf("promote: %+v %v", res, err)
	}
	if _, err := c.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: "enforce"}); err == nil || !strings.Contains(err.Error(), "reason: required") {
		t.Errorf("promote without a reason: %v", err)
	}
	if _, err := c.Rollback(ctx, controller.RollbackRequest{Workload: "shop/db"}); err != nil {
		t.Fatal(err)
	}
	h, err := c.History(ctx, "shop/db")
	if err != nil || len(h) != 2 || model.VerifyPromotions(h) != nil {
		t.Errorf("history = %+v, %v", h, err)
	}
	st, err := c.Status(ctx)
	if err != nil || len(st) != 3 {
		t.Errorf("status = %+v, %v", st, err)
	}
}

// TestNegativeRevisionsRefused: API bodies and queries with a negative
// revision are answered 400 naming the field, and nothing is recorded
// (issue 11, item 7).
func TestNegativeRevisionsRefused(t *testing.T) {
	srv, mem := newServer(t)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	c := client.New(ts.URL, "")
	ctx := context.Background()
	pol := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n"
	if err := c.Do(ctx, "POST", "/v1/policies", nil, []byte(pol), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: "audit", Reason: "go"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path, body, want string
	}{
		{"POST", "/v1/rollback", `{"workload": "shop/db", "toRevision": -1, "reason": "x"}`, "toRevision: -1 is negative"},
		{"POST", "/v1/promote", `{"workload": "shop/db", "to": "enforce", "revision": -3, "reason": "x"}`, "revision: -3 is negative"},
		{"GET", "/v1/revisions?workload=shop/db&revision=-1", "", "revision: -1 is negative"},
		{"GET", "/v1/revisions?workload=shop/db&revision=0", "", "revision: 0 is not a revision"},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e client.APIError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s %s %s: %d %q, want 400 with %q", tc.method, tc.path, tc.body, resp.StatusCode, e.Error, tc.want)
		}
	}
	if h, _ := mem.History(""); len(h) != 1 {
		t.Errorf("history has %d events after refused requests, want 1", len(h))
	}
}

// TestReadsAnswerWhenFlushFails: when the node's pending observations
// cannot be committed (a full disk), read-only routes still answer from
// what is stored, with a warning header and a log line, never an error
// (issue 11, item 11).
func TestReadsAnswerWhenFlushFails(t *testing.T) {
	mem := store.NewMem()
	node := &controllertest.Node{FlushErr: errors.New("write state.db: no space left on device")}
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), node, nil)
	var logs bytes.Buffer
	ts := httptest.NewServer(server.New(svc, server.Config{}, slog.New(slog.NewTextHandler(&logs, nil))).Handler())
	defer ts.Close()
	now := time.Now()
	if err := mem.AddVerdicts([]model.VerdictEvent{{At: now, Verdict: "deny", Source: "shop/intruder", SrcPort: 40000, Destination: "shop/db", Protocol: "tcp", Port: 5432}}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/status", "/v1/verdicts", "/v1/edges?window=5m", "/v1/diff"} {
		logs.Reset()
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var body json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with a failing flush: %d %s, want 200", path, resp.StatusCode, body)
			continue
		}
		if w := resp.Header.Get(client.HeaderWarning); !strings.Contains(w, "no space left on device") || !strings.Contains(w, "from what is stored") {
			t.Errorf("GET %s: warning header %q, want the flush error and that the answer is from what is stored", path, w)
		}
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "no space left on device") {
			t.Errorf("GET %s: no warning logged:\n%s", path, logs.String())
		}
	}
	// The stored verdict is in the answer.
	evs, err := client.New(ts.URL, "").Verdicts(context.Background(), "")
	if err != nil || len(evs) != 1 || evs[0].Source != "shop/intruder" {
		t.Errorf("verdicts = %+v, %v; want the stored deny", evs, err)
	}
	// Without a failure there is no warning.
	node.FlushErr = nil
	resp, err := http.Get(ts.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if w := resp.Header.Get(client.HeaderWarning); w != "" {
		t.Errorf("warning %q without a failure", w)
	}
}

// TestNetworkPolicyRoutes: a default-deny NetworkPolicy is applied over
// the API as a NetworkPolicy, listed, its records read, and deleted (a
// second delete is 404); the rule-id table answers.
func TestNetworkPolicyRoutes(t *testing.T) {
	srv, _ := newServer(t)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	c := client.New(ts.URL, "")
	ctx := context.Background()
	np := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny, namespace: shop}\nspec:\n  podSelector: {}\n"
	var applied controller.ApplyResult
	if err := c.Do(ctx, "POST", "/v1/policies", nil, []byte(np), &applied); err != nil || len(applied.NetworkPolicies) != 1 || len(applied.NetworkPolicies[0].Selects) != 3 {
		t.Fatalf("apply a default deny: %+v, %v", applied, err)
	}
	var inForce []store.NetworkPolicyRecord
	if err := c.Do(ctx, "GET", "/v1/networkpolicies", nil, nil, &inForce); err != nil || len(inForce) != 1 || inForce[0].Key() != "shop/default-deny" {
		t.Fatalf("in force: %+v, %v", inForce, err)
	}
	var del controller.DeleteResult
	q := map[string][]string{"namespace": {"shop"}, "name": {"default-deny"}}
	if err := c.Do(ctx, "DELETE", "/v1/networkpolicies", q, nil, &del); err != nil || del.Record.Action != store.ActionDelete {
		t.Fatalf("delete: %+v, %v", del, err)
	}
	var se *client.StatusError
	if err := c.Do(ctx, "DELETE", "/v1/networkpolicies", q, nil, nil); !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Errorf("second delete: %v, want 404", err)
	}
	var recs []store.NetworkPolicyRecord
	if err := c.Do(ctx, "GET", "/v1/networkpolicies", map[string][]string{"records": {"true"}}, nil, &recs); err != nil || len(recs) != 2 {
		t.Errorf("records: %+v, %v; want apply and delete", recs, err)
	}
	var ids map[string][]string
	if err := c.Do(ctx, "GET", "/v1/ruleids", nil, nil, &ids); err != nil || ids == nil {
		t.Errorf("rule ids: %v, %v", ids, err)
	}
}

// TestClusterNetworkPolicyRoutes: a ClusterNetworkPolicy applied, changed
// and deleted over the API is listed in force while applied, and
// `records=true` (with name, or without: all) answers its three records,
// each with the caller; a records value that is not a boolean is 400.
func TestClusterNetworkPolicyRoutes(t *testing.T) {
	srv, _ := newServer(t)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	c := client.New(ts.URL, "")
	ctx := context.Background()
	cnp := "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: guard}\nspec:\n  tier: Admin\n  priority: PRIO\n  subject: {namespaces: {}}\n  ingress:\n    - {name: no-one, action: Deny, from: [{namespaces: {}}]}\n"
	for _, prio := range []string{"1", "2"} {
		var res controller.ApplyResult
		if err := c.Do(ctx, "POST", "/v1/policies", nil, []byte(strings.Replace(cnp, "PRIO", prio, 1)), &res); err != nil || len(res.ClusterNetworkPolicies) != 1 {
			t.Fatalf("apply at priority %s: %+v, %v", prio, res, err)
		}
	}
	var inForce []cnpv1alpha2.ClusterNetworkPolicy
	if err := c.Do(ctx, "GET", "/v1/clusternetworkpolicies", nil, nil, &inForce); err != nil || len(inForce) != 1 || inForce[0].Spec.Priority != 2 {
		t.Fatalf("in force: %+v, %v", inForce, err)
	}
	if err := c.Do(ctx, "DELETE", "/v1/clusternetworkpolicies", map[string][]string{"name": {"guard"}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, q := range []map[string][]string{{"records": {"true"}, "name": {"guard"}}, {"records": {"true"}}} {
		var recs []store.ClusterNetworkPolicyRecord
		if err := c.Do(ctx, "GET", "/v1/clusternetworkpolicies", q, nil, &recs); err != nil || len(recs) != 3 {
			t.Fatalf("records %v: %+v, %v; want apply, apply, delete", q, recs, err)
		}
		for i, r := range recs {
			if r.Name != "guard" || r.Revision != i+1 || r.By != "unknown" || r.At.IsZero() {
				t.Errorf("record %d = %+v", i, r)
			}
		}
		if recs[1].Policy == nil || recs[1].Policy.Spec.Priority != 2 || recs[2].Action != store.ActionDelete || recs[2].Policy != nil {
			t.Errorf("records = %+v, want priority 2 applied, then deleted", recs)
		}
	}
	var recs []store.ClusterNetworkPolicyRecord
	if err := c.Do(ctx, "GET", "/v1/clusternetworkpolicies", map[string][]string{"records": {"true"}, "name": {"other"}}, nil, &recs); err != nil || recs == nil || len(recs) != 0 {
		t.Errorf("records of one never applied: %#v, %v; want []", recs, err)
	}
	var se *client.StatusError
	if err := c.Do(ctx, "GET", "/v1/clusternetworkpolicies", map[string][]string{"records": {"all"}}, nil, nil); !errors.As(err, &se) || se.Code != http.StatusBadRequest {
		t.Errorf("records=all: %v, want 400", err)
	}
}

// TestListenRefusesATakenMetricsAddress: Listen binds every listener before
// anything is served and, when the metrics address is taken, fails naming
// it and leaves the API socket unbound (the agent calls it before it
// touches an endpoint).
func TestListenRefusesATakenMetricsAddress(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir()}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	srv := server.New(svc, server.Config{Socket: sock, MetricsAddr: taken.Addr().String()}, nil)
	err = srv.Listen()
	if err == nil || !strings.Contains(err.Error(), "listen for metrics on "+taken.Addr().String()) {
		t.Fatalf("Listen with a taken metrics address: %v", err)
	}
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		t.Errorf("the API socket %s still accepts connections after Listen failed", sock)
	}
	free := server.New(svc, server.Config{Socket: sock}, nil)
	if err := free.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	free.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("Close left the socket %s: %v", sock, err)
	}
}

// TestPlaintextWarning: a TCP listener on a non-loopback address without
// TLS logs a warning (tokens and cookies travel in the clear); loopback or
// TLS does not. Listen on 127.0.0.1 logs none; the non-loopback addresses,
// which tests may not bind, go through the same check directly.
func TestPlaintextWarning(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir()}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	srv := server.New(svc, server.Config{Socket: filepath.Join(t.TempDir(), "agent.sock"), Listen: "127.0.0.1:0", Token: opToken}, log)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if strings.Contains(buf.String(), "in the clear") {
		t.Errorf("Listen on 127.0.0.1 warned: %s", buf.String())
	}
	for _, c := range []struct {
		addr string
		tls  bool
		warn bool
	}{
		{"0.0.0.0:9620", false, true},
		{"[::]:9620", false, true},
		{"192.0.2.7:9620", false, true},
		{"0.0.0.0:9620", true, false},
		{"127.0.0.1:9620", false, false},
		{"[::1]:9620", false, false},
	} {
		buf.Reset()
		server.WarnPlaintext(log, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(c.addr)), c.tls)
		if got := strings.Contains(buf.String(), "level=WARN") && strings.Contains(buf.String(), "in the clear"); got != c.warn {
			t.Errorf("listen %s tls %v: warned %v, want %v (%s)", c.addr, c.tls, got, c.warn, buf.String())
		}
	}
}

// TestOversizedAndTrailingBodiesRefused: a body beyond a route's limit is
// refused (400, naming the limit) and stores nothing, rather than cut at
// the limit: a YAML stream cut between two documents still parses, and its
// tail would be dropped without a word. A JSON body with data after its
// object is refused too, rather than acted on.
func TestOversizedAndTrailingBodiesRefused(t *testing.T) {
	srv, _ := newServer(t)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	c := client.New(ts.URL, "")
	ctx := context.Background()
	np := func(name string) string {
		return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name + ", namespace: shop}\nspec:\n  podSelector: {}\n"
	}
	// Two documents, the second beyond 8 MiB.
	big := np("first") + "# " + strings.Repeat("p", 9<<20) + "\n---\n" + np("second")
	var se *client.StatusError
	err := c.Do(ctx, "POST", "/v1/policies", nil, []byte(big), nil)
	if !errors.As(err, &se) || se.Code != http.StatusBadRequest || !strings.Contains(err.Error(), "larger than 8 MiB") {
		t.Errorf("apply of a 9 MiB body: %v, want 400 naming the 8 MiB limit", err)
	}
	var inForce []store.NetworkPolicyRecord
	if err := c.Do(ctx, "GET", "/v1/networkpolicies", nil, nil, &inForce); err != nil || len(inForce) != 0 {
		t.Errorf("in force after the refused apply: %+v, %v; want none", inForce, err)
	}
	post := func(path, body string) (int, string) {
		resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e client.APIError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	huge := `{"workload":"shop/db","to":"audit","reason":"` + strings.Repeat("a", 2<<20) + `"}`
	if code, msg := post("/v1/promote", huge); code != 400 || !strings.Contains(msg, "larger than 1 MiB") {
		t.Errorf("promote with a 2 MiB body: %d %q, want 400 naming the 1 MiB limit", code, msg)
	}
	if code, msg := post("/v1/verify", `{"maxProbes":5} {"maxProbes":6}`); code != 400 || !strings.Contains(msg, "after the JSON object") {
		t.Errorf("verify with two objects: %d %q, want 400", code, msg)
	}
	if code, msg := post("/v1/promote", `{"workload":"shop/db","to":"audit","reason":"x"} trailing`); code != 400 || !strings.Contains(msg, "after the JSON object") {
		t.Errorf("promote with trailing data: %d %q, want 400", code, msg)
	}
	var hist []model.Promotion
	if err := c.Do(ctx, "GET", "/v1/history", nil, nil, &hist); err != nil || len(hist) != 0 {
		t.Errorf("history after refused promotions: %+v, %v; want none", hist, err)
	}
}

// TestUnknownRoutesAnswerJSON: a /v1 path no route has is 404 and a route
// asked with a method it does not take is 405 with Allow, both with the
// API's error body (docs/api.md), not ServeMux's plain text.
func TestUnknownRoutesAnswerJSON(t *testing.T) {
	srv, _ := newServer(t)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for _, tc := range []struct {
		method, path string
		code         int
		allow, want  string
	}{
		{"GET", "/v1/nope", 404, "", "not found: /v1/nope is not a route of the API"},
		{"DELETE", "/v1/promote", 405, "POST", "method not allowed: DELETE /v1/promote; this route takes POST"},
		{"PUT", "/v1/status", 405, "GET, HEAD", "method not allowed: PUT /v1/status"},
		{"POST", "/v1/clusternetworkpolicies", 405, "DELETE, GET, HEAD", "this route takes DELETE, GET, HEAD"},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e client.APIError
		derr := json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.code || derr != nil || !strings.Contains(e.Error, tc.want) || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q %q (%v), want %d Allow %q and an error body with %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), e.Error, derr, tc.code, tc.allow, tc.want)
		}
	}
}
