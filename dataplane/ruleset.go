package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// ProtocolAny is the protocol of an entry (and of a read-back element)
// that matches every protocol and takes no port; an Entry may also leave
// Protocol empty for it. Named protocols are model's (TCP, UDP, SCTP, ICMP
// for IPv4 peers, ICMPv6 for IPv6 peers); nft(8) spells them in lower case.
const ProtocolAny model.Protocol = "any"

// knownProtocol reports whether p is one an entry may name.
func knownProtocol(p model.Protocol) bool {
	return p == ProtocolAny || slices.Contains(model.Protocols, p)
}

// protocolOf maps an IANA protocol number back to a named protocol ("" if
// none).
func protocolOf(n uint8) model.Protocol {
	if p := model.ProtocolFromNumber(n); slices.Contains(model.Protocols, p) {
		return p
	}
	return ""
}

// Entry allows one peer on one protocol and port or port range, and
// carries the id of the policy rule it came from.
//
// Port and EndPort follow NetworkPolicy's port / endPort: Port 0 means all
// ports; EndPort 0 means the single port Port; otherwise the inclusive range
// Port..EndPort. Ports apply to TCP, UDP and SCTP only.
type Entry struct {
	Peer     netip.Prefix   `json:"peer"`              // IPv4 or IPv6 address or prefix
	Protocol model.Protocol `json:"protocol"`          // "" means ProtocolAny
	Port     int            `json:"port,omitempty"`    // 1..65535, or 0 for all ports
	EndPort  int            `json:"endPort,omitempty"` // Port..65535, or 0
	RuleID   string         `json:"ruleID"`            // see verdictlog.ValidID
	// Action is what a ClusterNetworkPolicy tier entry does (Tiers):
	// ActionAccept, ActionDeny or ActionPass. Entries of Ingress and Egress
	// (the NetworkPolicy tier) allow and leave it empty.
	Action Action `json:"action,omitempty"`
}

// Action is the action of a tier entry: the upstream ClusterNetworkPolicy
// rule actions (https://network-policy-api.sigs.k8s.io/reference/spec/,
// ClusterNetworkPolicyRuleAction) in nanoseg's spelling.
type Action string

// Tier entry actions. Accept accepts the connection whatever the rule
// set's mode; Deny drops it in enforce and observe mode and, in audit
// mode, logs it as audit-deny and accepts it (issue 15); Pass in the
// Admin tier skips the rest of the tier and goes on to the NetworkPolicy
// tier; Pass in the Baseline tier goes to the default, which is allow
// there (the compiler only consults the Baseline tier in a direction no
// policy isolates), so the kernel accepts it.
const (
	ActionAccept Action = "accept"
	ActionDeny   Action = "deny"
	ActionPass   Action = "pass"
)

// Tier names one of the two ClusterNetworkPolicy tiers of a rule set.
type Tier string

// The tiers, in the order the kernel consults them around the
// NetworkPolicy tier (Ingress and Egress of RuleSet): TierAdmin before,
// TierBaseline after.
const (
	TierAdmin    Tier = "admin"
	TierBaseline Tier = "baseline"
)

// Tiers are the entries of the ClusterNetworkPolicy tiers of one rule set:
// per direction, in precedence order (policies by priority, then by name;
// each policy's rules in written order); where entries overlap, the
// earlier one decides. An empty Tiers puts nothing in the table.
type Tiers struct {
	Ingress []Entry `json:"ingress,omitempty"`
	Egress  []Entry `json:"egress,omitempty"`
}

// Entries returns the entries of direction dir.
func (t Tiers) Entries(dir model.Direction) []Entry {
	if dir == model.Egress {
		return t.Egress
	}
	return t.Ingress
}

// Empty reports whether t has no entries.
func (t Tiers) Empty() bool { return len(t.Ingress) == 0 && len(t.Egress) == 0 }

// proto returns e.Protocol with "" read as ProtocolAny.
func (e Entry) proto() model.Protocol {
	if e.Protocol == "" {
		return ProtocolAny
	}
	return e.Protocol
}

// portRange returns the inclusive port range e covers.
func (e Entry) portRange() (uint16, uint16) {
	switch {
	case e.Port == 0:
		return 0, 65535
	case e.EndPort == 0:
		return uint16(e.Port), uint16(e.Port)
	}
	return uint16(e.Port), uint16(e.EndPort)
}

