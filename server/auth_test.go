package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

const (
	opToken   = "operator-token-0123456789"
	viewToken = "viewer-token-0123456789"
)

// page is a stand-in for the web UI's static files.
var page = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" && r.URL.Path != "/app.js" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, "<!doctype html><title>nanoseg</title> path="+r.URL.Path)
})

// tcpServer is the TCP side of a server over the shop fixture, with both
// tokens and the stand-in page, as an httptest server (TLS when tls).
func tcpServer(t *testing.T, tls bool, cfg server.Config) (*server.Server, *httptest.Server, *store.Mem) {
	t.Helper()
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	cfg.Token, cfg.ReadToken, cfg.UI = opToken, viewToken, page
	srv := server.New(svc, cfg, nil)
	var ts *httptest.Server
	if tls {
		ts = httptest.NewTLSServer(srv.TCPHandler())
	} else {
		ts = httptest.NewServer(srv.TCPHandler())
	}
	t.Cleanup(ts.Close)
	return srv, ts, mem
}

// browser is an HTTP client with a cookie jar, as a browser of the page.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func newBrowser(t *testing.T, ts *httptest.Server) *browser {
	jar, _ := cookiejar.New(nil)
	c := *ts.Client() // one client, one jar per browser
	c.Jar = jar
	return &browser{t: t, base: ts.URL, c: &c}
}

// do sends a request with hdr (name, value pairs) and returns the status,
// the body and the answer.
func (b *browser) do(method, path, body string, hdr ...string) (int, string, *http.Response) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), resp
}

// login posts token to /v1/session and keeps the CSRF token.
func (b *browser) login(token string) map[string]any {
	b.t.Helper()
	code, body, _ := b.do("POST", "/v1/session", `{"token":"`+token+`"}`, "Content-Type", "application/json")
	if code != http.StatusOK {
		b.t.Fatalf("login: %d %s", code, body)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		b.t.Fatal(err)
	}
	b.csrf, _ = info["csrf"].(string)
	return info
}

// TestBearerTokens: on TCP a /v1 route needs the operator or the viewer
// token (any case of the scheme), answering 401 with WWW-Authenticate
// otherwise; the page is served without.
func TestBearerTokens(t *testing.T) {
	_, ts, _ := tcpServer(t, false, server.Config{})
	b := newBrowser(t, ts)
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong-token-wrong-token", http.StatusUnauthorized},
		{"Basic " + opToken, http.StatusUnauthorized},
		{"Bearer " + opToken, http.StatusOK},
		{"bearer " + opToken, http.StatusOK},
		{"Bearer " + viewToken, http.StatusOK},
	} {
		var hdr []string
		if c.auth != "" {
			hdr = []string{"Authorization", c.auth}
		}
		code, body, resp := b.do("GET", "/v1/history", "", hdr...)
		if code != c.want {
			t.Errorf("Authorization %q: %d %s, want %d", c.auth, code, body, c.want)
		}
		if c.want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: 401 without WWW-Authenticate", c.auth)
		}
	}
	for _, path := range []string{"/", "/ui/", "/ui/app.js"} {
		code, body, _ := b.do("GET", path, "")
		if code != http.StatusOK || !strings.Contains(body, "nanoseg") {
			t.Errorf("GET %s without a session: %d %q, want the page", path, code, body)
		}
	}
	if code, body, _ := b.do("GET", "/ui/app.js", ""); !strings.Contains(body, "path=/app.js") {
		t.Errorf("GET /ui/app.js: %d %q: the page handler should get /app.js", code, body)
	}
	if code, _, _ := b.do("POST", "/", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", code)
	}
}

