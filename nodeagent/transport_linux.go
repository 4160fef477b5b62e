//go:build linux

package nodeagent

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/transport"
)

// Sender returns the sender of observations to the controller (nil
// without Config.Controller).
func (a *Agent) Sender() *transport.Sender { return a.sender }

// counterCache holds the counters last read per endpoint, read again
// at most every interval (Config.CounterInterval): the sender sends
// endpoint states when they changed, so counters that did not move (a
// quiet node) cause no batch, and the controller's NanoSegment status
// lags by up to interval.
type counterCache struct {
	interval time.Duration
	mu       sync.Mutex
	at       time.Time
	byNS     map[string]endpointCounters
}

// endpointCounters are one endpoint's kernel counters as a batch carries
// them (ok: the table could be read).
type endpointCounters struct {
	ok       bool
	counters map[string]transport.Count
	defaults map[model.Direction]transport.Count
}

// get returns the endpoints' counters, reading them again (read) when
// the last read is older than the interval or an endpoint is new;
// endpoints gone since are forgotten.
func (c *counterCache) get(keys []string, read func(netns string) endpointCounters) map[string]endpointCounters {
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := c.byNS != nil && time.Since(c.at) < c.interval
	for _, k := range keys {
		if _, ok := c.byNS[k]; !ok {
			fresh = false
		}
	}
	if !fresh {
		next := make(map[string]endpointCounters, len(keys))
		for _, k := range keys {
			next[k] = read(k)
		}
		c.byNS, c.at = next, time.Now()
	}
	return c.byNS
}

// readCounters reads endpoint netns's table back for its counters.
func (a *Agent) readCounters(netns string) endpointCounters {
	st := a.node.Read(netns, false)
	if st.ReadErr != nil {
		return endpointCounters{}
	}
	out := endpointCounters{ok: true}
	if len(st.Counters) > 0 {
		out.counters = make(map[string]transport.Count, len(st.Counters))
		for id, c := range st.Counters {
			out.counters[id] = transport.Count{Packets: c.Packets, Bytes: c.Bytes}
		}
	}
	if len(st.DefaultHits) > 0 {
		out.defaults = make(map[model.Direction]transport.Count, len(st.DefaultHits))
		for dir, c := range st.DefaultHits {
			out.defaults[dir] = transport.Count{Packets: c.Packets, Bytes: c.Bytes}
		}
	}
	return out
}

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
	counters := a.counters.get(local, a.readCounters)
	for _, e := range a.inv.Endpoints() {
		if e.Path == "" {
			continue // a peer: another node's pod, or a pod whose netns was not found
		}
		st := transport.EndpointState{Key: e.Netns, Workload: e.Key()}
		if c := counters[e.Netns]; c.ok {
			st.Counters, st.Defaults = c.counters, c.defaults
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
