// Package verdictlog is the contract between the dataplane, which writes
// verdict records, and the observer, which reads them: the nfnetlink_log
// (NFLOG) group and the log prefix grammar
//
//	prefix  = "nanoseg:" verdict ":" rule-id
//	verdict = "observed" | "allow" | "audit-deny" | "deny"
//	rule-id = 1*100( ALPHA / DIGIT / "." / "_" / "/" / "-" )
//
// The rule id is the id of the rule that matched; when no rule matched, the
// id of the default that decided (the policy or policies that isolated the
// endpoint in that direction, compile.DefaultID), or the rule set's name in
// observe mode and in tables programmed before default ids. The colon is not in the id alphabet, so the prefix
// splits unambiguously. The longest prefix, "nanoseg:audit-deny:" and a
// 100-byte id, is 119 bytes: within the kernel's 127 usable bytes
// (NF_LOG_PREFIXLEN 128 with the NUL), and "rule-" plus the id stays within
// NFT_NAME_MAXLEN for the dataplane's rule chains.
//
// Parse also accepts the verdict word "observe" (and the other legacy
// spellings model.ParseVerdict knows), written by agents before the one
// vocabulary, so tables they programmed are understood until re-rendered.
//
// Sources: nft(8) "log" statement; linux include/uapi/linux/netfilter/
// nf_log.h (NF_LOG_PREFIXLEN); the team design notes ("Kernel objects").
package verdictlog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nanoseg/nanoseg/model"
)

// Group is the nfnetlink_log group every verdict record goes to.
const Group uint16 = 18

// Tag starts every nanoseg prefix, followed by ':'.
const Tag = "nanoseg"

// MaxIDLen is the longest rule id, in bytes.
const MaxIDLen = 100

// Errors of Parse and ValidID, checked with errors.Is.
var (
	// ErrNotNanoseg: the prefix is someone else's (does not start with
	// "nanoseg:").
	ErrNotNanoseg = errors.New("not a nanoseg verdict-log prefix")
	// ErrMalformed: the prefix starts with "nanoseg:" but breaks the
	// grammar.
	ErrMalformed = errors.New("malformed nanoseg verdict-log prefix")
	// ErrBadID: a rule id outside the alphabet or length limit.
	ErrBadID = errors.New("invalid rule id")
)

// ValidID reports whether id can be a rule id or rule set name: 1 to
// MaxIDLen bytes of ASCII letters, digits, '.', '_', '-' and '/'. The
// error wraps ErrBadID.
func ValidID(id string) error {
	if id == "" {
		return fmt.Errorf("empty id: %w", ErrBadID)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("id %.20q... is %d bytes, more than %d: %w", id, len(id), MaxIDLen, ErrBadID)
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return fmt.Errorf("id %q: character %q not in [A-Za-z0-9._/-]: %w", id, id[i], ErrBadID)
		}
	}
	return nil
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '/'
}

// Format returns the prefix of a verdict record: "nanoseg:<verdict>:<id>".
// v must be one of model's four verdicts and id must pass ValidID (the
// dataplane validates every rule set before rendering it); for such pairs
// Parse(Format(v, id)) returns (v, id).
func Format(v model.Verdict, id string) string {
	return Tag + ":" + string(v) + ":" + id
}

// Parse splits a verdict-log prefix into verdict and rule id. Trailing NUL
// bytes and spaces (the kernel may deliver either) are ignored. It returns
// an error wrapping ErrNotNanoseg when the prefix is someone else's, and
// one wrapping ErrMalformed when it starts with "nanoseg:" but its verdict
// word is unknown or its id fails ValidID.
func Parse(s string) (model.Verdict, string, error) {
	s = strings.TrimRight(s, "\x00 ")
	rest, ok := strings.CutPrefix(s, Tag+":")
	if !ok {
		return "", "", ErrNotNanoseg
	}
	w, id, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", fmt.Errorf("parse prefix %q: no rule id: %w", s, ErrMalformed)
	}
	v, err := model.ParseVerdict(w)
	if err != nil {
		return "", "", fmt.Errorf("parse prefix %q: unknown verdict %q: %w", s, w, ErrMalformed)
	}
	if err := ValidID(id); err != nil {
		return "", "", fmt.Errorf("parse prefix %q: %w: %w", s, err, ErrMalformed)
	}
	return v, id, nil
}
