package containers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/inventory/host"
	"github.com/nanoseg/nanoseg/model"
)

// Source is the inventory of the running containers of one or more
// runtimes (inventory.Source): each network namespace that running
// containers hold is one endpoint (a container, or the containers sharing
// one netns: a Podman pod, a Compose service with `network_mode:
// service:x`, `--network container:x`).
//
// Design: List asks every runtime; a runtime that cannot be reached
// keeps the endpoints it had at its last answer (their netns still
// there, with the same inode), so its containers stay enforced while
// it is away: nanoseg never weakens enforcement on its own. Its error is
// logged when it starts and stops and kept in Notes; List itself does
// not fail, so endpoints of other sources and runtimes keep being
// managed. Containers on the host's network have no netns to program:
// they are logged once and listed in Notes, never enforced.
type Source struct {
	runtimes []Runtime
	log      *slog.Logger
	// addrs reads a netns's addresses; inode stats its nsfs inode.
	// Replaced by tests.
	addrs func(path string) ([]netip.Addr, error)
	inode func(path string) (uint64, error)

	mu     sync.Mutex
	state  map[string]*runtimeState // by Runtime.Name()
	logged map[string]bool          // notes logged already, by text
}

type runtimeState struct {
	eps   []model.Endpoint // the last good mapping
	err   error            // the last List error; nil while reachable
	notes []Note
	since time.Time // when the runtime was first found reachable, or unreachable, as it is now
}

// RuntimeState is one runtime as the last List found it.
type RuntimeState struct {
	// Name is the runtime's Name.
	Name string
	// Reachable is true when the last List reached it.
	Reachable bool
	// Since is when the List that first found it as it is now (reachable
	// or not) ran.
	Since time.Time
	// Err is why it could not be reached (nil when Reachable).
	Err error
	// Endpoints counts the endpoints of its containers in the last List:
	// when unreachable, the last known ones kept as they are.
	Endpoints int
}

// Note is something the Source reports instead of (or besides) an
// endpoint: a container on the host's network, a running container
// without a netns it can read, a runtime it cannot reach, or a label or
// name it did not use for the identity or the labels (identity).
type Note struct {
	// Runtime is the runtime's Name.
	Runtime string `json:"runtime"`
	// Container is the container's name (its ID when it has none); "" for
	// a note about the runtime.
	Container string `json:"container,omitempty"`
	// Reason says what and what follows.
	Reason string `json:"reason"`
	// Enforced is true for a note about a container that is enforced all
	// the same: a label or name its identity did not use (identity).
	Enforced bool `json:"enforced,omitempty"`
}

// NewSource returns a Source over runtimes; log receives the notes (nil:
// discard).
func NewSource(log *slog.Logger, runtimes ...Runtime) *Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{runtimes: runtimes, log: log.With("component", "containers"), addrs: host.NetnsAddrs, inode: netnsInode,
		state: map[string]*runtimeState{}, logged: map[string]bool{}}
}

// List implements inventory.Source. It fails only when ctx ends; a
// runtime that cannot be reached is reported in Notes and keeps its last
// endpoints (see Source).
func (s *Source) List(ctx context.Context) (inventory.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := inventory.Snapshot{Namespaces: map[string]map[string]string{}}
	for _, r := range s.runtimes {
		st := s.state[r.Name()]
		if st == nil {
			st = &runtimeState{}
			s.state[r.Name()] = st
		}
		cs, err := r.Containers(ctx)
		if ctx.Err() != nil {
			return inventory.Snapshot{}, ctx.Err()
		}
		if err != nil {
			if st.err == nil || st.since.IsZero() {
				st.since = time.Now()
			}
			if st.err == nil {
				s.log.Warn("container runtime unreachable: keeping its last known endpoints enforced as they are", "runtime", r.Name(),
					"endpoints", len(st.eps), "err", err)
			}
			st.err = err
			st.eps = s.stillThere(st.eps)
		} else {
			if st.err != nil {
				s.log.Info("container runtime reachable again", "runtime", r.Name())
			}
			if st.err != nil || st.since.IsZero() {
				st.since = time.Now()
			}
			st.err = nil
			st.eps, st.notes = s.mapContainers(r.Name(), cs)
		}
		for _, e := range st.eps {
			snap.Endpoints = append(snap.Endpoints, e)
			if _, ok := snap.Namespaces[e.Namespace]; !ok {
				snap.Namespaces[e.Namespace] = inventory.WithNamespaceName(e.Namespace, nil)
			}
		}
	}
	return snap, nil
}

// Notes returns what the last List reported besides endpoints, by
// runtime: unreachable runtimes, host-network containers, containers
// without a readable netns.
func (s *Source) Notes() []Note {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Note
	for _, r := range s.runtimes {
		st := s.state[r.Name()]
		if st == nil {
			continue
		}
		if st.err != nil {
			out = append(out, Note{Runtime: r.Name(), Reason: fmt.Sprintf("unreachable: %v; its %d last known endpoints stay as they are", st.err, len(st.eps))})
		}
		out = append(out, st.notes...)
	}
	return out
}

// Reachable returns, by runtime Name, whether the last List reached it
// (false also for a runtime not listed yet).
func (s *Source) Reachable() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for _, r := range s.runtimes {
		st := s.state[r.Name()]
		out[r.Name()] = st != nil && st.err == nil
	}
	return out
}

// Runtimes returns every runtime's state at the last List, in the order
// NewSource got them; runtimes not listed yet are left out.
func (s *Source) Runtimes() []RuntimeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []RuntimeState
	for _, r := range s.runtimes {
		if st := s.state[r.Name()]; st != nil {
			out = append(out, RuntimeState{Name: r.Name(), Reachable: st.err == nil, Since: st.since, Err: st.err, Endpoints: len(st.eps)})
		}
	}
	return out
}

