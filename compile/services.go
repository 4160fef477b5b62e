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
// Other limits: an egress entry that already contains a Service address
// (an ipBlock such as 0.0.0.0/0, or a rule without peers) allows it on its
// ports whatever the backends, since the address is what the hook sees; a
// Service without ready backends, or whose backends the pod may not reach,
// gets no entry (connections to it are judged as to any other address and
// denied when egress is isolated). Backends of the other IP family than
// the Service address are never its translation and are not considered.
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
	}
	slices.Sort(changed)
	return changed
}

// SetServices replaces the Services the compiler judges egress to (their
// addresses, ports and ready backends) and rebuilds only the rule sets
// whose Service entries change, which it returns sorted.
func (c *Compiler) SetServices(svcs []model.Service) []string {
	changed := c.setServices(svcs)
	if len(changed) == 0 {
		return nil
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
		if dirty[key] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	for _, k := range out {
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
