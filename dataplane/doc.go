// Package dataplane holds the rule set of one endpoint, its rendering to
// nftables objects (pure), and applying it to and reading it back from the
// endpoint's own network namespace (Linux, one netlink transaction each).
//
// It imports neither client-go nor the policies package: the rule set is the
// only thing it understands.
package dataplane
