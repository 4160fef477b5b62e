package policies

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nanoseg/nanoseg/model"
)

// Namespace is a namespace of the world with its labels. The API server adds
// kubernetes.io/metadata.name=<name> to every namespace; a World should too.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Pod is one pod (or container endpoint) of the world.
type Pod struct {
	Namespace   string
	Name        string
	Labels      map[string]string
	IPs         []netip.Addr
	Phase       corev1.PodPhase // empty means Running
	HostNetwork bool
	Ports       []model.ContainerPort
	// Node is the node the pod runs on (spec.nodeName); empty when unknown.
	Node string
}

// Node is one node of the world: its name, labels and addresses (the
// addresses of its status). ClusterNetworkPolicy nodes peers select nodes
// by their labels and match their addresses
// (https://network-policy-api.sigs.k8s.io/reference/spec/, egress peer
// nodes).
type Node struct {
	Name   string
	Labels map[string]string
	IPs    []netip.Addr
}

// Key returns "namespace/name".
func (p Pod) Key() string { return p.Namespace + "/" + p.Name }

// Participates reports whether the pod takes part in NetworkPolicy selection:
// pods that finished (phase Succeeded or Failed) or that run on the host
// network are neither selected by policies nor matched by pod or namespace
// selectors; their addresses are then only addresses (ipBlock may match them).
// Source: https://kubernetes.io/docs/concepts/services-networking/network-policies/
// ("Pod lifecycle", "hostNetwork pods").
func (p Pod) Participates() bool {
	return !p.HostNetwork && p.Phase != corev1.PodSucceeded && p.Phase != corev1.PodFailed
}

// World is what evaluation needs to know about the cluster: namespaces with
// labels and pods with labels, addresses, phase, host networking and named
// container ports. The controller's inventory implements it; MemWorld is an
// in-memory implementation. A World may also implement Resolver.
type World interface {
	// Namespace returns the named namespace; ok is false when it does not exist.
	Namespace(name string) (ns Namespace, ok bool)
	// Namespaces returns every namespace, sorted by name.
	Namespaces() []Namespace
	// Pod returns the pod namespace/name; ok is false when it does not exist.
	Pod(namespace, name string) (pod Pod, ok bool)
	// PodByIP returns the pod holding addr, preferring one that
	// participates in selection; ok is false when no pod holds it.
	PodByIP(addr netip.Addr) (pod Pod, ok bool)
	// Pods returns every pod, sorted by namespace and name.
	Pods() []Pod
}

// NodeLister is an optional part of a World: the nodes, for the nodes peers
// of ClusterNetworkPolicies. A World without it has no nodes, and such a
// peer matches nothing.
type NodeLister interface {
	// Nodes returns every node, sorted by name.
	Nodes() []Node
}

// Resolver is an optional part of a World: what it knows about addresses
// outside the pod network, for DNS-name and host peers.
type Resolver interface {
	// NamesOf returns the DNS names addr was resolved from (lower case, no
	// trailing dot).
	NamesOf(addr netip.Addr) []string
	// IsHost reports whether addr belongs to a node.
	IsHost(addr netip.Addr) bool
}

// MemWorld is an in-memory World, used by case files, the CLI and tests. The
// zero value is empty and usable; it is not safe for concurrent mutation.
type MemWorld struct {
	namespaces map[string]Namespace
	pods       map[string]Pod // by namespace/name
	names      map[netip.Addr][]string
	hosts      map[netip.Addr]bool
	nodes      map[string]Node
}

