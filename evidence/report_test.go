package evidence

import (
	"strings"
	"testing"
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
	for _, want := range []string{"2026-01-02T03:04:05Z", "2026-01-02T02:04:05Z", "25 packets", "1500 bytes", "1 events", "shop/intruder",
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
