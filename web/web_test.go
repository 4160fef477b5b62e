package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandler checks what a browser gets for each path: the page, its
// script and style sheet with the content types a strict CSP and nosniff
// need, the licences, and nothing else.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, c := range []struct {
		method, path string
		status       int
		ctype, body  string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"GET", "/app.js", 200, "text/javascript; charset=utf-8", "cytoscape"},
		{"GET", "/app.css", 200, "text/css; charset=utf-8", "#graph"},
		{"GET", "/licenses.txt", 200, "text/plain; charset=utf-8", "cytoscape-fcose"},
		{"HEAD", "/app.js", 200, "text/javascript; charset=utf-8", ""},
		{"GET", "/index.html", 404, "", ""},
		{"GET", "/../web.go", 404, "", ""},
		{"GET", "/v1/status", 404, "", ""},
		{"POST", "/", 405, "", ""},
	} {
		req, err := http.NewRequest(c.method, srv.URL+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, res.StatusCode, c.status)
			continue
		}
		if c.status != 200 {
			continue
		}
		if got := res.Header.Get("Content-Type"); got != c.ctype {
			t.Errorf("%s %s: Content-Type %q, want %q", c.method, c.path, got, c.ctype)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options %q, want nosniff", c.method, c.path, got)
		}
		if !strings.Contains(string(body), c.body) {
			t.Errorf("%s %s: body lacks %q", c.method, c.path, c.body)
		}
	}
}

// TestPageHasNoInlineCode checks the page works under a CSP without
// 'unsafe-inline' or 'unsafe-eval': no inline script or style, no inline
// event handlers, and a bundle that does not evaluate strings.
func TestPageHasNoInlineCode(t *testing.T) {
	page := string(mustRead("index.html"))
	for _, bad := range []string{"<style", " style=", " onclick=", " onload=", " onsubmit=", "javascript:"} {
		if strings.Contains(page, bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
	if n := strings.Count(page, "<script"); n != 1 || !strings.Contains(page, `<script src="app.js" defer></script>`) {
		t.Errorf("index.html has %d scripts; want only app.js, loaded from the listener", n)
	}
	js := string(AppJS())
	for _, bad := range []string{"eval(", "new Function("} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js contains %q: a strict CSP refuses it", bad)
		}
	}
	for _, bad := range []string{"http://", "https://"} {
		for _, line := range strings.Split(page, "\n") {
			if strings.Contains(line, bad) {
				t.Errorf("index.html refers outside the listener: %s", line)
			}
		}
	}
}
