//go:build linux

package kube

// The netns finder: which network namespace holds a pod of this node,
// found without a CNI hook, by the pod's addresses.
//
// Design: a scan lists the node's network namespaces from two places,
// deduplicated by their nsfs inode (the namespace's identity): bind mounts
// under /run/netns and /var/run/netns (CNI runtimes and podman put pod
// namespaces there; a file counts once its filesystem is nsfs, so a file
// created but not yet mounted is skipped and looked at again shortly), and
// /proc/PID/ns/net of every process (a namespace only a process holds,
// readlink "net:[INODE]"). A bind mount is the preferred path: a /proc
// path dies with its process, so Find checks such a path still names the
// namespace and looks for another process of it when not. The namespace of
// this process and of PID 1 are the node's and never a pod's.
//
// Each namespace's addresses are read with netlink through a handle on
// the namespace (netlink.NewHandleAt; the process never switches
// namespace) and cached by inode: a namespace that was matched to exactly
// one pod keeps its cached addresses until the periodic full rescan (a
// pod's addresses never change while it lives), every other one is read
// again at each scan (a new namespace gets its addresses from the CNI
// plugin after it appears). Scans run at start, on inotify events in the
// netns directories (fsnotify, coalesced), on Refresh (pod events), and
// every Rescan as a fallback. The processes' cgroups, a new namespace's
// mount seen within milliseconds and the hunt for its first process, which
// find a pod before its addresses are posted, are in finder_pods_linux.go.
//
// Sources: network_namespaces(7) (nsfs, /proc/PID/ns/net), ip-netns(8)
// (the /run/netns convention), statfs(2) (NSFS_MAGIC), inotify(7).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// FinderConfig configures a NetnsFinder. The zero value with Defaults
// applied watches the host's real directories.
type FinderConfig struct {
	// Dirs are the directories of network namespace bind mounts
	// (default /run/netns and /var/run/netns; a directory that is a
	// symlink to another is looked at once).
	Dirs []string
	// Proc is the proc filesystem whose processes' namespaces count
	// (default /proc; the node agent needs the host's PID namespace).
	Proc string
	// Rescan is the period of the full rescan that also re-reads the
	// addresses of matched namespaces (default 30s).
	Rescan time.Duration
	// MinInterval is the least time between two scans (default 100ms).
	MinInterval time.Duration
	// HuntInterval is how often the processes are looked at while a new
	// namespace waits for its first process, whose cgroup names its pod
	// (default 10ms; finder_pods_linux.go).
	HuntInterval time.Duration
	// HuntFor bounds that wait per namespace (default 10s); later, the
	// scans look at it as at any other.
	HuntFor time.Duration
	// ByAddressOnly turns pod identification by cgroup off: no cgroup is
	// read, new namespaces are not hunted, and FindUIDs, NetnsPod and
	// Candidates know nothing (the finder as it was before; for
	// measurements).
	ByAddressOnly bool
	// Logger gets scan errors and changes (nil: discard).
	Logger *slog.Logger
	// Registerer gets the finder's metrics (nil: none).
	Registerer prometheus.Registerer
}

