package controller

import (
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/compile"
	"github.com/nanoseg/nanoseg/policies"
)

// TestCounterIDIsCompileRuleID: the id the workload pane looks a rule's
// kernel counters up by is the compiler's, short or shortened.
func TestCounterIDIsCompileRuleID(t *testing.T) {
	for _, c := range []struct{ ns, name, rule string }{
		{"shop", "db", "from-web"},
		{"a-rather-long-namespace-name", "a-rather-long-nanosegment-name-too", strings.Repeat("r", 60)},
	} {
		want := compile.RuleID(policies.PolicyRef{Kind: "NanoSegment", Namespace: c.ns, Name: c.name}, c.rule)
		if got := counterID(c.ns, c.name, c.rule); got != want {
			t.Errorf("counterID(%s, %s, %s) = %q, compile.RuleID = %q", c.ns, c.name, c.rule, got, want)
		}
	}
}
