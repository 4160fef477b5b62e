package compile

import (
	"net/netip"
	"strings"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// Input returns the input of a full compile: the namespaces and pods of
// world (pods named by netns, keyed "namespace/netns"), the policies in
// force (NetworkPolicies, and nanosegments each with its promoted mode),
// the world's nodes (for ClusterNetworkPolicy nodes peers), and DNS-name
// peers resolved through names (address → names).
func Input(world *policies.MemWorld, inForce policies.InForce, names map[netip.Addr][]string) (CompileInput, error) {
	set, err := inForce.Set()
	if err != nil {
		return CompileInput{}, err
	}
	return CompileInput{Namespaces: world.Namespaces(), Pods: world.Pods(), Policies: set, Names: NamesByDNS(names), Nodes: world.Nodes()}, nil
}

// NamesByDNS inverts names (address → DNS names) into DNS name (lower
// case, no trailing dot) → addresses, as CompileInput.Names wants.
func NamesByDNS(names map[netip.Addr][]string) map[string][]netip.Addr {
	byName := map[string][]netip.Addr{}
	for addr, ns := range names {
		for _, n := range ns {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			byName[n] = append(byName[n], addr)
		}
	}
	return byName
}

// For returns the rule set of pod key. Pods no enforcing or auditing
// policy selects get an observe rule set, which filters nothing and keeps
// connection tracking and the verdict log on for the observer.
func (c *Compiler) For(key string) dataplane.RuleSet {
	if rs, ok := c.RuleSet(key); ok {
		return rs
	}
	return dataplane.RuleSet{Name: key, Mode: model.ModeObserve}
}
