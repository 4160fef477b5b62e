package dataplane

// Render: rule set → nftables objects, pure (no netlink). Apply (kernel.go)
// sends what Render returns, so this file is where the table's layout lives.
//
// The table, in nft(8) syntax (each rule's comment carries this form, and
// the read-back compares comments to detect altered rules):
//
//	table inet nanoseg {
//	  counter rule-<id> { }                       # one per rule id
//	  map ingress-any-v4 { type ipv4_addr . inet_proto : verdict; flags interval; }
//	  map ingress-exact-v4 { type ipv4_addr . inet_proto . inet_service : verdict; }
//	  map ingress-v4 { type ipv4_addr . inet_proto . inet_service : verdict; flags interval; }
//	  ... the same for ingress-*-v6, egress-*
//	  chain input {
//	    type filter hook input priority filter; policy accept;
//	    ct state established,related accept      # fast path; ICMP errors of allowed connections are "related"
//	    iifname "lo" accept
//	    icmpv6 type 133-137 accept               # neighbour discovery, router discovery, redirect
//	    icmpv6 type 130-132 accept               # MLD
//	    icmpv6 type 143 accept                   # MLDv2 report
//	    goto ingress
//	  }
//	  chain ingress {                            # rewritten when the mode changes
//	    meta l4proto != sctp ct state invalid drop         # audit, enforce
//	    meta nfproto ipv4 ip saddr . meta l4proto vmap @ingress-any-v4
//	    meta nfproto ipv4 ip saddr . meta l4proto . th dport vmap @ingress-exact-v4
//	    meta nfproto ipv4 ip saddr . meta l4proto . th dport vmap @ingress-v4
//	    ... the same for ipv6 (ip6 saddr)
//	    counter name "default-ingress"           # every packet no entry allowed
//	    log prefix "nanoseg:observe:<name>" group 18                   # observe
//	    log prefix "nanoseg:audit-deny:<name>" group 18 accept          # audit
//	    limit rate 10/second burst 20 packets log prefix "nanoseg:deny:<name>" group 18  # enforce
//	    drop                                                            # enforce
//	  }
//	  chain rule-<id> {
//	    counter name "rule-<id>"
//	    log prefix "nanoseg:observe:<id>" group 18   # observe; "allow" with LogAllowed
//	    accept
//	  }
//	  output, egress: the same with oifname and daddr.
//	}
//
// With ClusterNetworkPolicy tiers (RuleSet.Admin, RuleSet.Baseline) the
// table also holds, per tier, direction and family, the maps
// "<tier>-<dir>-v4" (address . l4proto . port, interval) and
// "<tier>-<dir>-any-v4" (address . l4proto), looked up in that order; the
// Admin lookups sit in ingress/egress before "goto ingress-np" (egress-np),
// which holds the NetworkPolicy tier's lookups, the Baseline lookups and
// the default. A tier rule's chain counts, then accepts, drops (deny,
// logged "nanoseg:deny:<id>" rate-limited, in enforce and observe mode),
// logs "nanoseg:audit-deny:<id>" and accepts (deny in audit mode) or, for
// an Admin Pass, goes to the -np chain. Elements keep the first-match
// order of the tier's entries (tierElements); docs/architecture.md,
// "ClusterNetworkPolicy tiers in the kernel", says why.
//
// Why this shape:
//   - Allowed peers live in verdict maps whose elements goto the chain of
//     their rule id, so one lookup (pipapo, cost independent of the number of
//     elements) both decides and attributes a new connection.
//   - Per-rule counters are named counter objects referenced from the rule
//     chain, so rewriting a rule chain on a mode change keeps its counts. They
//     count the packets (and bytes) of connection-opening packets only: once
//     accepted, a connection's later packets take the conntrack fast path and
//     never reach the maps.
//   - The default verdict has a named counter per direction too, before the
//     log rule, so the kernel counts every packet no entry allowed (denied in
//     enforce), also those beyond the deny log's rate limit and those logged
//     while nobody reads the log (no agent running): NFLOG keeps nothing
//     for an absent reader, the counter keeps counting.
//   - Entries of any protocol are in their own maps (key address . l4proto,
//     l4proto 0-255) looked up first: pipapo refuses overlapping elements, and
//     an any-protocol entry would overlap every protocol entry of its peer.
//     Overlaps within one map are cut apart by Elements.
//   - Entries of one address and one port (the common case: a peer's
//     address and a service port) go to a hash map, whose lookup cost does
//     not grow with its size; pipapo's does, slowly (it ANDs bitmaps as wide
//     as the number of elements). Only prefixes and ranges use pipapo.
//   - ct state invalid is dropped except for SCTP: SCTP conntrack may call
//     valid handshake packets invalid (collisions, multi-homing), and the
//     issue requires SCTP's handshake to survive. Observe mode drops nothing.
//
// Sources: nft(8) (sets, maps, concatenations, verdict maps, log, limit,
// counter objects); the Linux nf_tables uapi (include/uapi/linux/netfilter/
// nf_tables.h) for registers and attributes; nft_set_pipapo.c for
// concatenated interval sets refusing overlaps; google/nftables v0.3.0.

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// Objects is a rendered rule set: everything Apply puts in one endpoint's
// table, in creation order. Rules point at their chain; Elements holds each
// map's elements by map name.
type Objects struct {
	Table    *nftables.Table
	Chains   []*nftables.Chain
	Counters []*nftables.NamedObj
	Sets     []*nftables.Set
	Elements map[string][]nftables.SetElement
	Rules    []*nftables.Rule
}

