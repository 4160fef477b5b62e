//go:build linux

package kube

// Finding a new pod before kubelet posts its addresses.
//
// Design: a pod's network namespace exists, with its addresses, before
// any container of the pod runs: containerd's CRI plugin creates it (a
// file "cni-<uuid>" under /var/run/netns, then a bind mount of a new
// namespace on it), has the CNI plugin give it its addresses, and only
// then starts the sandbox (pause) process in it, in the pod's cgroup;
// kubelet starts the pod's containers after that, and posts
// status.podIPs when its status loop gets to it, which may be after the
// containers have started (and connected). So the finder:
//   - sees the namespace within milliseconds of its mount: an inotify
//     Create in a netns directory is followed by a statfs every 2ms until
//     the file is an nsfs mount (mounted), instead of waiting for the
//     next scan;
//   - hunts for its first process: every HuntInterval it walks /proc for
//     processes of the new namespaces and reads their cgroups
//     (cgroup.go), until one names the pod (then it reads the
//     namespace's addresses once more) or HuntFor has passed;
//   - answers FindUIDs (pod UID → namespace and addresses), NetnsPod
//     (namespace → pod UID, so a namespace holding a pod's addresses but
//     whose processes are another pod's is never that pod's) and
//     Candidates (namespaces that are or may be a pod's, for the node
//     agent's fail-closed placeholder).
//
// A namespace counts as a pod's by a kubepods cgroup of its processes, or,
// before any process runs in it, by containerd's CRI name; a CRI-named
// namespace is never ruled out by a process outside kubepods (the CNI
// plugin and runc's init enter it briefly before the sandbox starts).
// Anything the processes do not say clearly (no pod segment, several pods)
// identifies nothing.
//
// Sources: containerd 1.6 pkg/cri/server/sandbox_run.go (netns, then CNI
// setup, then the sandbox task) and pkg/netns (cni-<uuid> bind mounts),
// kubelet's pod cgroups (cgroup.go), inotify(7), statfs(2), proc(5).

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

var _ PodFinder = (*NetnsFinder)(nil)

// procIdentity is what the processes of one namespace say about its pod.
type procIdentity struct {
	procs    int      // processes looked at
	kubepods bool     // one of them is in a kubepods cgroup
	uids     []string // the pod UIDs their cgroups name, sorted, distinct
}

func (p *procIdentity) add(c CgroupPod) {
	p.procs++
	if !c.Kubepods {
		return
	}
	p.kubepods = true
	if c.UID != "" && !slices.Contains(p.uids, c.UID) {
		p.uids = append(p.uids, c.UID)
		slices.Sort(p.uids)
	}
}

// pod returns the one pod UID the processes name, "" for none or several.
func (p procIdentity) pod() string {
	if len(p.uids) == 1 {
		return p.uids[0]
	}
	return ""
}

// notPod reports whether processes run in the namespace and none is a
// pod's.
func (p procIdentity) notPod() bool { return p.procs > 0 && !p.kubepods }

// settled reports whether the processes named a pod (or several): that
// does not change while the namespace lives, so its cgroups are read
// again only on a full scan.
func (p procIdentity) settled() bool { return len(p.uids) > 0 }

// readIdentity adds what process pid's cgroup says to ids[ino].
func (f *NetnsFinder) readIdentity(ids map[uint64]*procIdentity, ino uint64, pid string) {
	b, err := os.ReadFile(filepath.Join(f.cfg.Proc, pid, "cgroup"))
	if err != nil {
		return // exited
	}
	id := ids[ino]
	if id == nil {
		id = &procIdentity{}
		ids[ino] = id
	}
	id.add(PodOfCgroup(string(b)))
}

// hostInodes returns the namespaces of this process and of PID 1: the
// node's, never a pod's.
func (f *NetnsFinder) hostInodes() map[uint64]bool {
	skip := map[uint64]bool{}
	for _, p := range []string{"self", "1"} {
		if ino := procInode(filepath.Join(f.cfg.Proc, p, "ns", "net")); ino != 0 {
			skip[ino] = true
		}
	}
	return skip
}

// mounted looks at the files created in the netns directories that were
// not mounted yet: each one now mounted becomes an entry at once (with the
// addresses it holds, usually none yet) and is hunted. Files not mounted
// within a second are left to the scans. It reports whether an entry was
// added. Run's goroutine only.
func (f *NetnsFinder) mounted() bool {
	added := false
	var skip map[uint64]bool
	now := time.Now()
	for p, since := range f.mounting {
		var sfs unix.Statfs_t
		if err := unix.Statfs(p, &sfs); err != nil || sfs.Type != unix.NSFS_MAGIC {
			if err != nil || now.Sub(since) > time.Second {
				delete(f.mounting, p)
			}
			continue
		}
		delete(f.mounting, p)
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		if skip == nil {
			skip = f.hostInodes()
		}
		if skip[st.Ino] {
			continue
		}
		e := &nsEntry{nsInfo: nsInfo{inode: st.Ino, path: p}, mount: true, cri: IsCRINetnsName(filepath.Base(p)), seen: now}
		if addrs, err := netnsAddrs(p); err == nil {
			e.addrs = addrs
		}
		f.mu.Lock()
		if o := f.entries[st.Ino]; o == nil {
			f.entries[st.Ino] = e
			added = true
		} else if !o.mount {
			o.path, o.mount, o.cri = p, true, e.cri
		}
		f.mu.Unlock()
		if added {
			f.hunting[st.Ino] = now.Add(f.cfg.HuntFor)
			f.log.Debug("network namespace mounted", "path", p, "inode", st.Ino, "addrs", e.addrs)
		}
	}
	return added
}

