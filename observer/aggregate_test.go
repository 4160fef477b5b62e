package observer

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// testInventory: a4, a4b (replicas of shop/frontend), b4 (shop/api).
var a4b = netip.MustParseAddr("198.18.0.11")

func testInventory() Inventory {
	return InventoryFunc(func(a netip.Addr) (model.Identity, bool) {
		switch a {
		case a4, a4b, a6:
			return model.Identity{Namespace: "shop", Workload: "frontend", Labels: map[string]string{"app": "frontend"}}, true
		case b4:
			return model.Identity{Namespace: "shop", Workload: "api"}, true
		}
		return model.Identity{}, false
	})
}

func ctFlow(phase model.Phase, dir model.Direction, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) model.Flow {
	return model.Flow{Phase: phase, Source: model.SourceConntrack, Direction: dir, Protocol: model.ProtocolTCP, Src: src, SrcPort: sport,
		Dst: dst, DstPort: dport, Verdict: model.VerdictObserved, Start: time.Unix(100, 0)}
}

func TestAggregateReplicasAndPorts(t *testing.T) {
	agg := NewAggregator(testInventory(), nil, nil)
	for i := range 10 {
		src := a4
		if i%2 == 1 {
			src = a4b
		}
		agg.Add(ctFlow(model.PhaseStart, model.Egress, src, uint16(40000+i), b4, 8080))
		end := ctFlow(model.PhaseEnd, model.Egress, src, uint16(40000+i), b4, 8080)
		end.PacketsOut, end.BytesOut, end.PacketsIn, end.BytesIn = 5, 300, 4, 200
		agg.Add(end)
	}
	es := agg.Edges()
	if len(es) != 1 {
		t.Fatalf("edges %+v, want one (replicas collapse, source ports dropped)", es)
	}
	e := es[0]
	if e.Source.String() != "shop/frontend" || e.Destination.String() != "shop/api" || e.Port != 8080 || e.Protocol != model.ProtocolTCP ||
		e.Flows != 10 || e.Verdicts.Observed != 10 || e.BytesOut != 3000 || e.BytesIn != 2000 || e.PacketsOut != 50 {
		t.Errorf("edge %+v", e)
	}
}

func TestAggregateBothEndsCountOnce(t *testing.T) {
	observed := func(a netip.Addr) bool { return a == a4 || a == b4 }
	agg := NewAggregator(testInventory(), nil, observed)
	// Client side (egress at a4) and server side (ingress at b4) of one connection.
	agg.Add(ctFlow(model.PhaseStart, model.Egress, a4, 40000, b4, 8080))
	agg.Add(ctFlow(model.PhaseStart, model.Ingress, a4, 40000, b4, 8080))
	// An unobserved external client: counted at the server's ingress.
	agg.Add(ctFlow(model.PhaseStart, model.Ingress, x4, 50000, b4, 8080))
	// A denied attempt logged at the server's ingress from the observed client:
	// the verdict is counted, the flow was counted at the client.
	deny := model.Flow{Phase: model.PhaseComplete, Source: model.SourceVerdictLog, Direction: model.Ingress, Protocol: model.ProtocolTCP,
		Src: a4, SrcPort: 40001, Dst: b4, DstPort: 8080, Verdict: model.VerdictDeny, RuleID: "r"}
	agg.Add(ctFlow(model.PhaseStart, model.Egress, a4, 40001, b4, 8080))
	agg.Add(deny)
	// A denied attempt at the client's egress: conntrack never confirms it, the log counts it.
	deny2 := deny
	deny2.Direction, deny2.SrcPort, deny2.DstPort = model.Egress, 40002, 9090
	agg.Add(deny2)
	es := agg.Edges()
	if len(es) != 3 {
		t.Fatalf("edges: %+v", es)
	}
	byDst := map[string]model.Edge{}
	for _, e := range es {
		byDst[e.Source.String()+">"+e.Destination.String()+":"+strconv.Itoa(int(e.Port))] = e
	}
	if e := byDst["shop/frontend>shop/api:8080"]; e.Flows != 2 || e.Verdicts.Denied != 1 || e.Verdicts.Observed != 2 {
		t.Errorf("frontend>api:8080 = %+v", e)
	}
	if e := byDst["198.19.0.10>shop/api:8080"]; e.Flows != 1 || !e.Source.External {
		t.Errorf("external>api = %+v", e)
	}
	for _, e := range es {
		if e.Port == 9090 && (e.Flows != 1 || e.Verdicts.Denied != 1) {
			t.Errorf("denied at egress = %+v", e)
		}
	}
}