// Enforce-mode deny log rate limit: LogRate records per second, bursts of
// LogBurst, per direction of one endpoint.
const (
	LogRate  = 10
	LogBurst = 20
)

// Registers (nf_tables.h: NFT_REG_VERDICT 0, NFT_REG_1 1 spans the 32-bit
// registers NFT_REG32_00..03 = 8..11).
const (
	regVerdict = 0
	reg1       = 1
	reg32_01   = 9
	reg32_02   = 10
	reg32_04   = 12
	reg32_05   = 13
)

// Table returns the table object Render and Apply use.
func Table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// ruleIDs returns the distinct rule ids of rs in order of first use.
func ruleIDs(rs RuleSet) []string {
	seen := map[string]bool{}
	var ids []string
	for _, es := range [][]Entry{rs.Ingress, rs.Egress} {
		for _, e := range es {
			if !seen[e.RuleID] {
				seen[e.RuleID] = true
				ids = append(ids, e.RuleID)
			}
		}
	}
	return ids
}

// Render validates rs and returns the nftables objects of its table. It
// touches no kernel. Errors: those of Validate (wrapping ErrInvalid).
func Render(rs RuleSet) (*Objects, error) {
	if err := rs.Validate(); err != nil {
		return nil, fmt.Errorf("render rule set: %w", err)
	}
	t := Table()
	o := &Objects{Table: t, Elements: map[string][]nftables.SetElement{}}
	policy := nftables.ChainPolicyAccept
	in := &nftables.Chain{Name: ChainInput, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy}
	out := &nftables.Chain{Name: ChainOutput, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &policy}
	ing := &nftables.Chain{Name: ChainIngress, Table: t}
	eg := &nftables.Chain{Name: ChainEgress, Table: t}
	o.Chains = append(o.Chains, in, out, ing, eg)

	for _, d := range mapsOf(rs) {
		o.Sets = append(o.Sets, newSet(t, d))
	}
	for _, e := range Elements(rs) {
		o.Elements[e.setName()] = append(o.Elements[e.setName()], encodeElement(e))
	}
	o.Rules = append(o.Rules, baseRules(in, true)...)
	o.Rules = append(o.Rules, baseRules(out, false)...)
	npIn, npOut := ing, eg
	if !rs.Admin.Empty() {
		npIn = &nftables.Chain{Name: ChainIngressNP, Table: t}
		npOut = &nftables.Chain{Name: ChainEgressNP, Table: t}
		o.Chains = append(o.Chains, npIn, npOut)
	}
	o.Rules = append(o.Rules, policyRules(ing, npIn, rs, model.Ingress)...)
	o.Rules = append(o.Rules, policyRules(eg, npOut, rs, model.Egress)...)
	for _, d := range model.Directions {
		o.Counters = append(o.Counters, &nftables.NamedObj{Table: t, Name: DefaultCounter(d), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
	}
	for _, id := range ruleIDs(rs) {
		c := &nftables.Chain{Name: RuleChain(id), Table: t}
		o.Chains = append(o.Chains, c)
		o.Counters = append(o.Counters, &nftables.NamedObj{Table: t, Name: RuleChain(id), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
		o.Rules = append(o.Rules, ruleChainRules(c, rs, id)...)
	}
	for _, tr := range tierRules(rs) {
		c := &nftables.Chain{Name: RuleChain(tr.id), Table: t}
		o.Chains = append(o.Chains, c)
		o.Counters = append(o.Counters, &nftables.NamedObj{Table: t, Name: RuleChain(tr.id), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
		o.Rules = append(o.Rules, tierChainRules(c, rs, tr)...)
	}
	return o, nil
}

// tierRule is one rule id of a ClusterNetworkPolicy tier with its action.
type tierRule struct {
	tier   Tier
	dir    model.Direction
	id     string
	action Action
}

// tierRules returns the distinct rule ids of rs's tiers, Admin first, in
// order of first use.
func tierRules(rs RuleSet) []tierRule {
	seen := map[string]bool{}
	var out []tierRule
	for _, t := range []Tier{TierAdmin, TierBaseline} {
		for _, dir := range model.Directions {
			for _, e := range rs.tier(t).Entries(dir) {
				if !seen[e.RuleID] {
					seen[e.RuleID] = true
					out = append(out, tierRule{t, dir, e.RuleID, e.Action})
				}
			}
		}
	}
	return out
}

// newSet returns the verdict map d.
func newSet(t *nftables.Table, d mapDef) *nftables.Set {
	addr := nftables.TypeIPAddr
	if d.v6 {
		addr = nftables.TypeIP6Addr
	}
	key := nftables.MustConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService)
	if d.kind == kindAny {
		key = nftables.MustConcatSetType(addr, nftables.TypeInetProto)
	}
	return &nftables.Set{Table: t, Name: d.name, ID: d.id, IsMap: true, Interval: d.kind != kindExact, Concatenation: true,
		KeyType: key, DataType: nftables.TypeVerdict}
}

// encodeElement returns the set element of e: key and key end are the
// concatenated fields, each padded to 4 bytes (address . l4proto [. port]).
func encodeElement(e Element) nftables.SetElement {
	lo, hi := e.Peer.Masked().Addr().AsSlice(), lastAddr(e.Peer).AsSlice()
	var plo, phi byte = 0, 255
	if n, ok := e.Protocol.Number(); ok {
		plo, phi = n, n
	}
	key := append(lo, plo, 0, 0, 0)
	end := append(hi, phi, 0, 0, 0)
	if e.Protocol != ProtocolAny {
		key = binary.BigEndian.AppendUint16(key, e.PortFrom)
		key = append(key, 0, 0)
		end = binary.BigEndian.AppendUint16(end, e.PortTo)
		end = append(end, 0, 0)
	}
	if e.kind() == kindExact {
		end = nil
	}
	return nftables.SetElement{Key: key, KeyEnd: end,
		VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: RuleChain(e.RuleID)}}
}

// comment returns rule userdata carrying text as the rule's comment.
func comment(text string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, text)
}

// ruleComment returns the comment of r (its nft form).
func ruleComment(r *nftables.Rule) string {
	c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return c
}

func rule(c *nftables.Chain, text string, exprs ...expr.Any) *nftables.Rule {
	return &nftables.Rule{Table: c.Table, Chain: c, Exprs: exprs, UserData: comment(text)}
}

func native32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// ifname returns name NUL-padded to IFNAMSIZ, as meta iifname compares it.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func ctStateIs(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(bits), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)},
	}
}

func icmpv6Types(from, to byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: []byte{from}, ToData: []byte{to}},
	}
}

