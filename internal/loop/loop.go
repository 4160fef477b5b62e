// Package loop runs periodic work until a context ends: the agent's and the
// node's background loops (inventory refresh, observation flush, warnings)
// share it instead of each writing its own ticker loop.
package loop

import (
	"context"
	"time"
)

// Every calls f every d (d > 0) until ctx is done, and returns then. The
// first call comes d after Every starts; a call that takes longer than d
// delays the next one rather than piling calls up.
func Every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
