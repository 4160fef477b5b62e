package controller

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// compileRuleSets returns one rule set per endpoint (by netns name) for the
// active policies over world (whose pods are named by netns), with DNS-name
// peers resolved through names (address → names). Endpoints no enforcing
// or auditing policy selects get an observe rule set, which filters nothing
// and keeps connection tracking and the verdict log on for the observer.
func compileRuleSets(world *policies.MemWorld, active []ActivePolicy, eps []Endpoint, names map[netip.Addr][]string) (map[string]dataplane.RuleSet, []string, error) {
	set, err := activeSet(active)
	if err != nil {
		return nil, nil, err
	}
	byName := map[string][]netip.Addr{}
	for addr, ns := range names {
		for _, n := range ns {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			byName[n] = append(byName[n], addr)
		}
	}
	c, err := NewCompiler(CompileInput{Namespaces: world.Namespaces(), Pods: world.Pods(), Policies: set, Names: byName})
	if err != nil {
		return nil, nil, err
	}
	out := map[string]dataplane.RuleSet{}
	for _, e := range eps {
		rs, ok := c.RuleSet(e.Namespace + "/" + e.Netns)
		if !ok {
			rs = dataplane.RuleSet{Name: e.Namespace + "/" + e.Netns, Mode: model.ModeObserve}
		}
		out[e.Netns] = rs
	}
	return out, c.Warnings(), nil
}

// activeSegments returns the nanosegments of active, with their promoted modes.
func activeSegments(active []ActivePolicy) []v1alpha1.NanoSegment {
	segs := make([]v1alpha1.NanoSegment, 0, len(active))
	for _, ap := range active {
		segs = append(segs, *ap.Policy)
	}
	return segs
}

// activeSet compiles active into the policy set that evaluation, compile
// and diff use.
func activeSet(active []ActivePolicy) (policies.PolicySet, error) {
	set, err := policies.NewPolicySet(nil, activeSegments(active))
	if err != nil {
		return policies.PolicySet{}, fmt.Errorf("compile active policies: %w", err)
	}
	return set, nil
}
