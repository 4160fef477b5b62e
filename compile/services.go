package compile

// Services: a pod's egress to a Service address.
//
// In a pod's own network namespace, a connection to a Service ClusterIP
// leaves with the ClusterIP as its destination: kube-proxy (iptables,
// nftables or IPVS) translates it to a backend later, in the host's
// namespace. The pod's egress hook therefore never sees the backend, and a
// rule set holding only pod addresses would drop every connection through
// a Service. NetworkPolicy speaks of pods, not of Service addresses
// (https://kubernetes.io/docs/concepts/services-networking/network-policies/:
// "Cluster ingress and egress mechanisms often require rewriting the
// source or destination IP of packets"), and the implementations that
// filter after the translation judge the backend the connection reaches.
//
// The compiler judges a Service address by its backends: for every pod
// whose egress is isolated, and for every Service address A (one per IP
// family) and port P/proto, it allows A:P/proto when the pod's egress
// entries allow at least one ready backend of that port, at the backend's
// address and at the port the Service's targetPort resolved to there (as
// the EndpointSlice lists it, so a named targetPort is already a number,
// and a policy's named port is matched at the backend pod as NetworkPolicy
// does: the egress entries already hold named ports resolved at each peer
// pod). The derived entry carries the rule id of the entry that allowed
// the backend, so the verdict log names the policy rule it comes from; the
// rule set's mode (audit or enforce) is the pod's.
//
// "At least one backend" is the rule because the choice of backend is
// kube-proxy's and happens after the egress hook: the hook cannot tell
// which backend a connection will reach. What that implies: a pod allowed
// to reach only some backends of a Service may, through the Service
// address, reach the others too (kube-proxy picks among all ready
// backends). Policies that select the backends of a Service uniformly (the
// usual case: a Service selects pods by the labels a policy selects them
// by) are exact. The ingress side is exact in any case: the backend's own
// ingress rules see the client's pod address after the translation.
//
// A Service address is judged ONLY by its backends. Kubernetes judges a
// connection through a Service after the translation, by the backend it
// reaches (the upstream NetworkPolicy conformance suite expects it: an
// ipBlock 192.0.0.0/4 except the server pod's /32 must not reach the
// server through its ClusterIP, although the ClusterIP lies in the
// block). So an egress address block (an ipBlock, or a rule without
// peers: every address) never allows a known Service address itself: the
// compiler cuts every Service address out of it (ruleEntries,
// withoutServices), and only the derived entries below allow it. The
// dataplane keeps its shape: allow entries only, one verdict-map lookup
// per kind, the whole rule set replaced in one transaction; no deny entry
// and no lookup order between Service and block entries is needed, since
// the two never overlap. The price is size: a block containing n Service
// addresses becomes up to about 32n prefixes (128n for IPv6), fewer when
// the addresses are dense (a Service range), computed once per block
// (svcSplit). A rule without peers and without ports still reaches every
// Service with a ready backend, since it allows every backend; with ports,
// only those whose backends listen on an allowed port, as after the
// translation. Names are not cut: a pod's address, a DNS-name peer or a
// host address that IS a Service address (named, not merely contained)
// allows it. Pods whose egress is not isolated allow everything, Service
// addresses included.
//
// Other limits: a Service without ready backends, or whose backends the
// pod may not reach, gets no entry (connections to it are denied when
// egress is isolated). Backends of the other IP family than the Service
// address are never its translation and are not considered.
//
// Incremental: the derived entries of a pod depend only on its egress
// entries, which depend only on the policies that isolate its egress
// (egress named ports resolve at the peer, never at the pod itself). They
// are computed once per such set of policies and Service (svcCache), and a
// Service change (SetServices) rebuilds only the rule sets of pods whose
// derived entries it changes.

import (
	"cmp"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
)

// svcCache holds the Service entries derived for one set of egress
// policies: the egress entries they were judged against (with an index by
// address), and per Service key its derived entries (non-empty only).
type svcCache struct {
	base  []dataplane.Entry
	exact map[netip.Addr][]int // single-address entries of base, by address
	wide  []int                // the other entries of base
	bySvc map[string][]dataplane.Entry
	all   []dataplane.Entry // bySvc in Service key order; nil when stale
	built bool              // all is current
}

func newSvcCache(base []dataplane.Entry) *svcCache {
	sc := &svcCache{base: slices.Clone(base), exact: map[netip.Addr][]int{}, bySvc: map[string][]dataplane.Entry{}}
	for i, e := range sc.base {
		if e.Peer.IsSingleIP() {
			a := e.Peer.Addr().Unmap()
			sc.exact[a] = append(sc.exact[a], i)
		} else {
			sc.wide = append(sc.wide, i)
		}
	}
	return sc
}

// allows returns the rule id of the entry of base the dataplane would
// match for a connection to addr proto/port, and whether one does
// (dataplane.RuleSet.Allows over the entries that contain addr, in their
// order).
func (sc *svcCache) allows(addr netip.Addr, proto uint8, port uint16) (string, bool) {
	idx := slices.Clone(sc.exact[addr])
	for _, i := range sc.wide {
		if sc.base[i].Peer.Masked().Contains(addr) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return "", false
	}
	slices.Sort(idx)
	cand := make([]dataplane.Entry, len(idx))
	for j, i := range idx {
		cand[j] = sc.base[i]
	}
	return dataplane.RuleSet{Egress: cand}.Allows(model.Egress, addr, proto, port)
}

