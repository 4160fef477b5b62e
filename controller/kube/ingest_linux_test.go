//go:build linux

package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestServeIngestRetries: an ingest server that fails at start (its
// certificate's namespace missing) is started again until it serves,
// and serveIngest returns once the context ends.
func TestServeIngestRetries(t *testing.T) {
	var calls atomic.Int32
	serving := make(chan struct{})
	c := &Controller{log: slog.New(slog.NewTextHandler(io.Discard, nil)), parts: Parts{Ingest: func(ctx context.Context) error {
		if calls.Add(1) < 3 {
			return errors.New(`namespaces "nanoseg-system" not found`)
		}
		close(serving)
		<-ctx.Done()
		return nil
	}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.serveIngest(ctx) }()
	select {
	case <-serving:
	case <-time.After(10 * time.Second):
		t.Fatalf("ingest not serving after 10s; %d starts", calls.Load())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("serveIngest did not return after the context ended")
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d starts, want 3", n)
	}
}
