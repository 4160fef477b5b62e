package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// nsInfo is one network namespace of the node with the addresses it holds.
type nsInfo struct {
	inode uint64
	path  string
	addrs []netip.Addr
}

// match finds each pod's network namespace among nss by the pod's
// addresses (pods: pod key → addresses, every address one pod's). A pod's
// namespace is the one namespace that holds all its addresses, provided
// no other namespace holds any of them and the namespace holds no other
// pod's address; anything else is reported with its reason, never
// guessed.
func match(nss []nsInfo, pods map[string][]netip.Addr) map[string]Found {
	holders := map[netip.Addr][]int{} // address → indexes into nss
	for i, ns := range nss {
		for _, a := range ns.addrs {
			holders[a] = append(holders[a], i)
		}
	}
	touching := map[int][]string{} // namespace index → pods with an address in it
	for key, addrs := range pods {
		seen := map[int]bool{}
		for _, a := range addrs {
			for _, i := range holders[a.Unmap()] {
				if !seen[i] {
					seen[i] = true
					touching[i] = append(touching[i], key)
				}
			}
		}
	}
	out := make(map[string]Found, len(pods))
	for key, addrs := range pods {
		cand := map[int]int{} // namespace index → how many of the pod's addresses it holds
		for _, a := range addrs {
			for _, i := range holders[a.Unmap()] {
				cand[i]++
			}
		}
		switch {
		case len(addrs) == 0:
			out[key] = Found{Code: ReasonNotFound, Reason: "the pod has no addresses"}
		case len(cand) == 0:
			out[key] = Found{Code: ReasonNotFound, Reason: fmt.Sprintf("no network namespace of this node holds %s", addrList(addrs))}
		case len(cand) > 1:
			var paths []string
			for i := range cand {
				paths = append(paths, nss[i].path)
			}
			slices.Sort(paths)
			out[key] = Found{Code: ReasonAmbiguous, Reason: fmt.Sprintf("%d network namespaces hold addresses of the pod (%s)", len(cand), strings.Join(paths, ", "))}
		default:
			var i, n int
			for i, n = range cand {
			}
			ns := nss[i]
			if n < len(addrs) {
				var missing []netip.Addr
				for _, a := range addrs {
					if !slices.Contains(ns.addrs, a.Unmap()) {
						missing = append(missing, a)
					}
				}
				out[key] = Found{Code: ReasonPartial, Reason: fmt.Sprintf("network namespace %s holds some of the pod's addresses but not %s", ns.path, addrList(missing))}
				continue
			}
			if others := touching[i]; len(others) > 1 {
				sorted := slices.Clone(others)
				slices.Sort(sorted)
				out[key] = Found{Code: ReasonAmbiguous, Reason: fmt.Sprintf("network namespace %s holds addresses of %d pods (%s)", ns.path, len(sorted), strings.Join(sorted, ", "))}
				continue
			}
			out[key] = Found{Path: ns.path, Inode: ns.inode}
		}
	}
	return out
}

func addrList(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
