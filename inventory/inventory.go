package inventory

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// Pod returns endpoint e as a running pod of policy evaluation and
// compilation: named by its netns, so its key is "namespace/netns".
func Pod(e model.Endpoint) policies.Pod {
	return policies.Pod{Namespace: e.Namespace, Name: e.Netns, Labels: e.Labels, IPs: e.Addrs, Ports: e.Ports}
}

// Index is the set of endpoints and namespaces one node knows, from its
// sources, indexed by address: the address → identity lookup of the
// observer and the world of policy evaluation. Safe for concurrent use.
type Index struct {
	mu         sync.RWMutex
	endpoints  map[string]model.Endpoint // by netns
	byAddr     map[netip.Addr]model.Endpoint
	namespaces map[string]map[string]string
	nodes      []policies.Node       // sorted by name
	externals  map[netip.Addr]string // lab externals: address → DNS name
	services   []model.Service       // Services in front of endpoints, sorted by key
}

// NewIndex returns an index holding endpoints and namespaces
// (namespace name → labels).
func NewIndex(eps []model.Endpoint, namespaces map[string]map[string]string, externals map[netip.Addr]string) *Index {
	inv := &Index{}
	inv.Replace(eps, namespaces, externals)
	return inv
}

// Replace swaps the inventory's contents and returns the netns names of
// endpoints added and removed. A netns name whose namespace changed (another
// NetnsInode) is in both lists: removed, then added.
func (inv *Index) Replace(eps []model.Endpoint, namespaces map[string]map[string]string, externals map[netip.Addr]string) (added, removed []string) {
	m := map[string]model.Endpoint{}
	byAddr := map[netip.Addr]model.Endpoint{}
	for _, e := range eps {
		m[e.Netns] = e
		for _, a := range e.Addrs {
			byAddr[a] = e
		}
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for n, e := range m {
		if old, ok := inv.endpoints[n]; !ok || old.NetnsInode != e.NetnsInode {
			added = append(added, n)
		}
	}
	for n, old := range inv.endpoints {
		if e, ok := m[n]; !ok || old.NetnsInode != e.NetnsInode {
			removed = append(removed, n)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	inv.endpoints, inv.byAddr, inv.namespaces, inv.externals = m, byAddr, namespaces, externals
	return added, removed
}

// SetServices replaces the Services (virtual addresses in front of
// endpoints) and reports whether they changed. The index keeps svcs'
// ports and backends: a snapshot is never modified once handed over.
func (inv *Index) SetServices(svcs []model.Service) bool {
	svcs = slices.Clone(svcs)
	slices.SortFunc(svcs, func(a, b model.Service) int { return strings.Compare(a.Key(), b.Key()) })
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if reflect.DeepEqual(inv.services, svcs) || (len(inv.services) == 0 && len(svcs) == 0) {
		return false
	}
	inv.services = svcs
	return true
}

// Services returns the Services, sorted by key ("namespace/name"); the
// caller must not modify them.
func (inv *Index) Services() []model.Service {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.services
}

// Endpoints returns every endpoint, sorted by netns name.
func (inv *Index) Endpoints() []model.Endpoint {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := make([]model.Endpoint, 0, len(inv.endpoints))
	for _, e := range inv.endpoints {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Netns < out[j].Netns })
	return out
}

// Endpoint returns the endpoint of netns name and whether it is known.
func (inv *Index) Endpoint(netns string) (model.Endpoint, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	e, ok := inv.endpoints[netns]
	return e, ok
}

// Namespaces returns a copy of the namespaces (name → labels).
func (inv *Index) Namespaces() map[string]map[string]string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := make(map[string]map[string]string, len(inv.namespaces))
	for n, l := range inv.namespaces {
		out[n] = maps.Clone(l)
	}
	return out
}

// Workload returns the endpoints of workload key "namespace/workload".
func (inv *Index) Workload(key string) []model.Endpoint {
	// Called once per workload by status and captures: no copy and sort of
	// every endpoint, no key built per endpoint.
	ns, w, ok := strings.Cut(key, "/")
	if !ok {
		return nil
	}
	inv.mu.RLock()
	var out []model.Endpoint
	for _, e := range inv.endpoints {
		if e.Namespace == ns && e.Workload == w {
			out = append(out, e)
		}
	}
	inv.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Netns < out[j].Netns })
	return out
}

