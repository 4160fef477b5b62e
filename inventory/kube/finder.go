package kube

import (
	"context"
	"net/netip"
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
