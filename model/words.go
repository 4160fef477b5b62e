package model

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnknownWord is wrapped by the Parse functions' errors: the text is no
// spelling (current or legacy) of the word asked for.
var ErrUnknownWord = errors.New("unknown word")

// Protocol is a layer-4 protocol, spelled as the Kubernetes NetworkPolicy
// API spells it (corev1.Protocol: "TCP", "UDP", "SCTP"), plus "ICMP" and
// "ICMPv6". A protocol nanoseg has no word for is its IANA number in
// decimal (e.g. "47"), as the observer reports it. The empty Protocol means
// "unspecified": TCP in a policy port, any protocol in a rule-set entry.
type Protocol string

// The protocols nanoseg names.
const (
	ProtocolTCP    Protocol = "TCP"
	ProtocolUDP    Protocol = "UDP"
	ProtocolSCTP   Protocol = "SCTP"
	ProtocolICMP   Protocol = "ICMP"
	ProtocolICMPv6 Protocol = "ICMPv6"
)

// Protocols lists the named protocols in a fixed order.
var Protocols = []Protocol{ProtocolTCP, ProtocolUDP, ProtocolSCTP, ProtocolICMP, ProtocolICMPv6}

// legacyProtocol maps the lower-case spellings of earlier versions
// (observer and store JSON "tcp", dataplane "icmpv6", IANA keyword
// "ipv6-icmp") and any other case of a named protocol to the one spelling.
func legacyProtocol(s string) (Protocol, bool) {
	switch strings.ToLower(s) {
	case "tcp":
		return ProtocolTCP, true
	case "udp":
		return ProtocolUDP, true
	case "sctp":
		return ProtocolSCTP, true
	case "icmp":
		return ProtocolICMP, true
	case "icmpv6", "ipv6-icmp":
		return ProtocolICMPv6, true
	}
	return "", false
}

// ParseProtocol returns the Protocol spelled s: a named protocol in any
// case (so the legacy "tcp", "icmpv6" and "ipv6-icmp" too), or an IANA
// protocol number 0-255 in decimal. Errors wrap ErrUnknownWord.
func ParseProtocol(s string) (Protocol, error) {
	if p, ok := legacyProtocol(s); ok {
		return p, nil
	}
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		return ProtocolFromNumber(uint8(n)), nil
	}
	return "", fmt.Errorf("parse protocol %q: want TCP, UDP, SCTP, ICMP, ICMPv6 or a number 0-255: %w", s, ErrUnknownWord)
}

// UnmarshalText decodes a protocol tolerantly: the legacy spellings
// ParseProtocol accepts become the one spelling; anything else is kept as
// written, for validation to judge (so a policy with a bad protocol gets a
// validation error naming it, not a decode error).
func (p *Protocol) UnmarshalText(b []byte) error {
	if q, err := ParseProtocol(string(b)); err == nil {
		*p = q
		return nil
	}
	*p = Protocol(b)
	return nil
}

// Number returns the IANA protocol number of p (the value of nft's
// `meta l4proto` and conntrack's tuple) and whether p names one protocol.
func (p Protocol) Number() (uint8, bool) {
	switch p {
	case ProtocolTCP:
		return 6, true
	case ProtocolUDP:
		return 17, true
	case ProtocolSCTP:
		return 132, true
	case ProtocolICMP:
		return 1, true
	case ProtocolICMPv6:
		return 58, true
	}
	if n, err := strconv.ParseUint(string(p), 10, 8); err == nil {
		return uint8(n), true
	}
	return 0, false
}

// ProtocolFromNumber returns the protocol of IANA number n: a named one, or
// n in decimal.
func ProtocolFromNumber(n uint8) Protocol {
	switch n {
	case 6:
		return ProtocolTCP
	case 17:
		return ProtocolUDP
	case 132:
		return ProtocolSCTP
	case 1:
		return ProtocolICMP
	case 58:
		return ProtocolICMPv6
	}
	return Protocol(strconv.Itoa(int(n)))
}

// HasPorts reports whether p has ports (TCP, UDP, SCTP).
func (p Protocol) HasPorts() bool {
	return p == ProtocolTCP || p == ProtocolUDP || p == ProtocolSCTP
}

