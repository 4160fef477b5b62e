package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// Endpoint is one network namespace whose traffic the agent observes and
// whose rule set it programs.
//
// Deprecated: temporary alias for the issue-10 merge; use model.Endpoint.
type Endpoint = model.Endpoint

// Inventory is the set of endpoints and namespaces one agent knows, from a
// lab plan, a labels file, or both. Safe for concurrent use.
type Inventory struct {
	mu         sync.RWMutex
	endpoints  map[string]Endpoint // by netns
	byAddr     map[netip.Addr]Endpoint
	namespaces map[string]map[string]string
	externals  map[netip.Addr]string // lab externals: address → DNS name
}

// NewInventory returns an inventory holding endpoints and namespaces
// (namespace name → labels).
func NewInventory(eps []Endpoint, namespaces map[string]map[string]string, externals map[netip.Addr]string) *Inventory {
	inv := &Inventory{}
	inv.Replace(eps, namespaces, externals)
	return inv
}

// Replace swaps the inventory's contents and returns the netns names of
// endpoints added and removed. A netns name whose namespace changed (another
// NetnsInode) is in both lists: removed, then added.
func (inv *Inventory) Replace(eps []Endpoint, namespaces map[string]map[string]string, externals map[netip.Addr]string) (added, removed []string) {
	m := map[string]Endpoint{}
	byAddr := map[netip.Addr]Endpoint{}
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

// Endpoints returns every endpoint, sorted by netns name.
func (inv *Inventory) Endpoints() []Endpoint {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := make([]Endpoint, 0, len(inv.endpoints))
	for _, e := range inv.endpoints {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Netns < out[j].Netns })
	return out
}

// Workload returns the endpoints of workload key "namespace/workload".
func (inv *Inventory) Workload(key string) []Endpoint {
	var out []Endpoint
	for _, e := range inv.Endpoints() {
		if e.Key() == key {
			out = append(out, e)
		}
	}
	return out
}

// Workloads returns the workload keys, sorted.
func (inv *Inventory) Workloads() []string {
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
func (inv *Inventory) Lookup(addr netip.Addr) (model.Identity, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	e, ok := inv.byAddr[addr.Unmap()]
	if !ok {
		return model.Identity{}, false
	}
	return model.Identity{Namespace: e.Namespace, Workload: e.Workload, Labels: model.IdentityLabels(e.Labels)}, true
}

// Externals returns the lab's external addresses with their DNS names.
func (inv *Inventory) Externals() map[netip.Addr]string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := make(map[netip.Addr]string, len(inv.externals))
	for a, n := range inv.externals {
		out[a] = n
	}
	return out
}

// World returns the inventory as a policies world: its namespaces and one
// running pod per endpoint (pod name = netns name), with the DNS names in
// names (address → names, may be nil) attached for DNS peers.
func (inv *Inventory) World(names map[netip.Addr][]string) (*policies.MemWorld, error) {
	inv.mu.RLock()
	var nss []policies.Namespace
	for n, l := range inv.namespaces {
		nss = append(nss, policies.Namespace{Name: n, Labels: l})
	}
	var pods []policies.Pod
	for _, e := range inv.endpoints {
		pods = append(pods, policies.Pod{Namespace: e.Namespace, Name: e.Netns, Labels: e.Labels, IPs: e.Addrs, Ports: e.Ports})
	}
	inv.mu.RUnlock()
	sort.Slice(nss, func(i, j int) bool { return nss[i].Name < nss[j].Name })
	sort.Slice(pods, func(i, j int) bool { return pods[i].Key() < pods[j].Key() })
	w, err := policies.NewMemWorld(nss, pods)
	if err != nil {
		return nil, fmt.Errorf("build world: %w", err)
	}
	for a, ns := range names {
		for _, n := range ns {
			w.AddName(a, n)
		}
	}
	return w, nil
}