func TestAggregateExternalNamedByDNS(t *testing.T) {
	names := NewNames(0)
	now := time.Now()
	names.Put(DNSAnswer{"payments.example", x4, time.Hour}, now)
	names.Put(DNSAnswer{"payments.example", x6, time.Hour}, now)
	agg := NewAggregator(testInventory(), names, nil)
	agg.Add(ctFlow(model.PhaseStart, model.Egress, a4, 1, x4, 443))
	agg.Add(ctFlow(model.PhaseStart, model.Egress, a6, 2, x6, 443))
	agg.Add(ctFlow(model.PhaseStart, model.Egress, a4, 3, netip.MustParseAddr("198.19.0.99"), 443))
	es := agg.Edges()
	if len(es) != 2 {
		t.Fatalf("edges %+v", es)
	}
	if es[1].Destination.Name != "payments.example" || es[1].Flows != 2 || !es[1].Destination.External {
		t.Errorf("named edge %+v", es[1])
	}
	if es[0].Destination.Addr.String() != "198.19.0.99" {
		t.Errorf("unnamed edge %+v", es[0])
	}
	if got := agg.Take(); len(got) != 2 || agg.Len() != 0 {
		t.Errorf("take %d, left %d", len(got), agg.Len())
	}
}

// TestAggregateRestore: edges taken and restored (a commit that failed)
// join the flows added since, for workloads and external addresses alike.
func TestAggregateRestore(t *testing.T) {
	agg := NewAggregator(testInventory(), nil, nil)
	ext := netip.MustParseAddr("198.19.0.5")
	agg.Add(ctFlow(model.PhaseStart, model.Egress, a4, 40000, b4, 8080))
	agg.Add(ctFlow(model.PhaseStart, model.Egress, b4, 40001, ext, 443))
	taken := agg.Take()
	agg.Add(ctFlow(model.PhaseStart, model.Egress, a4b, 40002, b4, 8080))
	agg.Restore(taken)
	got := agg.Take()
	if len(got) != 2 {
		t.Fatalf("after Restore: %d edges, want 2: %+v", len(got), got)
	}
	for _, e := range got {
		want := uint64(1)
		if e.Destination.Workload == "api" {
			want = 2
		}
		if e.Flows != want {
			t.Errorf("%s -> %s: %d flows, want %d", e.Source, e.Destination, e.Flows, want)
		}
	}
	if agg.Len() != 0 {
		t.Errorf("Take after Restore left %d edges", agg.Len())
	}
}

// TestAggregateKeepsOutUnknownDirection: records whose opener the
// observer could not establish add nothing to any edge, neither a flow nor
// counters, in either direction.
func TestAggregateKeepsOutUnknownDirection(t *testing.T) {
	agg := NewAggregator(testInventory(), nil, nil)
	for _, phase := range []model.Phase{model.PhaseStart, model.PhaseEnd, model.PhaseComplete} {
		for _, dir := range []model.Direction{model.Egress, model.Ingress} {
			f := ctFlow(phase, dir, b4, 8080, a4, 41000)
			f.Protocol, f.PacketsOut, f.BytesOut = model.ProtocolUDP, 1, 100
			f.DirectionUnknown = true
			agg.Add(f)
		}
	}
	if es := agg.Edges(); len(es) != 0 {
		t.Errorf("records of unknown direction made edges: %+v", es)
	}
}