// Defaults fills the zero fields of c.
func (c *FinderConfig) Defaults() {
	if c.Dirs == nil {
		c.Dirs = []string{"/run/netns", "/var/run/netns"}
	}
	if c.Proc == "" {
		c.Proc = "/proc"
	}
	if c.Rescan == 0 {
		c.Rescan = 30 * time.Second
	}
	if c.MinInterval == 0 {
		c.MinInterval = 100 * time.Millisecond
	}
	if c.HuntInterval == 0 {
		c.HuntInterval = 10 * time.Millisecond
	}
	if c.HuntFor == 0 {
		c.HuntFor = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every bad field at once.
func (c FinderConfig) Validate() error {
	var errs []error
	if c.Rescan < 0 {
		errs = append(errs, fmt.Errorf("finder rescan: %s is negative", c.Rescan))
	}
	if c.MinInterval < 0 {
		errs = append(errs, fmt.Errorf("finder minInterval: %s is negative", c.MinInterval))
	}
	if c.HuntInterval < 0 {
		errs = append(errs, fmt.Errorf("finder huntInterval: %s is negative", c.HuntInterval))
	}
	if c.HuntFor < 0 {
		errs = append(errs, fmt.Errorf("finder huntFor: %s is negative", c.HuntFor))
	}
	for i, d := range c.Dirs {
		if !filepath.IsAbs(d) {
			errs = append(errs, fmt.Errorf("finder dirs[%d]: %q is not an absolute path", i, d))
		}
	}
	return errors.Join(errs...)
}

// NetnsFinder finds the network namespaces of this node's pods (Finder).
// Safe for concurrent use.
type NetnsFinder struct {
	cfg     FinderConfig
	log     *slog.Logger
	refresh chan struct{}
	synced  atomic.Bool

	mu      sync.Mutex
	entries map[uint64]*nsEntry
	settled map[uint64]bool // matched to exactly one pod at the last Find

	// Run's own state (finder_pods_linux.go): files created in a netns
	// directory, not mounted yet, by path → when seen; namespaces waiting
	// for the process that names their pod, by inode → until when.
	mounting map[string]time.Time
	hunting  map[uint64]time.Time

	scanSeconds prometheus.Histogram
	namespaces  prometheus.Gauge
}

// nsEntry is one namespace the last scan saw.
type nsEntry struct {
	nsInfo
	mount bool      // path is a bind mount (else /proc/PID/ns/net)
	cri   bool      // a bind mount named as containerd's CRI names pod sandboxes
	seen  time.Time // when the finder first saw it
	ident procIdentity
}

// NewNetnsFinder returns a finder; Run starts its scans.
func NewNetnsFinder(cfg FinderConfig) (*NetnsFinder, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &NetnsFinder{
		cfg: cfg, log: cfg.Logger.With("component", "netns-finder"),
		refresh: make(chan struct{}, 1),
		entries: map[uint64]*nsEntry{}, settled: map[uint64]bool{},
		mounting: map[string]time.Time{}, hunting: map[uint64]time.Time{},
		scanSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nanoseg_node_netns_scan_seconds",
			Help:    "Duration of one scan of the node's network namespaces (bind mounts and processes) and their addresses.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		namespaces: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nanoseg_node_netns",
			Help: "Network namespaces of the node the last scan found (the node's own not counted).",
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{f.scanSeconds, f.namespaces} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register netns finder metrics: %w", err)
			}
		}
	}
	return f, nil
}

// HasSynced implements Finder.
func (f *NetnsFinder) HasSynced() bool { return f.synced.Load() }

// Refresh implements Finder.
func (f *NetnsFinder) Refresh() {
	select {
	case f.refresh <- struct{}{}:
	default:
	}
}

// Find implements Finder. A found namespace known only by a /proc path is
// checked to still be that namespace; if its process exited, another
// process of the namespace is looked for (and a rescan requested).
func (f *NetnsFinder) Find(pods map[string][]netip.Addr) map[string]Found {
	f.mu.Lock()
	defer f.mu.Unlock()
	nss := make([]nsInfo, 0, len(f.entries))
	for _, e := range f.entries {
		nss = append(nss, e.nsInfo)
	}
	out := match(nss, pods)
	settled := map[uint64]bool{}
	for key, fd := range out {
		if fd.Reason != "" {
			continue
		}
		e, gone := f.liveLocked(f.entries[fd.Inode])
		if gone != nil {
			out[key] = *gone
			continue
		}
		fd.Path = e.path
		out[key] = fd
		settled[fd.Inode] = true
	}
	f.settled = settled
	return out
}

// liveLocked checks that e's path still names its namespace: a /proc path
// dies with its process; then another process of the namespace is looked
// for. It returns the entry to use, or, when no process is left, forgets e,
// asks for a rescan and returns why the namespace is not found.
//
// f.entries and its entries are shared with scan, which reads a snapshot
// of them without the lock: they are replaced (copy on write), never
// changed in place.
func (f *NetnsFinder) liveLocked(e *nsEntry) (*nsEntry, *Found) {
	if e.mount || procInode(e.path) == e.inode {
		return e, nil
	}
	next := maps.Clone(f.entries)
	defer func() { f.entries = next }()
	if p := f.procPathOf(e.inode); p != "" {
		f.log.Debug("netns process exited; another holds it", "inode", e.inode, "old", e.path, "new", p)
		moved := *e
		moved.path = p
		next[e.inode] = &moved
		return &moved, nil
	}
	delete(next, e.inode)
	f.Refresh()
	return nil, &Found{Code: ReasonNotFound, Reason: fmt.Sprintf("the processes of network namespace %d (%s) exited", e.inode, e.path)}
}