// LabInventory reads the inventory of a running lab: every workload
// replica is an endpoint; externals are not endpoints (nanoseg does not
// manage them) but their addresses are known by DNS name.
func LabInventory(c lab.Config, name string) ([]Endpoint, map[string]map[string]string, map[netip.Addr]string, error) {
	p, err := lab.LoadPlan(c, name)
	if err != nil {
		return nil, nil, nil, err
	}
	nss := map[string]map[string]string{}
	for _, n := range p.Topology.Namespaces {
		nss[n.Name] = withNamespaceName(n.Name, n.Labels)
	}
	ext := map[netip.Addr]string{}
	var eps []Endpoint
	for _, e := range p.Endpoints {
		if e.External {
			ext[e.IPv4], ext[e.IPv6] = e.DNSName, e.DNSName
			continue
		}
		ep := Endpoint{Netns: e.Netns, Path: "/run/netns/" + e.Netns, Namespace: e.Namespace, Workload: e.Workload,
			Labels: e.Labels, Addrs: []netip.Addr{e.IPv4, e.IPv6}}
		for _, pt := range e.Ports {
			ep.Ports = append(ep.Ports, model.ContainerPort{Name: pt.Name, Port: int32(pt.Port), Protocol: model.Protocol(pt.Protocol)})
		}
		eps = append(eps, ep)
	}
	return eps, nss, ext, nil
}

// withNamespaceName adds the label the Kubernetes API server puts on every
// namespace (kubernetes.io/metadata.name), as NetworkPolicy selectors expect.
func withNamespaceName(name string, l map[string]string) map[string]string {
	out := map[string]string{"kubernetes.io/metadata.name": name}
	for k, v := range l {
		out[k] = v
	}
	return out
}

// LabelsFile is the YAML file that describes named network namespaces not
// made by a lab: which workload each one is, with labels and ports.
//
//	namespaces: [{name: shop, labels: {team: shop}}]
//	endpoints:
//	  - netns: web-1                 # name under /run/netns
//	    namespace: shop
//	    workload: web
//	    labels: {app: web}
//	    addrs: [198.18.1.5]          # optional; read from the netns if absent
//	    ports: [{name: http, port: 8080, protocol: TCP}]
type LabelsFile struct {
	Namespaces []struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"namespaces"`
	Endpoints []struct {
		Netns     string            `yaml:"netns"`
		Namespace string            `yaml:"namespace"`
		Workload  string            `yaml:"workload"`
		Labels    map[string]string `yaml:"labels"`
		Addrs     []string          `yaml:"addrs"`
		Ports     []struct {
			Name     string `yaml:"name"`
			Port     int32  `yaml:"port"`
			Protocol string `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"endpoints"`
}

// ReadLabelsFile parses a LabelsFile at path, refusing unknown fields, and
// returns its endpoints (addresses from the file; fill the rest with
// addresses read from the netns) and namespaces. Errors name the file and
// the field.
func ReadLabelsFile(path string) ([]Endpoint, map[string]map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read labels file: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	var f LabelsFile
	if err := dec.Decode(&f); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	nss := map[string]map[string]string{}
	for _, n := range f.Namespaces {
		nss[n.Name] = withNamespaceName(n.Name, n.Labels)
	}
	var eps []Endpoint
	seen := map[string]bool{}
	for i, e := range f.Endpoints {
		p := fmt.Sprintf("%s: endpoints[%d]", path, i)
		if e.Netns == "" || strings.Contains(e.Netns, "/") {
			errs = append(errs, fmt.Errorf("%s.netns: %q must be a name under /run/netns", p, e.Netns))
		}
		if seen[e.Netns] {
			errs = append(errs, fmt.Errorf("%s.netns: duplicate %q", p, e.Netns))
		}
		seen[e.Netns] = true
		if e.Namespace == "" || e.Workload == "" {
			errs = append(errs, fmt.Errorf("%s: namespace and workload are required", p))
		}
		if _, ok := nss[e.Namespace]; !ok && e.Namespace != "" {
			nss[e.Namespace] = withNamespaceName(e.Namespace, nil)
		}
		ep := Endpoint{Netns: e.Netns, Path: "/run/netns/" + e.Netns, Namespace: e.Namespace, Workload: e.Workload, Labels: e.Labels}
		for j, a := range e.Addrs {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.addrs[%d]: %q is not an IP address", p, j, a))
				continue
			}
			ep.Addrs = append(ep.Addrs, addr)
		}
		for j, pt := range e.Ports {
			proto := strings.ToUpper(pt.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			if pt.Port < 1 || pt.Port > 65535 {
				errs = append(errs, fmt.Errorf("%s.ports[%d].port: %d is out of range 1-65535", p, j, pt.Port))
			}
			ep.Ports = append(ep.Ports, model.ContainerPort{Name: pt.Name, Port: pt.Port, Protocol: model.Protocol(proto)})
		}
		eps = append(eps, ep)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return eps, nss, nil
}