// TestSessionCookie: a login sets an HttpOnly, SameSite=Strict cookie for
// the whole site, Secure over TLS only, answers the role, the CSRF token
// and the expiry, and GET /v1/session answers the same; a wrong token
// sets nothing; DELETE logs out.
func TestSessionCookie(t *testing.T) {
	for _, tls := range []bool{false, true} {
		_, ts, _ := tcpServer(t, tls, server.Config{})
		b := newBrowser(t, ts)
		if code, body, resp := b.do("POST", "/v1/session", `{"token":"not-the-token-at-all"}`); code != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
			t.Errorf("login with a wrong token: %d %s cookies %v, want 401 and no cookie", code, body, resp.Cookies())
		}
		code, body, resp := b.do("POST", "/v1/session", `{"token":"`+opToken+`"}`)
		if code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		var info struct {
			Role    string    `json:"role"`
			CSRF    string    `json:"csrf"`
			Expires time.Time `json:"expires"`
		}
		if err := json.Unmarshal([]byte(body), &info); err != nil || info.Role != "operator" || len(info.CSRF) < 40 ||
			info.Expires.Sub(time.Now()) < 11*time.Hour || info.Expires.Sub(time.Now()) > 12*time.Hour+time.Minute {
			t.Errorf("login answer %s (%v): want role operator, a CSRF token and an expiry in 12 h", body, err)
		}
		var ck *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == server.SessionCookie {
				ck = c
			}
		}
		if ck == nil {
			t.Fatalf("login set no %s cookie: %v", server.SessionCookie, resp.Header["Set-Cookie"])
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure != tls || len(ck.Value) < 43 {
			t.Errorf("TLS %v: cookie %q: want HttpOnly, SameSite=Strict, Path=/, Secure only over TLS, 32 random bytes", tls, resp.Header.Get("Set-Cookie"))
		}
		code, body, _ = b.do("GET", "/v1/session", "")
		if code != http.StatusOK || !strings.Contains(body, info.CSRF) {
			t.Errorf("GET /v1/session: %d %s, want the session", code, body)
		}
		if code, body, _ := b.do("GET", "/v1/status", ""); code != http.StatusOK {
			t.Errorf("GET /v1/status with the cookie: %d %s", code, body)
		}
		// Logging out needs the CSRF token too.
		if code, _, _ := b.do("DELETE", "/v1/session", ""); code != http.StatusForbidden {
			t.Errorf("DELETE /v1/session without the CSRF token: %d, want 403", code)
		}
		if code, body, _ := b.do("DELETE", "/v1/session", "", server.HeaderCSRF, info.CSRF); code != http.StatusNoContent {
			t.Errorf("logout: %d %s", code, body)
		}
		// The old cookie no longer works, even if the browser kept it.
		b.c.Jar, _ = cookiejar.New(nil)
		req, _ := http.NewRequest("GET", ts.URL+"/v1/status", nil)
		req.AddCookie(ck)
		r2, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if r2.StatusCode != http.StatusUnauthorized {
			t.Errorf("the logged-out cookie: %d, want 401", r2.StatusCode)
		}
	}
}

// TestSessionHintCookie: a login also sets nanoseg_ui=1 (HintCookie),
// readable by the page's script (not HttpOnly), SameSite=Strict, Path=/,
// Secure over TLS only, expiring with the session; it is no credential;
// logout clears it (and a wrong token sets none, see TestSessionCookie).
func TestSessionHintCookie(t *testing.T) {
	for _, tls := range []bool{false, true} {
		_, ts, _ := tcpServer(t, tls, server.Config{})
		b := newBrowser(t, ts)
		code, body, resp := b.do("POST", "/v1/session", `{"token":"`+opToken+`"}`)
		if code != http.StatusOK {
			t.Fatalf("login: %d %s", code, body)
		}
		var info struct {
			CSRF    string    `json:"csrf"`
			Expires time.Time `json:"expires"`
		}
		if err := json.Unmarshal([]byte(body), &info); err != nil {
			t.Fatal(err)
		}
		byName := map[string]*http.Cookie{}
		for _, c := range resp.Cookies() {
			byName[c.Name] = c
		}
		hint, sess := byName[server.HintCookie], byName[server.SessionCookie]
		if hint == nil || sess == nil {
			t.Fatalf("login cookies %v: want %s and %s", resp.Header["Set-Cookie"], server.SessionCookie, server.HintCookie)
		}
		if hint.Value != "1" || hint.HttpOnly || hint.SameSite != http.SameSiteStrictMode || hint.Path != "/" || hint.Secure != tls ||
			hint.MaxAge != sess.MaxAge || !hint.Expires.Equal(sess.Expires) || !hint.Expires.Equal(info.Expires.Truncate(time.Second)) {
			t.Errorf("TLS %v: hint cookie %q (session %q): want nanoseg_ui=1, not HttpOnly, SameSite=Strict, Path=/, Secure only over TLS, the session's expiry",
				tls, hint.Raw, sess.Raw)
		}
		// The hint alone is no credential.
		req, _ := http.NewRequest("GET", ts.URL+"/v1/status", nil)
		req.AddCookie(&http.Cookie{Name: server.HintCookie, Value: "1"})
		r2, err := (&http.Client{Transport: b.c.Transport}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if r2.StatusCode != http.StatusUnauthorized {
			t.Errorf("only the hint cookie: %d, want 401", r2.StatusCode)
		}
		code, body, resp = b.do("DELETE", "/v1/session", "", server.HeaderCSRF, info.CSRF)
		if code != http.StatusNoContent {
			t.Fatalf("logout: %d %s", code, body)
		}
		var cleared *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == server.HintCookie {
				cleared = c
			}
		}
		if cleared == nil || cleared.MaxAge >= 0 || cleared.Value != "" || cleared.Path != "/" || cleared.SameSite != http.SameSiteStrictMode {
			t.Errorf("logout: Set-Cookie %v: want %s cleared (Max-Age=0, Path=/)", resp.Header["Set-Cookie"], server.HintCookie)
		}
		u, _ := url.Parse(ts.URL)
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == server.HintCookie {
				t.Errorf("after logout the browser still holds %s=%s", c.Name, c.Value)
			}
		}
	}
}

