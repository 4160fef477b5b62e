package dataplane

import (
	"strings"

	"github.com/nanoseg/nanoseg/model"
)

// Kernel object names. Tests and the read-back use these; nothing else in
// the netns may create objects in TableName.
const (
	// TableName is the one table of family inet that nanoseg owns in every
	// endpoint netns.
	TableName = "nanoseg"
	// ChainInput and ChainOutput are the base chains on the input and
	// output hooks (priority filter, policy accept).
	ChainInput  = "input"
	ChainOutput = "output"
	// ChainIngress and ChainEgress hold the mode-dependent rules: the
	// invalid drop, the set lookups and the default verdict. The base
	// chains goto them; a mode change rewrites only these and the rule
	// chains.
	ChainIngress = "ingress"
	ChainEgress  = "egress"
	// ChainIngressNP and ChainEgressNP exist when a rule set has an Admin
	// tier: the ingress (egress) chain holds the invalid drop and the Admin
	// tier's lookups, then goes to these, which hold the rest (the
	// NetworkPolicy tier, the Baseline tier, the default verdict); an
	// Admin Pass goes to them too.
	ChainIngressNP = "ingress-np"
	ChainEgressNP  = "egress-np"
	// RuleChainPrefix starts the name of the chain of one rule id
	// ("rule-<id>"), the goto target of that id's set elements, and of its
	// named counter object.
	RuleChainPrefix = "rule-"
)

// Set names. Per direction and address family three verdict maps, looked
// up in this order: entries of any protocol (key address . l4proto with
// l4proto 0-255, interval); exact entries, one address and one port (key
// address . l4proto . port, hash: constant lookup cost however many); all
// other entries (key address . l4proto . port, interval: prefixes and port
// ranges, pipapo).
const (
	SetIngressExact4 = "ingress-exact-v4"
	SetIngressExact6 = "ingress-exact-v6"
	SetEgressExact4  = "egress-exact-v4"
	SetEgressExact6  = "egress-exact-v6"
	SetIngress4      = "ingress-v4"
	SetIngress6      = "ingress-v6"
	SetEgress4       = "egress-v4"
	SetEgress6       = "egress-v6"
	SetIngressAny4   = "ingress-any-v4"
	SetIngressAny6   = "ingress-any-v6"
	SetEgressAny4    = "egress-any-v4"
	SetEgressAny6    = "egress-any-v6"
)

// TierSet returns the name of a ClusterNetworkPolicy tier's map of one
// direction and family: "<tier>-<direction>-v4" (one protocol, key address
// . l4proto . port, interval) or "<tier>-<direction>-any-v4" (any protocol,
// key address . l4proto), "-v6" for IPv6; e.g. "admin-ingress-v4".
func TierSet(t Tier, dir model.Direction, v6, anyProtocol bool) string {
	name := string(t) + "-" + strings.ToLower(string(dir))
	if anyProtocol {
		name += "-any"
	}
	if v6 {
		return name + "-v6"
	}
	return name + "-v4"
}

// Verdict records go to nfnetlink_log group verdictlog.Group with the
// prefix verdictlog.Format(verdict, id): "nanoseg:<verdict>:<id>".

// NPChain returns the chain of direction dir that an Admin Pass goes to:
// ChainIngressNP or ChainEgressNP.
func NPChain(dir model.Direction) string {
	if dir == model.Egress {
		return ChainEgressNP
	}
	return ChainIngressNP
}

// RuleChain returns the name of the chain and counter object of rule id.
func RuleChain(id string) string { return RuleChainPrefix + id }

// DefaultCounterPrefix starts the name of the counter object of a
// direction's default verdict ("default-ingress", "default-egress"): the
// packets no entry allowed. It cannot be a rule counter's name, which
// starts with RuleChainPrefix.
const DefaultCounterPrefix = "default-"

// DefaultCounter returns the name of the default verdict counter of dir.
func DefaultCounter(dir model.Direction) string {
	return DefaultCounterPrefix + strings.ToLower(string(dir))
}
