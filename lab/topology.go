package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Kind is the value of a topology file's `kind` field.
const Kind = "LabTopology"

// Topology is a lab as its YAML file declares it. Unknown fields are errors.
//
//	kind: LabTopology
//	name: shop                     # lab name, DNS-1123 label
//	dns: kube-system/dns           # the workload that serves the lab's names
//	namespaces: [{name, labels}]
//	workloads:  [{name, namespace, labels, replicas, ports, talks, ipv4, ipv6, node}]
//	externals:  [{name, dns, ports, ipv4, ipv6}]
type Topology struct {
	Kind       string      `yaml:"kind"`
	Name       string      `yaml:"name"`
	DNS        string      `yaml:"dns"`
	Namespaces []Namespace `yaml:"namespaces"`
	Workloads  []Workload  `yaml:"workloads"`
	Externals  []External  `yaml:"externals"`
}

// Namespace is a Kubernetes-style namespace of the lab.
type Namespace struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

// Workload is a set of identical replicas, each one endpoint (network
// namespace) of the lab.
type Workload struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
	// Replicas is the number of endpoints; 0 in the file means 1.
	Replicas int    `yaml:"replicas"`
	Ports    []Port `yaml:"ports"`
	Talks    []Talk `yaml:"talks"`
	// IPv4 and IPv6 optionally fix each replica's address, in replica order;
	// replicas without one get the next free address.
	IPv4 Addrs `yaml:"ipv4"`
	IPv6 Addrs `yaml:"ipv6"`
	// Node names the simulated Kubernetes node the replicas run on, as the
	// lab registers them in an API server (lab/kubelab): one name for every
	// replica, or a list with one name per replica. Default: one node named
	// after the lab. It changes nothing in the lab's network.
	Node Names `yaml:"node"`
}

// Names is a list of names; a single name may be written without the list
// brackets.
type Names []string

// UnmarshalYAML accepts one name or a list of names.
func (n *Names) UnmarshalYAML(node *yaml.Node) error {
	switch node.Kind {
	case yaml.ScalarNode:
		*n = Names{node.Value}
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := node.Decode(&l); err != nil {
			return err
		}
		*n = l
		return nil
	}
	return fmt.Errorf("line %d: want a name or a list of names", node.Line)
}

// Addrs is a list of addresses; a single address may be written without
// the list brackets.
type Addrs []string

// UnmarshalYAML accepts one address or a list of addresses.
func (a *Addrs) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*a = Addrs{n.Value}
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*a = l
		return nil
	}
	return fmt.Errorf("line %d: want an address or a list of addresses", n.Line)
}

// External is a service outside the "cluster", reachable by a DNS name.
type External struct {
	Name  string `yaml:"name"`
	DNS   string `yaml:"dns"`
	Ports []Port `yaml:"ports"`
	IPv4  Addrs  `yaml:"ipv4"`
	IPv6  Addrs  `yaml:"ipv6"`
}

// Port is a listening port: number 1-65535, protocol TCP or UDP (default
// TCP), and an optional name (IANA_SVC_NAME style, as a container port).
type Port struct {
	Name     string `yaml:"name"`
	Port     int    `yaml:"port"`
	Protocol string `yaml:"protocol"`
}

// Talk is one client behaviour: connect to To on Port every Every.
type Talk struct {
	// To is a workload ("api" in the same namespace, or "monitoring/prometheus")
	// or an external's DNS name ("payments.example").
	To string `yaml:"to"`
	// Port is a number or the name of one of the destination's ports.
	Port PortRef `yaml:"port"`
	// Protocol is TCP or UDP; default: the named port's protocol, else TCP.
	Protocol string `yaml:"protocol"`
	// Every is the interval between connections, a Go duration ("2s");
	// default 2s, at least 100ms.
	Every string `yaml:"every"`
}

// PortRef is a port number or a port name, as in a NetworkPolicy port.
type PortRef struct {
	Number int
	Name   string
}

// UnmarshalYAML accepts an integer or a string.
func (p *PortRef) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: port must be a number or a name", n.Line)
	}
	if v, err := strconv.Atoi(n.Value); err == nil {
		p.Number = v
		return nil
	}
	p.Name = n.Value
	return nil
}