// String renders e in nft-like words, for error messages and logs.
func (e Entry) String() string {
	s := fmt.Sprintf("%s %s", e.Peer, e.proto())
	switch {
	case e.Port != 0 && e.EndPort != 0:
		s += fmt.Sprintf(" %d-%d", e.Port, e.EndPort)
	case e.Port != 0:
		s += fmt.Sprintf(" %d", e.Port)
	}
	s += " rule " + e.RuleID
	if e.Action != "" {
		s += " " + string(e.Action)
	}
	return s
}

// RuleSet is everything that applies to one endpoint: the only thing the
// dataplane understands (docs/architecture.md, "Words").
type RuleSet struct {
	// Name identifies the endpoint's rule set; it is the id of the
	// verdict log in observe mode, and of a direction's default verdict
	// whose default id is empty (see verdictlog.Format), so it obeys
	// ValidID.
	Name string     `json:"name"`
	Mode model.Mode `json:"mode"`
	// IngressDefault and EgressDefault are the rule ids the verdict log
	// carries for the connections no entry of that direction allows (the
	// audit-deny or deny default, in audit and enforce mode): the policy or
	// policies that isolated the endpoint in that direction (the compiler's
	// compile.DefaultID). Empty means Name. They obey ValidID.
	IngressDefault string `json:"ingressDefault,omitempty"`
	EgressDefault  string `json:"egressDefault,omitempty"`
	// LogAllowed also logs new connections an entry allows, with verdict
	// "allow" and the entry's rule id, in audit and enforce mode.
	LogAllowed bool    `json:"logAllowed,omitempty"`
	Ingress    []Entry `json:"ingress,omitempty"`
	Egress     []Entry `json:"egress,omitempty"`
	// Admin and Baseline are the ClusterNetworkPolicy tiers, consulted in
	// the kernel before (Admin) and after (Baseline) Ingress and Egress;
	// their Accept and Deny entries decide whatever Mode says (a Deny
	// drops in observe and audit mode too). The compiler puts Baseline
	// entries only into a direction no policy isolates, ending them with
	// an accept-everything entry when the mode would otherwise deny.
	Admin    Tiers `json:"admin,omitzero"`
	Baseline Tiers `json:"baseline,omitzero"`
}

// tier returns the entries of tier t.
func (rs RuleSet) tier(t Tier) Tiers {
	if t == TierAdmin {
		return rs.Admin
	}
	return rs.Baseline
}

// DefaultID returns the rule id of the default verdict of direction dir:
// IngressDefault or EgressDefault, or Name when that is empty.
func (rs RuleSet) DefaultID(dir model.Direction) string {
	id := rs.IngressDefault
	if dir == model.Egress {
		id = rs.EgressDefault
	}
	if id == "" {
		return rs.Name
	}
	return id
}

// Equal reports whether rs and o are the same rule set: same name, mode,
// default ids, logging and entries in the same order (a nil and an empty
// list are equal).
func (rs RuleSet) Equal(o RuleSet) bool {
	return rs.Name == o.Name && rs.Mode == o.Mode && rs.LogAllowed == o.LogAllowed &&
		rs.DefaultID(model.Ingress) == o.DefaultID(model.Ingress) && rs.DefaultID(model.Egress) == o.DefaultID(model.Egress) &&
		slices.Equal(rs.Ingress, o.Ingress) && slices.Equal(rs.Egress, o.Egress) &&
		slices.Equal(rs.Admin.Ingress, o.Admin.Ingress) && slices.Equal(rs.Admin.Egress, o.Admin.Egress) &&
		slices.Equal(rs.Baseline.Ingress, o.Baseline.Ingress) && slices.Equal(rs.Baseline.Egress, o.Baseline.Egress)
}

// LogValue implements slog.LogValuer: name, mode and entry counts, never
// the entries.
func (rs RuleSet) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", rs.Name), slog.String("mode", string(rs.Mode)),
		slog.Int("ingress", len(rs.Ingress)), slog.Int("egress", len(rs.Egress)),
		slog.Int("admin", len(rs.Admin.Ingress)+len(rs.Admin.Egress)), slog.Int("baseline", len(rs.Baseline.Ingress)+len(rs.Baseline.Egress)))
}

