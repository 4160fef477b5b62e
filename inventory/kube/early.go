package kube

// A pod of this node found before its addresses are posted.
//
// kubelet posts a pod's addresses (status.podIPs) some time after the
// container runtime gave them, possibly after the pod's containers have
// started. Meanwhile the pod is waiting: a pod of this node, of the pod
// network, not ended, without addresses. With a PodFinder, List asks for
// the waiting pods by UID (the processes of a network namespace name the
// pod by their cgroup, finder_pods_linux.go) and lists each one found with
// the addresses its namespace holds, so its rules are programmed as soon
// as it runs; once the status arrives, the pod is listed with its posted
// addresses, found by them as any other.
//
// Never guessed: a pod found by UID must also be the one pod the
// namespace's addresses match (match.go), and a namespace whose processes
// are another pod's is not a pod's even when it holds the pod's posted
// addresses (an address reused by a new pod while the old pod's status
// still names it).

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// PendingPod is a pod of this node that has no network namespace yet in
// the last List: waiting for its addresses, or not found by them.
type PendingPod struct {
	Namespace string
	Name      string
	// UIDs are its identities in its processes' cgroups (podUIDs).
	UIDs   []string
	Labels map[string]string
	// Reason says why it has no namespace yet.
	Reason string
}

// earlyFound is a waiting pod found by UID: its entry with the addresses
// its namespace holds, and the namespace's inode.
type earlyFound struct {
	entry *podEntry
	inode uint64
}

// podFinder returns the finder as a PodFinder, nil when it is none or
// ByAddressOnly.
func (s *Source) podFinder() PodFinder {
	if s.cfg.ByAddressOnly {
		return nil
	}
	pf, _ := s.cfg.Finder.(PodFinder)
	return pf
}

// findEarly looks for the waiting pods by UID: it returns those found
// with addresses (by key), and the others as pending.
func (s *Source) findEarly(pf PodFinder, waiting []*podEntry) (map[string]earlyFound, []PendingPod) {
	early := map[string]earlyFound{}
	var pending []PendingPod
	if len(waiting) == 0 {
		return early, nil
	}
	if pf == nil {
		for _, e := range waiting {
			pending = append(pending, pendingOf(e, "no addresses posted yet"))
		}
		return early, pending
	}
	q := make(map[string][]string, len(waiting))
	byKey := make(map[string]*podEntry, len(waiting))
	for _, e := range waiting {
		q[e.ep.Netns] = e.uids
		byKey[e.ep.Netns] = e
	}
	found := pf.FindUIDs(q)
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		e, fd := byKey[key], found[key]
		switch {
		case fd.Reason != "":
			pending = append(pending, pendingOf(e, "no addresses posted yet; "+fd.Reason))
		case len(fd.Addrs) == 0:
			pending = append(pending, pendingOf(e, fmt.Sprintf("no addresses posted yet; its network namespace %s holds none yet", fd.Path)))
		default:
			c := *e
			c.ep.Addrs = fd.Addrs
			early[key] = earlyFound{entry: &c, inode: fd.Inode}
		}
	}
	return early, pending
}

// checkIdentity refuses a namespace found by a pod's addresses when the
// pod was found by its processes in another one (fe), or when the
// namespace's processes name another pod.
func checkIdentity(pf PodFinder, fd Found, uids []string, fe earlyFound) Found {
	if fd.Reason != "" {
		return fd
	}
	if fe.entry != nil && fd.Inode != fe.inode {
		return Found{Code: ReasonAmbiguous, Reason: fmt.Sprintf("the pod's processes are in network namespace %d but its addresses are in %s", fe.inode, fd.Path)}
	}
	if pf == nil {
		return fd
	}
	if u := pf.NetnsPod(fd.Inode); u != "" && !slices.Contains(uids, u) {
		return Found{Code: ReasonAmbiguous, Reason: fmt.Sprintf("network namespace %s holds the pod's addresses but its processes are in the cgroup of pod %s", fd.Path, u)}
	}
	return fd
}

func pendingOf(e *podEntry, reason string) PendingPod {
	return PendingPod{Namespace: e.ep.Namespace, Name: strings.TrimPrefix(e.ep.Netns, e.ep.Namespace+"_"),
		UIDs: e.uids, Labels: e.ep.Labels, Reason: reason}
}

// Pending returns the pods of this node the last List found no network
// namespace for (waiting for their addresses, or not found by them),
// sorted by namespace/name.
func (s *Source) Pending() []PendingPod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pending)
}

// Candidates returns the finder's namespaces that are, or may be, a
// pod's (PodFinder.Candidates); nil without a PodFinder or with
// ByAddressOnly.
func (s *Source) Candidates() []Candidate {
	if pf := s.podFinder(); pf != nil {
		return pf.Candidates()
	}
	return nil
}
