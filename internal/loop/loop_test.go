package loop

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestEveryCallsUntilCancelled: f is called repeatedly, and never again
// once Every has returned after ctx ended.
func TestEveryCallsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		Every(ctx, time.Millisecond, func() {
			if n.Add(1) == 3 {
				cancel()
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	got := n.Load()
	if got < 3 {
		t.Fatalf("f called %d times before the cancel, want 3", got)
	}
	time.Sleep(5 * time.Millisecond)
	if n.Load() != got {
		t.Errorf("f called after Every returned")
	}
}
