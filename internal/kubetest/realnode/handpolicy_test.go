//go:build linux

package realnode_test

import (
	"net/netip"
	"testing"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
)

// programByHand enforces in the netns at path what a NetworkPolicy
// selecting the server and allowing ingress from one client on port means:
// ingress from client to port, egress open.
func programByHand(t *testing.T, path string, client netip.Addr, port int) {
	t.Helper()
	rs := dataplane.RuleSet{
		Name: "by-hand", Mode: model.ModeEnforce,
		Ingress: []dataplane.Entry{{Peer: netip.PrefixFrom(client, 32), Protocol: model.ProtocolTCP, Port: port, RuleID: "by-hand.in"}},
		Egress: []dataplane.Entry{{Peer: netip.MustParsePrefix("0.0.0.0/0"), RuleID: "by-hand.out4"},
			{Peer: netip.MustParsePrefix("::/0"), RuleID: "by-hand.out6"}},
	}
	if _, err := dataplane.New(nil).Apply(path, rs); err != nil {
		t.Fatalf("apply rule set in %s: %v", path, err)
	}
}
