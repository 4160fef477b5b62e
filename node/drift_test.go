package node

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
)

func TestDrift(t *testing.T) {
	pfx := netip.MustParsePrefix("198.18.0.2/32")
	desired := dataplane.RuleSet{Name: "shop/db", Mode: model.ModeEnforce, Ingress: []dataplane.Entry{
		{Peer: pfx, Protocol: model.ProtocolTCP, Port: 5432, RuleID: "r1"},
		{Peer: pfx, Protocol: model.ProtocolTCP, Port: 9090, RuleID: "r2"}}}
	elems := dataplane.Elements(desired)
	words, missing, extra := drift(true, false, desired, elems[1:], desired)
	if len(missing) != 1 || len(extra) != 0 || len(words) != 1 || !strings.Contains(words[0], "missing entry") {
		t.Fatalf("drift %v %v %v", words, missing, extra)
	}
	if w, _, _ := drift(true, true, desired, elems, desired); w != nil {
		t.Fatalf("equal table has drift %v", w)
	}
}
