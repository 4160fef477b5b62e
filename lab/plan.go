package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// NetnsPrefix starts the name of every network namespace any lab creates:
// "nanoseg-lab-<lab>.<part>". Lab names hold no dot, so the namespaces of
// lab "shop" never share a prefix with those of lab "shop-2".
const NetnsPrefix = "nanoseg-lab-"

func netnsName(lab, part string) string { return NetnsPrefix + lab + "." + part }

// labPrefix starts the name of every namespace of lab.
func labPrefix(lab string) string { return NetnsPrefix + lab + "." }

// Plan is a topology resolved into endpoints with names and addresses. It
// is written to the lab's state directory before anything is created, so
// that `lab down` can find everything the lab made, and it is what other
// parts of nanoseg read as the lab's inventory.
type Plan struct {
	Lab string `json:"lab"`
	// TopologyHash is the SHA-256 of the topology file's bytes, hex.
	TopologyHash string     `json:"topologyHash"`
	Topology     Topology   `json:"topology"`
	Switch       string     `json:"switch"` // netns name of the lab switch
	Endpoints    []Endpoint `json:"endpoints"`
	// DNSv4 and DNSv6 are the addresses of the first replica of the DNS
	// workload: every endpoint's resolver.
	DNSv4 netip.Addr `json:"dnsV4"`
	DNSv6 netip.Addr `json:"dnsV6"`
}

// Endpoint is one network namespace of the lab: a replica of a workload,
// or an external service.
type Endpoint struct {
	// Netns is the name under /run/netns.
	Netns     string `json:"netns"`
	Namespace string `json:"namespace,omitempty"` // empty for externals
	Workload  string `json:"workload"`            // workload or external name
	Replica   int    `json:"replica"`
	// Labels are the workload's labels (the pod labels of a replica).
	Labels map[string]string `json:"labels,omitempty"`
	// External is true for services outside the cluster; DNSName is then
	// the name they are reached by.
	External bool   `json:"external,omitempty"`
	DNSName  string `json:"dnsName,omitempty"`
	Ports    []Port `json:"ports,omitempty"`
	// Node is the simulated Kubernetes node of a workload replica (the
	// workload's `node`, default the lab's name); empty for externals.
	Node string `json:"node,omitempty"`
	// SwitchPort is the name of the veth end in the switch namespace.
	SwitchPort string     `json:"switchPort"`
	IPv4       netip.Addr `json:"ipv4"`
	IPv6       netip.Addr `json:"ipv6"`
}

// ID returns "namespace/workload-replica" for a workload replica and
// "external/name" for an external service: the handle people use.
func (e Endpoint) ID() string {
	if e.External {
		return "external/" + e.Workload
	}
	return fmt.Sprintf("%s/%s-%d", e.Namespace, e.Workload, e.Replica)
}

// Key returns "namespace/workload" (or "external/name").
func (e Endpoint) Key() string {
	if e.External {
		return "external/" + e.Workload
	}
	return e.Namespace + "/" + e.Workload
}

// FQDN returns the name the lab's DNS server gives this endpoint's workload
// ("api.shop.svc.cluster.local") or external ("payments.example").
func (e Endpoint) FQDN() string {
	if e.External {
		return e.DNSName
	}
	return e.Workload + "." + e.Namespace + "." + ClusterZone
}

// Lookup returns the endpoint that holds addr.
func (p *Plan) Lookup(addr netip.Addr) (Endpoint, bool) {
	addr = addr.Unmap()
	for _, e := range p.Endpoints {
		if e.IPv4 == addr || e.IPv6 == addr {
			return e, true
		}
	}
	return Endpoint{}, false
}

// Find returns the endpoints whose ID, Key, Netns or FQDN equals ref; a
// workload key ("shop/frontend") returns all its replicas.
func (p *Plan) Find(ref string) []Endpoint {
	var out []Endpoint
	for _, e := range p.Endpoints {
		if e.ID() == ref || e.Key() == ref || e.Netns == ref || e.FQDN() == ref || (e.External && e.Workload == ref) {
			out = append(out, e)
		}
	}
	return out
}