// Run implements Finder.
func (f *NetnsFinder) Run(ctx context.Context, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		f.log.Warn("no inotify watch of the netns directories; rescanning periodically only", "err", err)
	}
	watched := map[string]bool{}
	watch := func() {
		if w == nil {
			return
		}
		for _, d := range f.dirs() {
			if !watched[d] {
				if err := w.Add(d); err == nil {
					watched[d] = true
				}
			}
		}
	}
	var events <-chan fsnotify.Event
	var werrs <-chan error
	if w != nil {
		defer w.Close()
		events, werrs = w.Events, w.Errors
	}
	var last time.Time
	scan := func(full bool) bool {
		if wait := f.cfg.MinInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(wait):
			}
		}
		last = time.Now()
		ch, pending := f.scan(full)
		watch()
		if ch {
			changed()
		}
		return pending
	}
	pending := scan(true)
	f.synced.Store(true)
	changed()
	full := time.NewTicker(f.cfg.Rescan)
	defer full.Stop()
	var soon <-chan time.Time
	retries := 0
	if pending {
		soon = time.After(250 * time.Millisecond)
	}
	// The fast paths (finder_pods_linux.go): a file created in a netns
	// directory is looked at every 2ms until the runtime has mounted the
	// namespace on it; a new namespace's processes every HuntInterval
	// until one names its pod.
	fast := newIdleTicker(2 * time.Millisecond)
	defer fast.stop()
	hunt := newIdleTicker(f.cfg.HuntInterval)
	defer hunt.stop()
	for {
		var again bool
		fast.run(len(f.mounting) > 0)
		hunt.run(len(f.hunting) > 0)
		select {
		case <-ctx.Done():
			return nil
		case <-full.C:
			again = scan(true)
		case <-f.refresh:
			again = scan(false)
		case <-fast.c:
			if f.mounted() {
				changed()
			}
			continue
		case <-hunt.c:
			if f.hunt() {
				changed()
			}
			continue
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op&fsnotify.Create != 0 && !f.cfg.ByAddressOnly {
				f.mounting[ev.Name] = time.Now()
			}
			if ev.Op&(fsnotify.Create|fsnotify.Remove|fsnotify.Rename) != 0 && soon == nil {
				soon = time.After(50 * time.Millisecond)
			}
			continue
		case err, ok := <-werrs:
			if !ok {
				werrs = nil
				continue
			}
			f.log.Warn("inotify watch of the netns directories", "err", err)
			continue
		case <-soon:
			soon = nil
			again = scan(false)
		}
		// A file in a netns directory that is not mounted yet (the runtime
		// creates it, then bind-mounts the namespace on it): look again
		// shortly, a bounded number of times.
		if again && retries < 20 {
			retries++
			if soon == nil {
				soon = time.After(250 * time.Millisecond)
			}
		} else if !again {
			retries = 0
		}
	}
}

