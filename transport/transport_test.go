package transport_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/nodeagent"
	"github.com/nanoseg/nanoseg/transport"
)

var agentID = transport.Identity{User: transport.NodeAgentUser}

// TestSequence: a node's batches are taken in order; a retry of one
// already applied is acknowledged without being applied again; a gap or
// an unknown epoch asks for the whole state (409 resync); a Full batch
// starts over.
func TestSequence(t *testing.T) {
	r := newRig(t, fakeAuth{"tok": agentID}, transport.ReceiverConfig{}, nil)
	send := func(b transport.Batch) (int, transport.Answer) { return post(t, r, "tok", batchJSON(t, b), nil) }
	steps := []struct {
		b      transport.Batch
		code   int
		reason string
		dup    bool
	}{
		{transport.Batch{Node: "node-a", Epoch: "e1", Seq: 1, Edges: []model.Edge{edge("a", 1, 1)}}, 409, transport.ReasonUnknownEpoch, false},
		{transport.Batch{Node: "node-a", Epoch: "e1", Seq: 1, Full: true, Edges: []model.Edge{edge("a", 1, 1)}}, 200, "", false},
		{transport.Batch{Node: "node-a", Epoch: "e1", Seq: 2, Edges: []model.Edge{edge("a", 1, 5), edge("a", 2, 1)}}, 200, "", false},
		{transport.Batch{Node: "node-a", Epoch: "e1", Seq: 2, Edges: []model.Edge{edge("a", 1, 5), edge("a", 2, 1)}}, 200, "", true},
		{transport.Batch{Node: "node-a", Epoch: "e1", Seq: 4, Edges: []model.Edge{edge("a", 3, 1)}}, 409, transport.ReasonGap, false},
		{transport.Batch{Node: "node-a", Epoch: "e2", Seq: 1, Edges: []model.Edge{edge("a", 3, 1)}}, 409, transport.ReasonUnknownEpoch, false},
		{transport.Batch{Node: "node-a", Epoch: "e1", Seq: 3, Verdicts: []model.VerdictEvent{{At: t0, Verdict: model.VerdictDeny, RuleID: "r"}}}, 200, "", false},
	}
	for i, s := range steps {
		code, a := send(s.b)
		if code != s.code || a.Reason != s.reason || a.Duplicate != s.dup || (code == 409) != a.Resync {
			t.Fatalf("step %d (epoch %s seq %d full %v): %d %+v, want %d reason %q duplicate %v", i, s.b.Epoch, s.b.Seq, s.b.Full, code, a, s.code, s.reason, s.dup)
		}
	}
	edges, _ := r.graph.Edges(time.Time{})
	if len(edges) != 2 || edges[0].Flows != 5 {
		t.Errorf("graph edges %+v: want db-1 with 5 flows (the latest value, not a sum) and db-2", edges)
	}
	if v, _ := r.graph.Verdicts(time.Time{}); len(v) != 1 {
		t.Errorf("verdicts %v, want one", v)
	}
	// A Full batch of a new epoch replaces the node's part.
	if code, a := send(transport.Batch{Node: "node-a", Epoch: "e2", Seq: 1, Full: true, Edges: []model.Edge{edge("a", 9, 1)}, Endpoints: []transport.EndpointState{{Key: "shop_web-0", Workload: "shop/web", InSync: true}}}); code != 200 {
		t.Fatalf("full batch of a new epoch: %d %+v", code, a)
	}
	edges, _ = r.graph.Edges(time.Time{})
	if len(edges) != 1 || edges[0].Destination.Workload != "db-9" {
		t.Errorf("after a full batch: %+v, want only db-9", edges)
	}
	if v, _ := r.graph.Verdicts(time.Time{}); len(v) != 0 {
		t.Errorf("verdicts after a full batch: %v, want none", v)
	}
	if ne := r.graph.Endpoints(); len(ne) != 1 || ne[0].Node != "node-a" || len(ne[0].Endpoints) != 1 {
		t.Errorf("endpoints %+v", ne)
	}
	greg := prometheus.NewRegistry()
	if err := r.graph.Register(greg); err != nil {
		t.Fatal(err)
	}
	if n := counter(t, greg, "nanoseg_ingest_graph_edges"); n != 1 {
		t.Errorf("nanoseg_ingest_graph_edges %v, want 1", n)
	}
	if n := counter(t, r.reg, "nanoseg_ingest_batches_total", "result", "resync"); n != 3 {
		t.Errorf("resync batches counted %v, want 3", n)
	}
}

