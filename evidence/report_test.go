package evidence

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nanoseg/nanoseg/model"
)

// The report is self-contained, writes times as RFC 3339 UTC and gives
// every count its unit; the CSV files carry the same facts.
func TestReportSelfContainedWithUnits(t *testing.T) {
	b := sampleBundle()
	b.Meta.Frameworks = []string{"PCI DSS 4.0 requirement 11.4.5"}
	b.Counters.Rules = []RuleCounter{{Workload: "shop/db", Netns: "n-db", RuleID: "r1", WindowPackets: 25, WindowBytes: 1500, Baseline: "snapshot",
		CountedFrom: b.Meta.WindowStart, TotalPackets: 30, TotalBytes: 1800}}
	b.Denied.Flows = GroupDenied(b.Denied.Events)
	files, err := Files(b)
	if err != nil {
		t.Fatal(err)
	}
	html := string(files["report.html"])
	for _, want := range []string{"2026-01-02T03:04:05Z", "2026-01-02T02:04:05Z", "25 packets", "1500 bytes", "1 event<", "shop/intruder",
		"PCI DSS", "0 mismatches", "8080/TCP (http)"} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "src=\"http", "href=\"http", "@import", "UTC+", "+00:00"} {
		if strings.Contains(html, bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
	if c := string(files["counters.csv"]); !strings.Contains(c, "window_packets,window_bytes") || !strings.Contains(c, "shop/db,n-db,r1,25,1500,2026-01-02T02:04:05Z,snapshot,30,1800,false") {
		t.Errorf("counters.csv:\n%s", c)
	}
	if d := string(files["denied.csv"]); !strings.Contains(d, "deny,shop/intruder,shop/db,TCP,5432,x,1,2026-01-02T03:04:05Z,2026-01-02T03:04:05Z") {
		t.Errorf("denied.csv:\n%s", d)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestReportGolden renders the shop lab's report and compares it with
// testdata/shop-report.html (rewritten with -update). Open that file, or
// print it to PDF, to look at the report as a reader does.
func TestReportGolden(t *testing.T) {
	files, err := Files(shopBundle())
	if err != nil {
		t.Fatal(err)
	}
	got := files["report.html"]
	golden := filepath.Join("testdata", "shop-report.html")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("report.html differs from %s (-want +got; rewrite with -update):\n%s", golden, d)
	}
}

// TestReportLayout is issue 11 item 10: in the printed report a rule id
// wrapped over nine lines of six characters and "counted from" read "rule
// programmed (programmed)". Long ids and netns names break only after "/"
// and "." (each segment stays whole, so the column is as wide as the
// longest segment), every table repeats its header on each printed page,
// and no cell says the same word twice.
func TestReportLayout(t *testing.T) {
	files, err := Files(shopBundle())
	if err != nil {
		t.Fatal(err)
	}
	html := string(files["report.html"])
	for _, want := range []string{
		// The rule id column: segments that do not wrap, break points after "/".
		`<td class="id"><span>seg/</span><wbr><span>kube-system/</span><wbr><span>dns/</span><wbr><span>from-monitoring-prometheus</span></td>`,
		`.id > span, .brk > span { white-space: nowrap; }`,
		// Netns names break after the lab prefix, not inside a word.
		`<span>nanoseg-lab-shop.</span><wbr><span>monitoring-prometheus-0</span>`,
		// The three baselines in words.
		`<td class="t">2026-03-08T14:33:00Z</td>`,
		`<td>rule programmed</td>`,
		`<td>table re-created after <span class="nowrap">2026-03-08T14:33:00Z</span></td>`,
		// Plurals.
		"1 rule had 0 packets", "14 events",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
	if strings.Contains(html, "overflow-wrap: anywhere") {
		t.Errorf("report.html lets cells break anywhere: ids and names wrap a few characters a line")
	}
	if n, m := strings.Count(html, "<table>"), strings.Count(html, "<thead>"); n != m {
		t.Errorf("%d tables but %d with a <thead>: printed pages after the first lose the column names", n, m)
	}
	// Visible text, one cell per "|": no word twice in a row, as in
	// "programmed (programmed)" or "1 rules".
	text := regexp.MustCompile(`<style>[^<]*</style>|<[^>]*>`).ReplaceAllString(html, "|")
	word := regexp.MustCompile(`[A-Za-z]+`)
	for _, cell := range strings.Split(text, "|") {
		ws := word.FindAllStringIndex(cell, -1)
		for i := 1; i < len(ws); i++ {
			a, b := cell[ws[i-1][0]:ws[i-1][1]], cell[ws[i][0]:ws[i][1]]
			if a == b && strings.Trim(cell[ws[i-1][1]:ws[i][0]], " ()") == "" {
				t.Errorf("report.html repeats a word: %q", cell[ws[i-1][0]:ws[i][1]])
			}
		}
	}
	if regexp.MustCompile(`\b1 (rules|events|entries|packets|paths|workloads|endpoints|probes)\b`).MatchString(text) {
		t.Errorf("report.html says 1 with a plural: %q", regexp.MustCompile(`\b1 (rules|events|entries|packets|paths|workloads|endpoints|probes)\b`).FindString(text))
	}
}

// The report shows each workload's observation coverage, names the silent
// ones, and says when a promotion was forced past the coverage gate.
func TestReportCoverageAndForced(t *testing.T) {
	b := shopBundle()
	at := b.Meta.GeneratedAt
	b.Coverage = []model.Coverage{
		{Workload: "shop/api", From: at.Add(-time.Hour), To: at, ObservedSeconds: 3000, Endpoints: 2, Flows: 40, Failed: 3, Peers: 2,
			LastNew: at.Add(-10 * time.Minute), Ports: []model.PortCoverage{{Protocol: model.ProtocolTCP, Port: 8080, Flows: 30, Peers: 1}}},
		{Workload: "shop/batch", From: at.Add(-time.Hour), To: at, ObservedSeconds: 3000, Endpoints: 1, Silent: true},
	}
	b.Policies.History[len(b.Policies.History)-1].Forced = []string{"observed for 50m, less than the 1h required (--min-observed)"}
	raw, err := ReportHTML(b)
	if err != nil {
		t.Fatal(err)
	}
	html := string(raw)
	for _, want := range []string{"Observation coverage in the window", "1 workload was silent", "8080/TCP (1 clients)",
		"silent: no successful connection in the window", "[forced past the coverage gate: observed for 50m, less than the 1h required (--min-observed)]"} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
