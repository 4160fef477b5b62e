package dataplane

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/nanoseg/nanoseg/model"
)

// Element is one element of a verdict map as the kernel holds it: a peer
// prefix, a protocol (ProtocolAny for the any-protocol maps), an inclusive port
// range (0-65535 for protocols without ports and for ProtocolAny) and the rule
// id whose chain the element jumps to. Tier is empty for the maps of the
// NetworkPolicy tier, else the ClusterNetworkPolicy tier whose maps hold
// it.
type Element struct {
	Tier     Tier
	Dir      model.Direction
	Peer     netip.Prefix
	Protocol model.Protocol
	PortFrom uint16
	PortTo   uint16
	RuleID   string
}

// Entry returns e in rule set terms.
func (e Element) Entry() Entry {
	en := Entry{Peer: e.Peer, Protocol: e.Protocol, RuleID: e.RuleID}
	if e.Protocol.HasPorts() && !(e.PortFrom == 0 && e.PortTo == 65535) {
		en.Port = int(e.PortFrom)
		if e.PortTo != e.PortFrom {
			en.EndPort = int(e.PortTo)
		}
	}
	return en
}

// mapKind says which of the three maps of a direction and family an
// element is in.
type mapKind int

const (
	kindAny   mapKind = iota // any protocol: address . l4proto, interval
	kindExact                // one address, one port: hash
	kindRange                // the rest: interval
)

// mapDef is one verdict map.
type mapDef struct {
	name string
	id   uint32 // fixed, so Render is deterministic
	tier Tier   // "" for the NetworkPolicy tier
	dir  model.Direction
	v6   bool
	kind mapKind
}

// mapDefs lists the maps in lookup order per direction and family.
// The NetworkPolicy tier's come first; a tier's maps
// (TierSet) hold, per direction and family, the entries of one protocol
// (interval key address . l4proto . port, looked up first) and the
// entries of any protocol (address . l4proto), and exist only in a table
// whose rule set has entries in that tier.
var mapDefs = []mapDef{
	{SetIngressAny4, 1, "", model.Ingress, false, kindAny}, {SetIngressExact4, 2, "", model.Ingress, false, kindExact}, {SetIngress4, 3, "", model.Ingress, false, kindRange},
	{SetIngressAny6, 4, "", model.Ingress, true, kindAny}, {SetIngressExact6, 5, "", model.Ingress, true, kindExact}, {SetIngress6, 6, "", model.Ingress, true, kindRange},
	{SetEgressAny4, 7, "", model.Egress, false, kindAny}, {SetEgressExact4, 8, "", model.Egress, false, kindExact}, {SetEgress4, 9, "", model.Egress, false, kindRange},
	{SetEgressAny6, 10, "", model.Egress, true, kindAny}, {SetEgressExact6, 11, "", model.Egress, true, kindExact}, {SetEgress6, 12, "", model.Egress, true, kindRange},
}

func init() {
	id := uint32(len(mapDefs))
	for _, t := range []Tier{TierAdmin, TierBaseline} {
		for _, dir := range model.Directions {
			for _, v6 := range []bool{false, true} {
				for _, k := range []mapKind{kindRange, kindAny} {
					id++
					mapDefs = append(mapDefs, mapDef{TierSet(t, dir, v6, k == kindAny), id, t, dir, v6, k})
				}
			}
		}
	}
}

// mapsOf returns the maps of rs's table, in lookup order per tier,
// direction and family: the NetworkPolicy tier's always, a
// ClusterNetworkPolicy tier's when rs has entries in it.
func mapsOf(rs RuleSet) []mapDef {
	var out []mapDef
	for _, d := range mapDefs {
		if d.tier == "" || !rs.tier(d.tier).Empty() {
			out = append(out, d)
		}
	}
	return out
}

// kind returns the map kind of e.
func (e Element) kind() mapKind {
	switch {
	case e.Protocol == ProtocolAny:
		return kindAny
	case e.Tier != "":
		return kindRange
	case e.Protocol.HasPorts() && e.PortFrom == e.PortTo && e.Peer.IsSingleIP():
		return kindExact
	}
	return kindRange
}

// entryKind returns the map kind of a valid entry.
func entryKind(e Entry) mapKind {
	p := e.proto()
	switch {
	case p == ProtocolAny:
		return kindAny
	case p.HasPorts() && e.Port != 0 && (e.EndPort == 0 || e.EndPort == e.Port) && e.Peer.IsSingleIP():
		return kindExact
	}
	return kindRange
}

