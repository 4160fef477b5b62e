package policies

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// DiffReport compares a proposal with the active policies over a window's
// edges.
type DiffReport struct {
	// Added lists proposal rules that allow some edge no active rule of the
	// same direction allows.
	Added []RuleRef `json:"added"`
	// Unused lists active rules (of isolating directions) that no edge of
	// the window matched.
	Unused []RuleRef `json:"unused"`
	// Denied lists the edges the active policies deny or audit-deny, with
	// the verdict's reason.
	Denied []DeniedEdge `json:"denied"`
	// Forbidden lists the edges an Admin-tier Deny of the
	// ClusterNetworkPolicies in force forbids (also in Denied): no
	// proposal allows them.
	Forbidden []ForbiddenEdge `json:"forbidden"`
	// Shadowed lists, per observed edge, the rules of the proposal and of
	// the active policies that would allow it but that an Admin rule
	// decides first: a Deny (the rule can never allow it) or an Accept
	// (the rule is redundant for it). See shadow.go.
	Shadowed []ShadowedRule `json:"shadowed"`
	// Coverage is how well each workload compared was observed in the
	// window (filled by the agent; absent offline).
	Coverage []model.Coverage `json:"coverage,omitempty"`
}

// DeniedEdge is an edge of the window and the active policies' verdict.
type DeniedEdge struct {
	Edge   string        `json:"edge"`
	Action model.Verdict `json:"action"`
	Reason string        `json:"reason"`
	Flows  int64         `json:"flows"`
}

// edgeWorld is a world made of the identities of edges: one pod per
// identity, in a namespace labelled only kubernetes.io/metadata.name,
// addressed from 2001:db8:ffff::/48 (the documentation range).
type edgeWorld struct {
	*MemWorld
	podOf map[string]string // identity key -> pod key
}

func newEdgeWorld(edges []inferEdge) *edgeWorld {
	w := &edgeWorld{MemWorld: &MemWorld{}, podOf: map[string]string{}}
	base := netip.MustParseAddr("2001:db8:ffff::").As16()
	n := 0
	addID := func(i model.Identity) {
		i = i.Normalize()
		k := i.Key()
		if _, ok := w.podOf[k]; ok {
			return
		}
		if _, ok := w.Namespace(i.Namespace); !ok {
			_ = w.AddNamespace(Namespace{Name: i.Namespace, Labels: map[string]string{LabelNamespaceName: i.Namespace}})
		}
		n++
		a := base
		a[12], a[13], a[14], a[15] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		// Name the identity's pod by its app label, as people know the
		// workload; the hash keeps names unique otherwise.
		name := "id-" + shortHash(k)
		for _, l := range []string{"app.kubernetes.io/name", "app", "k8s-app"} {
			if v := i.Labels[l]; v != "" {
				if _, taken := w.Pod(i.Namespace, v); !taken {
					name = v
				}
				break
			}
		}
		_ = w.AddPod(Pod{Namespace: i.Namespace, Name: name, Labels: i.Labels, IPs: []netip.Addr{netip.AddrFrom16(a)}})
		w.podOf[k] = i.Namespace + "/" + name
	}
	for _, e := range edges {
		if !e.Source.External {
			addID(e.Source.Identity())
		}
		if !e.Destination.External {
			addID(e.Destination.Identity())
		}
	}
	return w
}

func (w *edgeWorld) connection(e inferEdge) Connection {
	c := Connection{Protocol: e.proto, Port: e.port}
	if e.Source.External {
		c.From = ConnEnd{IP: e.Source.Addr}
	} else {
		c.From = ConnEnd{Pod: w.podOf[e.srcK]}
	}
	if e.Destination.External {
		c.To = ConnEnd{IP: e.Destination.Addr, DNSName: e.Destination.Name}
	} else {
		c.To = ConnEnd{Pod: w.podOf[e.dstK]}
	}
	return c
}