// MarshalYAML writes the number or the name.
func (p PortRef) MarshalYAML() (any, error) {
	if p.Name != "" {
		return p.Name, nil
	}
	return p.Number, nil
}

func (p PortRef) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Number)
}

// Address ranges of the lab: workloads ("cluster") and externals, each on
// one layer-2 segment, so every address is on-link for every endpoint.
var (
	AllowedV4   = netip.MustParsePrefix("198.18.0.0/15")
	AllowedV6   = netip.MustParsePrefix("2001:db8::/32")
	ClusterV4   = netip.MustParsePrefix("198.18.0.0/16")
	ExternalV4  = netip.MustParsePrefix("198.19.0.0/16")
	ClusterV6   = netip.MustParsePrefix("2001:db8:18::/48")
	ExternalV6  = netip.MustParsePrefix("2001:db8:19::/48")
	ClusterZone = "svc.cluster.local"
)

var (
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsName      = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelKey     = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValue   = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
)

// MaxReplicas is the most replicas one workload may have.
const MaxReplicas = 64

// Parse decodes and validates a topology from YAML bytes.
// Unknown fields are reported with their field path and line, together
// with every other problem of the file.
func Parse(raw []byte) (*Topology, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("decode: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	unknown := unknownKeys(&doc, reflect.TypeFor[Topology](), "")
	var t Topology
	if err := doc.Decode(&t); err != nil {
		return nil, errors.Join(append(unknown, fmt.Errorf("decode: %s", strings.TrimPrefix(err.Error(), "yaml: ")))...)
	}
	t.setDefaults()
	if err := t.Validate(); err != nil {
		unknown = append(unknown, err)
	}
	if len(unknown) > 0 {
		return nil, errors.Join(unknown...)
	}
	return &t, nil
}

var yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// unknownKeys walks the YAML node n against Go type t (by its yaml tags)
// and returns one error per mapping key t has no field for, naming the
// field path ("workloads[1].portz") and the line.
func unknownKeys(n *yaml.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		var out []error
		for _, c := range n.Content {
			out = append(out, unknownKeys(c, t, path)...)
		}
		return out
	}
	if reflect.PointerTo(t).Implements(yamlUnmarshaler) || t.Implements(yamlUnmarshaler) {
		return nil
	}
	var out []error
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			f, ok := yamlField(t, k.Value)
			if !ok {
				out = append(out, fmt.Errorf("%s: unknown field (line %d)", p, k.Line))
				continue
			}
			out = append(out, unknownKeys(v, f.Type, p)...)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, unknownKeys(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value)...)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			out = append(out, unknownKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return out
}

// yamlField returns the field of struct t that YAML key name decodes into.
func yamlField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		if tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func prefixLines(prefix string, err error) error {
	var out []error
	for _, l := range strings.Split(err.Error(), "\n") {
		out = append(out, errors.New(prefix+l))
	}
	return errors.Join(out...)
}

func (t *Topology) setDefaults() {
	for i := range t.Workloads {
		w := &t.Workloads[i]
		if w.Replicas == 0 {
			w.Replicas = 1
		}
		defaultPorts(w.Ports)
		for j := range w.Talks {
			if w.Talks[j].Every == "" {
				w.Talks[j].Every = "2s"
			}
		}
	}
	for i := range t.Externals {
		defaultPorts(t.Externals[i].Ports)
	}
}

func defaultPorts(ps []Port) {
	for i := range ps {
		if ps[i].Protocol == "" {
			ps[i].Protocol = "TCP"
		}
		ps[i].Protocol = strings.ToUpper(ps[i].Protocol)
	}
}

// WorkloadKey returns "namespace/name".
func (w Workload) Key() string { return w.Namespace + "/" + w.Name }