// setName returns the verdict map e belongs to.
func (e Element) setName() string {
	v6, k := e.Peer.Addr().Is6(), e.kind()
	for _, d := range mapDefs {
		if d.tier == e.Tier && d.dir == e.Dir && d.v6 == v6 && d.kind == k {
			return d.name
		}
	}
	return ""
}

// box is an entry as a rectangle: address range × port range.
type box struct {
	lo, hi   netip.Addr
	plo, phi uint16
	pfx      netip.Prefix // the original prefix while the box is uncut
	idx      int          // position of the entry in its direction
	id       string
	// blocker marks an any-protocol tier entry put among a protocol's
	// entries only to cut them (tierElements); its pieces are dropped.
	blocker bool
}

// Elements returns the verdict map elements of a valid rule set, sorted by
// map, address, protocol and port.
//
// Entries of one address and one port go to the exact (hash) maps, where
// identical keys collapse to the first entry. The kernel's concatenated
// interval maps (nft_set_pipapo) refuse overlapping elements, while entries
// may overlap. Elements therefore cuts the other entries of one direction,
// family and protocol into disjoint pieces:
// where entries overlap, the earlier entry (lower index) keeps the overlap
// and its rule id counts it. Cut address ranges are split into prefixes.
// Cost: entries whose address ranges overlap nothing are passed through
// (sort, O(n log n)); a cluster of k mutually reachable overlapping entries
// costs O(k²) box subtractions.
func Elements(rs RuleSet) []Element {
	var out []Element
	for _, d := range []struct {
		dir     model.Direction
		entries []Entry
	}{{model.Ingress, rs.Ingress}, {model.Egress, rs.Egress}} {
		type key struct {
			v6    bool
			proto model.Protocol
			kind  mapKind
		}
		groups := map[key][]box{}
		var keys []key
		for i, e := range d.entries {
			p := e.Peer.Masked()
			k := key{p.Addr().Is6(), e.proto(), entryKind(e)}
			plo, phi := e.portRange()
			if !k.proto.HasPorts() {
				plo, phi = 0, 65535
			}
			if _, ok := groups[k]; !ok {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], box{lo: p.Addr(), hi: lastAddr(p), plo: plo, phi: phi, pfx: p, idx: i, id: e.RuleID})
		}
		for _, k := range keys {
			if k.kind == kindExact {
				// Hash map: identical keys collapse to the first entry;
				// different keys never overlap.
				seen := map[box]bool{}
				for _, b := range groups[k] {
					kb := box{lo: b.lo, plo: b.plo}
					if seen[kb] {
						continue
					}
					seen[kb] = true
					out = append(out, Element{Dir: d.dir, Peer: b.pfx, Protocol: k.proto, PortFrom: b.plo, PortTo: b.phi, RuleID: b.id})
				}
				continue
			}
			for _, b := range disjoint(groups[k]) {
				for _, p := range b.prefixes() {
					out = append(out, Element{Dir: d.dir, Peer: p, Protocol: k.proto, PortFrom: b.plo, PortTo: b.phi, RuleID: b.id})
				}
			}
		}
	}
	out = append(out, tierElements(TierAdmin, rs.Admin)...)
	out = append(out, tierElements(TierBaseline, rs.Baseline)...)
	slices.SortFunc(out, compareElements)
	return out
}

// tierElements returns the map elements of tier t. A tier's entries have
// an order that decides between actions, and each direction and family
// has two maps, looked up in turn: the protocol map (one protocol, a port
// range) before the any-protocol map. So that the first element found is
// the first entry that matches, the entries of each map are cut apart as
// in Elements (the earlier entry keeps an overlap), and the protocol
// entries are also cut by every earlier any-protocol entry of their
// family: a packet an earlier any-protocol entry matches finds nothing in
// the protocol map and meets that entry in the any-protocol map.
func tierElements(t Tier, ts Tiers) []Element {
	var out []Element
	for _, dir := range model.Directions {
		type key struct {
			v6    bool
			proto model.Protocol
		}
		groups := map[key][]box{}
		var keys []key
		anyBoxes := map[bool][]box{}
		for i, e := range ts.Entries(dir) {
			p := e.Peer.Masked()
			k := key{p.Addr().Is6(), e.proto()}
			plo, phi := e.portRange()
			if !k.proto.HasPorts() {
				plo, phi = 0, 65535
			}
			b := box{lo: p.Addr(), hi: lastAddr(p), plo: plo, phi: phi, pfx: p, idx: i, id: e.RuleID}
			if _, ok := groups[k]; !ok {
				keys = append(keys, k)
			}
			groups[k] = append(groups[k], b)
			if k.proto == ProtocolAny {
				b.plo, b.phi, b.blocker = 0, 65535, true
				anyBoxes[k.v6] = append(anyBoxes[k.v6], b)
			}
		}
		for _, k := range keys {
			bs := groups[k]
			if k.proto != ProtocolAny {
				bs = append(bs, anyBoxes[k.v6]...)
			}
			for _, b := range disjoint(bs) {
				if b.blocker {
					continue
				}
				for _, p := range b.prefixes() {
					out = append(out, Element{Tier: t, Dir: dir, Peer: p, Protocol: k.proto, PortFrom: b.plo, PortTo: b.phi, RuleID: b.id})
				}
			}
		}
	}
	return out
}

