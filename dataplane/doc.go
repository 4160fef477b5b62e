// Package dataplane holds the rule set of one endpoint, its rendering to
// nftables objects (pure), and applying it to and reading it back from the
// endpoint's own network namespace (Linux, one netlink transaction each,
// a few when maps are made).
//
// It imports neither client-go nor the policies package: the rule set is the
// only thing it understands.
//
// # Files
//
//   - ruleset.go: RuleSet, Entry (modes, protocols and directions are
//     model's; ProtocolAny for any protocol); Validate (every problem at
//     once, each naming its entry); Allows, the Go twin of the kernel lookup.
//   - elements.go: Elements, the map elements of a rule set: any-protocol
//     entries, exact entries (one address, one port; hash maps) and the rest
//     (interval maps, overlaps cut apart, the earlier entry wins), looked up
//     in that order, which decides the rule id an overlap is counted to.
//   - render.go: Render, rule set → nftables objects, with the table's
//     layout in nft syntax and why it is so.
//   - names.go: kernel object names.
//   - kernel_linux.go: Dataplane.Apply (one transaction, or two or four
//     when maps are made: new maps are committed before their lookups;
//     in-place element updates, maps replaced whole when most of their
//     elements go, adoption, rebuild of altered tables) and Dataplane.Read.
//   - conntrack_linux.go: CutConnections, deleting exactly the conntrack
//     entries a tightened enforcing rule set disallows.
//   - reconciler_linux.go: Reconciler, desired rule sets per endpoint, drift
//     repair by coalesced periodic comparison, per-endpoint errors.
//
// # Verdict log contract (read by the observer)
//
// Every verdict record goes to nfnetlink_log group verdictlog.Group (18) of
// the endpoint's netns, with the prefix verdictlog.Format writes
//
//	nanoseg:<verdict>:<id>
//
// where <verdict> is one of
//
//	observed    observe mode: a new connection (every one is logged)
//	allow       audit or enforce mode with RuleSet.LogAllowed: an entry allowed a new connection
//	audit-deny  audit mode: no entry allows the new connection; it was let through
//	deny        enforce mode: no entry allows the new connection; it was dropped (records rate-limited to LogRate/s, burst LogBurst)
//
// and <id> is the rule id of the entry that matched (observed, allow), the
// rule set's Name when no entry matched in observe mode (observed), or the
// direction's default id (RuleSet.DefaultID: IngressDefault or
// EgressDefault, else Name) when no entry matched in audit or enforce mode
// (audit-deny, deny). Ids
// obey verdictlog.ValidID: 1 to 100 bytes of [A-Za-z0-9._/-], so a prefix
// has no further colon and is at most 119 bytes, within the kernel's 127. A record is made
// for connection-opening packets only (anything not established or
// related); a retransmitted opening packet makes another record. The
// direction is not in the prefix: the logged packet's addresses tell it.
// The grammar lives in internal/verdictlog, which the observer parses with
// (the observer must not import this package, see deps_test.go). Tables
// programmed before the one vocabulary say "observe"; Read and the observer
// still understand it.
//
// # Counters
//
// Each rule id has a named counter object "rule-<id>" in the table, counting
// packets and bytes of the connection-opening packets its entries accepted
// (established traffic takes the conntrack fast path and is not counted per
// rule). Read returns them as State.Counters. Each direction's default
// verdict has a named counter object too, "default-ingress" and
// "default-egress" (DefaultCounter), counting every packet no entry allowed
// whether or not anyone reads the verdict log; Read returns them as
// State.Defaults.
//
// Sources: the team design notes ("Kernel objects"), issue 3, nft(8), the Linux
// nf_tables and nfnetlink_log uapi headers.
package dataplane
