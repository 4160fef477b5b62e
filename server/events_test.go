package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

// stream is an open GET /v1/events; its events arrive on C.
type stream struct {
	resp *http.Response
	C    chan server.ChangeEvent
	done chan struct{} // closed when the stream ended
}

func openStream(t *testing.T, url, token string) *stream {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("GET /v1/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &stream{resp: resp, C: make(chan server.ChangeEvent, 16), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "change":
				var ev server.ChangeEvent
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
					t.Errorf("change event data %q: %v", line, err)
				}
				s.C <- ev
			case line == "":
				event = ""
			}
		}
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return s
}

// next returns the next change event (failing after a generous bound:
// the stream is broken, not slow).
func (s *stream) next(t *testing.T) server.ChangeEvent {
	t.Helper()
	select {
	case ev := <-s.C:
		return ev
	case <-s.done:
		t.Fatal("the event stream ended")
	case <-time.After(20 * time.Second):
		t.Fatal("no change event")
	}
	return server.ChangeEvent{}
}

// TestEventsAfterCommits: a promotion and committed observations each
// make a change event naming what changed; reads publish nothing (a page
// that refetches on every event would otherwise loop); changes in quick
// succession are merged, never lost.
func TestEventsAfterCommits(t *testing.T) {
	srv, ts, mem := tcpServer(t, false, server.Config{EventInterval: 50 * time.Millisecond})
	s := openStream(t, ts.URL, viewToken)
	b := newBrowser(t, ts)
	auth := []string{"Authorization", "Bearer " + opToken}
	pol := "apiVersion: nanoseg.io/v1alpha1\nkind: NanoSegment\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n"
	if code, body, _ := b.do("POST", "/v1/policies", pol, auth...); code != 200 {
		t.Fatal(code, body)
	}
	if ev := s.next(t); !slices.Contains(ev.Topics, controller.TopicRevisions) || ev.Seq == 0 {
		t.Errorf("after apply: %+v, want revisions", ev)
	}
	if code, body, _ := b.do("POST", "/v1/promote", `{"workload":"shop/db","to":"audit","reason":"go"}`, auth...); code != 200 {
		t.Fatal(code, body)
	}
	ev := s.next(t)
	if !slices.Contains(ev.Topics, controller.TopicHistory) || !slices.Contains(ev.Topics, controller.TopicStatus) {
		t.Errorf("after a promotion: %+v, want history and status", ev)
	}
	// Reads change nothing and publish nothing.
	feed := server.Service(srv).Changes().Seq()
	for _, p := range []string{"/v1/status", "/v1/edges", "/v1/verdicts", "/v1/history", "/v1/diff"} {
		b.do("GET", p, "", auth...)
	}
	if after := server.Service(srv).Changes().Seq(); after != feed {
		t.Errorf("reads moved the change sequence from %d to %d", feed, after)
	}
	// Observations committed through the feed's sink (as the node does).
	sink := server.Service(srv).Changes().Sink(mem)
	now := time.Now()
	e := model.Edge{Source: model.Peer{Workload: "shop/web"}, Destination: model.Peer{Workload: "shop/db"}, Protocol: model.ProtocolTCP, Port: 5432,
		Traffic: model.Traffic{FirstSeen: now, LastSeen: now, Flows: 3}}
	if err := sink.MergeEdges([]model.Edge{e}); err != nil {
		t.Fatal(err)
	}
	if err := sink.AddVerdicts([]model.VerdictEvent{{At: now, Verdict: model.VerdictAuditDeny, Source: "shop/web", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	var last uint64
	for !slices.Contains(got, controller.TopicEdges) || !slices.Contains(got, controller.TopicVerdicts) {
		ev := s.next(t)
		got, last = append(got, ev.Topics...), ev.Seq
	}
	if want := server.Service(srv).Changes().Seq(); last != want {
		t.Errorf("last event seq %d, feed at %d", last, want)
	}
	// An empty commit publishes nothing.
	if err := sink.MergeEdges(nil); err != nil {
		t.Fatal(err)
	}
	if after := server.Service(srv).Changes().Seq(); after != last {
		t.Errorf("an empty commit moved the sequence to %d", after)
	}
}

// TestEventStreamCap: beyond MaxEventStreams of a role a stream of that
// role is refused 503, while the other role still gets its own (viewers
// cannot starve the operator's page); closing one frees its place.
func TestEventStreamCap(t *testing.T) {
	_, ts, _ := tcpServer(t, false, server.Config{MaxEventStreams: 2})
	s1 := openStream(t, ts.URL, viewToken)
	openStream(t, ts.URL, viewToken)
	try := func(token string) int {
		req, _ := http.NewRequest("GET", ts.URL+"/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := try(viewToken); code != http.StatusServiceUnavailable {
		t.Fatalf("a third viewer stream with MaxEventStreams 2: %d, want 503", code)
	}
	openStream(t, ts.URL, opToken) // fails the test unless 200
	s1.resp.Body.Close()
	<-s1.done
	// The server notices the closed connection (its request context
	// ends): wait for that.
	for i := 0; ; i++ {
		code := try(viewToken)
		if code == http.StatusOK {
			break
		}
		if i == 200 {
			t.Fatalf("a viewer stream after one closed: %d, want 200", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEventsEndOnShutdown: when the agent stops, open streams end and
// Serve returns nil.
func TestEventsEndOnShutdown(t *testing.T) {
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir()}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
	srv := server.New(svc, server.Config{Socket: filepath.Join(t.TempDir(), "agent.sock"), Listen: "127.0.0.1:0", Token: opToken}, nil)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	s := openStream(t, "http://"+srv.TCPAddr(), opToken)
	cancel()
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the event stream did not end when the server stopped")
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