// dirs returns the configured directories that exist, resolved, each once.
func (f *NetnsFinder) dirs() []string {
	var out []string
	for _, d := range f.cfg.Dirs {
		r, err := filepath.EvalSymlinks(d)
		if err != nil || slices.Contains(out, r) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// scan lists the node's namespaces and reads their addresses (all of them
// when full; else the ones not settled), and reports whether anything Find
// answers from changed, and whether a netns directory holds a file not
// mounted yet.
func (f *NetnsFinder) scan(full bool) (changed, pending bool) {
	start := time.Now()
	skip := map[uint64]bool{}
	for _, p := range []string{"self", "1"} {
		if ino := procInode(filepath.Join(f.cfg.Proc, p, "ns", "net")); ino != 0 {
			skip[ino] = true
		}
	}
	paths := map[uint64]string{} // inode → bind mount path
	for _, d := range f.dirs() {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, ent := range ents {
			p := filepath.Join(d, ent.Name())
			var sfs unix.Statfs_t
			if err := unix.Statfs(p, &sfs); err != nil {
				continue
			}
			if sfs.Type != unix.NSFS_MAGIC {
				pending = true
				continue
			}
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil || skip[st.Ino] {
				continue
			}
			if _, ok := paths[st.Ino]; !ok {
				paths[st.Ino] = p
			}
		}
	}
	f.mu.Lock()
	old := f.entries
	settled := f.settled
	f.mu.Unlock()
	// The processes' cgroups are read for the namespaces whose pod is not
	// known yet (every one on a full scan).
	wantIdent := func(ino uint64) bool {
		if f.cfg.ByAddressOnly || skip[ino] {
			return false
		}
		o := old[ino]
		return full || o == nil || !o.ident.settled()
	}
	procs, idents := f.procNamespaces(func(ino uint64) bool { return skip[ino] || paths[ino] != "" }, old, wantIdent)
	next := make(map[uint64]*nsEntry, len(paths)+len(procs))
	now := time.Now()
	for ino, p := range paths {
		next[ino] = &nsEntry{nsInfo: nsInfo{inode: ino, path: p}, mount: true, cri: IsCRINetnsName(filepath.Base(p))}
	}
	for ino, p := range procs {
		next[ino] = &nsEntry{nsInfo: nsInfo{inode: ino, path: p}}
	}
	for ino, e := range next {
		e.seen = now
		if o := old[ino]; o != nil {
			e.seen = o.seen
			if !full && o.ident.settled() {
				e.ident = o.ident
			}
		}
		if id, ok := idents[ino]; ok {
			e.ident = *id
		}
		if o := old[ino]; o == nil && f.synced.Load() && !f.cfg.ByAddressOnly && !e.ident.settled() {
			f.hunting[ino] = now.Add(f.cfg.HuntFor)
		}
		if o := old[ino]; o != nil && !full && settled[ino] {
			e.addrs = o.addrs
			continue
		}
		addrs, err := netnsAddrs(e.path)
		if err != nil {
			// Gone between listing and reading (a process exited, a pod
			// was deleted): the next scan sees it no more.
			f.log.Debug("read netns addresses", "path", e.path, "err", err)
			delete(next, ino)
			continue
		}
		e.addrs = addrs
	}
	changed = len(next) != len(old)
	for ino, e := range next {
		o := old[ino]
		if o == nil || o.path != e.path || !slices.Equal(o.addrs, e.addrs) || o.ident.pod() != e.ident.pod() || o.ident.notPod() != e.ident.notPod() {
			changed = true
		}
	}
	for ino := range f.hunting {
		if next[ino] == nil {
			delete(f.hunting, ino)
		}
	}
	f.mu.Lock()
	f.entries = next
	f.mu.Unlock()
	f.namespaces.Set(float64(len(next)))
	f.scanSeconds.Observe(time.Since(start).Seconds())
	if changed {
		f.log.Debug("network namespaces changed", "count", len(next), "full", full, "took", time.Since(start))
	}
	return changed, pending
}

// procNamespaces returns the namespaces of running processes that known
// does not cover, each with one /proc/PID/ns/net path: the one old had if
// it still names the namespace, else the first process found; and, for
// the namespaces ident wants (nil: none), what their processes' cgroups
// say about their pod.
func (f *NetnsFinder) procNamespaces(known func(uint64) bool, old map[uint64]*nsEntry, ident func(uint64) bool) (map[uint64]string, map[uint64]*procIdentity) {
	ents, err := os.ReadDir(f.cfg.Proc)
	if err != nil {
		f.log.Warn("list processes", "err", err)
		return nil, nil
	}
	out := map[uint64]string{}
	keep := map[uint64]bool{}
	ids := map[uint64]*procIdentity{}
	for _, ent := range ents {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		p := filepath.Join(f.cfg.Proc, ent.Name(), "ns", "net")
		ino := procInode(p)
		if ino != 0 && ident != nil && ident(ino) {
			f.readIdentity(ids, ino, ent.Name())
		}
		if ino == 0 || known(ino) || keep[ino] {
			continue
		}
		if o := old[ino]; o != nil && o.path == p {
			out[ino], keep[ino] = p, true
			continue
		}
		if _, ok := out[ino]; !ok {
			out[ino] = p
		}
	}
	return out, ids
}

// procPathOf returns a /proc/PID/ns/net path of a process in namespace
// ino, or "" when no process is in it.
func (f *NetnsFinder) procPathOf(ino uint64) string {
	paths, _ := f.procNamespaces(func(i uint64) bool { return i != ino }, nil, nil)
	for ino2, p := range paths {
		if ino2 == ino {
			return p
		}
	}
	return ""
}

// procInode returns the namespace inode a /proc/PID/ns/net link names
// ("net:[4026531840]"), or 0.
func procInode(path string) uint64 {
	l, err := os.Readlink(path)
	if err != nil {
		return 0
	}
	s, ok := strings.CutPrefix(l, "net:[")
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// netnsAddrs reads the global unicast addresses of the namespace at path,
// sorted.
func netnsAddrs(path string) ([]netip.Addr, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer nl.Close()
	var addrs []netlink.Addr
	for range 3 { // a dump interrupted by a concurrent change is retried
		addrs, err = nl.AddrList(nil, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses in %s: %w", path, err)
	}
	var out []netip.Addr
	for _, ad := range addrs {
		if a, ok := netip.AddrFromSlice(ad.IP); ok && a.Unmap().IsGlobalUnicast() {
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}