// Validate reports every problem of t at once, each as "field.path: problem".
func (t *Topology) Validate() error {
	var errs []error
	bad := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...)))
	}
	if t.Kind != Kind {
		bad("kind", "must be %q, got %q", Kind, t.Kind)
	}
	if !dns1123Label.MatchString(t.Name) || len(t.Name) > 20 {
		bad("name", "%q must be a lowercase DNS label of at most 20 characters", t.Name)
	}
	nsSeen := map[string]bool{}
	for i, ns := range t.Namespaces {
		p := fmt.Sprintf("namespaces[%d]", i)
		if !dns1123Label.MatchString(ns.Name) || len(ns.Name) > 63 {
			bad(p+".name", "%q must be a lowercase DNS label", ns.Name)
		}
		if nsSeen[ns.Name] {
			bad(p+".name", "duplicate namespace %q", ns.Name)
		}
		nsSeen[ns.Name] = true
		validateLabels(p+".labels", ns.Labels, bad)
	}
	wl := map[string]*Workload{}
	for i := range t.Workloads {
		w := &t.Workloads[i]
		p := fmt.Sprintf("workloads[%d]", i)
		if !dns1123Label.MatchString(w.Name) || len(w.Name) > 63 {
			bad(p+".name", "%q must be a lowercase DNS label", w.Name)
		}
		if !nsSeen[w.Namespace] {
			bad(p+".namespace", "namespace %q is not declared in namespaces", w.Namespace)
		}
		if wl[w.Key()] != nil {
			bad(p+".name", "duplicate workload %q", w.Key())
		}
		wl[w.Key()] = w
		if w.Replicas < 1 || w.Replicas > MaxReplicas {
			bad(p+".replicas", "%d is out of range 1-%d", w.Replicas, MaxReplicas)
		}
		validateLabels(p+".labels", w.Labels, bad)
		validatePorts(p+".ports", w.Ports, bad)
		if len(w.IPv4) > w.Replicas {
			bad(p+".ipv4", "%d addresses for %d replicas", len(w.IPv4), w.Replicas)
		}
		if len(w.IPv6) > w.Replicas {
			bad(p+".ipv6", "%d addresses for %d replicas", len(w.IPv6), w.Replicas)
		}
		if len(w.Node) > 1 && len(w.Node) != w.Replicas {
			bad(p+".node", "%d nodes for %d replicas: give one node for every replica or one per replica", len(w.Node), w.Replicas)
		}
		for j, n := range w.Node {
			if !dnsSubdomain.MatchString(n) || len(n) > 253 {
				bad(fmt.Sprintf("%s.node[%d]", p, j), "%q must be a lowercase DNS name (a Kubernetes node name)", n)
			}
		}
	}
	extByDNS := map[string]*External{}
	extNames := map[string]bool{}
	for i := range t.Externals {
		e := &t.Externals[i]
		p := fmt.Sprintf("externals[%d]", i)
		if !dns1123Label.MatchString(e.Name) || len(e.Name) > 63 {
			bad(p+".name", "%q must be a lowercase DNS label", e.Name)
		}
		if extNames[e.Name] {
			bad(p+".name", "duplicate external %q", e.Name)
		}
		extNames[e.Name] = true
		if !dnsName.MatchString(e.DNS) {
			bad(p+".dns", "%q is not a fully qualified DNS name such as payments.example", e.DNS)
		} else if strings.HasSuffix(e.DNS, "."+ClusterZone) {
			bad(p+".dns", "%q is inside the cluster zone %s", e.DNS, ClusterZone)
		}
		if extByDNS[e.DNS] != nil {
			bad(p+".dns", "duplicate external name %q", e.DNS)
		}
		extByDNS[e.DNS] = e
		validatePorts(p+".ports", e.Ports, bad)
		if len(e.IPv4) > 1 || len(e.IPv6) > 1 {
			bad(p, "an external has at most one ipv4 and one ipv6 address")
		}
	}
	// Peers of talks.
	for i := range t.Workloads {
		w := &t.Workloads[i]
		for j, tk := range w.Talks {
			p := fmt.Sprintf("workloads[%d].talks[%d]", i, j)
			var ports []Port
			switch {
			case tk.To == "":
				bad(p+".to", "required: a workload (name or namespace/name) or an external DNS name")
				continue
			case extByDNS[tk.To] != nil:
				ports = extByDNS[tk.To].Ports
			default:
				key := tk.To
				if !strings.Contains(key, "/") {
					key = w.Namespace + "/" + key
				}
				dst := wl[key]
				if dst == nil {
					bad(p+".to", "peer %q does not exist (no workload %s, no external with that DNS name)", tk.To, key)
					continue
				}
				ports = dst.Ports
			}
			if tk.Protocol != "" && tk.Protocol != "TCP" && tk.Protocol != "UDP" && tk.Protocol != "tcp" && tk.Protocol != "udp" {
				bad(p+".protocol", "%q is not TCP or UDP", tk.Protocol)
			}
			if _, err := t.resolveTalkPort(tk, ports); err != nil {
				bad(p+".port", "%v", err)
			}
			d, err := time.ParseDuration(tk.Every)
			if err != nil || d < 100*time.Millisecond {
				bad(p+".every", "%q must be a duration of at least 100ms, such as 2s", tk.Every)
			}
		}
	}
	if t.DNS == "" {
		bad("dns", "required: the workload that serves the lab's DNS, such as kube-system/dns")
	} else if w := wl[t.DNS]; w == nil {
		bad("dns", "workload %q does not exist", t.DNS)
	} else if !hasPort(w.Ports, 53, "UDP") {
		bad("dns", "workload %q has no port 53/UDP", t.DNS)
	}
	// Addresses and namespace names are checked whatever else is wrong,
	// so that one run names every problem.
	_, addrErrs := t.pinned()
	_, nsErrs := t.endpoints(nil)
	errs = append(errs, addrErrs...)
	errs = append(errs, nsErrs...)
	return errors.Join(errs...)
}