// TestSessionExpiry: a session ends 12 h (SessionTTL) after its login; a
// bounded table drops the oldest session of the same role beyond
// MaxSessions, so viewer logins never log the operator out.
func TestSessionExpiry(t *testing.T) {
	srv, ts, _ := tcpServer(t, false, server.Config{MaxSessions: 2})
	var mu sync.Mutex
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	server.SetNow(srv, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	b := newBrowser(t, ts)
	info := b.login(viewToken)
	if info["role"] != "viewer" || info["expires"] != "2026-12-03T00:00:00Z" {
		t.Errorf("viewer login: %v, want role viewer expiring 12 h later", info)
	}
	advance(12*time.Hour - time.Second)
	if code, _, _ := b.do("GET", "/v1/history", ""); code != http.StatusOK {
		t.Errorf("a second before expiry: %d, want 200", code)
	}
	advance(time.Second)
	if code, body, _ := b.do("GET", "/v1/history", ""); code != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Errorf("at expiry: %d %s, want 401 saying it expired", code, body)
	}
	// Three logins with room for two: the first is gone.
	bs := []*browser{newBrowser(t, ts), newBrowser(t, ts), newBrowser(t, ts)}
	for i, x := range bs {
		x.login(opToken)
		advance(time.Minute * time.Duration(i+1))
	}
	want := []int{http.StatusUnauthorized, http.StatusOK, http.StatusOK}
	for i, x := range bs {
		if code, _, _ := x.do("GET", "/v1/session", ""); code != want[i] {
			t.Errorf("session %d of 3 with MaxSessions 2: %d, want %d", i+1, code, want[i])
		}
	}
	// Many viewer logins: the operator's sessions stay, the viewer's
	// oldest go.
	vs := make([]*browser, 5)
	for i := range vs {
		vs[i] = newBrowser(t, ts)
		vs[i].login(viewToken)
		advance(time.Minute)
	}
	for i, x := range bs[1:] {
		if code, _, _ := x.do("GET", "/v1/session", ""); code != http.StatusOK {
			t.Errorf("operator session %d after 5 viewer logins with MaxSessions 2: %d, want 200", i+2, code)
		}
	}
	for i, x := range vs {
		want := http.StatusUnauthorized
		if i >= 3 {
			want = http.StatusOK
		}
		if code, _, _ := x.do("GET", "/v1/session", ""); code != want {
			t.Errorf("viewer session %d of 5 with MaxSessions 2: %d, want %d", i+1, code, want)
		}
	}
}