// Rule ids and rule set names obey verdictlog.ValidID: 1 to
// verdictlog.MaxIDLen bytes of [A-Za-z0-9._/-], so that the log prefix and
// the rule chain name "rule-<id>" fit the kernel's limits.

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid rule set")

// Validate checks rs and reports every problem at once, each naming the
// entry (direction, index and the entry itself). The error wraps ErrInvalid.
// It refuses: an unknown mode; a bad name or rule id (ValidID); an invalid
// prefix or an IPv4-mapped IPv6 one; an unknown protocol; ICMP with an IPv6
// peer or ICMPv6 with an IPv4 one; a port outside 1..65535; an end port
// without a port, outside 1..65535 or before the port; a port on a protocol
// without ports.
func (rs RuleSet) Validate() error {
	var errs []error
	switch rs.Mode {
	case model.ModeObserve, model.ModeAudit, model.ModeEnforce:
	default:
		errs = append(errs, fmt.Errorf("mode %q: want observe, audit or enforce", rs.Mode))
	}
	if err := verdictlog.ValidID(rs.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	for _, d := range [][2]string{{"ingressDefault", rs.IngressDefault}, {"egressDefault", rs.EgressDefault}} {
		if d[1] == "" {
			continue
		}
		if err := verdictlog.ValidID(d[1]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d[0], err))
		}
	}
	check := func(where string, dir model.Direction, i int, e Entry) {
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("%s%s[%d] (%s): %s", where, dir, i, e, fmt.Sprintf(format, a...)))
		}
		switch {
		case where == "" && e.Action != "":
			bad("action %q on a NetworkPolicy tier entry, which only allows", e.Action)
		case where != "" && e.Action != ActionAccept && e.Action != ActionDeny && e.Action != ActionPass:
			bad("action %q: want accept, deny or pass", e.Action)
		}
		if !e.Peer.IsValid() {
			bad("invalid peer prefix")
		} else if e.Peer.Addr().Is4In6() {
			bad("IPv4-mapped IPv6 peer; use the IPv4 form")
		}
		p := e.proto()
		if !knownProtocol(p) {
			bad("unknown protocol %q", e.Protocol)
		}
		if e.Peer.IsValid() {
			if p == model.ProtocolICMP && e.Peer.Addr().Is6() {
				bad("ICMP with an IPv6 peer; use ICMPv6")
			}
			if p == model.ProtocolICMPv6 && e.Peer.Addr().Is4() {
				bad("ICMPv6 with an IPv4 peer; use ICMP")
			}
		}
		if e.Port < 0 || e.Port > 65535 {
			bad("port %d outside 1..65535", e.Port)
		}
		if e.EndPort != 0 {
			switch {
			case e.Port == 0:
				bad("end port %d without a port", e.EndPort)
			case e.EndPort < 1 || e.EndPort > 65535:
				bad("end port %d outside 1..65535", e.EndPort)
			case e.EndPort < e.Port:
				bad("end port %d before port %d", e.EndPort, e.Port)
			}
		}
		if (e.Port != 0 || e.EndPort != 0) && !p.HasPorts() {
			bad("port on protocol %s, which has none", p)
		}
		if err := verdictlog.ValidID(e.RuleID); err != nil {
			bad("rule id: %v", err)
		}
	}
	for i, e := range rs.Ingress {
		check("", model.Ingress, i, e)
	}
	for i, e := range rs.Egress {
		check("", model.Egress, i, e)
	}
	// A rule id names one chain: one tier, one action, and never an id of
	// the NetworkPolicy tier.
	devIDs := map[string]bool{}
	for _, e := range slices.Concat(rs.Ingress, rs.Egress) {
		devIDs[e.RuleID] = true
	}
	type use struct {
		tier   Tier
		dir    model.Direction
		action Action
	}
	uses := map[string]use{}
	for _, t := range []Tier{TierAdmin, TierBaseline} {
		for _, dir := range model.Directions {
			for i, e := range rs.tier(t).Entries(dir) {
				check(string(t)+".", dir, i, e)
				if devIDs[e.RuleID] {
					errs = append(errs, fmt.Errorf("%s.%s[%d] (%s): rule id also used by the NetworkPolicy tier", t, dir, i, e))
				}
				if u, ok := uses[e.RuleID]; ok && u != (use{t, dir, e.Action}) {
					errs = append(errs, fmt.Errorf("%s.%s[%d] (%s): rule id used with %s %s %s already", t, dir, i, e, u.tier, u.dir, u.action))
				}
				uses[e.RuleID] = use{t, dir, e.Action}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// matches reports whether entry e matches a peer address, protocol number
// and destination port.
func (e Entry) matches(peer netip.Addr, proto uint8, port uint16) bool {
	if !e.Peer.Masked().Contains(peer) {
		return false
	}
	if p := e.proto(); p != ProtocolAny {
		if n, _ := p.Number(); n != proto {
			return false
		}
		if lo, hi := e.portRange(); p.HasPorts() && (port < lo || port > hi) {
			return false
		}
	}
	return true
}

// Decide returns the verdict the kernel gives a new connection in
// direction dir with the peer address peer, protocol number proto and
// destination port port, and the rule id that decided: the Admin tier's
// first matching entry (accept: allow, deny: deny or in audit mode
// audit-deny, pass: on to the next tier), then Allows, then the Baseline
// tier's first matching entry (deny: deny, audit-deny in audit mode;
// accept and pass: allow), then the mode's default with DefaultID
// (observe: observed, audit: audit-deny, enforce: deny). It is the Go twin
// of the whole table (render.go) and the meaning of a rule set.
func (rs RuleSet) Decide(dir model.Direction, peer netip.Addr, proto uint8, port uint16) (string, model.Verdict) {
	peer = peer.Unmap()
	for _, e := range rs.Admin.Entries(dir) {
		if !e.matches(peer, proto, port) {
			continue
		}
		switch e.Action {
		case ActionAccept:
			return e.RuleID, model.VerdictAllow
		case ActionDeny:
			return e.RuleID, rs.tierDeny()
		}
		break // pass: the rest of the tier is skipped
	}
	if id, ok := rs.Allows(dir, peer, proto, port); ok {
		return id, model.VerdictAllow
	}
	for _, e := range rs.Baseline.Entries(dir) {
		if !e.matches(peer, proto, port) {
			continue
		}
		if e.Action == ActionDeny {
			return e.RuleID, rs.tierDeny()
		}
		return e.RuleID, model.VerdictAllow
	}
	switch rs.Mode {
	case model.ModeEnforce:
		return rs.DefaultID(dir), model.VerdictDeny
	case model.ModeAudit:
		return rs.DefaultID(dir), model.VerdictAuditDeny
	}
	return rs.Name, model.VerdictObserved
}

// tierDeny returns the verdict of a tier's deny entry under rs's mode:
// audit-deny in audit mode (logged and accepted), else deny.
func (rs RuleSet) tierDeny() model.Verdict {
	if rs.Mode == model.ModeAudit {
		return model.VerdictAuditDeny
	}
	return model.VerdictDeny
}

// denies reports whether rs drops some new connections: it enforces, or
// it observes and a tier holds a deny entry (in audit mode a tier's deny
// is only logged).
func (rs RuleSet) denies() bool {
	switch rs.Mode {
	case model.ModeEnforce:
		return true
	case model.ModeAudit:
		return false
	}
	for _, es := range [][]Entry{rs.Admin.Ingress, rs.Admin.Egress, rs.Baseline.Ingress, rs.Baseline.Egress} {
		if slices.ContainsFunc(es, func(e Entry) bool { return e.Action == ActionDeny }) {
			return true
		}
	}
	return false
}

// Allows reports whether a new connection in direction dir with the peer
// address peer, protocol number proto and destination port port (ignored for
// protocols without ports) is allowed by an entry of rs, and by which rule
// id (in the kernel's order: any-protocol entries, then exact entries, then
// the rest, first match within each). The mode is not
// consulted. It is the Go twin of the kernel lookup, used to decide which
// established connections a tightening cuts.
func (rs RuleSet) Allows(dir model.Direction, peer netip.Addr, proto uint8, port uint16) (string, bool) {
	entries := rs.Ingress
	if dir == model.Egress {
		entries = rs.Egress
	}
	peer = peer.Unmap()
	// The kernel's lookup order (render.go): any-protocol entries, then
	// exact entries (one address, one port), then the rest; within each,
	// the first matching entry.
	for _, kind := range []mapKind{kindAny, kindExact, kindRange} {
		for _, e := range entries {
			if entryKind(e) != kind || !e.matches(peer, proto, port) {
				continue
			}
			return e.RuleID, true
		}
	}
	return "", false
}
