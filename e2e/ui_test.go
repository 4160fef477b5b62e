//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/browsertest"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/model"
)

// uiTopology is the shop lab (manifests/lab/shop.yaml) with addresses of
// its own (198.18.231.0/24 and 2001:db8:18:231::/64, the external 198.19.231.100): no other test's lab
// uses them, so no other agent takes these namespaces for its own.
const uiTopology = `kind: LabTopology
name: %s
dns: kube-system/dns
namespaces:
  - {name: shop, labels: {kubernetes.io/metadata.name: shop, team: shop}}
  - {name: monitoring, labels: {kubernetes.io/metadata.name: monitoring}}
  - {name: kube-system, labels: {kubernetes.io/metadata.name: kube-system}}
workloads:
  - name: dns
    namespace: kube-system
    labels: {app: dns, k8s-app: kube-dns}
    ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}, {name: metrics, port: 9090}]
    ipv4: [198.18.231.2]
    ipv6: ["2001:db8:18:231::2"]
  - name: frontend
    namespace: shop
    labels: {app: frontend, tier: web}
    replicas: 2
    ports: [{name: http, port: 80}, {name: metrics, port: 9090}]
    talks: [{to: api, port: http, every: 1s}]
    ipv4: [198.18.231.10, 198.18.231.11]
    ipv6: ["2001:db8:18:231::10", "2001:db8:18:231::11"]
  - name: api
    namespace: shop
    labels: {app: api, tier: backend}
    ports: [{name: http, port: 8080}, {name: metrics, port: 9090}]
    talks: [{to: db, port: 5432, every: 1s}, {to: cache, port: 6379, every: 1s}, {to: payments.example, port: 443, every: 1s}]
    ipv4: [198.18.231.20]
    ipv6: ["2001:db8:18:231::20"]
  - name: db
    namespace: shop
    labels: {app: db, tier: data}
    ports: [{name: postgres, port: 5432}, {name: metrics, port: 9090}]
    ipv4: [198.18.231.30]
    ipv6: ["2001:db8:18:231::30"]
  - name: cache
    namespace: shop
    labels: {app: cache, tier: data}
    ports: [{name: redis, port: 6379}, {name: metrics, port: 9090}]
    ipv4: [198.18.231.40]
    ipv6: ["2001:db8:18:231::40"]
  - name: intruder
    namespace: shop
    labels: {app: intruder}
    ports: [{name: metrics, port: 9090}]
    ipv4: [198.18.231.50]
    ipv6: ["2001:db8:18:231::50"]
  - name: prometheus
    namespace: monitoring
    labels: {app: prometheus}
    ports: [{name: web, port: 9090}]
    talks:
      - {to: shop/frontend, port: metrics, every: 1s}
      - {to: shop/api, port: metrics, every: 1s}
      - {to: shop/db, port: metrics, every: 1s}
      - {to: shop/cache, port: metrics, every: 1s}
      - {to: shop/intruder, port: metrics, every: 1s}
      - {to: kube-system/dns, port: metrics, every: 1s}
    ipv4: [198.18.231.60]
    ipv6: ["2001:db8:18:231::60"]
externals:
  - {name: payments, dns: payments.example, ports: [{name: https, port: 443}], ipv4: [198.19.231.100], ipv6: ["2001:db8:19:231::100"]}
`

// uiWorkloads and uiTalks are what uiTopology declares: the page must draw
// each (talks as "source>destination|PROTO/port", the page's link ids).
var (
	uiWorkloads = []string{"kube-system/dns", "shop/frontend", "shop/api", "shop/db", "shop/cache", "shop/intruder", "monitoring/prometheus"}
	uiTalks     = []string{
		"shop/frontend>shop/api|TCP/8080", "shop/api>shop/db|TCP/5432", "shop/api>shop/cache|TCP/6379",
		"shop/api>payments.example|TCP/443",
		"monitoring/prometheus>shop/frontend|TCP/9090", "monitoring/prometheus>shop/api|TCP/9090",
		"monitoring/prometheus>shop/db|TCP/9090", "monitoring/prometheus>shop/cache|TCP/9090",
		"monitoring/prometheus>shop/intruder|TCP/9090", "monitoring/prometheus>kube-system/dns|TCP/9090",
	}
)