// NewPlan resolves t into a plan. raw is the topology file's bytes, hashed
// to tell a changed topology from the running one.
func NewPlan(t *Topology, raw []byte) (*Plan, error) {
	p, err := t.allocate()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	p.TopologyHash = hex.EncodeToString(sum[:])
	return p, nil
}

// pinned checks every address the topology fixes and returns the valid
// ones by field path ("workloads[1].ipv4[0]"). Each address must parse,
// lie in its range (ClusterV4/ClusterV6 for workloads, ExternalV4/ExternalV6
// for externals) and be given once; every listed address is checked, also
// those beyond a workload's replica count, and every problem is reported.
func (t *Topology) pinned() (map[string]netip.Addr, []error) {
	out := map[string]netip.Addr{}
	used := map[netip.Addr]string{}
	var errs []error
	claim := func(field string, list Addrs, allowed netip.Prefix) {
		for j, s := range list {
			path := fmt.Sprintf("%s[%d]", field, j)
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: %q is not an IP address", path, s))
			case !allowed.Contains(a):
				errs = append(errs, fmt.Errorf("%s: %s is outside the range %s (workloads: %s and %s, externals: %s and %s)",
					path, a, allowed, ClusterV4, ClusterV6, ExternalV4, ExternalV6))
			case used[a] != "":
				errs = append(errs, fmt.Errorf("%s: address collision: %s is also %s", path, a, used[a]))
			default:
				used[a] = path
				out[path] = a
			}
		}
	}
	for i, w := range t.Workloads {
		claim(fmt.Sprintf("workloads[%d].ipv4", i), w.IPv4, ClusterV4)
		claim(fmt.Sprintf("workloads[%d].ipv6", i), w.IPv6, ClusterV6)
	}
	for i, x := range t.Externals {
		claim(fmt.Sprintf("externals[%d].ipv4", i), x.IPv4, ExternalV4)
		claim(fmt.Sprintf("externals[%d].ipv6", i), x.IPv6, ExternalV6)
	}
	return out, errs
}

// endpoints names every endpoint of t, in file order, with its pinned
// addresses (zero where the file fixes none) and its switch port. Two
// endpoints whose network namespace names coincide are errors.
func (t *Topology) endpoints(pinned map[string]netip.Addr) ([]Endpoint, []error) {
	var out []Endpoint
	var errs []error
	netnsOf := map[string]string{}
	add := func(path string, e Endpoint) {
		if other, ok := netnsOf[e.Netns]; ok {
			errs = append(errs, fmt.Errorf("%s: its network namespace name %s is also the one of %s; rename one of them", path, e.Netns, other))
		}
		netnsOf[e.Netns] = path
		e.SwitchPort = fmt.Sprintf("v%d", len(out)+1)
		out = append(out, e)
	}
	for i, w := range t.Workloads {
		// At most MaxReplicas: Validate names a larger count and
		// still calls this to check the names.
		for r := 0; r < min(w.Replicas, MaxReplicas); r++ {
			e := Endpoint{Netns: netnsName(t.Name, fmt.Sprintf("%s-%s-%d", w.Namespace, w.Name, r)),
				Namespace: w.Namespace, Workload: w.Name, Replica: r, Labels: w.Labels, Ports: w.Ports, Node: w.nodeOf(r, t.Name)}
			e.IPv4 = pinned[fmt.Sprintf("workloads[%d].ipv4[%d]", i, r)]
			e.IPv6 = pinned[fmt.Sprintf("workloads[%d].ipv6[%d]", i, r)]
			add(fmt.Sprintf("workloads[%d] replica %d", i, r), e)
		}
	}
	for i, x := range t.Externals {
		e := Endpoint{Netns: netnsName(t.Name, "ext-"+x.Name),
			Workload: x.Name, External: true, DNSName: x.DNS, Ports: x.Ports}
		e.IPv4 = pinned[fmt.Sprintf("externals[%d].ipv4[0]", i)]
		e.IPv6 = pinned[fmt.Sprintf("externals[%d].ipv6[0]", i)]
		add(fmt.Sprintf("externals[%d]", i), e)
	}
	return out, errs
}