// Diff compares proposal with active over edges. Both are evaluated on a
// world built from the edges' identities (namespaces carry only their
// kubernetes.io/metadata.name label, so active namespaceSelectors on other
// namespace labels do not match there). The proposal is evaluated as if
// enforced, under the ClusterNetworkPolicies of active. Edges an Admin
// Deny decides are listed as Forbidden; rules of the proposal or of active
// that an Admin rule decides before them as Shadowed. Output is sorted.
func Diff(proposal []v1alpha1.NanoSegment, active PolicySet, observed []model.Edge) (DiffReport, error) {
	var edges []inferEdge
	for _, e := range observed {
		if ie, ok := inferable(e); ok {
			edges = append(edges, ie)
		}
	}
	rep := DiffReport{Added: []RuleRef{}, Unused: []RuleRef{}, Denied: []DeniedEdge{}, Forbidden: []ForbiddenEdge{}, Shadowed: []ShadowedRule{}}
	enforced := make([]v1alpha1.NanoSegment, len(proposal))
	for i := range proposal {
		proposal[i].DeepCopyInto(&enforced[i])
		enforced[i].Spec.Mode = model.ModeEnforce
	}
	prop, err := NewPolicySet(nil, enforced)
	if err != nil {
		return rep, fmt.Errorf("diff: compile proposal: %w", err)
	}
	// ClusterNetworkPolicies in force judge the proposal too; the sets
	// without them show what the NetworkPolicy tier alone would allow
	// (for shadowing).
	propDev, activeDev := prop, active.WithClusterPolicies(nil)
	prop = prop.WithClusterPolicies(active.ClusterPolicies())
	hasAdmin := slices.ContainsFunc(active.ClusterPolicies(), func(p *ClusterPolicy) bool { return p.Tier == cnpv1alpha2.TierAdmin })
	shadowSeen := map[string]bool{}
	w := newEdgeWorld(edges)
	used := map[RuleRef]bool{}
	added := map[RuleRef]bool{}
	for _, e := range edges {
		c := w.connection(e)
		va := Evaluate(w, active, c)
		for _, r := range append(slices.Clone(va.Egress.Allowing), va.Ingress.Allowing...) {
			used[r] = true
		}
		if va.Action != model.VerdictAllow {
			rep.Denied = append(rep.Denied, DeniedEdge{Edge: e.key(), Action: va.Action, Reason: va.Reason(), Flows: int64(e.Flows)})
		}
		if r, dir := va.AdminDeny(); r != nil {
			rep.Forbidden = append(rep.Forbidden, ForbiddenEdge{Edge: e.key(), Direction: dir, Rule: *r, Flows: int64(e.Flows)})
		}
		vp := Evaluate(w, prop, c)
		if hasAdmin {
			sh := append(shadows(e.key(), Evaluate(w, propDev, c), vp), shadows(e.key(), Evaluate(w, activeDev, c), va)...)
			for _, s := range sh {
				if k := s.Rule.String() + "|" + s.Edge; !shadowSeen[k] {
					shadowSeen[k] = true
					rep.Shadowed = append(rep.Shadowed, s)
				}
			}
		}
		if len(va.Egress.Allowing) == 0 {
			for _, r := range vp.Egress.Allowing {
				added[r] = true
			}
		}
		if len(va.Ingress.Allowing) == 0 {
			for _, r := range vp.Ingress.Allowing {
				added[r] = true
			}
		}
	}
	for _, p := range active.Policies() {
		if p.Mode == model.ModeObserve {
			continue
		}
		for d := range 2 {
			if !p.Isolates[d] {
				continue
			}
			for _, r := range p.Rules[d] {
				if ref := (RuleRef{p.Ref, r.ID}); !used[ref] {
					rep.Unused = append(rep.Unused, ref)
				}
			}
		}
	}
	rep.Added = slices.SortedFunc(maps.Keys(added), func(a, b RuleRef) int {
		return compareStrings(a.String(), b.String())
	})
	slices.SortFunc(rep.Unused, func(a, b RuleRef) int { return compareStrings(a.String(), b.String()) })
	slices.SortStableFunc(rep.Denied, func(a, b DeniedEdge) int { return compareStrings(a.Edge, b.Edge) })
	slices.SortStableFunc(rep.Forbidden, func(a, b ForbiddenEdge) int { return compareStrings(a.Edge, b.Edge) })
	slices.SortStableFunc(rep.Shadowed, func(a, b ShadowedRule) int {
		return compareStrings(a.Rule.String()+"|"+a.Edge, b.Rule.String()+"|"+b.Edge)
	})
	return rep, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
