package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/model"
)

// NetnsKey returns the endpoint key (model.Endpoint.Netns) of pod name in
// namespace ns: "<namespace>_<name>" ("_" occurs in no Kubernetes name, so
// the key is unambiguous and never a pod's own name).
func NetnsKey(ns, name string) string { return ns + "_" + name }

// podTemplateHashLabel is the label the Deployment controller puts on the
// pods of a ReplicaSet, and the suffix of the ReplicaSet's name.
const podTemplateHashLabel = "pod-template-hash"

// Workload returns the workload a pod belongs to, by its controller owner
// reference (metav1.GetControllerOf): a ReplicaSet named
// "<D>-<the pod's pod-template-hash label>" is Deployment D's, so the
// workload is D; any other controller (StatefulSet, DaemonSet, Job,
// ReplicationController, a ReplicaSet without that name) is the workload
// itself; a pod without a controller is its own workload.
func Workload(p *corev1.Pod) string {
	c := metav1.GetControllerOfNoCopy(p)
	if c == nil {
		return p.Name
	}
	if c.Kind == "ReplicaSet" {
		if h := p.Labels[podTemplateHashLabel]; h != "" {
			if d, ok := strings.CutSuffix(c.Name, "-"+h); ok && d != "" {
				return d
			}
		}
	}
	return c.Name
}

// podEntry is one pod as the source keeps it between events: its
// endpoint without Path and NetnsInode, and what conflicts and locality
// are decided by.
type podEntry struct {
	ep      model.Endpoint
	node    string
	created time.Time
	// uids are the pod's identities in the cgroups of its processes: its
	// UID, and a mirror pod's static pod hash (MirrorAnnotation).
	uids []string
}

// MirrorAnnotation is the annotation kubelet puts on the mirror pod of a
// static pod: its value is the static pod's UID (a config hash), which
// names the pod's cgroup, while the mirror pod has a UID of its own.
const MirrorAnnotation = "kubernetes.io/config.mirror"

// podUIDs returns the identities of p in its processes' cgroups.
func podUIDs(p *corev1.Pod) []string {
	var out []string
	if p.UID != "" {
		out = append(out, string(p.UID))
	}
	if h := p.Annotations[MirrorAnnotation]; h != "" && h != string(p.UID) {
		out = append(out, h)
	}
	return out
}

// newer reports whether a wins an address both claim: the later
// creationTimestamp, then the greater key.
func (a *podEntry) newer(b *podEntry) bool {
	if !a.created.Equal(b.created) {
		return a.created.After(b.created)
	}
	return a.ep.Netns > b.ep.Netns
}

// podEndpoint returns the entry of pod p and whether p counts as an
// endpoint: a pod of the pod network (hostNetwork pods are the node
// itself: they share the node's addresses and namespace, and policies
// never select them as pods), not Succeeded or Failed, with addresses
// (status.podIPs, else status.podIP). A pod being deleted still counts:
// its namespace lives until it is gone. Unparsable addresses are left out
// and reported in bad. A pod of the pod network, not ended, without
// addresses yet has an entry without addresses and ok false: it counts
// once its addresses are known (from its status, or, for a pod of this
// node, from its network namespace, found by its processes).
func podEndpoint(p *corev1.Pod) (e *podEntry, ok bool, bad []string) {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil, false, nil
	}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	var addrs []netip.Addr
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip.IP)
		if err != nil || a.Zone() != "" {
			bad = append(bad, ip.IP)
			continue
		}
		if a = a.Unmap(); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	var ports []model.ContainerPort
	for _, cp := range declaredPorts(p) {
		proto := model.ProtocolTCP
		if cp.Protocol != "" {
			if q, err := model.ParseProtocol(string(cp.Protocol)); err == nil {
				proto = q
			} else {
				proto = model.Protocol(cp.Protocol)
			}
		}
		ports = append(ports, model.ContainerPort{Name: cp.Name, Port: cp.ContainerPort, Protocol: proto})
	}
	return &podEntry{
		ep: model.Endpoint{
			Netns:     NetnsKey(p.Namespace, p.Name),
			Namespace: p.Namespace,
			Workload:  Workload(p),
			Labels:    p.Labels,
			Addrs:     addrs,
			Ports:     ports,
		},
		node:    p.Spec.NodeName,
		created: p.CreationTimestamp.Time,
		uids:    podUIDs(p),
	}, len(addrs) > 0, bad
}

// declaredPorts returns the ports the pod's containers declare: its
// containers' and its restartable init containers' (sidecars, which run
// beside the containers), in that order.
func declaredPorts(p *corev1.Pod) []corev1.ContainerPort {
	var ports []corev1.ContainerPort
	for _, c := range p.Spec.Containers {
		ports = append(ports, c.Ports...)
	}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			ports = append(ports, c.Ports...)
		}
	}
	return ports
}

// sameEndpoint reports whether a and b list the same endpoint.
func sameEndpoint(a, b *podEntry) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.node == b.node && a.created.Equal(b.created) && a.ep.Netns == b.ep.Netns && a.ep.Workload == b.ep.Workload &&
		slices.Equal(a.ep.Addrs, b.ep.Addrs) && slices.Equal(a.ep.Ports, b.ep.Ports) && mapsEqual(a.ep.Labels, b.ep.Labels)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// conflict is one address two pods claim: the newer keeps it.
type conflict struct {
	addr          netip.Addr
	winner, loser string // endpoint keys
}

func (c conflict) String() string {
	return fmt.Sprintf("%s: %s (newer) over %s", c.addr, c.winner, c.loser)
}

// resolveAddrs gives each address to one pod: when several claim it (an
// address reused while the old pod's status is still there), the newest
// pod keeps it and the others lose it. It returns the endpoints with their
// addresses (a pod left with none is no endpoint), in entries' order, and
// the conflicts.
func resolveAddrs(entries []*podEntry) ([]*podEntry, []conflict) {
	owner := make(map[netip.Addr]*podEntry, len(entries))
	var conflicts []conflict
	for _, e := range entries {
		for _, a := range e.ep.Addrs {
			cur, ok := owner[a]
			if !ok {
				owner[a] = e
				continue
			}
			if e.newer(cur) {
				owner[a] = e
				conflicts = append(conflicts, conflict{a, e.ep.Netns, cur.ep.Netns})
			} else {
				conflicts = append(conflicts, conflict{a, cur.ep.Netns, e.ep.Netns})
			}
		}
	}
	if len(conflicts) == 0 {
		return entries, nil
	}
	out := make([]*podEntry, 0, len(entries))
	for _, e := range entries {
		keep := true
		for _, a := range e.ep.Addrs {
			if owner[a] != e {
				keep = false
			}
		}
		if keep {
			out = append(out, e)
			continue
		}
		var addrs []netip.Addr
		for _, a := range e.ep.Addrs {
			if owner[a] == e {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		c := *e
		c.ep.Addrs = addrs
		out = append(out, &c)
	}
	// A chain (a over b, then c over a) leaves the middle loser listed
	// against a pod that lost the address too: name the final owner.
	for i := range conflicts {
		conflicts[i].winner = owner[conflicts[i].addr].ep.Netns
	}
	slices.SortFunc(conflicts, func(a, b conflict) int { return strings.Compare(a.String(), b.String()) })
	conflicts = slices.CompactFunc(conflicts, func(a, b conflict) bool { return a == b })
	return out, conflicts
}
