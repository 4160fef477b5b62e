package graph

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nanoseg/nanoseg/internal/browsertest"
)

// TestHTMLExportInBrowser opens the HTML export as a file in headless
// Chromium: the live page's drawing runs on the embedded data, every node
// and edge is drawn, the mostly allowed api → db edge (614 allowed, 2
// denied) is drawn as allowed with a denied band, the denied one as
// denied, an edge's panel gives its split, an Admin Deny that the
// workload's audit mode only logs is named as such, and the page logs no
// error and loads nothing beyond the file.
func TestHTMLExportInBrowser(t *testing.T) {
	g := Build(mixedEdges(), Filter{})
	g.MarkDecisions(func(src, dst Node, e Link) *Decision {
		if src.ID != "shop/intruder" {
			return nil
		}
		return &Decision{Tier: "Admin", Policy: "guard-db", Priority: 7, Rule: "ingress-0", Action: "Deny", Audited: true}
	})
	path := filepath.Join(t.TempDir(), "graph.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(f, g); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	b := browsertest.Start(t, 60*time.Second)
	b.Do(t, "open the export", chromedp.Navigate("file://"+path))
	browsertest.Wait(t, b, "the drawing", `window.nanoseg.view && window.nanoseg.view.layoutMs > 0`, 20*time.Second)
	if got := browsertest.Eval[string](t, b, `document.querySelector("#counts").textContent`); got != "5 workloads · 0 external peers · 4 edges" {
		t.Errorf("counts %q", got)
	}
	for id, want := range map[string]string{
		"shop/api>shop/db|TCP/5432":       "allow mixed",
		"shop/intruder>shop/db|TCP/5432":  "deny admin",
		"shop/frontend>shop/api|TCP/8080": "audit-deny mixed",
	} {
		if got := browsertest.Eval[string](t, b, `nanoseg.view.cy.getElementById("`+id+`").classes().join(" ")`); got != want {
			t.Errorf("%s drawn as %q, want %q", id, got, want)
		}
	}
	b.Do(t, "open api -> db", chromedp.Evaluate[chromedp.Void](`void nanoseg.view.cy.getElementById("shop/api>shop/db|TCP/5432").emit("tap")`))
	body := browsertest.Eval[string](t, b, `document.querySelector("#panel-body").textContent`)
	if !strings.Contains(body, "614 allowed · 0 audit-denied · 2 denied") {
		t.Errorf("api → db panel lacks the split:\n%s", body)
	}
	b.Do(t, "open intruder -> db", chromedp.Evaluate[chromedp.Void](`void nanoseg.view.cy.getElementById("shop/intruder>shop/db|TCP/5432").emit("tap")`))
	if got := browsertest.Eval[string](t, b, `(document.querySelector("#edge-cluster") || {}).textContent || ""`); got != "ClusterNetworkPolicy Admin guard-db (priority 7) ingress-0: Deny (audit mode: logged, not dropped)" {
		t.Errorf("intruder → db panel names the cluster rule as %q", got)
	}
	if browsertest.Eval[bool](t, b, `document.querySelector("#btn-propose").offsetParent !== null`) {
		t.Error("the export shows the live page's actions")
	}
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("console problems:\n%s", strings.Join(p, "\n"))
	}
	if fo := b.Foreign("file://" + path); len(fo) > 0 {
		t.Errorf("the export loaded %v", fo)
	}
}