func accept() *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictAccept} }

// baseRules returns the rules of the input (in) or output base chain.
func baseRules(c *nftables.Chain, in bool) []*nftables.Rule {
	lo, ifKey, target := "iifname", expr.MetaKeyIIFNAME, ChainIngress
	if !in {
		lo, ifKey, target = "oifname", expr.MetaKeyOIFNAME, ChainEgress
	}
	return []*nftables.Rule{
		rule(c, "ct state established,related accept",
			append(ctStateIs(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())...),
		rule(c, lo+` "lo" accept`,
			&expr.Meta{Key: ifKey, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ifname("lo")}, accept()),
		rule(c, "icmpv6 type 133-137 accept", append(icmpv6Types(133, 137), accept())...),
		rule(c, "icmpv6 type 130-132 accept", append(icmpv6Types(130, 132), accept())...),
		rule(c, "icmpv6 type 143 accept", append(icmpv6Types(143, 143), accept())...),
		rule(c, "goto "+target, &expr.Verdict{Kind: expr.VerdictGoto, Chain: target}),
	}
}

// lookup returns the rule "meta nfproto F addr . meta l4proto [. th dport]
// vmap @set".
func lookup(c *nftables.Chain, d mapDef) *nftables.Rule {
	name, id, v6, anyp, ingress := d.name, d.id, d.v6, d.kind == kindAny, d.dir == model.Ingress
	nfproto, off, alen, proreg, portreg := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4), uint32(reg32_01), uint32(reg32_02)
	fam, field := "ipv4", "ip"
	if v6 {
		nfproto, off, alen, proreg, portreg = unix.NFPROTO_IPV6, 8, 16, reg32_04, reg32_05
		fam, field = "ipv6", "ip6"
	}
	which := "saddr"
	if !ingress {
		which = "daddr"
		off += alen
	}
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: alen},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: proreg},
	}
	text := fmt.Sprintf("meta nfproto %s %s %s . meta l4proto", fam, field, which)
	if !anyp {
		exprs = append(exprs, &expr.Payload{DestRegister: portreg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		text += " . th dport"
	}
	exprs = append(exprs, &expr.Lookup{SourceRegister: reg1, DestRegister: regVerdict, IsDestRegSet: true, SetName: name, SetID: id})
	return rule(c, text+" vmap @"+name, exprs...)
}

func logExpr(prefix string) *expr.Log {
	return &expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP, Group: verdictlog.Group, Data: []byte(prefix)}
}