// NewMemWorld returns a world holding namespaces and pods. A pod's namespace
// must exist. It returns an error naming the first duplicate or dangling
// object.
func NewMemWorld(namespaces []Namespace, pods []Pod) (*MemWorld, error) {
	w := &MemWorld{}
	for _, ns := range namespaces {
		if err := w.AddNamespace(ns); err != nil {
			return nil, err
		}
	}
	for _, p := range pods {
		if err := w.AddPod(p); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (w *MemWorld) init() {
	if w.namespaces == nil {
		w.namespaces = map[string]Namespace{}
		w.pods = map[string]Pod{}
		w.names = map[netip.Addr][]string{}
		w.hosts = map[netip.Addr]bool{}
		w.nodes = map[string]Node{}
	}
}

// AddNode adds node n; its addresses become host addresses (AddHost). It
// fails if a node of that name exists.
func (w *MemWorld) AddNode(n Node) error {
	w.init()
	if _, ok := w.nodes[n.Name]; ok {
		return fmt.Errorf("add node %s: %w", n.Name, ErrExists)
	}
	n.Labels = maps.Clone(n.Labels)
	n.IPs = slices.Clone(n.IPs)
	w.nodes[n.Name] = n
	for _, a := range n.IPs {
		w.hosts[a] = true
	}
	return nil
}

// Nodes implements NodeLister.
func (w *MemWorld) Nodes() []Node {
	if len(w.nodes) == 0 {
		return nil
	}
	out := slices.Collect(maps.Values(w.nodes))
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// AddNamespace adds ns; it fails if a namespace of that name exists.
func (w *MemWorld) AddNamespace(ns Namespace) error {
	w.init()
	if _, ok := w.namespaces[ns.Name]; ok {
		return fmt.Errorf("add namespace %s: %w", ns.Name, ErrExists)
	}
	ns.Labels = maps.Clone(ns.Labels)
	w.namespaces[ns.Name] = ns
	return nil
}

// SetNamespaceLabels replaces the labels of namespace name.
func (w *MemWorld) SetNamespaceLabels(name string, labels map[string]string) error {
	w.init()
	ns, ok := w.namespaces[name]
	if !ok {
		return fmt.Errorf("set labels of namespace %s: %w", name, ErrNotFound)
	}
	ns.Labels = maps.Clone(labels)
	w.namespaces[name] = ns
	return nil
}

// DeleteNamespace removes namespace name and its pods.
func (w *MemWorld) DeleteNamespace(name string) error {
	w.init()
	if _, ok := w.namespaces[name]; !ok {
		return fmt.Errorf("delete namespace %s: %w", name, ErrNotFound)
	}
	delete(w.namespaces, name)
	for k, p := range w.pods {
		if p.Namespace == name {
			delete(w.pods, k)
		}
	}
	return nil
}

// AddPod adds p; its namespace must exist and its name be new.
func (w *MemWorld) AddPod(p Pod) error {
	w.init()
	if _, ok := w.namespaces[p.Namespace]; !ok {
		return fmt.Errorf("add pod %s: namespace %s: %w", p.Key(), p.Namespace, ErrNotFound)
	}
	if _, ok := w.pods[p.Key()]; ok {
		return fmt.Errorf("add pod %s: %w", p.Key(), ErrExists)
	}
	p.Labels = maps.Clone(p.Labels)
	w.pods[p.Key()] = p
	return nil
}

// SetPodLabels replaces the labels of pod namespace/name.
func (w *MemWorld) SetPodLabels(key string, labels map[string]string) error {
	w.init()
	p, ok := w.pods[key]
	if !ok {
		return fmt.Errorf("set labels of pod %s: %w", key, ErrNotFound)
	}
	p.Labels = maps.Clone(labels)
	w.pods[key] = p
	return nil
}

// DeletePod removes pod namespace/name.
func (w *MemWorld) DeletePod(key string) error {
	w.init()
	if _, ok := w.pods[key]; !ok {
		return fmt.Errorf("delete pod %s: %w", key, ErrNotFound)
	}
	delete(w.pods, key)
	return nil
}

// AddName records that addr was resolved from the DNS name name.
func (w *MemWorld) AddName(addr netip.Addr, name string) {
	w.init()
	w.names[addr] = append(w.names[addr], normalizeDNS(name))
}

// AddHost records that addr belongs to a node.
func (w *MemWorld) AddHost(addr netip.Addr) {
	w.init()
	w.hosts[addr] = true
}

// Namespace implements World.
func (w *MemWorld) Namespace(name string) (Namespace, bool) {
	ns, ok := w.namespaces[name]
	return ns, ok
}

// Namespaces implements World.
func (w *MemWorld) Namespaces() []Namespace {
	out := slices.Collect(maps.Values(w.namespaces))
	slices.SortFunc(out, func(a, b Namespace) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Pod implements World.
func (w *MemWorld) Pod(namespace, name string) (Pod, bool) {
	p, ok := w.pods[namespace+"/"+name]
	return p, ok
}

// PodByIP implements World.
func (w *MemWorld) PodByIP(addr netip.Addr) (Pod, bool) {
	var found Pod
	ok := false
	for _, p := range w.Pods() {
		if slices.Contains(p.IPs, addr) {
			if p.Participates() {
				return p, true
			}
			if !ok {
				found, ok = p, true
			}
		}
	}
	return found, ok
}

// Pods implements World.
func (w *MemWorld) Pods() []Pod {
	out := slices.Collect(maps.Values(w.pods))
	slices.SortFunc(out, func(a, b Pod) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}

// NamesOf implements Resolver.
func (w *MemWorld) NamesOf(addr netip.Addr) []string { return w.names[addr] }

// IsHost implements Resolver.
func (w *MemWorld) IsHost(addr netip.Addr) bool { return w.hosts[addr] }

func normalizeDNS(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// MatchDNSName reports whether name matches pattern: equal ignoring case and
// a trailing dot, or, for a pattern "*.suffix", name is exactly one DNS label
// followed by ".suffix".
func MatchDNSName(pattern, name string) bool {
	pattern, name = normalizeDNS(pattern), normalizeDNS(name)
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		label, tail, found := strings.Cut(name, ".")
		return found && label != "" && tail == rest
	}
	return pattern == name
}

func labelSet(m map[string]string) labels.Set { return labels.Set(m) }
