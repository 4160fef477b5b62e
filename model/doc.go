// Package model is nanoseg's vocabulary: the words of docs/architecture.md ("Words")
// as Go types, each with one spelling. Every other package may import it;
// it imports only the standard library.
//
// Spellings:
//
//   - Protocol: the Kubernetes NetworkPolicy API's ("TCP", "UDP", "SCTP"),
//     plus "ICMP" and "ICMPv6".
//   - Direction: NetworkPolicy policyTypes' ("Ingress", "Egress").
//   - Verdict: the verdicts of docs/architecture.md ("allow", "audit-deny", "deny"), plus "observed"
//     for a flow no rule decided.
//   - Mode: the modes of docs/architecture.md ("observe", "audit", "enforce").
//   - Failure: why a connection never succeeded ("reset", "unanswered").
//
// Decoding is tolerant of the spellings older nanoseg versions wrote
// (lower-case protocols and directions, "allowed"/"audit-denied"/"denied"),
// so state files and edge files written by them still load; encoding always
// writes the one spelling above.
package model