// TestCSRF: a state-changing request with the session cookie needs the
// session's token in X-CSRF-Token, and none may come from another origin;
// bearer-token requests (the CLI) need no CSRF token.
func TestCSRF(t *testing.T) {
	_, ts, mem := tcpServer(t, false, server.Config{})
	pol := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n"
	b := newBrowser(t, ts)
	b.login(opToken)
	promote := `{"workload":"shop/db","to":"audit","reason":"from the page"}`
	for _, c := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"no CSRF token", nil, http.StatusForbidden},
		{"a wrong CSRF token", []string{server.HeaderCSRF, strings.Repeat("x", 43)}, http.StatusForbidden},
		{"a foreign Origin", []string{server.HeaderCSRF, b.csrf, "Origin", "https://evil.example"}, http.StatusForbidden},
		{"a cross-site fetch", []string{server.HeaderCSRF, b.csrf, "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
	} {
		code, body, _ := b.do("POST", "/v1/promote", promote, c.hdr...)
		var e client.APIError
		if code != c.want || json.Unmarshal([]byte(body), &e) != nil || !strings.HasPrefix(e.Error, "forbidden") {
			t.Errorf("promote with %s: %d %s, want %d with a JSON error", c.name, code, body, c.want)
		}
	}
	if h, _ := mem.History(""); len(h) != 0 {
		t.Fatalf("refused requests recorded %d promotions", len(h))
	}
	// The page's own requests pass: the token and its own origin.
	if code, body, _ := b.do("POST", "/v1/policies", pol, server.HeaderCSRF, b.csrf, "Origin", ts.URL, "Sec-Fetch-Site", "same-origin"); code != http.StatusOK {
		t.Fatalf("apply with the CSRF token: %d %s", code, body)
	}
	code, body, _ := b.do("POST", "/v1/promote", promote, server.HeaderCSRF, b.csrf, "Origin", ts.URL)
	if code != http.StatusOK {
		t.Fatalf("promote with the CSRF token: %d %s", code, body)
	}
	h, _ := mem.History("shop/db")
	if len(h) != 1 || !strings.HasPrefix(h[0].Who, "web UI session of the operator token from 127.0.0.1:") {
		t.Errorf("recorded promotion %+v: want who to name the web UI session of the operator token", h)
	}
	// The CLI: a bearer token, no cookie, no CSRF token; still no foreign origin.
	cli := newBrowser(t, ts)
	code, body, _ = cli.do("POST", "/v1/rollback", `{"workload":"shop/db","reason":"cli"}`, "Authorization", "Bearer "+opToken)
	if code != http.StatusOK {
		t.Errorf("rollback with the bearer token: %d %s", code, body)
	}
	if h, _ := mem.History("shop/db"); len(h) != 2 || !strings.HasPrefix(h[1].Who, "token from 127.0.0.1:") {
		t.Errorf("rollback recorded as %+v, want the token", h)
	}
	code, _, _ = cli.do("POST", "/v1/rollback", `{"workload":"shop/db","reason":"x"}`, "Authorization", "Bearer "+opToken, "Origin", "http://evil.example")
	if code != http.StatusForbidden {
		t.Errorf("bearer request from a foreign origin: %d, want 403", code)
	}
}

// TestViewerRights: a viewer (token or session) may call every GET route
// and its own session; every other route answers 403 naming the right it
// lacks, and nothing is recorded. The table lists every route: one added
// without a rule here fails the test.
func TestViewerRights(t *testing.T) {
	srv, ts, mem := tcpServer(t, false, server.Config{})
	rights := map[string]string{
		"POST /v1/policies":                 "apply policies",
		"DELETE /v1/networkpolicies":        "delete NetworkPolicies",
		"DELETE /v1/clusternetworkpolicies": "delete ClusterNetworkPolicies",
		"POST /v1/propose":                  "propose policies",
		"POST /v1/promote":                  "promote",
		"POST /v1/rollback":                 "roll back",
		"POST /v1/verify":                   "verify (run probes)",
		"POST /v1/evidence/export":          "export evidence",
		"POST /v1/session":                  "",
		"DELETE /v1/session":                "",
	}
	var changing []server.Route
	for _, rt := range srv.Routes() {
		key := rt.Method + " " + rt.Path
		if rt.Method == "GET" {
			if rt.Right != "" {
				t.Errorf("%s needs %q: a GET must be readable by viewers", key, rt.Right)
			}
			continue
		}
		want, ok := rights[key]
		if !ok {
			t.Errorf("%s changes state and has no rule in this test: add it with its right", key)
			continue
		}
		delete(rights, key)
		if rt.Right != want {
			t.Errorf("%s needs %q, want %q", key, rt.Right, want)
		}
		if rt.Right != "" {
			changing = append(changing, rt)
		}
	}
	for key := range rights {
		t.Errorf("%s is in the test's table but not a route", key)
	}
	pol := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n"
	op := newBrowser(t, ts)
	if code, body, _ := op.do("POST", "/v1/policies", pol, "Authorization", "Bearer "+opToken); code != http.StatusOK {
		t.Fatal(code, body)
	}
	session := newBrowser(t, ts)
	session.login(viewToken)
	bodies := map[string]string{"/v1/promote": `{"workload":"shop/db","to":"audit","reason":"x"}`, "/v1/rollback": `{"workload":"shop/db","reason":"x"}`,
		"/v1/policies": pol}
	for _, rt := range changing {
		for _, as := range []struct {
			name string
			b    *browser
			hdr  []string
		}{{"viewer token", newBrowser(t, ts), []string{"Authorization", "Bearer " + viewToken}}, {"viewer session", session, []string{server.HeaderCSRF, session.csrf}}} {
			code, body, _ := as.b.do(rt.Method, rt.Path+"?namespace=shop&name=x", bodies[rt.Path], as.hdr...)
			var e client.APIError
			if code != http.StatusForbidden || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, rt.Right) || !strings.Contains(e.Error, "viewer") {
				t.Errorf("%s %s as %s: %d %s, want 403 naming the right %q", rt.Method, rt.Path, as.name, code, body, rt.Right)
			}
		}
	}
	if h, _ := mem.History(""); len(h) != 0 {
		t.Errorf("viewer requests recorded %d promotions", len(h))
	}
	// Every GET route answers a viewer (some need queries: not 401/403).
	for _, rt := range srv.Routes() {
		if rt.Method != "GET" || rt.Path == "/v1/events" {
			continue
		}
		if code, body, _ := session.do("GET", rt.Path, ""); code == http.StatusUnauthorized || code == http.StatusForbidden {
			t.Errorf("GET %s as a viewer session: %d %s", rt.Path, code, body)
		}
	}
}

