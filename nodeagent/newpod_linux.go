//go:build linux

package nodeagent

// A new pod: its rules before its first connection.
//
// Design: kubelet posts a pod's addresses after the runtime gave them,
// possibly after the pod's containers have started and connected, so a
// pod found only by its posted addresses passes its first connections
// unjudged. Two parts close that window (docs/architecture.md, "A new
// pod"):
//   - the inventory source finds a pod of this node by the cgroup of its
//     network namespace's first process (the sandbox, started before any
//     container of the pod) and lists it with the addresses its namespace
//     holds (inventory/kube early.go, finder_pods_linux.go); the node then
//     programs its own rules as for any pod;
//   - until then, a namespace that is or may be a pod's (containerd's CRI
//     bind mount cni-<uuid>, or one whose processes are in a kubepods
//     cgroup; inventory/kube.Candidate) and that no pod has been matched
//     to gets a fail-closed placeholder, an enforce table without allow
//     entries (every new connection dropped, both ways), when a policy in
//     force would isolate a pending pod it may belong to: the pod its
//     processes name, else any pending pod of this node. The node's rule
//     set replaces it in place (one transaction) once the pod is matched.
//
// The placeholder is never put in a namespace that already holds a table
// (a previous agent's is kept as found; a placeholder a previous agent put
// there is taken over as this agent's), and is removed only as placed:
// when no pending pod it may belong to is isolated any more, the table is
// deleted if it still holds exactly the placeholder.