// policyRules returns the mode-dependent rules of the ingress or egress
// chain c and, when rs has an Admin tier, of the chain np that the Admin
// tier's lookups and Pass chains go to (the NetworkPolicy tier, the
// Baseline tier and the default); without one, np is c.
func policyRules(c, np *nftables.Chain, rs RuleSet, dir model.Direction) []*nftables.Rule {
	var rules []*nftables.Rule
	if rs.Mode != model.ModeObserve {
		rules = append(rules, rule(c, "meta l4proto != sctp ct state invalid drop",
			append(append([]expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{unix.IPPROTO_SCTP}},
			}, ctStateIs(expr.CtStateBitINVALID)...), &expr.Verdict{Kind: expr.VerdictDrop})...))
	}
	maps := mapsOf(rs)
	for _, t := range []Tier{TierAdmin, "", TierBaseline} {
		if t == "" && np != c {
			rules = append(rules, rule(c, "goto "+np.Name, &expr.Verdict{Kind: expr.VerdictGoto, Chain: np.Name}))
			c = np
		}
		for _, d := range maps {
			if d.tier == t && d.dir == dir {
				rules = append(rules, lookup(c, d))
			}
		}
	}
	rules = append(rules, rule(c, fmt.Sprintf("counter name %q", DefaultCounter(dir)),
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: DefaultCounter(dir)}))
	switch rs.Mode {
	case model.ModeObserve:
		p := verdictlog.Format(model.VerdictObserved, rs.Name)
		rules = append(rules, rule(c, fmt.Sprintf("log prefix %q group %d", p, verdictlog.Group), logExpr(p)))
	case model.ModeAudit:
		p := verdictlog.Format(model.VerdictAuditDeny, rs.DefaultID(dir))
		rules = append(rules, rule(c, fmt.Sprintf("log prefix %q group %d accept", p, verdictlog.Group), logExpr(p), accept()))
	case model.ModeEnforce:
		p := verdictlog.Format(model.VerdictDeny, rs.DefaultID(dir))
		rules = append(rules,
			rule(c, fmt.Sprintf("limit rate %d/second burst %d packets log prefix %q group %d", LogRate, LogBurst, p, verdictlog.Group),
				&expr.Limit{Type: expr.LimitTypePkts, Rate: LogRate, Unit: expr.LimitTimeSecond, Burst: LogBurst}, logExpr(p)),
			rule(c, "drop", &expr.Verdict{Kind: expr.VerdictDrop}))
	}
	return rules
}

