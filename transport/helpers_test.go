package transport_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/nodeagent"
	"github.com/nanoseg/nanoseg/store"
	"github.com/nanoseg/nanoseg/transport"
)

// fakeAuth accepts the tokens it knows.
type fakeAuth map[string]transport.Identity

func (f fakeAuth) Authenticate(_ context.Context, token string) (transport.Identity, error) {
	id, ok := f[token]
	if !ok {
		return transport.Identity{}, fmt.Errorf("%w: unknown token", transport.ErrUnauthenticated)
	}
	return id, nil
}

var t0 = time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)

// edge returns edge i of a node: shop/web-<node> to shop/db-<i>.
func edge(node string, i int, flows uint64) model.Edge {
	return model.Edge{Source: model.Peer{Namespace: "shop", Workload: "web-" + node}, Destination: model.Peer{Namespace: "shop", Workload: fmt.Sprintf("db-%d", i)},
		Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0.Add(time.Duration(flows) * time.Second), Flows: flows,
			Verdicts: model.VerdictCounts{Observed: flows}}}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// swapHandler serves whatever handler it holds now.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }
func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// rig is a receiver over TLS (httptest's certificate) with a Graph, and
// what a sender needs to reach it.
type rig struct {
	srv    *httptest.Server
	swap   *swapHandler
	graph  *transport.Graph
	recv   *transport.Receiver
	reg    *prometheus.Registry
	caFile string
	dir    string
}

func newRig(t *testing.T, auth transport.Authenticator, cfg transport.ReceiverConfig, consumer transport.Consumer) *rig {
	t.Helper()
	r := &rig{swap: &swapHandler{}, dir: t.TempDir()}
	r.reset(t, auth, cfg, consumer)
	r.srv = httptest.NewUnstartedServer(r.swap)
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	r.caFile = filepath.Join(r.dir, "ca.crt")
	var pemBuf bytes.Buffer
	writePEM(&pemBuf, r.srv.Certificate().Raw)
	if err := os.WriteFile(r.caFile, pemBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// reset puts a new receiver (and a new Graph unless consumer is given)
// behind the server: a restarted controller.
func (r *rig) reset(t *testing.T, auth transport.Authenticator, cfg transport.ReceiverConfig, consumer transport.Consumer) {
	t.Helper()
	r.graph = transport.NewGraph(100_000, 100_000)
	if consumer == nil {
		consumer = r.graph
	}
	r.reg = prometheus.NewRegistry()
	recv, err := transport.NewReceiver(cfg, auth, consumer, nil, r.reg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	r.recv = recv
	r.swap.set(recv)
}

func (r *rig) tokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(r.dir, "token-"+fmt.Sprint(time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// countHandler counts log records by level.
type countHandler struct {
	mu    sync.Mutex
	warns []string
	infos []string
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case r.Level >= slog.LevelWarn:
		h.warns = append(h.warns, r.Message)
	case r.Level == slog.LevelInfo:
		h.infos = append(h.infos, r.Message)
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }
func (h *countHandler) count() (warns, infos int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.warns), len(h.infos)
}

// startSender runs a sender of sink to r until the test ends; it returns
// the sender and a stop function.
func startSender(t *testing.T, r *rig, node, tokenFile string, sink *nodeagent.MemSink, log *slog.Logger, tweak func(*transport.SenderConfig)) (*transport.Sender, func()) {
	t.Helper()
	cfg := transport.SenderConfig{URL: r.srv.URL, Node: node, TokenFile: tokenFile, CA: transport.CAFile(r.caFile),
		Interval: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := transport.NewSender(cfg, sink, nil, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, sync.OnceFunc(stop)
}

// sameEdges reports how graph's edges differ from the sinks' ("" when
// they agree).
func sameEdges(g *transport.Graph, sinks ...*nodeagent.MemSink) string {
	var want []model.Edge
	for _, s := range sinks {
		e, _ := s.Edges(time.Time{})
		want = append(want, e...)
	}
	got, _ := g.Edges(time.Time{})
	sortEdges(want)
	if len(want) != len(got) {
		return fmt.Sprintf("%d edges, want %d", len(got), len(want))
	}
	return cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}))
}

// post sends body to r with token and returns the status and answer.
func post(t *testing.T, r *rig, token string, body []byte, hdr map[string]string) (int, transport.Answer) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+transport.Path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a transport.Answer
	_ = json.NewDecoder(resp.Body).Decode(&a)
	return resp.StatusCode, a
}

func batchJSON(t *testing.T, b transport.Batch) []byte {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, lp := range m.Label {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						ok = true
					}
				}
				if !ok {
					continue metrics
				}
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

// covers reports an edge of the sink that graph lacks or holds with
// another value ("" when it holds them all).
func covers(g *transport.Graph, sink *nodeagent.MemSink) string {
	want, _ := sink.Edges(time.Time{})
	got, _ := g.Edges(time.Time{})
	have := map[string]model.Edge{}
	for _, e := range got {
		have[string(store.EdgeKey(e))] = e
	}
	for _, e := range want {
		if d := cmp.Diff(e, have[string(store.EdgeKey(e))], cmpopts.EquateComparable(netip.Addr{})); d != "" {
			return d
		}
	}
	return ""
}
