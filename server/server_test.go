package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

func newServer(t *testing.T) (*server.Server, *store.Mem) {
	t.Helper()
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	return server.New(svc, server.Config{}, nil), mem
}

func TestRequireAuth(t *testing.T) {
	srv, _ := newServer(t)
	const token = "0123456789abcdef0123"
	ts := httptest.NewServer(server.RequireAuth(srv.Handler(), token))
	defer ts.Close()
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong-token-wrong-token", http.StatusUnauthorized},
		{"Basic " + token, http.StatusUnauthorized},
		{"Bearer " + token, http.StatusOK},
		{"bearer " + token, http.StatusOK},
	} {
		req, _ := http.NewRequest("GET", ts.URL+"/v1/history", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Authorization %q: %d, want %d", c.auth, resp.StatusCode, c.want)
		}
		if c.want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: 401 without WWW-Authenticate", c.auth)
		}
	}
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
	var revs []store.Revision
	if err := c.Do(ctx, "POST", "/v1/policies", nil, []byte(pol), &revs); err != nil || len(revs) != 1 {
		t.Fatalf("apply: %v %v", revs, err)
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
	if err != nil || len(h) != 2 || store.VerifyPromotions(h) != nil {
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