// TestAggregateUpdatesAddCounters: update records add their counters, not
// flows; with the end record the edge holds the connection's totals.
func TestAggregateUpdatesAddCounters(t *testing.T) {
	agg := NewAggregator(testInventory(), nil, nil)
	agg.now = func() time.Time { return time.Unix(200, 0) }
	agg.Add(ctFlow(model.PhaseStart, model.Egress, a4, 40000, b4, 8080))
	for _, n := range []uint64{3, 4} {
		u := ctFlow(model.PhaseUpdate, model.Egress, a4, 40000, b4, 8080)
		u.PacketsOut, u.BytesOut, u.PacketsIn, u.BytesIn = n, 100*n, n, 1000*n
		agg.Add(u)
	}
	end := ctFlow(model.PhaseEnd, model.Egress, a4, 40000, b4, 8080)
	end.PacketsOut, end.BytesOut = 2, 80
	agg.Add(end)
	es := agg.Edges()
	if len(es) != 1 {
		t.Fatalf("edges %+v", es)
	}
	if e := es[0]; e.Flows != 1 || e.Verdicts.Observed != 1 || e.PacketsOut != 9 || e.BytesOut != 780 || e.PacketsIn != 7 || e.BytesIn != 7000 ||
		!e.LastSeen.Equal(time.Unix(200, 0)) || !e.FirstSeen.Equal(time.Unix(100, 0)) {
		t.Errorf("edge %+v", e)
	}
}

// Failed connections are counted among the flows, through the same
// counting rule: once per connection, at its end, with resets apart.
func TestAggregateCountsFailed(t *testing.T) {
	observed := func(a netip.Addr) bool { return a == a4 || a == b4 }
	agg := NewAggregator(testInventory(), nil, observed)
	conn := func(sport uint16, fail model.Failure) {
		for _, dir := range []model.Direction{model.Egress, model.Ingress} {
			agg.Add(ctFlow(model.PhaseStart, dir, a4, sport, b4, 9999))
			end := ctFlow(model.PhaseEnd, dir, a4, sport, b4, 9999)
			end.Failed = fail
			agg.Add(end)
		}
	}
	conn(40000, model.FailureReset)
	conn(40001, model.FailureReset)
	conn(40002, model.FailureUnanswered)
	conn(40003, "")
	// A connection whose start was lost fails in one complete record.
	c := ctFlow(model.PhaseComplete, model.Egress, a4, 40004, b4, 9999)
	c.Failed = model.FailureReset
	agg.Add(c)
	es := agg.Edges()
	if len(es) != 1 {
		t.Fatalf("edges %+v", es)
	}
	e := es[0]
	if e.Flows != 5 || e.Failed != 4 || e.Reset != 3 || e.Succeeded() != 1 || e.OnlyFailed() {
		t.Errorf("edge %+v: want flows 5, failed 4, reset 3", e.Traffic)
	}
	// A failure on a start or update record is not counted (only ends say it).
	s := ctFlow(model.PhaseStart, model.Egress, a4, 40005, b4, 7)
	s.Failed = model.FailureReset
	agg.Add(s)
	for _, e := range agg.Edges() {
		if e.Port == 7 && (e.Failed != 0 || e.OnlyFailed()) {
			t.Errorf("start record counted as failed: %+v", e.Traffic)
		}
	}
}

func TestConntrackFailure(t *testing.T) {
	for _, c := range []struct {
		proto   uint8
		status  uint32
		replies uint64
		want    model.Failure
	}{
		{6, ipsSeenReply | ipsAssured, 5, ""},
		{6, 0, 1, model.FailureReset},            // RST killed the entry before SEEN_REPLY
		{6, ipsSeenReply, 1, model.FailureReset}, // answered, never established
		{6, 0, 0, model.FailureUnanswered},       // SYN timed out
		{17, ipsSeenReply, 1, ""},
		{17, 0, 0, model.FailureUnanswered},
		{1, 0, 0, model.FailureUnanswered},
		{1, ipsSeenReply, 1, ""},
		{47, 0, 0, ""}, // GRE: no opinion
	} {
		ev := ctEvent{Proto: c.proto, Status: c.status, PacketsReply: c.replies}
		if got := ev.failure(); got != c.want {
			t.Errorf("proto %d status %#x replies %d: %q, want %q", c.proto, c.status, c.replies, got, c.want)
		}
	}
}