// IsICMP reports whether p is ICMP or ICMPv6.
func (p Protocol) IsICMP() bool { return p == ProtocolICMP || p == ProtocolICMPv6 }

// Direction says which way traffic goes as seen from an endpoint or a
// selected pod, spelled as NetworkPolicy's policyTypes: Ingress is traffic
// towards it (a peer opened the connection), Egress traffic from it (it
// opened the connection).
type Direction string

// The two directions.
const (
	Ingress Direction = "Ingress"
	Egress  Direction = "Egress"
)

// Directions lists both directions; Direction.Index is the position in it.
var Directions = [2]Direction{Ingress, Egress}

// Index returns 0 for Ingress and 1 for Egress (anything else), for arrays
// indexed by direction.
func (d Direction) Index() int {
	if d == Ingress {
		return 0
	}
	return 1
}

// ParseDirection returns the direction spelled s in any case ("Ingress",
// legacy "ingress"). Errors wrap ErrUnknownWord.
func ParseDirection(s string) (Direction, error) {
	switch strings.ToLower(s) {
	case "ingress":
		return Ingress, nil
	case "egress":
		return Egress, nil
	}
	return "", fmt.Errorf("parse direction %q: want Ingress or Egress: %w", s, ErrUnknownWord)
}

// UnmarshalText decodes a direction in any case; other text is kept as
// written.
func (d *Direction) UnmarshalText(b []byte) error {
	if v, err := ParseDirection(string(b)); err == nil {
		*d = v
		return nil
	}
	*d = Direction(b)
	return nil
}

// Verdict is what nanoseg's rules said about a connection (docs/architecture.md "Words":
// allow / deny / audit-deny, always traceable to a rule id), or
// VerdictObserved when no rule decided it: conntrack alone saw it, or an
// endpoint in observe mode logged it.
type Verdict string

// The verdicts.
const (
	VerdictObserved  Verdict = "observed"
	VerdictAllow     Verdict = "allow"
	VerdictAuditDeny Verdict = "audit-deny"
	VerdictDeny      Verdict = "deny"
)

// Verdicts lists the verdicts in a fixed order.
var Verdicts = []Verdict{VerdictObserved, VerdictAllow, VerdictAuditDeny, VerdictDeny}

// ParseVerdict returns the verdict spelled s: the one spelling, or a
// legacy one ("observe", "allowed", "audit-denied", "denied"). Errors wrap
// ErrUnknownWord.
func ParseVerdict(s string) (Verdict, error) {
	switch s {
	case "observed", "observe":
		return VerdictObserved, nil
	case "allow", "allowed":
		return VerdictAllow, nil
	case "audit-deny", "audit-denied":
		return VerdictAuditDeny, nil
	case "deny", "denied":
		return VerdictDeny, nil
	}
	return "", fmt.Errorf("parse verdict %q: want observed, allow, audit-deny or deny: %w", s, ErrUnknownWord)
}

// UnmarshalText decodes a verdict tolerantly (ParseVerdict); other text is
// kept as written.
func (v *Verdict) UnmarshalText(b []byte) error {
	if w, err := ParseVerdict(string(b)); err == nil {
		*v = w
		return nil
	}
	*v = Verdict(b)
	return nil
}

// Denies reports whether v is audit-deny or deny.
func (v Verdict) Denies() bool { return v == VerdictAuditDeny || v == VerdictDeny }

// Mode is what an endpoint's rules do with connections no rule allows
// (docs/architecture.md "Words"): observe (filter nothing, log new connections),
// audit (log would-be-denied connections and let them through), enforce
// (drop them and log them, rate-limited).
type Mode string

// The modes, in promotion order.
const (
	ModeObserve Mode = "observe"
	ModeAudit   Mode = "audit"
	ModeEnforce Mode = "enforce"
)

// Modes lists the modes in promotion order.
var Modes = []Mode{ModeObserve, ModeAudit, ModeEnforce}

// ParseMode returns the mode spelled s. Errors wrap ErrUnknownWord.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeObserve, ModeAudit, ModeEnforce:
		return m, nil
	}
	return "", fmt.Errorf("parse mode %q: want observe, audit or enforce: %w", s, ErrUnknownWord)
}

// Valid reports whether m is one of the three modes.
func (m Mode) Valid() bool { return m == ModeObserve || m == ModeAudit || m == ModeEnforce }