// setServices stores svcs (by key), indexes their backends, and returns
// the keys that differ from what the compiler held, sorted.
func (c *Compiler) setServices(svcs []model.Service) []string {
	now := make(map[string]model.Service, len(svcs))
	for _, s := range svcs {
		now[s.Key()] = s
	}
	var changed []string
	for k, s := range now {
		if old, ok := c.services[k]; !ok || !reflect.DeepEqual(old, s) {
			changed = append(changed, k)
		}
	}
	for k := range c.services {
		if _, ok := now[k]; !ok {
			changed = append(changed, k)
		}
	}
	c.services = now
	c.svcKeys = slices.Sorted(maps.Keys(now))
	if len(changed) > 0 {
		c.backendSvcs = map[netip.Addr][]string{}
		for _, k := range c.svcKeys {
			s := now[k]
			if len(s.Addrs) == 0 {
				continue
			}
			for _, sp := range s.Ports {
				for _, b := range sp.Backends {
					a := b.Addr.Unmap()
					if l := c.backendSvcs[a]; len(l) == 0 || l[len(l)-1] != k {
						c.backendSvcs[a] = append(l, k)
					}
				}
			}
		}
		c.backendAddrs = slices.SortedFunc(maps.Keys(c.backendSvcs), func(a, b netip.Addr) int { return a.Compare(b) })
		var addrs []netip.Addr
		for _, k := range c.svcKeys {
			for _, a := range now[k].Addrs {
				addrs = append(addrs, a.Unmap())
			}
		}
		slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
		addrs = slices.Compact(addrs)
		if !slices.Equal(addrs, c.svcAddrs) {
			c.svcAddrsChanged = symmetricDiff(c.svcAddrs, addrs)
			c.svcAddrs = addrs
			clear(c.svcSplit)
		}
	}
	slices.Sort(changed)
	return changed
}

// symmetricDiff returns the addresses in exactly one of the sorted lists a
// and b.
func symmetricDiff(a, b []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, x := range a {
		if _, ok := slices.BinarySearchFunc(b, x, netip.Addr.Compare); !ok {
			out = append(out, x)
		}
	}
	for _, x := range b {
		if _, ok := slices.BinarySearchFunc(a, x, netip.Addr.Compare); !ok {
			out = append(out, x)
		}
	}
	return out
}

// withoutServices returns address block p minus every Service address, as
// prefixes in address order (p itself when it contains none), cached until
// the Service addresses change.
func (c *Compiler) withoutServices(p netip.Prefix) []netip.Prefix {
	p = p.Masked()
	if out, ok := c.svcSplit[p]; ok {
		return out
	}
	lo, _ := slices.BinarySearchFunc(c.svcAddrs, p.Addr(), netip.Addr.Compare)
	hi := lo
	for hi < len(c.svcAddrs) && p.Contains(c.svcAddrs[hi]) {
		hi++
	}
	out := []netip.Prefix{p}
	if hi > lo {
		out = splitAround(p, c.svcAddrs[lo:hi])
	}
	c.svcSplit[p] = out
	return out
}

// splitAround returns masked prefix p minus the sorted addresses addrs,
// all inside p: p halved until each half holds none of them.
func splitAround(p netip.Prefix, addrs []netip.Addr) []netip.Prefix {
	if len(addrs) == 0 {
		return []netip.Prefix{p}
	}
	if p.Bits() == p.Addr().BitLen() {
		return nil
	}
	l, h := halves(p)
	i := 0
	for i < len(addrs) && l.Contains(addrs[i]) {
		i++
	}
	return append(splitAround(l, addrs[:i]), splitAround(h, addrs[i:])...)
}

// egressBlocks returns the address blocks (before Service addresses are
// cut out) of the egress rules of the policies isolating, as ruleEntries
// cached them.
func (c *Compiler) egressBlocks(isolating []int) []netip.Prefix {
	var out []netip.Prefix
	for _, pi := range isolating {
		for ri := range c.policies[pi].Rules[model.Egress.Index()] {
			for _, t := range c.targets[ruleRef{pi, model.Egress, ri}] {
				if t.block {
					out = append(out, t.prefix.Masked())
				}
			}
		}
	}
	return out
}