// hunt walks the processes once for those of the hunted namespaces and
// reads their cgroups. A namespace whose processes name its pod gets its
// addresses read again and leaves the hunt once it has some; one that is
// not CRI-named and whose processes are all outside kubepods leaves it
// too (the scans keep looking). It reports whether an entry changed.
// Run's goroutine only.
func (f *NetnsFinder) hunt() bool {
	now := time.Now()
	for ino, until := range f.hunting {
		if now.After(until) {
			delete(f.hunting, ino)
		}
	}
	if len(f.hunting) == 0 {
		return false
	}
	ents, err := os.ReadDir(f.cfg.Proc)
	if err != nil {
		return false
	}
	ids := map[uint64]*procIdentity{}
	for _, ent := range ents {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		ino := procInode(filepath.Join(f.cfg.Proc, ent.Name(), "ns", "net"))
		if _, ok := f.hunting[ino]; ok && ino != 0 {
			f.readIdentity(ids, ino, ent.Name())
		}
	}
	changed := false
	f.mu.Lock()
	defer f.mu.Unlock()
	for ino := range f.hunting {
		e := f.entries[ino]
		if e == nil {
			delete(f.hunting, ino)
			continue
		}
		id := ids[ino]
		if id == nil {
			continue // no process yet
		}
		if id.pod() != e.ident.pod() || id.notPod() != e.ident.notPod() || id.kubepods != e.ident.kubepods {
			changed = true
		}
		e.ident = *id
		switch {
		case id.pod() != "":
			addrs, err := netnsAddrs(e.path)
			if err != nil {
				continue
			}
			if !slices.Equal(addrs, e.addrs) {
				e.addrs, changed = addrs, true
			}
			if len(addrs) > 0 {
				delete(f.hunting, ino)
				f.log.Debug("network namespace identified by its processes", "path", e.path, "pod", id.pod(), "addrs", addrs, "after", now.Sub(e.seen))
			}
		case !e.cri && id.notPod():
			delete(f.hunting, ino)
		}
	}
	return changed
}

// FindUIDs implements PodFinder.
func (f *NetnsFinder) FindUIDs(pods map[string][]string) map[string]PodNetns {
	f.mu.Lock()
	defer f.mu.Unlock()
	byUID := map[string][]*nsEntry{}
	for _, e := range f.entries {
		if u := e.ident.pod(); u != "" {
			byUID[u] = append(byUID[u], e)
		}
	}
	out := make(map[string]PodNetns, len(pods))
	for key, uids := range pods {
		var cands []*nsEntry
		for _, u := range uids {
			for _, e := range byUID[u] {
				if !slices.Contains(cands, e) {
					cands = append(cands, e)
				}
			}
		}
		switch len(cands) {
		case 0:
			out[key] = PodNetns{Found: Found{Code: ReasonNotFound, Reason: fmt.Sprintf("no process of a network namespace of this node is in the cgroup of pod %s", strings.Join(uids, ", "))}}
		case 1:
			e, gone := f.liveLocked(cands[0])
			if gone != nil {
				out[key] = PodNetns{Found: *gone}
				continue
			}
			out[key] = PodNetns{Found: Found{Path: e.path, Inode: e.inode}, Addrs: slices.Clone(e.addrs)}
		default:
			paths := make([]string, len(cands))
			for i, e := range cands {
				paths[i] = e.path
			}
			slices.Sort(paths)
			out[key] = PodNetns{Found: Found{Code: ReasonAmbiguous, Reason: fmt.Sprintf("the processes of %d network namespaces are in the cgroup of the pod (%s)", len(cands), strings.Join(paths, ", "))}}
		}
	}
	return out
}

// NetnsPod implements PodFinder.
func (f *NetnsFinder) NetnsPod(inode uint64) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.entries[inode]; e != nil {
		return e.ident.pod()
	}
	return ""
}

// Candidates implements PodFinder.
func (f *NetnsFinder) Candidates() []Candidate {
	if f.cfg.ByAddressOnly {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Candidate
	for _, ino := range slices.Sorted(maps.Keys(f.entries)) {
		e := f.entries[ino]
		if !e.cri && !e.ident.kubepods {
			continue
		}
		out = append(out, Candidate{Path: e.path, Inode: e.inode, CRI: e.cri, UID: e.ident.pod(), Since: e.seen, Addrs: slices.Clone(e.addrs)})
	}
	return out
}

// idleTicker is a ticker that runs only while there is work: its channel
// is nil otherwise, so a select never wakes for it.
type idleTicker struct {
	d time.Duration
	t *time.Ticker
	c <-chan time.Time
}

func newIdleTicker(d time.Duration) *idleTicker { return &idleTicker{d: cmp.Or(d, time.Millisecond)} }

// run starts the ticker when on and it is stopped, and stops it when not.
func (t *idleTicker) run(on bool) {
	switch {
	case on && t.t == nil:
		t.t = time.NewTicker(t.d)
		t.c = t.t.C
	case !on && t.t != nil:
		t.stop()
	}
}

func (t *idleTicker) stop() {
	if t.t != nil {
		t.t.Stop()
	}
	t.t, t.c = nil, nil
}
