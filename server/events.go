package server

// GET /v1/events: change notices as Server-Sent Events (WHATWG HTML,
// "Server-sent events"), for the web UI's live updates.
//
// Design: each stream subscribes to the service's change feed
// (controller.Changes) and writes one event
//
//	event: change
//	data: {"seq":N,"topics":["edges","status"]}
//
// when something was committed, at most one per interval however
// many commits there were (their topics are merged; Config.EventInterval),
// and a ": ping"
// comment every PingInterval so that proxies and the browser keep the
// connection. The stream count is bounded (Config.MaxEventStreams; 503
// beyond), and every stream ends when the server stops, so shutdown never
// waits on one.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Intervals of the event streams.
const (
	// DefaultEventInterval is the least time between two change events
	// of one stream unless Config.EventInterval says otherwise.
	DefaultEventInterval = time.Second
	// PingInterval is how often a stream sends a comment to keep the
	// connection.
	PingInterval = 15 * time.Second
)

// ChangeEvent is the data of one "change" event of GET /v1/events.
type ChangeEvent struct {
	// Seq is the sequence number of the latest change included (it grows
	// with every change the agent commits; it restarts with the agent).
	Seq uint64 `json:"seq"`
	// Topics name what changed (controller.Topic*): edges, verdicts,
	// status, history, revisions, policies, evidence.
	Topics []string `json:"topics"`
}

// eventStreams counts the open streams of each role and ends them at
// shutdown.
type eventStreams struct {
	mu     sync.Mutex
	n      map[Role]int
	max    int // per role
	done   chan struct{}
	closed bool
}

func newEventStreams(max int) *eventStreams {
	return &eventStreams{n: map[Role]int{}, max: max, done: make(chan struct{})}
}

// open takes a slot of role; false when max streams of role are open or
// the server stops. Streams of one role never take the other's slots.
func (e *eventStreams) open(role Role) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.n[role] >= e.max {
		return false
	}
	e.n[role]++
	return true
}

func (e *eventStreams) release(role Role) {
	e.mu.Lock()
	e.n[role]--
	e.mu.Unlock()
}

// close ends every stream and refuses new ones.
func (e *eventStreams) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		close(e.done)
	}
}

// serveEvents answers GET /v1/events.
func (a *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	role := RoleOperator // the unix socket
	if id := requestIdentity(r); id != nil {
		role = id.role
	}
	if !a.events.open(role) {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("unavailable: %d event streams of the %s role are open already (the most this agent serves each role); close one or poll", a.cfg.MaxEventStreams, role))
		return
	}
	defer a.events.release(role)
	feed := a.cfg.Changes
	if feed == nil {
		feed = a.svc.Changes()
	}
	sub := feed.Subscribe()
	defer feed.Unsubscribe(sub)
	// A stream lives longer than any write deadline of the server.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The client's reconnection delay, and the current sequence so that
	// it knows where it starts.
	if _, err := fmt.Fprintf(w, "retry: 3000\n: nanoseg change feed, seq %d\n\n", feed.Seq()); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	ping := time.NewTicker(PingInterval)
	defer ping.Stop()
	var last time.Time
	var wait <-chan time.Time // set while a change waits for EventInterval
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.events.done:
			return
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-sub.C:
			if wait != nil {
				continue // already waiting: Take gathers it
			}
			if d := a.cfg.EventInterval - time.Since(last); d > 0 {
				wait = time.After(d)
				continue
			}
			if !a.sendChange(w, rc, sub) {
				return
			}
			last = time.Now()
		case <-wait:
			wait = nil
			if !a.sendChange(w, rc, sub) {
				return
			}
			last = time.Now()
		}
	}
}

// sendChange writes one change event with the topics waiting in sub, if
// any; false when the client is gone.
func (a *Server) sendChange(w http.ResponseWriter, rc *http.ResponseController, sub interface {
	Take() (uint64, []string)
}) bool {
	seq, topics := sub.Take()
	if len(topics) == 0 {
		return true
	}
	data, _ := json.Marshal(ChangeEvent{Seq: seq, Topics: topics})
	if _, err := fmt.Fprintf(w, "event: change\ndata: %s\n\n", data); err != nil {
		return false
	}
	return rc.Flush() == nil
}
