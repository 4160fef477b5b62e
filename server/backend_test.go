package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/server"
)

// TestAPIBackend: with Config.API and Config.Authenticate (the cluster
// controller's page), a token the authenticator recognises logs in and
// calls routes; the forwarded handler sees the caller's credential and
// name; a viewer's change is refused before it reaches the handler; a
// path outside the route table is 404; a refused token is 401 with the
// authenticator's reason; events follow Config.Changes.
func TestAPIBackend(t *testing.T) {
	var seen []string
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.Path+" cred="+server.Credential(r)+" who="+server.Caller(r))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[]`))
	})
	users := map[string]server.Principal{
		"alice-k8s-token": {Role: server.RoleOperator, Name: "alice", Credential: "alice-k8s-token"},
		"bob-k8s-token":   {Role: server.RoleViewer, Name: "bob", Credential: "bob-k8s-token"},
	}
	auth := func(_ context.Context, tok string) (server.Principal, error) {
		if p, ok := users[tok]; ok {
			return p, nil
		}
		return server.Principal{}, errors.New("the API server does not know this token")
	}
	feed := controller.NewChanges()
	srv := server.New(nil, server.Config{API: api, Authenticate: auth, Changes: feed, UI: page}, nil)
	ts := httptest.NewServer(srv.TCPHandler())
	t.Cleanup(ts.Close)

	b := newBrowser(t, ts)
	if code, body, _ := b.do("GET", "/v1/status", "", "Authorization", "Bearer nobody-token"); code != http.StatusUnauthorized || !strings.Contains(body, "does not know this token") {
		t.Fatalf("unknown token: %d %s", code, body)
	}
	if code, body, _ := b.do("POST", "/v1/session", `{"token":"nobody-token"}`, "Content-Type", "application/json"); code != http.StatusUnauthorized || !strings.Contains(body, "does not know this token") {
		t.Fatalf("login with an unknown token: %d %s", code, body)
	}
	info := b.login("alice-k8s-token")
	if info["role"] != "operator" {
		t.Fatalf("alice's session: %v", info)
	}
	if code, body, _ := b.do("POST", "/v1/promote", `{}`, "Content-Type", "application/json", server.HeaderCSRF, b.csrf); code != http.StatusOK {
		t.Fatalf("alice promotes: %d %s", code, body)
	}
	if len(seen) != 1 || !strings.Contains(seen[0], "POST /v1/promote cred=alice-k8s-token who=web UI session of alice from ") {
		t.Fatalf("the handler saw %q", seen)
	}
	if code, _, _ := b.do("GET", "/v1/no-such-route", ""); code != http.StatusNotFound {
		t.Fatalf("a path outside the table: %d, want 404", code)
	}

	v := newBrowser(t, ts)
	v.login("bob-k8s-token")
	seen = nil
	if code, body, _ := v.do("POST", "/v1/promote", `{}`, "Content-Type", "application/json", server.HeaderCSRF, v.csrf); code != http.StatusForbidden {
		t.Fatalf("bob promotes: %d %s, want 403", code, body)
	}
	if code, _, _ := v.do("GET", "/v1/edges", ""); code != http.StatusOK {
		t.Fatalf("bob reads: %d", code)
	}
	if len(seen) != 1 || !strings.HasPrefix(seen[0], "GET /v1/edges cred=bob-k8s-token") {
		t.Fatalf("the handler saw %q (the viewer's promotion must not reach it)", seen)
	}
	seen = nil
	if code, _, _ := v.do("GET", "/v1/status", "", "Authorization", "Bearer alice-k8s-token"); code != http.StatusOK || len(seen) != 1 || !strings.Contains(seen[0], "cred=alice-k8s-token who=alice from ") {
		t.Fatalf("bearer token: %d, the handler saw %q", code, seen)
	}

	st := openStream(t, ts.URL, "bob-k8s-token")
	feed.Publish(controller.TopicEdges)
	if ev := st.next(t); len(ev.Topics) != 1 || ev.Topics[0] != controller.TopicEdges {
		t.Fatalf("event after a publish on Config.Changes: %+v", ev)
	}
}
