//go:build linux

package nodeagent

import "context"

// noLongerUnfoundLocked returns the pods reported unfound before that are
// not in now; a.mu is held.
func (a *Agent) noLongerUnfoundLocked(now map[string]UnfoundPod) []UnfoundPod {
	var gone []UnfoundPod
	for pod, u := range a.reported {
		if _, still := now[pod]; !still {
			gone = append(gone, u)
		}
	}
	return gone
}

// reportFound records a NetnsFound Event (Parts.Found) on each pod of gone
// (reported unfound, no longer) whose endpoint now has its netns, so that
// the pod's Events end with the current truth; a pod that left the
// inventory (deleted) gets none. It reports false, after logging once and
// turning Events off, when recording fails.
func (a *Agent) reportFound(ctx context.Context, gone []UnfoundPod) bool {
	if a.parts.Found == nil {
		return true
	}
	for _, u := range gone {
		e, ok := a.inv.Endpoint(u.Netns)
		if !ok || e.Path == "" {
			continue
		}
		if err := a.parts.Found(ctx, u); err != nil {
			a.log.Warn("record an Event on a pod whose netns is now found; no more Events will be recorded (RBAC: create events)", "pod", u.Pod, "err", err)
			a.mu.Lock()
			a.eventsOff = true
			a.mu.Unlock()
			return false
		}
	}
	return true
}
