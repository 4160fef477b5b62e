//go:build linux

package nodeagent

import (
	"cmp"
	"slices"

	"github.com/nanoseg/nanoseg/transport"
)

// Sender returns the sender of observations to the controller (nil
// without Config.Controller).
func (a *Agent) Sender() *transport.Sender { return a.sender }

// endpointStates says, for each local endpoint (a pod of this node whose
// netns was found), what the node applied to it: the controller shows it
// in NanoSegment status.
func (a *Agent) endpointStates() []transport.EndpointState {
	out := []transport.EndpointState{}
	for _, e := range a.inv.Endpoints() {
		if e.Path == "" {
			continue // a peer: another node's pod, or a pod whose netns was not found
		}
		st := transport.EndpointState{Key: e.Netns, Workload: e.Key()}
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