// TestRefusals: every refusal has its status and a clear error: no or a
// bad token (401), another user (403), a batch for another node than the
// token's (403), not the leader (503), bad JSON, unknown fields and bad
// values naming the field (400), too large (413).
func TestRefusals(t *testing.T) {
	auth := fakeAuth{"tok": agentID, "other": {User: "system:serviceaccount:default:someone"},
		"pod-a": {User: transport.NodeAgentUser, Node: "node-a"}}
	r := newRig(t, auth, transport.ReceiverConfig{MaxBodyBytes: 64 << 10, MaxDecodedBytes: 256 << 10, MaxItems: 1000}, nil)
	good := batchJSON(t, transport.Batch{Node: "node-a", Epoch: "e", Seq: 1, Full: true})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"node":"node-a","epoch":"e","seq":1,"full":true,"edges":[` + strings.Repeat(`{"source":{"namespace":"a","workload":"b"},"destination":{"namespace":"a","workload":"c"},"protocol":"TCP"},`, 3000) + `{}]}`))
	_ = zw.Close()
	cases := []struct {
		name, token string
		body        []byte
		hdr         map[string]string
		code        int
		reason      string
		says        string
	}{
		{"no token", "", good, nil, 401, transport.ReasonNoToken, "no bearer token"},
		{"bad token", "nope", good, nil, 401, transport.ReasonBadToken, "unauthenticated"},
		{"another user", "other", good, nil, 403, transport.ReasonForbidden, "system:serviceaccount:default:someone"},
		{"another node", "pod-a", batchJSON(t, transport.Batch{Node: "node-b", Epoch: "e", Seq: 1, Full: true}), nil, 403, transport.ReasonNodeMismatch, `"node-b"`},
		{"its node", "pod-a", good, nil, 200, "", ""},
		{"bad JSON", "tok", []byte(`{"node":"node-a",`), nil, 400, transport.ReasonBadBatch, "bad JSON"},
		{"unknown field", "tok", []byte(`{"node":"node-a","epoch":"e","seq":2,"edges":[{"source":{"namespace":"a","workload":"b"},"destination":{"namespace":"a","workload":"c"},"protocol":"TCP","colour":"red"}]}`), nil, 400, transport.ReasonBadBatch, "edges[0].colour: unknown field"},
		{"unknown field whose name is known elsewhere", "tok", []byte(`{"node":"node-a","epoch":"e","seq":2,"edges":[{"source":{"namespace":"a","workload":"b"},"destination":{"namespace":"a","workload":"c"},"protocol":"TCP"}],"endpoints":[{"key":"k","port":1}]}`), nil, 400, transport.ReasonBadBatch, "endpoints[0].port: unknown field"},
		{"wrong type", "tok", []byte(`{"node":"node-a","epoch":"e","seq":"two"}`), nil, 400, transport.ReasonBadBatch, "seq"},
		{"bad protocol", "tok", []byte(`{"node":"node-a","epoch":"e","seq":2,"edges":[{"source":{"namespace":"a","workload":"b"},"destination":{"namespace":"a","workload":"c"},"protocol":"XTP"}]}`), nil, 400, transport.ReasonBadBatch, "XTP"},
		{"missing values", "tok", []byte(`{"node":"","epoch":"","seq":0,"edges":[{"protocol":"TCP"}],"endpoints":[{"key":"","mode":"block"}]}`), nil, 400, transport.ReasonBadBatch, "node: empty"},
		{"trailing data", "tok", append(good, []byte(`{}`)...), nil, 400, transport.ReasonBadBatch, "after the JSON object"},
		{"too large", "tok", bytes.Repeat([]byte(" "), 65<<10), nil, 413, transport.ReasonTooLarge, "bytes"},
		{"too large once decompressed", "tok", gz.Bytes(), map[string]string{"Content-Encoding": "gzip"}, 413, transport.ReasonTooLarge, "decompressed"},
		{"unknown encoding", "tok", good, map[string]string{"Content-Encoding": "br"}, 415, transport.ReasonUnsupportedCE, "br"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, a := post(t, r, c.token, c.body, c.hdr)
			if code != c.code || a.Reason != c.reason || !strings.Contains(a.Error, c.says) {
				t.Errorf("%d %+v, want %d reason %q saying %q", code, a, c.code, c.reason, c.says)
			}
		})
	}
	// Every problem at once, each named.
	_, a := post(t, r, "tok", []byte(`{"node":"","epoch":"","seq":0,"edges":[{"protocol":"TCP"}],"endpoints":[{"key":"","mode":"block"}]}`), nil)
	for _, want := range []string{"node: empty", "epoch:", "seq: 0", "edges[0].source: empty", "edges[0].destination: empty", "endpoints[0].key: empty", `endpoints[0].mode: "block"`} {
		if !strings.Contains(a.Error, want) {
			t.Errorf("error %q does not say %q", a.Error, want)
		}
	}
	if n := counter(t, r.reg, "nanoseg_ingest_rejections_total", "reason", transport.ReasonBadBatch); n < 6 {
		t.Errorf("bad batches counted %v", n)
	}

	// Not the leader: 503 with Retry-After.
	recv, err := transport.NewReceiver(transport.ReceiverConfig{}, auth, transport.NewGraph(10, 10), func() bool { return false }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.swap.set(recv)
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+transport.Path, bytes.NewReader(good))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("not ready: %s Retry-After %q, want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
}

// slowConsumer applies through a Graph after a delay.
type slowConsumer struct {
	g     *transport.Graph
	delay time.Duration
}

func (s slowConsumer) Apply(node string, b transport.Batch) error {
	time.Sleep(s.delay)
	return s.g.Apply(node, b)
}

// TestBackPressure: a slow consumer and one batch in flight at a time:
// senders get 429, keep their batches and retry, and nothing is lost.
func TestBackPressure(t *testing.T) {
	g := transport.NewGraph(100_000, 100_000)
	r := newRig(t, fakeAuth{"tok": agentID}, transport.ReceiverConfig{MaxInFlight: 1, QueueWait: time.Millisecond}, slowConsumer{g, 30 * time.Millisecond})
	tok := r.tokenFile(t, "tok")
	var sinks []*nodeagent.MemSink
	var senders []*transport.Sender
	for _, node := range []string{"a", "b", "c"} {
		sink := nodeagent.NewMemSink(10_000, 1000)
		var es []model.Edge
		for i := range 2000 {
			es = append(es, edge(node, i, uint64(i%7+1)))
		}
		_ = sink.MergeEdges(es)
		_ = sink.AddVerdicts([]model.VerdictEvent{{At: t0, Endpoint: node, Verdict: model.VerdictDeny, RuleID: "r1"}})
		s, _ := startSender(t, r, "node-"+node, tok, sink, nil, func(c *transport.SenderConfig) { c.MaxItems = 250 })
		sinks, senders = append(sinks, sink), append(senders, s)
	}
	waitFor(t, 30*time.Second, "every edge delivered", func() bool { return sameEdges(g, sinks...) == "" })
	var throttled uint64
	for _, s := range senders {
		throttled += s.Stats().Throttled
	}
	if throttled == 0 || counter(t, r.reg, "nanoseg_ingest_throttled_total") == 0 {
		t.Errorf("no 429 seen (senders %d, receiver %v): the test did not exercise back-pressure", throttled, counter(t, r.reg, "nanoseg_ingest_throttled_total"))
	}
	if v, _ := g.Verdicts(time.Time{}); len(v) != 3 {
		t.Errorf("verdicts %d, want 3", len(v))
	}
	for _, sink := range sinks {
		if e, s, v := sink.PendingCount(); e+s != 0 || v != 0 {
			t.Errorf("pending after delivery: %d edges %d spans %d verdicts", e, s, v)
		}
	}
	t.Logf("throttled %d times, receiver counted %v", throttled, counter(t, r.reg, "nanoseg_ingest_throttled_total"))
}

// TestReceiverRestart: a new receiver (a restarted controller, an empty
// graph) answers 409 to the sender's next batch; the sender sends its
// whole state and the new graph equals the node's.
func TestReceiverRestart(t *testing.T) {
	auth := fakeAuth{"tok": agentID}
	r := newRig(t, auth, transport.ReceiverConfig{}, nil)
	sink := nodeagent.NewMemSink(10_000, 1000)
	for i := range 500 {
		_ = sink.MergeEdges([]model.Edge{edge("a", i, 1)})
	}
	s, _ := startSender(t, r, "node-a", r.tokenFile(t, "tok"), sink, nil, func(c *transport.SenderConfig) { c.MaxItems = 100 })
	waitFor(t, 10*time.Second, "first delivery", func() bool { return sameEdges(r.graph, sink) == "" })
	r.reset(t, auth, transport.ReceiverConfig{}, nil)
	_ = sink.MergeEdges([]model.Edge{edge("a", 1, 3), edge("a", 1000, 1)})
	waitFor(t, 10*time.Second, "resync after the restart", func() bool { return sameEdges(r.graph, sink) == "" })
	if s.Stats().Resyncs == 0 {
		t.Error("no resync counted")
	}
}

// TestReceiverDown: while the controller is unreachable the sender keeps
// its bounded state (what the sink's bounds drop is counted) and logs
// once; when it is back, everything the sink holds arrives.
func TestReceiverDown(t *testing.T) {
	auth := fakeAuth{"tok": agentID}
	r := newRig(t, auth, transport.ReceiverConfig{}, nil)
	sink := nodeagent.NewMemSink(1000, 100)
	_ = sink.MergeEdges([]model.Edge{edge("a", 0, 1)})
	logs := &countHandler{}
	s, _ := startSender(t, r, "node-a", r.tokenFile(t, "tok"), sink, slog.New(logs), nil)
	waitFor(t, 10*time.Second, "first delivery", func() bool { return sameEdges(r.graph, sink) == "" })

	down := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	r.swap.set(down)
	for i := range 1500 { // more than the sink holds
		_ = sink.MergeEdges([]model.Edge{edge("a", i, 2)})
	}
	_ = sink.AddVerdicts(make([]model.VerdictEvent, 150))
	waitFor(t, 10*time.Second, "several failed attempts", func() bool { return s.Stats().Failures >= 5 })
	if de, dv := sink.Dropped(); de == 0 || dv != 50 {
		t.Errorf("dropped %d edges, %d verdicts while down; want some edges and 50 verdicts", de, dv)
	}
	r.swap.set(r.recv)
	// The controller keeps edges the sink dropped after sending them
	// (the least recently seen), so it holds at least the sink's.
	waitFor(t, 10*time.Second, "catching up", func() bool { return covers(r.graph, sink) == "" })
	waitFor(t, 5*time.Second, "the verdicts", func() bool { v, _ := r.graph.Verdicts(time.Time{}); return len(v) == 100 })
	if warns, _ := logs.count(); warns != 1 {
		t.Errorf("%d warnings for one outage (%v), want 1", warns, logs.warns)
	}
	if !strings.Contains(strings.Join(logs.infos, "\n"), "again") {
		t.Errorf("no log line saying observations reach the controller again: %v", logs.infos)
	}
}

// swapAuth accepts one token, which the test may change.
type swapAuth struct{ tok atomic.Value }

func (s *swapAuth) Authenticate(_ context.Context, tok string) (transport.Identity, error) {
	if tok != s.tok.Load().(string) {
		return transport.Identity{}, fmt.Errorf("%w: not the current token", transport.ErrUnauthenticated)
	}
	return agentID, nil
}

// TestTokenRotation: the sender reads its token file again when it
// changes (the kubelet rotates projected tokens), so the new token is
// sent without a refusal; after a 401 it reads the file again too.
func TestTokenRotation(t *testing.T) {
	auth := &swapAuth{}
	auth.tok.Store("first-token")
	r := newRig(t, auth, transport.ReceiverConfig{}, nil)
	tokFile := r.tokenFile(t, "first-token")
	sink := nodeagent.NewMemSink(100, 100)
	_ = sink.MergeEdges([]model.Edge{edge("a", 1, 1)})
	s, _ := startSender(t, r, "node-a", tokFile, sink, nil, nil)
	waitFor(t, 10*time.Second, "first delivery", func() bool { return sameEdges(r.graph, sink) == "" })
	auth.tok.Store("second-token-longer")
	if err := os.WriteFile(tokFile, []byte("second-token-longer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = sink.MergeEdges([]model.Edge{edge("a", 2, 1)})
	waitFor(t, 10*time.Second, "delivery with the rotated token", func() bool { return sameEdges(r.graph, sink) == "" })
	if n := counter(t, r.reg, "nanoseg_ingest_rejections_total", "reason", transport.ReasonBadToken); n != 0 {
		t.Errorf("%v refusals of the old token: the file's change was not noticed", n)
	}
	if st := s.Stats(); st.Failing {
		t.Errorf("stats %+v", st)
	}
}

// TestLeadership: while not the leader the receiver answers 503 and the
// sender keeps its batch; once leader, it delivers. Reset (a leader that
// lost its graph) makes the node send its whole state again.
func TestLeadership(t *testing.T) {
	var leader atomic.Bool
	g := transport.NewGraph(1000, 1000)
	reg := prometheus.NewRegistry()
	recv, err := transport.NewReceiver(transport.ReceiverConfig{}, fakeAuth{"tok": agentID}, g, leader.Load, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, fakeAuth{"tok": agentID}, transport.ReceiverConfig{}, nil)
	r.swap.set(recv)
	sink := nodeagent.NewMemSink(100, 100)
	_ = sink.MergeEdges([]model.Edge{edge("a", 1, 1)})
	s, _ := startSender(t, r, "node-a", r.tokenFile(t, "tok"), sink, nil, nil)
	waitFor(t, 5*time.Second, "503s", func() bool {
		return counter(t, reg, "nanoseg_ingest_rejections_total", "reason", transport.ReasonNotReady) >= 2
	})
	if es, _ := g.Edges(time.Time{}); len(es) != 0 {
		t.Fatalf("a standby applied %v", es)
	}
	leader.Store(true)
	waitFor(t, 5*time.Second, "delivery to the leader", func() bool { return sameEdges(g, sink) == "" })
	g.Forget("node-a")
	recv.Reset()
	_ = sink.MergeEdges([]model.Edge{edge("a", 2, 1)})
	waitFor(t, 5*time.Second, "whole state after Reset", func() bool { return sameEdges(g, sink) == "" })
	if s.Stats().Resyncs == 0 {
		t.Error("no resync after Reset")
	}
}

// TestStandbyRetriedSoon: the answers of a standby (503, not the leader)
// are retried after their Retry-After (1 s) without the backoff growing,
// since behind the Service the next connection may reach the leader: six
// requests take about 5 s, not the 31 s of a doubling backoff.
func TestStandbyRetriedSoon(t *testing.T) {
	reg := prometheus.NewRegistry()
	recv, err := transport.NewReceiver(transport.ReceiverConfig{}, fakeAuth{"tok": agentID}, transport.NewGraph(1000, 1000),
		func() bool { return false }, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, fakeAuth{"tok": agentID}, transport.ReceiverConfig{}, nil)
	r.swap.set(recv)
	sink := nodeagent.NewMemSink(100, 100)
	_ = sink.MergeEdges([]model.Edge{edge("a", 1, 1)})
	startSender(t, r, "node-a", r.tokenFile(t, "tok"), sink, nil, func(c *transport.SenderConfig) { c.MaxBackoff = time.Minute })
	waitFor(t, 20*time.Second, "six standby answers", func() bool {
		return counter(t, reg, "nanoseg_ingest_rejections_total", "reason", transport.ReasonNotReady) >= 6
	})
}

// TestGraphBounds: per node, at most MaxEdgesPerNode edges (the least
// recently seen go) and MaxVerdictsPerNode verdict events (the oldest
// go), each drop counted; nodes are bounded separately and merged on
// read.
func TestGraphBounds(t *testing.T) {
	g := transport.NewGraph(10, 3)
	var es []model.Edge
	for i := range 15 {
		es = append(es, edge("a", i, uint64(i+1)))
	}
	var vs []model.VerdictEvent
	for i := range 5 {
		vs = append(vs, model.VerdictEvent{At: t0.Add(time.Duration(i) * time.Second), RuleID: fmt.Sprint(i)})
	}
	if err := g.Apply("node-a", transport.Batch{Full: true, Edges: es, Verdicts: vs}); err != nil {
		t.Fatal(err)
	}
	_ = g.Apply("node-b", transport.Batch{Full: true, Edges: es[14:]})
	got, _ := g.Edges(time.Time{})
	if len(got) > 10 {
		t.Errorf("%d edges kept, want at most 10", len(got))
	}
	for _, e := range got {
		if e.Destination.Workload == "db-14" && e.Flows != 30 {
			t.Errorf("db-14 seen by two nodes: %d flows, want 30 (summed)", e.Flows)
		}
		if e.Destination.Workload == "db-0" {
			t.Error("db-0, the least recently seen, was kept")
		}
	}
	v, _ := g.Verdicts(time.Time{})
	if len(v) != 3 || v[0].RuleID != "2" {
		t.Errorf("verdicts %v, want the latest three", v)
	}
	if d := g.Dropped(); d < 5+2 {
		t.Errorf("dropped %d, want at least 7", d)
	}
}

// TestHeartbeat: an idle node still sends (empty batches every
// Heartbeat), so a restarted controller gets its whole state without
// waiting for new traffic.
func TestHeartbeat(t *testing.T) {
	auth := fakeAuth{"tok": agentID}
	r := newRig(t, auth, transport.ReceiverConfig{}, nil)
	sink := nodeagent.NewMemSink(100, 100)
	_ = sink.MergeEdges([]model.Edge{edge("a", 1, 1)})
	startSender(t, r, "node-a", r.tokenFile(t, "tok"), sink, nil, func(c *transport.SenderConfig) { c.Heartbeat = 200 * time.Millisecond })
	waitFor(t, 5*time.Second, "first delivery", func() bool { return sameEdges(r.graph, sink) == "" })
	r.reset(t, auth, transport.ReceiverConfig{}, nil) // nothing new on the node from here on
	waitFor(t, 5*time.Second, "the idle node's state at the new receiver", func() bool { return sameEdges(r.graph, sink) == "" })
}

// TestNamesReachTheController: the DNS names a node agent's observers
// learned go to the controller with the first batch and when they
// change, and the graph answers them (the cluster controller's
// Node.Names); a bad name is refused naming the field.
func TestNamesReachTheController(t *testing.T) {
	r := newRig(t, fakeAuth{"tok": agentID}, transport.ReceiverConfig{}, nil)
	var mu sync.Mutex
	names := map[netip.Addr]string{netip.MustParseAddr("198.19.0.9"): "payments.example.com"}
	sink := nodeagent.NewMemSink(100, 100)
	s, err := transport.NewSender(transport.SenderConfig{URL: r.srv.URL, Node: "node-a", TokenFile: r.tokenFile(t, "tok"), CA: transport.CAFile(r.caFile),
		Interval: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, sink, nil, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.ReportNames(func() map[netip.Addr]string {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(names)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "the name at the controller", func() bool {
		return r.graph.Names()[netip.MustParseAddr("198.19.0.9")] == "payments.example.com"
	})
	mu.Lock()
	names[netip.MustParseAddr("2001:db8:19::9")] = "payments.example.com"
	mu.Unlock()
	waitFor(t, 5*time.Second, "a new name at the controller", func() bool { return len(r.graph.Names()) == 2 })
	code, a := post(t, r, "tok", []byte(`{"node":"node-a","epoch":"x","seq":1,"full":true,"names":[{"addr":"198.19.0.9","name":""}]}`), nil)
	if code != 400 || !strings.Contains(a.Error, "names[0].name: 0 bytes") {
		t.Errorf("an empty name: %d %+v", code, a)
	}
}

// TestStopDeliversWhatCameDuringTheLastSend: a batch still in flight when
// the agent stops is sent again by the final flush, and so is what the
// sink took in while it was in flight: nothing merged before the stop is
// left behind.
func TestStopDeliversWhatCameDuringTheLastSend(t *testing.T) {
	auth := fakeAuth{"tok": agentID}
	r := newRig(t, auth, transport.ReceiverConfig{}, nil)
	sink := nodeagent.NewMemSink(1000, 100)
	_ = sink.MergeEdges([]model.Edge{edge("a", 0, 1)})
	_, stop := startSender(t, r, "node-a", r.tokenFile(t, "tok"), sink, nil, nil)
	waitFor(t, 10*time.Second, "first delivery", func() bool { return sameEdges(r.graph, sink) == "" })

	// The controller holds the next batch until the sender gives up on it
	// (the stop cancels the request); after that it answers again.
	var stalled atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	r.swap.set(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if stalled.CompareAndSwap(false, true) {
			close(held)
			select {
			case <-req.Context().Done():
			case <-release:
			}
			http.Error(w, "stalled", http.StatusServiceUnavailable)
			return
		}
		r.recv.ServeHTTP(w, req)
	}))
	_ = sink.MergeEdges([]model.Edge{edge("a", 1, 1)})
	<-held
	_ = sink.MergeEdges([]model.Edge{edge("a", 2, 1)}) // taken in after the batch in flight
	go func() { time.Sleep(50 * time.Millisecond); close(release) }()
	stop()
	es, _ := r.graph.Edges(time.Time{})
	if len(es) != 3 {
		t.Errorf("after the stop the controller has %d edges, want 3 (the batch in flight and what came after it): %+v", len(es), es)
	}
}