// Workloads returns the workload keys, sorted.
func (inv *Index) Workloads() []string {
	seen := map[string]bool{}
	for _, e := range inv.Endpoints() {
		seen[e.Key()] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Lookup resolves addr to its workload identity (observer.Inventory).
func (inv *Index) Lookup(addr netip.Addr) (model.Identity, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	e, ok := inv.byAddr[addr.Unmap()]
	if !ok {
		return model.Identity{}, false
	}
	return model.Identity{Namespace: e.Namespace, Workload: e.Workload, Labels: model.IdentityLabels(e.Labels)}, true
}

// Externals returns the lab's external addresses with their DNS names.
func (inv *Index) Externals() map[netip.Addr]string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := make(map[netip.Addr]string, len(inv.externals))
	for a, n := range inv.externals {
		out[a] = n
	}
	return out
}

// SetNodes replaces the nodes (labels and addresses, for the nodes peers
// of ClusterNetworkPolicies) and reports whether they changed. The index
// keeps nodes: a snapshot is never modified once handed over.
func (inv *Index) SetNodes(nodes []policies.Node) bool {
	if len(nodes) == 0 {
		nodes = nil
	}
	nodes = slices.Clone(nodes)
	slices.SortFunc(nodes, func(a, b policies.Node) int { return strings.Compare(a.Name, b.Name) })
	inv.mu.Lock()
	defer inv.mu.Unlock()
	same := slices.EqualFunc(inv.nodes, nodes, func(a, b policies.Node) bool {
		return a.Name == b.Name && maps.Equal(a.Labels, b.Labels) && slices.Equal(a.IPs, b.IPs)
	})
	inv.nodes = nodes
	return !same
}

// Nodes returns the nodes of the last SetNodes, sorted by name; the
// caller must not modify them.
func (inv *Index) Nodes() []policies.Node {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.nodes
}

// World returns the inventory as a policies world: its namespaces and one
// running pod per endpoint (pod name = netns name), its nodes (SetNodes;
// their addresses are host addresses), with the DNS names in
// names (address → names, may be nil) attached for DNS peers.
func (inv *Index) World(names map[netip.Addr][]string) (*policies.MemWorld, error) {
	inv.mu.RLock()
	var nss []policies.Namespace
	for n, l := range inv.namespaces {
		nss = append(nss, policies.Namespace{Name: n, Labels: l})
	}
	var pods []policies.Pod
	for _, e := range inv.endpoints {
		pods = append(pods, Pod(e))
	}
	nodes := inv.nodes
	inv.mu.RUnlock()
	sort.Slice(nss, func(i, j int) bool { return nss[i].Name < nss[j].Name })
	sort.Slice(pods, func(i, j int) bool { return pods[i].Key() < pods[j].Key() })
	w, err := policies.NewMemWorld(nss, pods)
	if err != nil {
		return nil, fmt.Errorf("build world: %w", err)
	}
	for _, n := range nodes {
		if err := w.AddNode(n); err != nil {
			return nil, fmt.Errorf("build world: %w", err)
		}
	}
	for a, ns := range names {
		for _, n := range ns {
			w.AddName(a, n)
		}
	}
	return w, nil
}

// WithNamespaceName returns a copy of the namespace labels l with the label
// the Kubernetes API server puts on every namespace
// (kubernetes.io/metadata.name: name), as NetworkPolicy namespace selectors
// expect; l itself is not modified.
func WithNamespaceName(name string, l map[string]string) map[string]string {
	out := map[string]string{"kubernetes.io/metadata.name": name}
	for k, v := range l {
		out[k] = v
	}
	return out
}