func compareElements(a, b Element) int {
	return cmp.Or(cmp.Compare(a.setName(), b.setName()),
		a.Peer.Addr().Compare(b.Peer.Addr()),
		cmp.Compare(a.Peer.Bits(), b.Peer.Bits()),
		cmp.Compare(a.Protocol, b.Protocol),
		cmp.Compare(a.PortFrom, b.PortFrom),
		cmp.Compare(a.PortTo, b.PortTo),
		cmp.Compare(a.RuleID, b.RuleID))
}

// disjoint returns boxes covering exactly the union of bs, pairwise
// disjoint, each overlap kept by the box with the lowest idx.
func disjoint(bs []box) []box {
	slices.SortStableFunc(bs, func(a, b box) int { return a.lo.Compare(b.lo) })
	var out []box
	for i := 0; i < len(bs); {
		j, hi := i+1, bs[i].hi
		for j < len(bs) && bs[j].lo.Compare(hi) <= 0 {
			if bs[j].hi.Compare(hi) > 0 {
				hi = bs[j].hi
			}
			j++
		}
		cluster := bs[i:j]
		i = j
		if len(cluster) == 1 {
			out = append(out, cluster[0])
			continue
		}
		slices.SortFunc(cluster, func(a, b box) int { return cmp.Compare(a.idx, b.idx) })
		var kept []box
		for _, b := range cluster {
			pieces := []box{b}
			for _, a := range kept {
				var next []box
				for _, p := range pieces {
					next = append(next, subtract(p, a)...)
				}
				pieces = next
				if len(pieces) == 0 {
					break
				}
			}
			kept = append(kept, pieces...)
		}
		out = append(out, kept...)
	}
	return out
}

// subtract returns p minus a as at most four disjoint boxes.
func subtract(p, a box) []box {
	if p.hi.Less(a.lo) || a.hi.Less(p.lo) || p.phi < a.plo || a.phi < p.plo {
		return []box{p}
	}
	cut := func(lo, hi netip.Addr, plo, phi uint16) box {
		return box{lo: lo, hi: hi, plo: plo, phi: phi, idx: p.idx, id: p.id, blocker: p.blocker}
	}
	var out []box
	if p.lo.Less(a.lo) {
		out = append(out, cut(p.lo, a.lo.Prev(), p.plo, p.phi))
	}
	if a.hi.Less(p.hi) {
		out = append(out, cut(a.hi.Next(), p.hi, p.plo, p.phi))
	}
	mlo, mhi := p.lo, p.hi
	if mlo.Less(a.lo) {
		mlo = a.lo
	}
	if a.hi.Less(mhi) {
		mhi = a.hi
	}
	if p.plo < a.plo {
		out = append(out, cut(mlo, mhi, p.plo, a.plo-1))
	}
	if a.phi < p.phi {
		out = append(out, cut(mlo, mhi, a.phi+1, p.phi))
	}
	return out
}

// prefixes returns the prefixes covering b's address range exactly.
func (b box) prefixes() []netip.Prefix {
	if b.pfx.IsValid() {
		return []netip.Prefix{b.pfx}
	}
	return rangePrefixes(b.lo, b.hi)
}

// rangePrefixes splits the inclusive range lo..hi into the fewest prefixes.
func rangePrefixes(lo, hi netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for lo.IsValid() && lo.Compare(hi) <= 0 {
		var p netip.Prefix
		for bits := 0; bits <= lo.BitLen(); bits++ {
			c := netip.PrefixFrom(lo, bits).Masked()
			if c.Addr() == lo && lastAddr(c).Compare(hi) <= 0 {
				p = c
				break
			}
		}
		out = append(out, p)
		last := lastAddr(p)
		if last == hi {
			break
		}
		lo = last.Next()
	}
	return out
}

// lastAddr returns the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		setHostBits(b[:], p.Bits())
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	setHostBits(b[:], p.Bits())
	return netip.AddrFrom16(b)
}

func setHostBits(b []byte, bits int) {
	for i := bits; i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
}
