package node

// How a table read back from the kernel differs from its desired rule set,
// in the words and rule rows of an evidence bundle. Pure: tested without
// root. It lives on the node side because only the node knows the
// dataplane's element form; the evidence package stays free of kernel code.

import (
	"fmt"
	"strings"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
)

// ruleOf returns a verdict-map element in bundle terms.
func ruleOf(e dataplane.Element) evidence.Rule {
	return evidence.Rule{Direction: e.Dir, Peer: e.Peer.String(), Protocol: e.Protocol, PortFrom: int(e.PortFrom), PortTo: int(e.PortTo), RuleID: e.RuleID}
}

// compareRules returns the elements of desired the kernel lacks (missing)
// and the kernel's elements that are not desired (extra). Both inputs are
// element lists as dataplane.Elements and State.Elements give them.
func compareRules(desired, kernel []dataplane.Element) (missing, extra []evidence.Rule) {
	have := map[dataplane.Element]int{}
	for _, e := range kernel {
		have[e]++
	}
	for _, e := range desired {
		if have[e] > 0 {
			have[e]--
			continue
		}
		missing = append(missing, ruleOf(e))
	}
	want := map[dataplane.Element]int{}
	for _, e := range desired {
		want[e]++
	}
	for _, e := range kernel {
		if want[e] > 0 {
			want[e]--
			continue
		}
		extra = append(extra, ruleOf(e))
	}
	return missing, extra
}

// drift describes in words how a table read back from the kernel differs
// from the desired rule set, given whether dataplane.State.Equal held. It
// returns the words and the missing and extra entries; no words when equal.
func drift(present, equal bool, kernel dataplane.RuleSet, kernelElems []dataplane.Element, desired dataplane.RuleSet) (words []string, missing, extra []evidence.Rule) {
	if equal {
		return nil, nil, nil
	}
	if !present {
		return []string{"the table inet " + dataplane.TableName + " is missing from the endpoint's netns"}, nil, nil
	}
	if kernel.Mode != desired.Mode {
		words = append(words, fmt.Sprintf("mode is %s, want %s", kernel.Mode, desired.Mode))
	}
	if kernel.Mode == model.ModeObserve && kernel.Name != desired.Name {
		words = append(words, fmt.Sprintf("rule set name is %q, want %q", kernel.Name, desired.Name))
	}
	if kernel.Mode != model.ModeObserve && kernel.Mode == desired.Mode {
		for _, d := range model.Directions {
			if got, want := kernel.DefaultID(d), desired.DefaultID(d); got != want {
				words = append(words, fmt.Sprintf("the %s default verdict logs rule id %q, want %q", strings.ToLower(string(d)), got, want))
			}
		}
	}
	missing, extra = compareRules(dataplane.Elements(desired), kernelElems)
	for _, r := range missing {
		words = append(words, "missing entry: "+r.String())
	}
	for _, r := range extra {
		words = append(words, "unexpected entry: "+r.String())
	}
	if len(words) == 0 {
		words = append(words, "the table's chains, rules, maps or counters differ from what nanoseg programs (altered outside nanoseg)")
	}
	return words, missing, extra
}
