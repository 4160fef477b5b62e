package observer

import (
	"fmt"
	"strings"
)

// DefaultNFLOGGroup is the NFLOG group the dataplane logs verdicts to. The
// dataplane documents the contract; the observer restates it here rather than
// importing the dataplane.
const DefaultNFLOGGroup uint16 = 18

// PrefixTag starts every verdict-log prefix the dataplane writes.
const PrefixTag = "nanoseg"

// maxRuleID bounds the rule id of a prefix. NFLOG prefixes are at most 127
// bytes (NF_LOG_PREFIXLEN 128 with the NUL), so a longer id is malformed.
const maxRuleID = 127

// ParsePrefix parses a verdict-log prefix "nanoseg:<verdict>:<id>" where
// verdict is observe, allow, audit-deny or deny and id is a rule id (any
// printable ASCII but space, at most 127 bytes; it may itself contain ':').
// One trailing NUL or space is ignored (NFLOG may keep either). It returns
// ErrNotNanoseg when the prefix is someone else's, ErrMalformedPrefix when it
// starts with "nanoseg:" but is broken. Source: the dataplane's verdict-log
// contract (DESIGN.md "Kernel objects").
func ParsePrefix(s string) (Verdict, string, error) {
	s = strings.TrimRight(s, "\x00 ")
	rest, ok := strings.CutPrefix(s, PrefixTag+":")
	if !ok {
		return "", "", ErrNotNanoseg
	}
	word, id, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", fmt.Errorf("parse prefix %q: no rule id: %w", s, ErrMalformedPrefix)
	}
	var v Verdict
	switch word {
	case "observe":
		v = VerdictObserved
	case "allow":
		v = VerdictAllowed
	case "audit-deny":
		v = VerdictAuditDenied
	case "deny":
		v = VerdictDenied
	default:
		return "", "", fmt.Errorf("parse prefix %q: unknown verdict %q: %w", s, word, ErrMalformedPrefix)
	}
	if id == "" || len(id) > maxRuleID {
		return "", "", fmt.Errorf("parse prefix %q: rule id length %d: %w", s, len(id), ErrMalformedPrefix)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return "", "", fmt.Errorf("parse prefix %q: byte %#x in rule id: %w", s, id[i], ErrMalformedPrefix)
		}
	}
	return v, id, nil
}

// FormatPrefix is the inverse of ParsePrefix, for tests and tools:
// FormatPrefix(VerdictDenied, "r1") == "nanoseg:deny:r1".
func FormatPrefix(v Verdict, id string) string {
	word := map[Verdict]string{VerdictObserved: "observe", VerdictAllowed: "allow",
		VerdictAuditDenied: "audit-deny", VerdictDenied: "deny"}[v]
	return PrefixTag + ":" + word + ":" + id
}
