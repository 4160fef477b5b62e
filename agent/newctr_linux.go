//go:build linux

package agent

// A new container: its rules before its first connection.
//
// Podman mounts a container's netns at /run/netns/netns-<uuid>, sets up
// its network (CNI) and starts the container, holding the container's
// lock throughout, so its API names the container only once it runs: a
// container listed then is programmed some 50 ms after its first
// instruction (docs/architecture.md "Containers on one host"). The guard
// closes that window as the node agent's placeholder does for pods: when
// a Podman-named netns appears while any container endpoint is enforced,
// it puts a placeholder table in it at once (enforce mode, no allow
// entry: every new connection dropped), which the node's rule set
// replaces in place when the container is listed. A placeholder in the
// netns of a container whose workload the store does not know is removed
// before the node sees the endpoint (else the node would adopt it as an
// unknown enforce table and keep the container cut off). The guard never
// touches a netns that holds a table already, and removes only a table
// that still is exactly its placeholder.

import (
	"context"
	"log/slog"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/node"
)

// ContainerPlaceholderName names the guard's placeholder rule set.
const ContainerPlaceholderName = "pending-container"

// containerPlaceholder is the fail-closed rule set of a new container
// netns: enforce mode, no allow entry.
func containerPlaceholder() dataplane.RuleSet {
	return dataplane.RuleSet{Name: ContainerPlaceholderName, Mode: model.ModeEnforce}
}

// podmanNetns matches the names Podman gives the netns it mounts.
var podmanNetns = regexp.MustCompile(`^netns-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

const nsfsMagic = 0x6e736673 // NSFS_MAGIC, linux/magic.h

type containerGuard struct {
	dp   *dataplane.Dataplane
	node *node.Node
	inv  *inventory.Index
	log  *slog.Logger

	mu     sync.Mutex
	placed map[string]uint64 // netns path → inode of the placeholder's netns
}

func newContainerGuard(nd *node.Node, inv *inventory.Index, log *slog.Logger) *containerGuard {
	return &containerGuard{dp: dataplane.New(log), node: nd, inv: inv, log: log.With("part", "container-guard"), placed: map[string]uint64{}}
}

// enforcing reports whether any container endpoint (a Podman-named netns)
// holds an enforce rule set: only then may a new one need its rules
// before it talks.
func (g *containerGuard) enforcing() bool {
	for _, e := range g.inv.Endpoints() {
		if !podmanNetns.MatchString(e.Netns) {
			continue
		}
		if rs, ok := g.node.Desired(e.Netns); ok && rs.Mode == model.ModeEnforce {
			return true
		}
	}
	return false
}

// run watches /run/netns until ctx ends, placing placeholders.
func (g *containerGuard) run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add("/run/netns"); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&fsnotify.Create != 0 && podmanNetns.MatchString(filepath.Base(ev.Name)) && g.enforcing() {
				g.place(ev.Name)
			}
		case _, ok := <-w.Errors:
			if !ok {
				return nil
			}
		}
	}
}

// place puts the placeholder in the netns at path once the runtime has
// mounted it (the file appears before the mount: never program what is
// not yet an nsfs mount, that would be no netns at all).
func (g *containerGuard) place(path string) {
	start := time.Now()
	var st unix.Stat_t
	for {
		var fs unix.Statfs_t
		if err := unix.Statfs(path, &fs); err != nil {
			return // gone
		}
		if fs.Type == nsfsMagic {
			if err := unix.Stat(path, &st); err != nil {
				return
			}
			break
		}
		if time.Since(start) > 2*time.Second {
			g.log.Warn("new container netns not mounted after 2 s: no placeholder", "netns", path)
			return
		}
		time.Sleep(time.Millisecond)
	}
	cur, err := g.dp.Read(path)
	if err != nil || cur.Present {
		return // unreadable, or a table already (kept as found)
	}
	if _, err := g.dp.Apply(path, containerPlaceholder()); err != nil {
		g.log.Warn("program the placeholder of a new container netns", "netns", path, "err", err)
		return
	}
	g.mu.Lock()
	g.placed[path] = st.Ino
	g.mu.Unlock()
	g.log.Info("new container netns: every connection denied until its container is listed (a container workload is enforced)",
		"netns", path, "after", time.Since(start).Round(time.Microsecond))
}

// listed hands over the placeholders of the endpoints of snap to the node:
// those of endpoints the store knows are replaced in place by their rule
// set; those of endpoints it does not know are removed first (the node
// would adopt them). Placeholders whose netns is gone are forgotten.
// Called before the node gets snap.
func (g *containerGuard) listed(snap inventory.Snapshot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.placed) == 0 {
		return
	}
	for _, e := range snap.Endpoints {
		ino, ok := g.placed[e.Path]
		if !ok || ino != e.NetnsInode {
			continue
		}
		delete(g.placed, e.Path)
		if g.node.Known(e) {
			continue
		}
		if removed, err := g.dp.RemoveIfEqual(e.Path, containerPlaceholder()); err != nil {
			g.log.Warn("remove a placeholder", "netns", e.Path, "err", err)
		} else if removed {
			g.log.Info("placeholder removed: the container's workload is not decided yet (observe)", "netns", e.Path, "workload", e.Key())
		}
	}
	for path, ino := range g.placed {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil || st.Ino != ino {
			delete(g.placed, path)
		}
	}
}
