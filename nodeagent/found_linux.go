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
// inventory (deleted) gets none. It reports false when the API server
// refuses Events (eventFailed).
func (a *Agent) reportFound(ctx context.Context, gone []UnfoundPod) bool {
	if a.parts.Found == nil {
		return true
	}
	for _, u := range gone {
		e, ok := a.inv.Endpoint(u.Netns)
		if !ok || e.Path == "" {
			continue
		}
		if err := a.parts.Found(ctx, u); err != nil && !a.eventFailed(u, err) {
			return false
		}
	}
	return true
}

// eventFailed logs a failed pod Event and reports whether to go on with
// the others: false (and Events turned off for good) when EventsRefused
// says the API server refuses them (RBAC), true for any other failure (a
// pod in a terminating namespace, the API server away), which loses only
// that Event.
func (a *Agent) eventFailed(u UnfoundPod, err error) bool {
	if EventsRefused(err) {
		a.log.Warn("record an Event on a pod: refused; no more Events will be recorded (RBAC: create events)", "pod", u.Pod, "err", err)
		a.mu.Lock()
		a.eventsOff = true
		a.mu.Unlock()
		return false
	}
	a.log.Warn("record an Event on a pod", "pod", u.Pod, "err", err)
	return true
}