// nodeOf returns the node of replica r: its own entry of the node list,
// the one node given for all, or the lab's name.
func (w Workload) nodeOf(r int, lab string) string {
	switch {
	case len(w.Node) == 1:
		return w.Node[0]
	case r < len(w.Node):
		return w.Node[r]
	}
	return lab
}

// Nodes returns the names of the simulated nodes of the plan's workload
// replicas, sorted, each once.
func (p *Plan) Nodes() []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range p.Endpoints {
		if n := e.NodeName(p.Lab); n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// NodeName returns the simulated node of a workload replica: e.Node, or
// lab (the default) for a plan written before nodes existed; "" for an
// external.
func (e Endpoint) NodeName(lab string) string {
	switch {
	case e.External:
		return ""
	case e.Node != "":
		return e.Node
	}
	return lab
}

// allocate names every endpoint and gives it addresses: fixed ones first,
// then the next free address of its range. Any problem of the fixed
// addresses or the namespace names is an error; Validate reports the same
// problems with the rest of the file's.
func (t *Topology) allocate() (*Plan, error) {
	p := &Plan{Lab: t.Name, Topology: *t, Switch: netnsName(t.Name, "switch")}
	pinned, errs := t.pinned()
	eps, epErrs := t.endpoints(pinned)
	if errs = append(errs, epErrs...); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.Endpoints = eps
	used := map[netip.Addr]string{}
	for path, a := range pinned {
		used[a] = path
	}
	// Allocation starts at host .10 of each range and skips pinned addresses.
	last := map[netip.Prefix]netip.Addr{}
	for _, pfx := range []netip.Prefix{ClusterV4, ClusterV6, ExternalV4, ExternalV6} {
		a := pfx.Addr()
		for range 9 {
			a = a.Next()
		}
		last[pfx] = a
	}
	next := func(pfx netip.Prefix) netip.Addr {
		a := last[pfx].Next()
		for used[a] != "" && pfx.Contains(a) {
			a = a.Next()
		}
		used[a], last[pfx] = "allocated", a
		return a
	}
	for i := range p.Endpoints {
		e := &p.Endpoints[i]
		v4, v6 := ClusterV4, ClusterV6
		if e.External {
			v4, v6 = ExternalV4, ExternalV6
		}
		if !e.IPv4.IsValid() {
			e.IPv4 = next(v4)
		}
		if !e.IPv6.IsValid() {
			e.IPv6 = next(v6)
		}
	}
	for _, e := range p.Endpoints {
		if !e.External && e.Key() == t.DNS && e.Replica == 0 {
			p.DNSv4, p.DNSv6 = e.IPv4, e.IPv6
		}
	}
	return p, nil
}

// Names returns the DNS names the lab answers, each with its addresses in
// endpoint order: a workload's name maps to all its replicas.
func (p *Plan) Names() map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	for _, e := range p.Endpoints {
		n := strings.ToLower(e.FQDN())
		out[n] = append(out[n], e.IPv4, e.IPv6)
	}
	return out
}

// Dir returns the state directory of lab name under the configured root.
func (c Config) Dir(name string) string { return filepath.Join(c.StateDir, name) }

// Labs returns the names of the labs that have state under c.StateDir,
// sorted.
func (c Config) Labs() ([]string, error) {
	ents, err := os.ReadDir(c.StateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list labs: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

const planFile = "plan.json"

// LoadPlan reads the plan of the running lab name.
func LoadPlan(c Config, name string) (*Plan, error) {
	raw, err := os.ReadFile(filepath.Join(c.Dir(name), planFile))
	if err != nil {
		return nil, fmt.Errorf("load lab %s: %w", name, err)
	}
	var p Plan
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("load lab %s: %w", name, err)
	}
	return &p, nil
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