// TestSecurityHeaders: every TCP answer, page or API, error or not, has
// the strict Content-Security-Policy, nosniff and no referrer; API
// answers are not cached.
func TestSecurityHeaders(t *testing.T) {
	_, ts, _ := tcpServer(t, false, server.Config{})
	b := newBrowser(t, ts)
	for _, c := range []struct {
		path    string
		hdr     []string
		noStore bool
	}{
		{"/", nil, false},
		{"/ui/app.js", nil, false},
		{"/missing", nil, false},
		{"/v1/status", []string{"Authorization", "Bearer " + opToken}, true},
		{"/v1/status", nil, true}, // 401
	} {
		_, _, resp := b.do("GET", c.path, "", c.hdr...)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("GET %s (%d): CSP %q lacks %q", c.path, resp.StatusCode, csp, d)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP %q allows something unsafe", c.path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", c.path, h)
		}
		if got := h.Get("Cache-Control") == "no-store"; got != c.noStore {
			t.Errorf("GET %s: Cache-Control %q", c.path, h.Get("Cache-Control"))
		}
	}
}

// TestPageOnlyOnTCP: the unix socket's handler serves the API, not the
// page, and has no sessions.
func TestPageOnlyOnTCP(t *testing.T) {
	srv, _, _ := tcpServer(t, false, server.Config{})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for _, c := range []struct {
		method, path string
		want         int
	}{{"GET", "/", 404}, {"GET", "/ui/", 404}, {"POST", "/v1/session", 404}, {"GET", "/v1/session", 401}} {
		req, _ := http.NewRequest(c.method, ts.URL+c.path, strings.NewReader(`{"token":"`+opToken+`"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("unix handler %s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
}

// TestProposeRefusesBody: POST /v1/propose takes its window from the query;
// a body (as in curl -d '{"window":"zz"}') is refused 400 naming where the
// parameters go, not ignored with a proposal over everything.
func TestProposeRefusesBody(t *testing.T) {
	_, ts, _ := tcpServer(t, false, server.Config{})
	post := func(query, body string) (int, string) {
		req, _ := http.NewRequest("POST", ts.URL+"/v1/propose"+query, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+opToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("", `{"window":"zz"}`); code != http.StatusBadRequest || !strings.Contains(body, "takes no body") || !strings.Contains(body, "window") {
		t.Errorf("propose with a JSON body: %d %s, want 400 naming window as a query parameter", code, body)
	}
	if code, body := post("?window=zz", ""); code != http.StatusBadRequest || !strings.Contains(body, "window") {
		t.Errorf("propose ?window=zz: %d %s, want 400 naming window", code, body)
	}
	if code, body := post("?window=10m", "\n"); code != http.StatusOK {
		t.Errorf("propose ?window=10m with no body: %d %s, want 200", code, body)
	}
}

// TestErrorsClipInput: an error names the field but echoes only the start
// of a huge input, not all of it.
func TestErrorsClipInput(t *testing.T) {
	_, ts, _ := tcpServer(t, false, server.Config{})
	huge := strings.Repeat("x", 1<<19)
	req, _ := http.NewRequest("POST", ts.URL+"/v1/promote", strings.NewReader(`{"workload":"shop/`+huge+`","to":"audit","reason":"r"}`))
	req.Header.Set("Authorization", "Bearer "+opToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || len(b) > 1024 || !strings.Contains(string(b), "workload") || !strings.Contains(string(b), "…") {
		t.Errorf("promote of a 512 KiB workload name: %d, %d bytes %.200s, want 400 naming workload, under 1 KiB", resp.StatusCode, len(b), b)
	}
}
