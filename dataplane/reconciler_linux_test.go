//go:build linux

package dataplane

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock fires After channels only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	var keep []fakeWaiter
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

// waitFor polls cond until it holds (the Run goroutine reacting, which
// takes microseconds); the 10 s bound only stops a test that would hang, so
// a loaded machine under -race does not fail it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReconcilerCoalesces: a burst of triggers makes at most two passes
// (one now, one after MinInterval), and the resync period makes one more.
// No kernel: the reconciler has no endpoints.
func TestReconcilerCoalesces(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	r, err := NewReconciler(New(nil), ReconcilerConfig{Resync: time.Minute, MinInterval: time.Second, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	r.Trigger()
	waitFor(t, "first pass", func() bool { return r.Passes() == 1 })
	for range 10 {
		r.Trigger()
	}
	time.Sleep(20 * time.Millisecond) // let Run take a trigger and wait out MinInterval
	if r.Passes() != 1 {
		t.Fatalf("passes = %d before MinInterval elapsed, want 1", r.Passes())
	}
	clk.Advance(time.Second)
	waitFor(t, "second pass", func() bool { return r.Passes() == 2 })
	clk.Advance(time.Second)
	time.Sleep(20 * time.Millisecond)
	if p := r.Passes(); p > 3 {
		t.Fatalf("10 triggers made %d passes, want at most 3", p)
	}
	before := r.Passes()
	clk.Advance(time.Minute)
	waitFor(t, "resync pass", func() bool { return r.Passes() == before+1 })
}

func TestReconcilerConfigValidate(t *testing.T) {
	if _, err := NewReconciler(New(nil), ReconcilerConfig{Resync: time.Second, MinInterval: time.Minute}); err == nil {
		t.Error("MinInterval above Resync accepted")
	}
}
