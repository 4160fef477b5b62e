package dataplane

import (
	"net/netip"
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

// TestRuleSetEqual: the reconciler skips an endpoint when its rule set is
// Equal to the one it holds, so every field must count.
func TestRuleSetEqual(t *testing.T) {
	base := RuleSet{Name: "shop/db-0", Mode: model.ModeEnforce, Ingress: []Entry{{Peer: netip.MustParsePrefix("198.18.0.1/32"), Protocol: model.ProtocolTCP, Port: 5432, RuleID: "r1"}}}
	if !base.Equal(base) {
		t.Fatal("a rule set differs from itself")
	}
	if empty := (RuleSet{Name: "a", Mode: model.ModeObserve, Ingress: []Entry{}}); !empty.Equal(RuleSet{Name: "a", Mode: model.ModeObserve}) {
		t.Error("an empty and a nil entry list differ")
	}
	for name, change := range map[string]func(*RuleSet){
		"name":        func(r *RuleSet) { r.Name = "shop/db-1" },
		"mode":        func(r *RuleSet) { r.Mode = model.ModeAudit },
		"log allowed": func(r *RuleSet) { r.LogAllowed = true },
		"port": func(r *RuleSet) {
			r.Ingress = []Entry{{Peer: base.Ingress[0].Peer, Protocol: model.ProtocolTCP, Port: 5433, RuleID: "r1"}}
		},
		"rule id": func(r *RuleSet) {
			r.Ingress = []Entry{{Peer: base.Ingress[0].Peer, Protocol: model.ProtocolTCP, Port: 5432, RuleID: "r2"}}
		},
		"egress": func(r *RuleSet) { r.Egress = []Entry{{Peer: netip.MustParsePrefix("198.18.0.2/32")}} },
	} {
		other := base
		change(&other)
		if base.Equal(other) {
			t.Errorf("a different %s compares equal", name)
		}
	}
}
