// Package controllertest has fakes of the controller's seams for tests
// that run without root: a Node that records what it is asked to enforce,
// and a small shop inventory.
package controllertest

import (
	"context"
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// Node is a fake controller.Node. Set its exported fields before use;
// it is safe for concurrent use.
type Node struct {
	mu       sync.Mutex
	enforced []policies.InForce
	decided  []string
	flushes  int

	// DefaultIDs is the table Defaults reports.
	DefaultIDs map[string][]policies.PolicyRef
	// Errs are the apply errors Applied and Read report, by netns.
	Errs map[string]error
	// Adopted are the modes of adopted tables Applied and Read report, by
	// netns.
	Adopted map[string]string
	// Block, when not nil, makes Enforce wait until it is closed or ctx
	// ends (a dataplane that does not converge in time).
	Block chan struct{}
	// Counters are the per-rule counters Read reports, by netns.
	Counters map[string]map[string]evidence.Count
	// DefaultHits are the default verdict counters Read reports, by netns
	// and direction.
	DefaultHits map[string]map[model.Direction]evidence.Count
	// SeenNames are the DNS names Names reports.
	SeenNames map[netip.Addr]string
	// FlushErr, when set, is what Flush returns (a store that cannot be
	// written, such as a full disk).
	FlushErr error
	// Reach decides a probe's outcome (nil: every probe times out).
	Reach func(src model.Endpoint, proto string, addr netip.AddrPort) bool
}

var _ controller.Node = (*Node)(nil)

// Enforce implements controller.Node: it records in and decided.
func (n *Node) Enforce(ctx context.Context, in policies.InForce, decided []string) error {
	if n.Block != nil {
		select {
		case <-n.Block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.enforced = append(n.enforced, in)
	n.decided = decided
	return nil
}

// Decided returns the decided workloads of the last Enforce call.
func (n *Node) Decided() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.decided...)
}

// Enforced returns the policies of every Enforce call so far, oldest first.
func (n *Node) Enforced() []policies.InForce {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]policies.InForce(nil), n.enforced...)
}

// Defaults implements controller.Node: a copy of DefaultIDs.
func (n *Node) Defaults() map[string][]policies.PolicyRef {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.DefaultIDs)
}

// Mode returns the mode of the nanosegment of namespace/name in the last
// Enforce call, or "" when it is not there.
func (n *Node) Mode(namespace, name string) model.Mode {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.enforced) == 0 {
		return ""
	}
	for _, s := range n.enforced[len(n.enforced)-1].NanoSegments {
		if s.Namespace == namespace && s.Name == name {
			return s.Spec.Mode
		}
	}
	return ""
}

// Applied implements controller.Node.
func (n *Node) Applied(netns string) controller.EndpointSync {
	n.mu.Lock()
	defer n.mu.Unlock()
	return controller.EndpointSync{Known: len(n.enforced) > 0, Err: n.Errs[netns], Adopted: n.Adopted[netns]}
}

// Read implements controller.Node: in sync unless the endpoint has an
// error, with the configured counters.
func (n *Node) Read(netns string, rules bool) controller.EndpointSync {
	s := n.Applied(netns)
	n.mu.Lock()
	defer n.mu.Unlock()
	s.InSync = s.Known && s.Err == nil
	s.Counters = maps.Clone(n.Counters[netns])
	s.DefaultHits = maps.Clone(n.DefaultHits[netns])
	if rules {
		s.Rules = &evidence.EndpointRules{Netns: netns, InSync: s.InSync, Present: s.Known}
	}
	return s
}

// Flush implements controller.Node: it counts calls and returns FlushErr.
func (n *Node) Flush() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.flushes++
	return n.FlushErr
}

// Flushes returns how often Flush was called.
func (n *Node) Flushes() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.flushes
}

// Names implements controller.Node.
func (n *Node) Names() map[netip.Addr]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.SeenNames)
}

// Probe implements controller.Node through Reach.
func (n *Node) Probe(_ context.Context, src model.Endpoint, proto string, addr netip.AddrPort, _ time.Duration) controller.ProbeOutcome {
	if n.Reach != nil && n.Reach(src, proto, addr) {
		return controller.ProbeOutcome{Outcome: "connected", Reached: true}
	}
	return controller.ProbeOutcome{Outcome: "timeout"}
}

// Shop returns an inventory of namespace shop: web (web-0, web-1, port
// 80/TCP), db (db-0, port 5432/TCP named postgres) and intruder
// (intruder-0), labelled app=<workload>, with addresses in 198.18.0.0/24
// and 2001:db8::/64.
func Shop() *inventory.Index {
	ep := func(netns, w string, last byte, ports ...model.ContainerPort) model.Endpoint {
		return model.Endpoint{Netns: netns, Path: "/run/netns/" + netns, Namespace: "shop", Workload: w,
			Labels: map[string]string{"app": w, "pod-template-hash": "abc" + netns},
			Addrs:  []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 0, last}), netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: last})}, Ports: ports}
	}
	eps := []model.Endpoint{
		ep("web-0", "web", 1, model.ContainerPort{Name: "http", Port: 80, Protocol: "TCP"}),
		ep("web-1", "web", 2, model.ContainerPort{Name: "http", Port: 80, Protocol: "TCP"}),
		ep("db-0", "db", 3, model.ContainerPort{Name: "postgres", Port: 5432, Protocol: "TCP"}),
		ep("intruder-0", "intruder", 4),
	}
	return inventory.NewIndex(eps, map[string]map[string]string{"shop": {"kubernetes.io/metadata.name": "shop"}}, nil)
}
