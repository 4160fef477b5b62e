package kube

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// TestLiveSessionCache: a caller's Session is opened once and kept while
// the cluster does not change; after a change it is opened again at the
// next request, not sooner than MinAge after the last open (the request
// waits), and after MaxAge even without a change; beyond MaxSessions
// the least recently used caller's Session is dropped.
func TestLiveSessionCache(t *testing.T) {
	l := NewLive(&rest.Config{Host: "https://198.18.214.1:6443"}, LiveConfig{MaxSessions: 2, MinAge: 300 * time.Millisecond}, nil)
	opened := map[string]int{}
	l.open = func(_ context.Context, token string) (*Session, error) {
		opened[token]++
		return &Session{}, nil
	}
	ctx := context.Background()
	get := func(tok string) *Session {
		t.Helper()
		s, err := l.session(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := get("alice")
	if get("alice") != a || opened["alice"] != 1 {
		t.Fatalf("unchanged cluster: alice's Session opened %d times", opened["alice"])
	}
	l.gen.Add(1) // a change the feed saw
	start := time.Now()
	if get("alice") == a || opened["alice"] != 2 {
		t.Fatalf("after a change: alice's Session opened %d times, want 2", opened["alice"])
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("reopened %s after the last open, want about MinAge (300ms)", waited)
	}
	l.cfg.MaxAge = 50 * time.Millisecond
	time.Sleep(60 * time.Millisecond)
	if get("alice"); opened["alice"] != 3 {
		t.Errorf("after MaxAge without a change: alice's Session opened %d times, want 3", opened["alice"])
	}
	l.cfg.MaxAge = time.Hour
	get("bob")
	get("alice") // alice used last: bob is the least recently used
	get("carol") // the third caller drops bob
	l.mu.Lock()
	n := len(l.sessions)
	l.mu.Unlock()
	get("alice")
	get("bob")
	if n != 2 || opened["alice"] != 3 || opened["bob"] != 2 {
		t.Errorf("with MaxSessions 2: %d kept, opened %v (want alice kept, bob dropped and opened again)", n, opened)
	}
}
