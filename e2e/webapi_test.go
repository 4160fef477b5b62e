//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// TestWebAPI runs the agent with an operator and a viewer token on TCP
// and checks the web UI's API against real endpoints: the viewer reads
// and is refused a promotion; a browser session promotes (with its CSRF
// token) and the history names the session; the change stream reports
// the promotion, and the edges and verdicts the node commits after a
// real connection the new policy audit-denies.
func TestWebAPI(t *testing.T) {
	dir := t.TempDir()
	op, view := filepath.Join(dir, "op.token"), filepath.Join(dir, "view.token")
	const opTok, viewTok = "e2e-operator-token-0123456789", "e2e-viewer-token-0123456789"
	for f, tok := range map[string]string{op: opTok, view: viewTok} {
		if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	e := newAgentEnv(t, "web", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--token-file", op, "--read-token-file", view)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	do := func(c *http.Client, method, path, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}

	// The viewer token reads and may not promote.
	if code, body := do(http.DefaultClient, "GET", "/v1/status", "", "Authorization", "Bearer "+viewTok); code != 200 || !strings.Contains(body, "shop/db") {
		t.Errorf("viewer status: %d %s", code, body)
	}
	if code, body := do(http.DefaultClient, "POST", "/v1/promote", `{"workload":"shop/db","to":"audit","reason":"x"}`, "Authorization", "Bearer "+viewTok); code != http.StatusForbidden || !strings.Contains(body, "promote") {
		t.Errorf("viewer promote: %d %s, want 403", code, body)
	}

	// An operator's browser session and its change stream.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	code, body := do(browser, "POST", "/v1/session", `{"token":"`+opTok+`"}`)
	var sess struct{ Role, CSRF string }
	if code != 200 || json.Unmarshal([]byte(body), &sess) != nil || sess.Role != "operator" {
		t.Fatalf("login: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", base+"/v1/events", nil)
	resp, err := browser.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	topics := make(chan []string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev struct{ Topics []string }
				_ = json.Unmarshal([]byte(data), &ev)
				topics <- ev.Topics
			}
		}
		close(topics)
	}()
	// waitTopics waits until the events since the last call named every
	// one of want (other topics pass by).
	waitTopics := func(want ...string) {
		t.Helper()
		seen := map[string]bool{}
		deadline := time.After(30 * time.Second)
		for {
			missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return seen[w] })
			if len(missing) == 0 {
				return
			}
			select {
			case ts, ok := <-topics:
				if !ok {
					t.Fatalf("the event stream ended before %v", missing)
				}
				for _, x := range ts {
					seen[x] = true
				}
			case <-deadline:
				t.Fatalf("no change event with %v", missing)
			}
		}
	}
	pol := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n" +
		"  ingress:\n  - id: from-api\n    peers: [{podSelector: {matchLabels: {app: api}}}]\n    ports: [{protocol: TCP, port: 5432}]\n"
	if code, body := do(browser, "POST", "/v1/policies", pol, "X-CSRF-Token", sess.CSRF); code != 200 {
		t.Fatalf("apply in the session: %d %s", code, body)
	}
	waitTopics("revisions")
	if code, body := do(browser, "POST", "/v1/promote", `{"workload":"shop/db","to":"audit","reason":"from the page"}`); code != http.StatusForbidden {
		t.Errorf("session promote without the CSRF token: %d %s, want 403", code, body)
	}
	if code, body := do(browser, "POST", "/v1/promote", `{"workload":"shop/db","to":"audit","reason":"from the page"}`, "X-CSRF-Token", sess.CSRF); code != 200 {
		t.Fatalf("session promote: %d %s", code, body)
	}
	waitTopics("history", "status")
	if st := e.status()["shop/db"]; st.Mode != model.ModeAudit {
		t.Errorf("shop/db after the session's promotion: %+v", st)
	}
	if out := e.mustRun("history", "shop/db"); !strings.Contains(out, "web UI session of the operator token from 127.0.0.1:") {
		t.Errorf("history does not name the web UI session:\n%s", out)
	}
	// A real connection the audit policy would deny: the node commits its
	// edge and verdict, and the stream says so.
	e.mustRun("lab", "probe", "--name", e.name, "--from", "shop/intruder", "--to", "shop/db", "--no-dns", "--port", "5432")
	waitTopics("verdicts", "edges")
}
