//go:build linux

package dataplane

import (
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// TestDefaultVerdictCounted: the kernel counts every packet that reaches
// an endpoint's default verdict (no entry allowed it) in a named counter
// per direction, whether anyone reads the verdict log or not (nobody does
// here, as while no agent runs, and a reader bound later gets none of the
// records) and beyond the deny log's rate limit; the count survives a mode
// change, which rewrites the policy chains.
func TestDefaultVerdictCounted(t *testing.T) {
	p := newPair(t)
	serve(t, p.server, 80, 81)
	dp := New(nil)
	rs := serverRuleSet(families[0], model.ModeEnforce)
	mustApply(t, dp, p.server, rs)
	const attempts = LogBurst + 10
	for range attempts {
		if probeUDP(p.client, client4[0], ap(server4, 81), 20*time.Millisecond) == nil {
			t.Fatal("udp 81 got through an enforcing table")
		}
	}
	if probeTCP(p.client, client4[0], ap(server4, 80), time.Second) != nil {
		t.Fatal("tcp 80 refused")
	}
	// A reader bound afterwards gets none of those records: nfnetlink_log
	// keeps nothing for an absent reader.
	logs := listenNFLOG(t, p.server)
	if logs.wait(verdictlog.Format(model.VerdictDeny, rs.Name), 1500*time.Millisecond) {
		t.Errorf("a deny record made before anyone listened was delivered later")
	}
	// The reader works: a deny now is logged.
	_ = probeUDP(p.client, client4[0], ap(server4, 81), 20*time.Millisecond)
	if !logs.wait(verdictlog.Format(model.VerdictDeny, rs.Name), time.Second) {
		t.Fatalf("no deny record with a reader bound")
	}
	st := mustRead(t, dp, p.server)
	if got := st.Defaults[model.Ingress].Packets; got != attempts+1 {
		t.Errorf("default verdict ingress counter: %d packets, want %d (every denied datagram)", got, attempts+1)
	}
	if st.Defaults[model.Ingress].Bytes == 0 {
		t.Errorf("default verdict ingress counter counts no bytes")
	}
	if got := st.Defaults[model.Egress].Packets; got != 0 {
		t.Errorf("default verdict egress counter: %d packets, want 0", got)
	}
	if _, ok := st.Counters["web"]; !ok || len(st.Counters) != 3 {
		t.Errorf("rule counters: %v, want web, udp80 and ping only", st.Counters)
	}

	rs.Mode = model.ModeAudit
	mustApply(t, dp, p.server, rs)
	if probeUDP(p.client, client4[0], ap(server4, 81), time.Second) != nil {
		t.Fatal("udp 81 dropped in audit mode")
	}
	st = mustRead(t, dp, p.server)
	if !st.Equal(rs) {
		t.Errorf("read-back after the mode change differs")
	}
	if got := st.Defaults[model.Ingress].Packets; got != attempts+2 {
		t.Errorf("after the mode change and one audit-denied datagram: %d packets, want %d", got, attempts+2)
	}
}
