package kube

import (
	"context"
	"net/netip"
	"time"
)

// Finder finds the network namespaces of this node's pods. NetnsFinder
// (Linux) is the implementation; tests use fakes.
type Finder interface {
	// Find matches each pod (pod key → the pod's addresses; every address
	// belongs to exactly one pod) to the network namespace holding its
	// addresses. The answer has an entry for every pod: a Netns with
	// Reason "" when found, else Reason says why not. It never blocks on
	// a full scan.
	Find(pods map[string][]netip.Addr) map[string]Found
	// Refresh asks for a rescan soon (a pod of this node appeared, changed
	// its addresses, or was not found). Calls are coalesced; it never
	// blocks.
	Refresh()
	// Run keeps the finder's view of the node's namespaces current until
	// ctx ends, calling changed (which must not block) after every scan
	// that changed what Find may answer. It returns nil when ctx ends.
	Run(ctx context.Context, changed func()) error
	// HasSynced reports whether the first scan is done.
	HasSynced() bool
}

// Found is where one pod's network namespace is, or why it was not found.
type Found struct {
	// Path opens the namespace: a bind mount (/run/netns/NAME,
	// /var/run/netns/NAME) or /proc/PID/ns/net of a process in it.
	Path string
	// Inode is the namespace's nsfs inode, its identity.
	Inode uint64
	// Reason is empty when found; else why not (no namespace holds the
	// addresses, several do, one holds only some of them, or it holds the
	// addresses of several pods).
	Reason string
	// Code is Reason's kind, for metrics: "" when found, else one of
	// ReasonNotFound, ReasonPartial, ReasonAmbiguous.
	Code string
}

// The kinds of Found.Reason, the values of the reason label of
// nanoseg_node_pod_netns_unfound.
const (
	// ReasonNotFound: no namespace of the node holds any of the pod's
	// addresses (not created yet, or already gone).
	ReasonNotFound = "not_found"
	// ReasonPartial: a namespace holds some of the pod's addresses but not
	// all (for example only its IPv4 address so far).
	ReasonPartial = "partial"
	// ReasonAmbiguous: several namespaces hold the pod's addresses, or the
	// namespace holding them also holds another pod's.
	ReasonAmbiguous = "ambiguous"
)

// PodFinder is a Finder that also knows which pod each network namespace
// belongs to by its processes' cgroups (cgroup.go), so a pod is found
// before kubelet posts its addresses, and which namespaces are, or may
// be, a pod's not identified yet. NetnsFinder implements it on Linux.
type PodFinder interface {
	Finder
	// FindUIDs matches each pod (pod key → its identities: the pod's UID,
	// and a mirror pod's static pod hash) to the one network namespace
	// whose processes' cgroups name one of them and no other pod, with
	// the addresses the namespace holds. Like Find, the answer has an
	// entry for every pod, never guessed.
	FindUIDs(pods map[string][]string) map[string]PodNetns
	// NetnsPod returns the pod UID the processes of namespace inode name
	// ("" when none does, they disagree, or inode is unknown).
	NetnsPod(inode uint64) string
	// Candidates returns the namespaces that are, or may be, a pod's: a
	// bind mount named as containerd's CRI names pod sandboxes
	// (IsCRINetnsName), or one whose processes are in a kubepods cgroup;
	// never one whose processes are all outside kubepods. Sorted by inode.
	Candidates() []Candidate
}

// PodNetns is where a pod found by UID is, with its namespace's
// addresses (global unicast, sorted); Found.Reason says why not.
type PodNetns struct {
	Found
	Addrs []netip.Addr
}

// Candidate is a network namespace that is, or may be, a pod's.
type Candidate struct {
	Path  string
	Inode uint64
	// CRI says the namespace is a bind mount named as containerd's CRI
	// names pod sandboxes.
	CRI bool
	// UID is the pod UID its processes' cgroups name ("" when no process
	// runs in it yet, or they name none or several).
	UID string
	// Since is when the finder first saw the namespace.
	Since time.Time
	// Addrs are the addresses it held at the last look.
	Addrs []netip.Addr
}