import (
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/inventory"
	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// PlaceholderName is the name of the placeholder rule set, and the rule
// id its deny verdicts carry ("nanoseg:deny:pending-pod").
const PlaceholderName = "pending-pod"

// Placeholder returns the fail-closed placeholder rule set: enforce mode,
// no allow entry.
func Placeholder() dataplane.RuleSet {
	return dataplane.RuleSet{Name: PlaceholderName, Mode: model.ModeEnforce}
}

// EarlyPods is what an inventory source that finds pods before their
// addresses are posted offers besides its snapshots
// (inventory/kube.Source).
type EarlyPods interface {
	// Pending returns the pods of this node without a network namespace
	// in the last List.
	Pending() []invkube.PendingPod
	// Candidates returns the namespaces that are, or may be, a pod's.
	Candidates() []invkube.Candidate
}

// newPodGuard keeps the placeholders; the sync loop's goroutine only.
type newPodGuard struct {
	early  EarlyPods
	dp     *dataplane.Dataplane
	log    *slog.Logger
	start  time.Time
	placed map[uint64]string    // placeholder tables by namespace inode → path
	seen   map[uint64]time.Time // candidates not matched yet by inode → since
	known  map[uint64]bool      // namespaces of the last snapshot's endpoints

	mWindow *prometheus.HistogramVec
}

func newNewPodGuard(early EarlyPods, reg prometheus.Registerer, log *slog.Logger) (*newPodGuard, error) {
	g := &newPodGuard{early: early, dp: dataplane.New(log), log: log, start: time.Now(),
		placed: map[uint64]string{}, seen: map[uint64]time.Time{}, known: map[uint64]bool{},
		mWindow: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "nanoseg", Subsystem: "node", Name: "new_pod_table_seconds",
			Help:    "Time from a new pod network namespace seen by the finder to its first table: the fail-closed placeholder, or the pod's own rules (table).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"table"}),
	}
	if err := reg.Register(g.mWindow); err != nil {
		return nil, err
	}
	return g, nil
}

// guard places and removes placeholders for the candidates of the
// inventory; snap is the snapshot about to go to the node (nil: the last
// one's endpoints, on a policy change). It reports whether it wants to be
// called again soon (a namespace could not be read or programmed).
func (g *newPodGuard) guard(snap *inventory.Snapshot, in func() policies.InForce) (retry bool) {
	if snap != nil {
		g.known = map[uint64]bool{}
		for _, e := range snap.Endpoints {
			if e.Path != "" && e.NetnsInode != 0 {
				g.known[e.NetnsInode] = true
			}
		}
	}
	cands := g.early.Candidates()
	var open []invkube.Candidate // candidates no pod is matched to
	for _, c := range cands {
		if !g.known[c.Inode] {
			open = append(open, c)
		}
	}
	if len(open) == 0 && len(g.placed) == 0 {
		g.forget(cands)
		return false
	}
	iso := g.isolation(g.early.Pending(), in)
	for _, c := range open {
		if _, ok := g.seen[c.Inode]; !ok {
			g.seen[c.Inode] = c.Since
		}
		if _, ok := g.placed[c.Inode]; ok || !iso.wants(c) {
			continue
		}
		st, err := g.dp.Read(c.Path)
		if err != nil {
			g.log.Warn("read a new pod network namespace before its placeholder; trying again", "netns", c.Path, "err", err)
			retry = true
			continue
		}
		if st.Present {
			if st.Equal(Placeholder()) {
				g.placed[c.Inode] = c.Path // a previous agent's placeholder: ours now
			}
			continue // any other table is kept as found
		}
		if _, err := g.dp.Apply(c.Path, Placeholder()); err != nil {
			g.log.Warn("program the placeholder of a new pod network namespace; trying again", "netns", c.Path, "err", err)
			retry = true
			continue
		}
		g.placed[c.Inode] = c.Path
		took := time.Since(c.Since)
		g.mWindow.WithLabelValues("placeholder").Observe(took.Seconds())
		g.log.Info("new pod network namespace: every connection denied until its pod is known (a policy isolates a pending pod of this node)",
			"netns", c.Path, "podUID", c.UID, "afterSeen", took)
	}
	for ino, path := range g.placed {
		if g.known[ino] {
			delete(g.placed, ino) // the node's rule set replaces it
			continue
		}
		if _, err := os.Stat(path); err != nil {
			delete(g.placed, ino) // gone
			continue
		}
		i := slices.IndexFunc(open, func(c invkube.Candidate) bool { return c.Inode == ino })
		if i < 0 || iso.wants(open[i]) {
			// Still wanted; or missing from one answer of the finder while
			// the namespace is there: kept (never opened on doubt).
			continue
		}
		delete(g.placed, ino)
		removed, err := g.dp.RemoveIfEqual(path, Placeholder())
		if err != nil {
			g.log.Warn("remove a placeholder", "netns", path, "err", err)
			continue
		}
		if removed {
			g.log.Info("placeholder removed: no pending pod it may belong to is isolated, or it is no pod's", "netns", path)
		}
	}
	g.forget(cands)
	return retry
}

// guardNewPods runs the guard (if any) on snap (nil: the last one's
// endpoints) and asks for another sync soon when it could not finish.
func (a *Agent) guardNewPods(snap *inventory.Snapshot) {
	if a.guard == nil {
		return
	}
	if a.guard.guard(snap, a.parts.Policies.InForce) {
		time.AfterFunc(100*time.Millisecond, func() { a.invDirty.Store(true); a.poke() })
	}
}

// applied records, once the node has taken snap, how long each new pod
// namespace went without its own rules.
func (g *newPodGuard) applied(snap inventory.Snapshot) {
	for _, e := range snap.Endpoints {
		since, ok := g.seen[e.NetnsInode]
		if !ok || e.Path == "" {
			continue
		}
		delete(g.seen, e.NetnsInode)
		if since.Before(g.start) {
			continue // there before the agent: no new pod
		}
		took := time.Since(since)
		g.mWindow.WithLabelValues("rules").Observe(took.Seconds())
		g.log.Info("new pod programmed", "pod", e.Namespace+"/"+e.Netns, "netns", e.Path, "afterSeen", took)
	}
}

// forget drops the namespaces that are no candidates any more.
func (g *newPodGuard) forget(cands []invkube.Candidate) {
	for ino := range g.seen {
		if !slices.ContainsFunc(cands, func(c invkube.Candidate) bool { return c.Inode == ino }) {
			delete(g.seen, ino)
		}
	}
}

// isolation says which candidates a placeholder protects.
type isolation struct {
	byUID map[string]bool // pending pods by UID → isolated
	any   bool            // some pending pod is isolated
}

// wants reports whether c gets a placeholder: the pending pod its
// processes name is isolated, or, when they name none that is pending,
// some pending pod is.
func (i isolation) wants(c invkube.Candidate) bool {
	if iso, ok := i.byUID[c.UID]; ok && c.UID != "" {
		return iso
	}
	return i.any
}

// isolation evaluates which pending pods a policy in force would isolate:
// one in the pod's namespace, in enforce mode, isolating a direction,
// whose pod selector matches the pod's labels (the NetworkPolicy
// semantics of podSelector and policyTypes, policies.Policy). The
// policies are compiled only when some pod is pending.
func (g *newPodGuard) isolation(pending []invkube.PendingPod, in func() policies.InForce) isolation {
	out := isolation{byUID: map[string]bool{}}
	if len(pending) == 0 {
		return out
	}
	set, err := in().Set()
	if err != nil {
		// The watcher holds only valid policies; should the set still fail
		// to compile, fail closed: every pending pod counts as isolated.
		g.log.Warn("compile the policies in force for pending pods; treating them as isolated", "err", err)
		out.any = true
		for _, p := range pending {
			for _, u := range p.UIDs {
				out.byUID[u] = true
			}
		}
		return out
	}
	for _, p := range pending {
		iso := false
		for _, pol := range set.InNamespace(p.Namespace) {
			if pol.Mode == model.ModeEnforce && (pol.Isolates[0] || pol.Isolates[1]) && pol.Selector != nil && pol.Selector.Matches(labels.Set(p.Labels)) {
				iso = true
				break
			}
		}
		out.any = out.any || iso
		for _, u := range p.UIDs {
			out.byUID[u] = iso
		}
	}
	return out
}