// freeAddr returns a 127.0.0.1 address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// uiAPI calls the agent's TCP API with the bearer token and decodes the answer.
func uiAPI(t *testing.T, base, token, method, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if out != nil && res.StatusCode == 200 {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return res.StatusCode
}

// TestUI is the page on the shop lab with a running agent, in headless
// Chromium: an operator logs in with the token, every declared workload
// and talk is drawn, the filters work, the operator proposes, promotes
// shop/db to audit through the confirmation (which shows the paths the
// change opens and closes) and the history records it with the session's
// user while the kernel holds the audit rules; an edge's panel names the
// rule that allows it, its revision and observed edge; a matrix cell
// explains itself; verify runs and a bundle is exported, downloaded and
// summarised; a request without
// the CSRF token is refused; a stale session hint cookie costs one 401
// and is dropped; a viewer sees no actions and is refused a promotion;
// nothing at all is logged to the console on the normal path, after it
// nothing but those refusals, and nothing is requested from anywhere but
// the agent's listener.
func TestUI(t *testing.T) {
	token, viewToken := "ui-operator-token-0123456789", "ui-viewer-token-0123456789"
	dir := t.TempDir()
	tokenFile, viewFile := filepath.Join(dir, "token"), filepath.Join(dir, "view-token")
	for f, tok := range map[string]string{tokenFile: token, viewFile: viewToken} {
		if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	api := "http://" + addr
	e := newTopologyEnv(t, "ui", uiTopology, "--listen", addr, "--token-file", tokenFile, "--read-token-file", viewFile)
	e.startAgent()
	e.mustRun("lab", "edges", "--name", e.name, "--wait", "40s")

	base := api
	b := browsertest.Start(t, 90*time.Second)
	b.State = `"status: " + document.querySelector("#status").textContent + "; dialog error: " + document.querySelector("#dialog-error").textContent + "; dialog open: " + document.querySelector("#dialog").open + "; last topics: " + nanoseg.topics + "; dialog: " + document.querySelector("#dialog").textContent.replace(/\s+/g, " ") + "; panel: " + document.querySelector("#panel-body").textContent.slice(0, 2000)`
	b.Do(t, "open the page", chromedp.Navigate(base+"/"))
	uiLogin(t, b, token)
	if role := browsertest.Eval[string](t, b, `nanoseg.role`); role != "operator" {
		t.Fatalf("the operator token's session has role %q", role)
	}

	// Every declared workload and talk is on the picture.
	ids := browsertest.Eval[[]string](t, b, `[...nanoseg.model.nodes.keys()]`)
	for _, w := range uiWorkloads {
		if !slices.Contains(ids, w) {
			t.Errorf("workload %s not drawn; nodes: %v", w, ids)
		}
	}
	links := browsertest.Eval[[]string](t, b, `nanoseg.view.cy.edges().map(e => e.id())`)
	for _, l := range uiTalks {
		if !slices.Contains(links, l) {
			t.Errorf("declared talk %s not drawn; edges: %v", l, links)
		}
	}

	// Filters: one namespace shows only edges with an end in it (the
	// filter keeps an edge when either end is in the namespace).
	b.Do(t, "filter namespace monitoring", chromedp.SetValue(chromedp.CSS("#f-namespace"), "monitoring"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#f-namespace").dispatchEvent(new Event("change"))`))
	shown := browsertest.Eval[[]string](t, b, `nanoseg.view.cy.edges().not(".hidden").map(e => e.id())`)
	for _, id := range shown {
		src, rest, _ := strings.Cut(id, ">")
		if !strings.HasPrefix(src, "monitoring/") && !strings.HasPrefix(rest, "monitoring/") {
			t.Errorf("namespace monitoring shows %s", id)
		}
	}
	for _, l := range uiTalks {
		if strings.HasPrefix(l, "monitoring/") && !slices.Contains(shown, l) {
			t.Errorf("namespace monitoring hides %s", l)
		}
	}
	b.Do(t, "filter port 5432", chromedp.SetValue(chromedp.CSS("#f-namespace"), ""),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#f-namespace").dispatchEvent(new Event("change"))`),
		chromedp.SendKeys(chromedp.CSS("#f-port"), "5432"))
	browsertest.Wait(t, b, "the port filter", `nanoseg.view.cy.edges().not(".hidden").length === 1`, 5*time.Second)
	b.Do(t, "clear the port filter",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#f-port").value = ""; document.querySelector("#f-port").dispatchEvent(new Event("input"))`))
	// Every edge drawn now (live updates may have added some since).
	browsertest.Wait(t, b, "all edges again", `nanoseg.view.cy.edges().not(".hidden").length === nanoseg.view.cy.edges().length`, 5*time.Second)

	// Propose from the page, then promote shop/db to audit through the dialog.
	b.Do(t, "propose", chromedp.Click(chromedp.CSS("#btn-propose")))
	browsertest.Wait(t, b, "the proposal", `document.querySelector("#panel").dataset.kind === "propose" && document.querySelector("#panel-body").textContent.includes("shop/db")`, 15*time.Second)
	b.Do(t, "open shop/db", chromedp.Evaluate[chromedp.Void](`void nanoseg.view.cy.getElementById("shop/db").emit("tap")`))
	browsertest.Wait(t, b, "shop/db's details", `document.querySelector("#act-audit") !== null`, 10*time.Second)
	if mode := browsertest.Eval[string](t, b, `document.querySelector("#wl-mode").textContent`); mode != "observe" {
		t.Errorf("shop/db's panel shows mode %q before the promotion, want observe", mode)
	}
	dbNetns := uiNetns(t, api, token, "shop/db")
	uiKernelModes(t, dbNetns, model.ModeObserve)
	// A click event on the button, not a mouse click at its coordinates:
	// those raced with the panel's layout now and then.
	b.Do(t, "promote to audit", chromedp.Evaluate[chromedp.Void](`document.querySelector("#act-audit").click()`))
	browsertest.Wait(t, b, "the reachability change", `document.querySelector("#dialog").open && document.querySelector("#reachability") !== null`, 30*time.Second)
	if !browsertest.Eval[bool](t, b, `document.querySelector("#dialog-confirm").disabled`) {
		t.Error("the dialog commits without a reason")
	}
	reach := browsertest.Eval[string](t, b, `document.querySelector("#reachability").textContent`)
	if !strings.Contains(reach, "paths opened") || !strings.Contains(reach, "paths closed") {
		t.Errorf("the confirmation does not show the reachability change: %q", reach)
	}
	b.Do(t, "give a reason and commit", chromedp.SendKeys(chromedp.CSS("#dialog-reason"), "reviewed in the page"),
		chromedp.Click(chromedp.CSS("#dialog-confirm")))
	browsertest.Wait(t, b, "the recorded promotion", `document.querySelector("#status").textContent.includes("recorded as seq")`, 20*time.Second)
	browsertest.Wait(t, b, "the panel in audit", `document.querySelector("#wl-mode") && document.querySelector("#wl-mode").textContent === "audit"`, 10*time.Second)

	var hist []model.Promotion
	if code := uiAPI(t, api, token, "GET", "/v1/history?workload=shop/db", &hist); code != 200 || len(hist) == 0 {
		t.Fatalf("history of shop/db: %d %v", code, hist)
	}
	last := hist[len(hist)-1]
	if last.ToMode != model.ModeAudit || last.Reason != "reviewed in the page" || last.Who == "" {
		t.Errorf("last record of shop/db: %+v; want to audit, the page's reason and a user", last)
	}
	statusText := browsertest.Eval[string](t, b, `document.querySelector("#status").textContent`)
	if !strings.Contains(last.Who, "web UI session of the operator token") || !strings.Contains(statusText, "by "+last.Who) {
		t.Errorf("the page says %q; the history recorded who %q", statusText, last.Who)
	}
	// The kernel holds the audit rules: the agent reads every endpoint back in sync.
	waitFor(t, 15*time.Second, func() error {
		var st []controller.WorkloadStatus
		uiAPI(t, api, token, "GET", "/v1/status", &st)
		for _, s := range st {
			if s.Workload != "shop/db" {
				continue
			}
			if s.Mode != model.ModeAudit || len(s.Endpoints) == 0 {
				return fmt.Errorf("shop/db mode %s, %d endpoints", s.Mode, len(s.Endpoints))
			}
			for _, ep := range s.Endpoints {
				if !ep.InSync {
					return fmt.Errorf("shop/db endpoint %s not in sync: %s", ep.Netns, ep.Error)
				}
			}
			return nil
		}
		return fmt.Errorf("no status of shop/db")
	})
	// And in the kernel itself: every shop/db endpoint's nanoseg table
	// holds the audit default (log audit-deny and accept) in its ingress
	// chain, read back over netlink; shop/cache, not promoted, still
	// observes.
	uiKernelModes(t, dbNetns, model.ModeAudit)
	uiKernelModes(t, uiNetns(t, api, token, "shop/cache"), model.ModeObserve)

	// The edge api -> db: its panel names the rule that allows it now.
	b.Do(t, "open api -> db", chromedp.Evaluate[chromedp.Void](`void nanoseg.view.cy.getElementById("shop/api>shop/db|TCP/5432").emit("tap")`))
	browsertest.Wait(t, b, "the edge's rule", `document.querySelector("#explain-action") !== null`, 10*time.Second)
	if got := browsertest.Eval[string](t, b, `document.querySelector("#explain-action").textContent`); got != "allow" {
		t.Errorf("api -> db decided %q, want allow", got)
	}
	if body := browsertest.Eval[string](t, b, `document.querySelector("#panel-body").textContent`); !strings.Contains(body, "NanoSegment shop/db") || !strings.Contains(body, "rule ") {
		t.Errorf("api -> db's panel does not name shop/db's rule:\n%s", body)
	}

	// The edge's origin: the revision its rule came from and the observed edge.
	browsertest.Wait(t, b, "the rule's origin", `document.querySelector(".origin") !== null`, 10*time.Second)
	if body := browsertest.Eval[string](t, b, `document.querySelector("#panel-body").textContent`); !strings.Contains(body, "revision1 (proposed") || !strings.Contains(body, "TCP/5432") {
		t.Errorf("api -> db's panel does not give the rule's revision and observed edge:\n%s", body)
	}

	// The matrix of shop: the api -> db cell on 5432/TCP explains itself.
	b.Do(t, "the matrix of shop", chromedp.SetValue(chromedp.CSS("#f-namespace"), "shop"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#f-namespace").dispatchEvent(new Event("change")); document.querySelector("#btn-matrix").click()`))
	browsertest.Wait(t, b, "the matrix", `document.querySelector("#matrix-port") !== null`, 20*time.Second)
	b.Do(t, "port 5432 and the api -> db cell", chromedp.Evaluate[chromedp.Void](`const p = document.querySelector("#matrix-port"); p.value = "5432/TCP"; p.dispatchEvent(new Event("change"));
		document.querySelector('#matrix td[data-from="shop/api"][data-to="shop/db"]').click()`))
	browsertest.Wait(t, b, "the cell's explanation", `document.querySelector("#matrix-reason") !== null`, 5*time.Second)
	if got := browsertest.Eval[string](t, b, `document.querySelector("#matrix-explain").textContent`); !strings.Contains(got, "allow") || !strings.Contains(got, "NanoSegment shop/db") {
		t.Errorf("the api -> db cell explains: %q", got)
	}

	// Evidence: verify, export and download a bundle, its summary.
	b.Do(t, "evidence", chromedp.Evaluate[chromedp.Void](`document.querySelector("#btn-evidence").click()`))
	browsertest.Wait(t, b, "the last bundle", `document.querySelector("#evidence-last") && document.querySelector("#evidence-last").textContent.includes("no bundle exported yet")`, 10*time.Second)
	b.Do(t, "verify", chromedp.Evaluate[chromedp.Void](`document.querySelector("#ev-verify").click()`))
	browsertest.Wait(t, b, "the verification", `document.querySelector("#verify-summary") !== null`, 60*time.Second)
	if got := browsertest.Eval[string](t, b, `document.querySelector("#verify-summary").textContent`); !strings.Contains(got, " 0 mismatches") {
		t.Errorf("verify from the page: %q", got)
	}
	b.Do(t, "export", chromedp.Evaluate[chromedp.Void](`document.querySelector("#ev-export").click()`))
	browsertest.Wait(t, b, "the bundle's download and summary", `document.querySelector("#ev-download") !== null && document.querySelector("#evidence-last").textContent.includes("manifestSHA256")`, 60*time.Second)
	b.Do(t, "all namespaces", chromedp.SetValue(chromedp.CSS("#f-namespace"), ""),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#f-namespace").dispatchEvent(new Event("change"))`))

	// A ClusterNetworkPolicy on the page: an Admin Deny of prometheus
	// scraping shop/intruder (no policy of its own: dropped). After a
	// reload (the kept positions and the session hint bring the drawing
	// back without a login) the edge carries the Admin mark and its panel
	// names the tier, policy, priority and rule.
	cnp := filepath.Join(dir, "cnp.yaml")
	if err := os.WriteFile(cnp, []byte(`apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-scrape-intruder}
spec:
  tier: Admin
  priority: 5
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: intruder}}}}
  ingress:
    - name: not-prometheus
      action: Deny
      from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
      protocols: [{tcp: {destinationPort: {number: 9090}}}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("policy", "apply", "-f", cnp)
	const scrape = "monitoring/prometheus>shop/intruder|TCP/9090"
	b.Do(t, "reload the page", chromedp.Reload())
	browsertest.Wait(t, b, "the Admin mark", `window.nanoseg.view && nanoseg.view.cy && nanoseg.view.cy.getElementById("`+scrape+`").hasClass("admin")`, 20*time.Second)
	b.Do(t, "open the scrape of intruder", chromedp.Evaluate[chromedp.Void](`void nanoseg.view.cy.getElementById("`+scrape+`").emit("tap")`))
	browsertest.Wait(t, b, "its explanation", `document.querySelector("#explain-action") !== null`, 10*time.Second)
	if got := browsertest.Eval[string](t, b, `document.querySelector("#explain-action").textContent`); got != "deny" {
		t.Errorf("prometheus -> intruder decided %q, want deny", got)
	}
	want := `denied by ClusterNetworkPolicy no-scrape-intruder (Admin, priority 5) rule ingress-0 "not-prometheus"`
	if body := browsertest.Eval[string](t, b, `document.querySelector("#panel-body").textContent`); !strings.Contains(body, want) {
		t.Errorf("prometheus -> intruder's panel does not name %s:\n%s", want, body)
	}

	// The normal path (load, login, browse, propose, promote, matrix,
	// evidence, a reload) logs nothing to the console: no session check before the
	// login (the page asks only with the nanoseg_ui hint cookie) and no
	// 404 for the last bundle before the first export (?optional=1).
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("console problems on the normal path:\n%s", strings.Join(p, "\n"))
	}
	clean := len(b.Problems())

	// A state-changing request without the session's CSRF token is refused.
	forge := `fetch("/v1/promote", {method: "POST", headers: {"Content-Type": "application/json"%s},
		body: JSON.stringify({workload: "shop/cache", to: "audit", reason: "forged"})}).then(r => r.status)`
	if code := browsertest.Eval[int](t, b, fmt.Sprintf(forge, "")); code != http.StatusForbidden {
		t.Errorf("a promotion without the CSRF token got %d, want 403", code)
	}

	// A viewer: no actions on the page, and the agent refuses a promotion
	// even with the session's CSRF token.
	b.Do(t, "log out", chromedp.Click(chromedp.CSS("#logout")))
	browsertest.Wait(t, b, "the login form", `document.body.classList.contains("logged-out")`, 10*time.Second)
	if c := browsertest.Eval[string](t, b, `document.cookie`); strings.Contains(c, "nanoseg_ui") {
		t.Errorf("after logout the page still has the hint cookie: %q", c)
	}
	// A stale hint (its session gone): one 401 for the session check, the
	// login form, and the page drops the hint.
	b.Do(t, "a stale hint and a reload", chromedp.Evaluate[chromedp.Void](`document.cookie = "nanoseg_ui=1; Path=/; SameSite=Strict"`),
		chromedp.Reload())
	browsertest.Wait(t, b, "the login form without the hint", `document.body.classList.contains("logged-out") && !document.cookie.includes("nanoseg_ui")`, 10*time.Second)
	uiLogin(t, b, viewToken)
	if role := browsertest.Eval[string](t, b, `nanoseg.role`); role != "viewer" {
		t.Fatalf("the viewer token's session has role %q", role)
	}
	if browsertest.Eval[bool](t, b, `document.querySelector("#btn-propose").offsetParent !== null`) {
		t.Error("a viewer sees the Propose button")
	}
	b.Do(t, "open shop/cache", chromedp.Evaluate[chromedp.Void](`void nanoseg.view.cy.getElementById("shop/cache").emit("tap")`))
	browsertest.Wait(t, b, "shop/cache's details", `document.querySelector("#panel").dataset.kind === "workload" && document.querySelector("#panel-title").textContent === "shop/cache"`, 10*time.Second)
	if browsertest.Eval[bool](t, b, `document.querySelector("#act-audit, #act-enforce, #act-rollback") !== null`) {
		t.Error("a viewer's workload panel has promotion buttons")
	}
	if code := browsertest.Eval[int](t, b, fmt.Sprintf(forge, `, "X-CSRF-Token": nanoseg.api.csrf`)); code != http.StatusForbidden {
		t.Errorf("a viewer's promotion got %d, want 403", code)
	}
	var cacheHist []model.Promotion
	uiAPI(t, api, token, "GET", "/v1/history?workload=shop/cache", &cacheHist)
	if len(cacheHist) != 0 {
		t.Errorf("the refused promotions were recorded: %+v", cacheHist)
	}

	// After that, no console error but the answers the test provoked (the
	// browser logs every 4xx): the 403s of the forged promotions and the
	// 401 of the stale hint's session check.
	var problems []string
	for _, p := range b.Problems()[clean:] {
		if strings.Contains(p, "status of 403") && strings.Contains(p, "/v1/promote") ||
			strings.Contains(p, "status of 401") && strings.Contains(p, "/v1/session") {
			continue
		}
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		t.Errorf("console problems:\n%s", strings.Join(problems, "\n"))
	}
	if f := b.Foreign(base); len(f) > 0 {
		t.Errorf("requests that left the listener: %v", f)
	}
}

// uiNetns returns the netns names of workload's endpoints, from /v1/status.
func uiNetns(t *testing.T, api, token, workload string) []string {
	t.Helper()
	var st []controller.WorkloadStatus
	if code := uiAPI(t, api, token, "GET", "/v1/status", &st); code != 200 {
		t.Fatalf("status: %d", code)
	}
	var out []string
	for _, s := range st {
		if s.Workload == workload {
			for _, ep := range s.Endpoints {
				out = append(out, ep.Netns)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no endpoints of %s in the status", workload)
	}
	return out
}

// uiKernelModes fails t unless the nanoseg table in each netns holds the
// rules of mode (the ingress chain's default verdict, as the dataplane's
// read-back decodes it from the kernel).
func uiKernelModes(t *testing.T, netns []string, mode model.Mode) {
	t.Helper()
	for _, ns := range netns {
		st, err := dataplane.New(nil).Read(nsenter.Path(ns))
		if err != nil {
			t.Fatalf("read the table in %s: %v", ns, err)
		}
		if !st.Present || st.RuleSet.Mode != mode {
			t.Errorf("the kernel's table in %s: present %v, mode %q; want mode %s", ns, st.Present, st.RuleSet.Mode, mode)
		}
	}
}

// uiLogin logs the page in with token through its form and waits for the drawing.
func uiLogin(t *testing.T, b *browsertest.Browser, token string) {
	t.Helper()
	browsertest.Wait(t, b, "the login form", `document.body.classList.contains("logged-out")`, 10*time.Second)
	b.Do(t, "log in", chromedp.SendKeys(chromedp.CSS("#login-token"), token), chromedp.Click(chromedp.CSS("#login-submit")))
	browsertest.Wait(t, b, "the drawing", `!document.body.classList.contains("logged-out") && window.nanoseg.view && window.nanoseg.view.layoutMs > 0 && nanoseg.view.cy.edges().length > 0`, 20*time.Second)
}