// Watch implements inventory.Source: it watches every runtime's events
// until ctx ends and returns nil then. A runtime whose event stream
// fails is watched again after a pause (1 s, doubling to 30 s), with a
// notify each time, so that what changed meanwhile is listed.
func (s *Source) Watch(ctx context.Context, notify func()) error {
	var wg sync.WaitGroup
	for _, r := range s.runtimes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pause := time.Second
			for {
				start := time.Now()
				err := r.Watch(ctx, notify)
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					err = errors.New("event stream ended")
				}
				if time.Since(start) > time.Minute {
					pause = time.Second
				}
				s.log.Warn("watch container runtime; watching again", "runtime", r.Name(), "in", pause, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(pause):
				}
				pause = min(2*pause, 30*time.Second)
				notify()
			}
		}()
	}
	wg.Wait()
	return nil
}

// stillThere keeps the endpoints whose netns is still at their path with
// the same inode (a runtime away cannot say more).
func (s *Source) stillThere(eps []model.Endpoint) []model.Endpoint {
	var out []model.Endpoint
	for _, e := range eps {
		if ino, err := s.inode(e.Path); err == nil && ino == e.NetnsInode {
			out = append(out, e)
		}
	}
	return out
}

// mapContainers maps one runtime's containers to endpoints, one per netns
// held by running containers, sorted by netns name, and notes what it
// could not map (notes name the runtime by its Name).
func (s *Source) mapContainers(runtime string, cs []Container) ([]model.Endpoint, []Note) {
	byID := map[string]Container{}
	for _, c := range cs {
		byID[c.ID] = c
	}
	// The container whose netns c uses: follow NetnsOf (bounded: a cycle
	// or a missing container ends at the last one found).
	owner := func(c Container) Container {
		for range 8 {
			o, ok := byID[c.NetnsOf]
			if c.NetnsOf == "" || !ok {
				return c
			}
			c = o
		}
		return c
	}
	groups := map[string][]Container{}
	for _, c := range cs {
		if c.Running {
			o := owner(c)
			groups[o.ID] = append(groups[o.ID], c)
		}
	}
	var eps []model.Endpoint
	var notes []Note
	noteAs := func(msg string, c Container, reason string, enforced bool) {
		n := Note{Runtime: runtime, Container: cmp.Or(strings.TrimPrefix(c.Name, "/"), c.ID), Reason: reason, Enforced: enforced}
		notes = append(notes, n)
		if key := n.Runtime + "\x00" + c.ID + "\x00" + reason; !s.logged[key] {
			s.logged[key] = true
			s.log.Warn(msg, "runtime", n.Runtime, "container", n.Container, "reason", reason)
		}
	}
	note := func(c Container, reason string) { noteAs("container not enforced", c, reason, false) }
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		members := groups[id]
		slices.SortFunc(members, func(a, b Container) int { return cmp.Compare(a.Name+a.ID, b.Name+b.ID) })
		root, ok := byID[id]
		if !ok {
			root = members[0]
		}
		if root.HostNetwork || slices.ContainsFunc(members, func(c Container) bool { return c.HostNetwork && c.NetnsOf == "" }) {
			note(root, "uses the host's network (no netns of its own): reported, never enforced")
			continue
		}
		path := root.NetnsPath
		for _, c := range append([]Container{root}, members...) {
			if path != "" {
				break
			}
			if c.NetnsPath != "" {
				path = c.NetnsPath
			} else if c.Pid > 0 {
				path = fmt.Sprintf("/proc/%d/ns/net", c.Pid)
			}
		}
		if path == "" {
			note(root, "running, but its runtime names no netns and no process: not enforced until it does")
			continue
		}
		ino, err := s.inode(path)
		if err != nil {
			// Stopped between the list and now, or not set up yet: the
			// next list (its events, the netns watch) sees it again.
			continue
		}
		addrs, err := s.addrs(path)
		if err != nil {
			continue
		}
		labels := map[string]string{}
		pod := ""
		for _, c := range append([]Container{root}, members...) {
			for k, v := range c.Labels {
				if _, ok := labels[k]; !ok {
					labels[k] = v
				}
			}
			pod = cmp.Or(pod, c.Pod)
		}
		ns, wl, lbl, rejected := identity(labels, pod, root.Name, root.ID)
		for _, r := range rejected {
			noteAs("container label not used", root, r, true)
		}
		ep := model.Endpoint{Netns: netnsName(root, path), Path: path, NetnsInode: ino, Namespace: ns, Workload: wl, Labels: lbl, Addrs: addrs}
		seen := map[model.ContainerPort]bool{}
		for _, c := range append([]Container{root}, members...) {
			for _, p := range c.Ports {
				if !seen[p] {
					seen[p] = true
					ep.Ports = append(ep.Ports, p)
				}
			}
		}
		slices.SortFunc(ep.Ports, func(a, b model.ContainerPort) int {
			return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Name, b.Name))
		})
		eps = append(eps, ep)
	}
	slices.SortFunc(eps, func(a, b model.Endpoint) int { return cmp.Compare(a.Netns, b.Netns) })
	return eps, notes
}

// netnsName is the endpoint's key (model.Endpoint.Netns): the name under
// /run/netns when the runtime mounts its netns there (Podman's
// netns-<uuid>), else "<runtime>-<first 12 characters of the ID>" of the
// container that holds it.
func netnsName(c Container, path string) string {
	switch filepath.Dir(path) {
	case "/run/netns", "/var/run/netns":
		return filepath.Base(path)
	}
	rt := strings.NewReplacer("/", "-", ":", "-").Replace(cmp.Or(c.Runtime, "container"))
	return rt + "-" + c.ID[:min(12, len(c.ID))]
}