// ruleChainRules returns the rules of the chain of rule id.
func ruleChainRules(c *nftables.Chain, rs RuleSet, id string) []*nftables.Rule {
	rules := []*nftables.Rule{rule(c, fmt.Sprintf("counter name %q", RuleChain(id)),
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: RuleChain(id)})}
	var verdict model.Verdict
	switch {
	case rs.Mode == model.ModeObserve:
		verdict = model.VerdictObserved
	case rs.LogAllowed:
		verdict = model.VerdictAllow
	}
	if verdict != "" {
		p := verdictlog.Format(verdict, id)
		rules = append(rules, rule(c, fmt.Sprintf("log prefix %q group %d", p, verdictlog.Group), logExpr(p)))
	}
	return append(rules, rule(c, "accept", accept()))
}

// tierChainRules returns the rules of the chain of a ClusterNetworkPolicy
// tier rule: its counter, then by action
//
//	accept (and a Baseline pass): log as ruleChainRules does; accept
//	deny: limit rate 10/second burst 20 packets log prefix "nanoseg:deny:<id>" group 18; drop
//	deny in audit mode: log prefix "nanoseg:audit-deny:<id>" group 18 accept
//	pass (Admin): goto ingress-np (egress-np): the rest of the Admin tier
//	is skipped, the NetworkPolicy tier decides next
//
// A deny follows the rule set's mode, as policies.Evaluate does: in audit
// mode it is a would-be denial like the default's, logged
// "nanoseg:audit-deny:<id>" and accepted there (not handed to a lower
// tier); in enforce mode, and in observe mode (no policy of the
// workload's own: the upstream ClusterNetworkPolicy semantics), it drops.
func tierChainRules(c *nftables.Chain, rs RuleSet, tr tierRule) []*nftables.Rule {
	rules := []*nftables.Rule{rule(c, fmt.Sprintf("counter name %q", RuleChain(tr.id)),
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: RuleChain(tr.id)})}
	switch {
	case tr.action == ActionDeny && rs.Mode == model.ModeAudit:
		p := verdictlog.Format(model.VerdictAuditDeny, tr.id)
		return append(rules, rule(c, fmt.Sprintf("log prefix %q group %d accept", p, verdictlog.Group), logExpr(p), accept()))
	case tr.action == ActionDeny:
		p := verdictlog.Format(model.VerdictDeny, tr.id)
		return append(rules,
			rule(c, fmt.Sprintf("limit rate %d/second burst %d packets log prefix %q group %d", LogRate, LogBurst, p, verdictlog.Group),
				&expr.Limit{Type: expr.LimitTypePkts, Rate: LogRate, Unit: expr.LimitTimeSecond, Burst: LogBurst}, logExpr(p)),
			rule(c, "drop", &expr.Verdict{Kind: expr.VerdictDrop}))
	case tr.action == ActionPass && tr.tier == TierAdmin:
		np := NPChain(tr.dir)
		return append(rules, rule(c, "goto "+np, &expr.Verdict{Kind: expr.VerdictGoto, Chain: np}))
	}
	return append(rules[:0], ruleChainRules(c, rs, tr.id)...)
}