// SetServices replaces the Services the compiler judges egress to (their
// addresses, ports and ready backends) and rebuilds only the rule sets
// whose Service entries change, which it returns sorted.
func (c *Compiler) SetServices(svcs []model.Service) []string {
	c.svcAddrsChanged = nil
	changed := c.setServices(svcs)
	if len(changed) == 0 {
		return nil
	}
	// Pods whose egress blocks contain an address that came or went: their
	// policy entries change (withoutServices), so they are rebuilt whole.
	full := map[string]bool{}
	for k, blocks := range c.egressBlock {
	outer:
		for _, b := range blocks {
			for _, a := range c.svcAddrsChanged {
				if b.Contains(a) {
					full[k] = true
					break outer
				}
			}
		}
	}
	dirty := map[string]bool{}
	for key, sc := range c.svcCache {
		for _, sk := range changed {
			old := sc.bySvc[sk]
			var now []dataplane.Entry
			if s, ok := c.services[sk]; ok {
				now = sc.serviceEntries(s)
			}
			if slices.Equal(old, now) {
				continue
			}
			if len(now) == 0 {
				delete(sc.bySvc, sk)
			} else {
				sc.bySvc[sk] = now
			}
			sc.built = false
			dirty[key] = true
		}
	}
	var out []string
	for k, key := range c.egressKey {
		if dirty[key] || full[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	for _, k := range out {
		if full[k] {
			c.rebuild(k)
			continue
		}
		// The egress entries are the policies' (the cache's base) followed
		// by the Service entries: splice the new ones in.
		rs, sc := c.ruleSets[k], c.svcCache[c.egressKey[k]]
		if len(rs.Egress) < len(sc.base) || !slices.Equal(rs.Egress[:len(sc.base)], sc.base) {
			c.rebuild(k)
			continue
		}
		rs.Egress = append(slices.Clip(rs.Egress[:len(sc.base)]), c.serviceEntriesFor(nil, sc.base, sc)...)
		c.ruleSets[k] = rs
	}
	return out
}

// Services returns the Services the compiler holds, sorted by key.
func (c *Compiler) Services() []model.Service {
	out := make([]model.Service, 0, len(c.svcKeys))
	for _, k := range c.svcKeys {
		out = append(out, c.services[k])
	}
	return out
}

// policySetKey names a set of policies by their indexes.
func policySetKey(idx []int) string {
	var b strings.Builder
	for i, n := range idx {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// serviceEntriesFor returns the Service entries of a pod whose egress is
// isolated by the policies isolating (indexes), given its egress entries
// base, from the cache when base is what the cache was built from. Only
// the Services with a backend inside an entry of base are judged.
func (c *Compiler) serviceEntriesFor(isolating []int, base []dataplane.Entry, sc *svcCache) []dataplane.Entry {
	if sc == nil {
		key := policySetKey(isolating)
		sc = c.svcCache[key]
		if sc != nil && !slices.Equal(sc.base, base) {
			sc = nil
		}
		if sc == nil {
			sc = c.newServiceCache(key, base)
		}
	}
	if !sc.built {
		sc.all = sc.all[:0]
		for _, k := range slices.Sorted(maps.Keys(sc.bySvc)) {
			sc.all = append(sc.all, sc.bySvc[k]...)
		}
		sc.built = true
	}
	return sc.all
}

// newServiceCache judges the Services with a backend inside an entry of
// base and caches the result under key.
func (c *Compiler) newServiceCache(key string, base []dataplane.Entry) *svcCache {
	sc := c.svcCache[key]
	{
		sc = newSvcCache(base)
		c.svcCache[key] = sc
		cand := map[string]bool{}
		for a := range sc.exact {
			for _, k := range c.backendSvcs[a] {
				cand[k] = true
			}
		}
		for _, i := range sc.wide {
			p := sc.base[i].Peer.Masked()
			j, _ := slices.BinarySearchFunc(c.backendAddrs, p.Addr(), func(x, t netip.Addr) int { return x.Compare(t) })
			for ; j < len(c.backendAddrs) && p.Contains(c.backendAddrs[j]); j++ {
				for _, k := range c.backendSvcs[c.backendAddrs[j]] {
					cand[k] = true
				}
			}
		}
		for k := range cand {
			if d := sc.serviceEntries(c.services[k]); len(d) > 0 {
				sc.bySvc[k] = d
			}
		}
	}
	return sc
}

// serviceEntries returns the entries that allow the addresses and ports
// of Service s to a pod with egress entries sc.base: one per address and
// port of which base allows at least one backend of the address's family
// (at the backend's address and port), with that entry's rule id (the
// first backend in address and port order decides which rule is named).
func (sc *svcCache) serviceEntries(s model.Service) []dataplane.Entry {
	if len(s.Addrs) == 0 || len(s.Ports) == 0 {
		return nil
	}
	var out []dataplane.Entry
	for _, sp := range s.Ports {
		num, ok := sp.Protocol.Number()
		if !ok || !sp.Protocol.HasPorts() || sp.Port == 0 {
			continue
		}
		backends := slices.Clone(sp.Backends)
		slices.SortFunc(backends, func(a, b model.ServiceBackend) int {
			return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
		})
		for _, a := range s.Addrs {
			a = a.Unmap()
			for _, b := range backends {
				ba := b.Addr.Unmap()
				if ba.Is4() != a.Is4() || b.Port == 0 {
					continue
				}
				id, ok := sc.allows(ba, num, b.Port)
				if !ok {
					continue
				}
				out = append(out, dataplane.Entry{Peer: netip.PrefixFrom(a, a.BitLen()), Protocol: sp.Protocol, Port: int(sp.Port), RuleID: id})
				break
			}
		}
	}
	return out
}
