//go:build linux

package node

// Adoption: the node never weakens enforcement on its own.
//
// A table in audit or enforce mode that the node finds in an endpoint it
// has just taken (at start, or when an endpoint appears or its previous
// owner lets it go), where the store knows nothing of the endpoint (it
// never recorded a promotion or rollback of its workload, and no policy
// in force selects it), was programmed by a decision the store does not
// know: another state file, another agent, a store restored from an old
// copy. Overwriting it
// with the default observe rule set would drop enforcement silently. So
// the node adopts it: it reads the table back and keeps that rule set as
// the endpoint's desired one (drift repair restores it too), warns when it
// adopts and every AdoptedWarnInterval while any is adopted, shows it in
// status (controller.EndpointSync.Adopted) and in the
// nanoseg_node_endpoints_adopted gauge, until an operator decides: once
// the store records a decision for the workload (a promotion in this
// store, to any mode, observe included) or a policy in force selects the
// endpoint, the policies decide its rule set again.
//
// An endpoint the store knows when the node takes it is the store's: its
// table follows the policies, weaker or not, as the operator recorded
// them (a rollback of a workload's first promotion, recorded just before
// a crash, still weakens it on restart, as recorded). Tables in observe
// mode, and endpoints without a table, are not adopted.

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
)

// adoptable reports whether a table the node finds in an endpoint it has
// just taken is kept as found: present, in audit or enforce mode, and the
// store does not know the endpoint.
func adoptable(st *dataplane.State, known bool) bool {
	return !known && st.Present && (st.RuleSet.Mode == model.ModeAudit || st.RuleSet.Mode == model.ModeEnforce)
}

// knownLocked reports whether the store knows endpoint e: it recorded a
// decision for e's workload, or a policy in force selects e.
func (n *Node) knownLocked(e model.Endpoint) bool {
	return n.cfg.AllDecided || n.decided[e.Key()] || n.comp.Selected(podKey(e))
}

// Known reports whether the store knows endpoint e (it decided for e's
// workload, or a policy in force selects e): a table found in e is then
// replaced by e's compiled rule set, never adopted.
func (n *Node) Known(e model.Endpoint) bool {
	n.compileMu.Lock()
	defer n.compileMu.Unlock()
	return n.knownLocked(e)
}

// checkTablesLocked looks at the tables of the endpoints of eps the node
// has not looked at yet (new to it, or a namespace created again under
// the same name) and adopts those adoptable. Endpoints the store knows are
// not read. It returns the endpoints whose table could not
// be read: they are not programmed until it can be.
func (n *Node) checkTablesLocked(eps []model.Endpoint) map[string]error {
	var todo []model.Endpoint
	for _, e := range eps {
		if ino, ok := n.checked[e.Netns]; ok && ino == e.NetnsInode {
			continue
		}
		n.mu.Lock()
		delete(n.adopted, e.Netns)
		n.mu.Unlock()
		if n.knownLocked(e) {
			n.checked[e.Netns] = e.NetnsInode
			continue
		}
		todo = append(todo, e)
	}
	if len(todo) == 0 {
		return nil
	}
	states := make([]*dataplane.State, len(todo))
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(8, len(todo)) {
		wg.Go(func() {
			for i := range next {
				states[i], errs[i] = n.dp.Read(todo[i].Path)
			}
		})
	}
	for i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()
	var failed map[string]error
	for i, e := range todo {
		if errs[i] != nil {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[e.Netns] = errs[i]
			continue
		}
		n.checked[e.Netns] = e.NetnsInode
		if !adoptable(states[i], false) {
			continue
		}
		rs := states[i].RuleSet
		if rs.Name == "" {
			// An audit or enforce table holds its default ids, not the
			// rule set's name: give it the name the compiler would.
			rs.Name = podKey(e)
		}
		n.mu.Lock()
		n.adopted[e.Netns] = rs
		n.mu.Unlock()
		n.log.Warn("adopted a table unknown to the store: kept as found, never weakened on its own; promote the workload to decide",
			"netns", e.Netns, "workload", e.Key(), "mode", rs.Mode, "ruleset", rs.Name, "ingress", len(rs.Ingress), "egress", len(rs.Egress))
	}
	return failed
}

// desiredLocked returns the rule set endpoint e is to hold: the adopted
// one while the store does not know e, else the compiled one (an
// adoption ends when the store knows e: the operator has decided).
func (n *Node) desiredLocked(e model.Endpoint) dataplane.RuleSet {
	key := podKey(e)
	n.mu.Lock()
	rs, adopted := n.adopted[e.Netns]
	n.mu.Unlock()
	if !adopted {
		return n.comp.For(key)
	}
	if !n.knownLocked(e) {
		return rs
	}
	n.mu.Lock()
	delete(n.adopted, e.Netns)
	n.mu.Unlock()
	want := n.comp.For(key)
	n.log.Warn("adopted table handed over to the policies in force: the store has decided for the endpoint",
		"netns", e.Netns, "workload", e.Key(), "adopted", rs.Mode, "now", want.Mode)
	return want
}

// adoptedMode returns the mode of endpoint netns's adopted table, "" when
// it is not adopted.
func (n *Node) adoptedMode(netns string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if rs, ok := n.adopted[netns]; ok {
		return string(rs.Mode)
	}
	return ""
}

// forgetLocked drops what the node knows of endpoints that left its
// inventory or its management (names not in keep).
func (n *Node) forgetLocked(keep map[string]bool) {
	for name := range n.checked {
		if !keep[name] {
			delete(n.checked, name)
		}
	}
	n.mu.Lock()
	for name := range n.adopted {
		if !keep[name] {
			delete(n.adopted, name)
		}
	}
	n.mu.Unlock()
}

// updateAdoptedMetric sets the adopted gauge per mode.
func (n *Node) updateAdoptedMetric() {
	n.mu.Lock()
	defer n.mu.Unlock()
	count := map[model.Mode]int{}
	for _, rs := range n.adopted {
		count[rs.Mode]++
	}
	for _, m := range []model.Mode{model.ModeAudit, model.ModeEnforce} {
		n.metrics.adopted.WithLabelValues(string(m)).Set(float64(count[m]))
	}
}

// warnAdopted logs the adopted endpoints, if any, at warn level: the
// periodic reminder that an operator has a decision to make.
func (n *Node) warnAdopted() {
	n.mu.Lock()
	list := make([]string, 0, len(n.adopted))
	for _, name := range slices.Sorted(maps.Keys(n.adopted)) {
		list = append(list, fmt.Sprintf("%s (%s)", name, n.adopted[name].Mode))
	}
	n.mu.Unlock()
	if len(list) == 0 {
		return
	}
	n.log.Warn("tables adopted, unknown to the store, kept as found until their workloads are promoted",
		"count", len(list), "endpoints", strings.Join(list, ", "))
}

// podKey is the compiler's key of endpoint e ("namespace/netns").
func podKey(e model.Endpoint) string { return e.Namespace + "/" + e.Netns }