func hasPort(ps []Port, n int, proto string) bool {
	for _, p := range ps {
		if p.Port == n && p.Protocol == proto {
			return true
		}
	}
	return false
}

// resolveTalkPort returns the destination port of tk among the
// destination's ports: a named port resolves at the destination.
func (t *Topology) resolveTalkPort(tk Talk, ports []Port) (Port, error) {
	proto := strings.ToUpper(tk.Protocol)
	if tk.Port.Name != "" {
		for _, p := range ports {
			if p.Name == tk.Port.Name && (proto == "" || proto == p.Protocol) {
				return p, nil
			}
		}
		return Port{}, fmt.Errorf("named port %q is not a port of %q", tk.Port.Name, tk.To)
	}
	if tk.Port.Number < 1 || tk.Port.Number > 65535 {
		return Port{}, fmt.Errorf("%d is out of range 1-65535", tk.Port.Number)
	}
	if proto == "" {
		proto = "TCP"
	}
	for _, p := range ports {
		if p.Port == tk.Port.Number && p.Protocol == proto {
			return p, nil
		}
	}
	return Port{}, fmt.Errorf("%d/%s is not a port that %q listens on", tk.Port.Number, proto, tk.To)
}

func validatePorts(path string, ps []Port, bad func(string, string, ...any)) {
	seen := map[string]bool{}
	names := map[string]bool{}
	for i, p := range ps {
		pp := fmt.Sprintf("%s[%d]", path, i)
		if p.Port < 1 || p.Port > 65535 {
			bad(pp+".port", "%d is out of range 1-65535", p.Port)
		}
		if p.Protocol != "TCP" && p.Protocol != "UDP" {
			bad(pp+".protocol", "%q is not TCP or UDP", p.Protocol)
		}
		k := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if seen[k] {
			bad(pp, "duplicate port %s", k)
		}
		seen[k] = true
		if p.Name != "" {
			if len(p.Name) > 15 || !dns1123Label.MatchString(p.Name) {
				bad(pp+".name", "%q must be a lowercase name of at most 15 characters", p.Name)
			}
			if names[p.Name+"/"+p.Protocol] {
				bad(pp+".name", "duplicate port name %q", p.Name)
			}
			names[p.Name+"/"+p.Protocol] = true
		}
	}
}

func validateLabels(path string, l map[string]string, bad func(string, string, ...any)) {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !labelKey.MatchString(k) || len(k) > 253 {
			bad(path, "invalid label key %q", k)
		}
		if !labelValue.MatchString(l[k]) || len(l[k]) > 63 {
			bad(path+"."+k, "invalid label value %q", l[k])
		}
	}
}
