//go:build linux

package nodeagent

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/transport"
)

// counterCache holds the counters last read per endpoint, read again
// at most every interval (Config.CounterInterval): the sender sends
// endpoint states when they changed, so counters that did not move (a
// quiet node) cause no batch, and the controller's NanoSegment status
// lags by up to interval.
type counterCache struct {
	interval time.Duration
	mu       sync.Mutex
	at   time.Time
	byNS map[string]controller.EndpointSync
}

// get returns the endpoints' counters, reading them again (read) when
// the last read is older than the interval; endpoints gone since are
// forgotten.
func (c *counterCache) get(keys []string, read func(netns string) controller.EndpointSync) map[string]controller.EndpointSync {
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := time.Since(c.at) < c.interval
	for _, k := range keys {
		if _, ok := c.byNS[k]; !ok {
			fresh = false
		}
	}
	if !fresh || c.byNS == nil {
		next := make(map[string]controller.EndpointSync, len(keys))
		for _, k := range keys {
			next[k] = read(k)
		}
		c.byNS, c.at = next, time.Now()
	}
	return c.byNS
}

// transportCounts converts a read's counters to a batch's (nil when none).
func transportCounts[K comparable](m map[K]evidence.Count) map[K]transport.Count {
	if len(m) == 0 {
		return nil
	}
	out := make(map[K]transport.Count, len(m))
	for k, c := range m {
		out[k] = transport.Count{Packets: c.Packets, Bytes: c.Bytes}
	}
	return out
}

// Sender returns the sender of observations to the controller (nil
// without Config.Controller).
func (a *Agent) Sender() *transport.Sender { return a.sender }

// endpointStates says, for each local endpoint (a pod of this node whose
// netns was found), what the node applied to it: the controller shows it
// in NanoSegment status.
func (a *Agent) endpointStates() []transport.EndpointState {
	out := []transport.EndpointState{}
	var local []string
	for _, e := range a.inv.Endpoints() {
		if e.Path != "" {
			local = append(local, e.Netns)
		}
	}
	counters := a.counters.get(local, func(netns string) controller.EndpointSync { return a.node.Read(netns, false) })
	for _, e := range a.inv.Endpoints() {
		if e.Path == "" {
			continue // a peer: another node's pod, or a pod whose netns was not found
		}
		st := transport.EndpointState{Key: e.Netns, Workload: e.Key()}
		if c, ok := counters[e.Netns]; ok && c.ReadErr == nil {
			st.Counters, st.Defaults = transportCounts(c.Counters), transportCounts(c.DefaultHits)
		}
		if rs, ok := a.node.Desired(e.Netns); ok {
			st.Mode = rs.Mode
		}
		sync := a.node.Applied(e.Netns)
		switch {
		case sync.Err != nil:
			st.Error = sync.Err.Error()
		case !sync.Known:
			st.Error = "not programmed yet"
		case sync.Adopted != "":
			st.Error = "table kept as found (" + sync.Adopted + ")"
		default:
			st.InSync = true
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(x, y transport.EndpointState) int { return cmp.Compare(x.Key, y.Key) })
	return out
}

// ruleIDs is the node's default rule id table as names (the policies
// each id stands for), for the controller.
func (a *Agent) ruleIDs() map[string][]string {
	out := map[string][]string{}
	for id, refs := range a.node.Defaults() {
		names := make([]string, len(refs))
		for i, r := range refs {
			names[i] = r.String()
		}
		out[id] = names
	}
	return out
}
