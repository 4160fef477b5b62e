package controller

import (
	"strings"

	"github.com/nanoseg/nanoseg/observer"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// PolicyEdges converts observed edges into the policies package's edges
// (identity labels only, upper-case protocol, ICMP for both ICMP
// versions). Edges of protocols a policy cannot name are skipped.
func PolicyEdges(edges []observer.Edge) []policies.Edge {
	out := make([]policies.Edge, 0, len(edges))
	for _, e := range edges {
		pe := policies.Edge{Port: int32(e.Port), FirstSeen: e.FirstSeen, LastSeen: e.LastSeen,
			Flows: int64(e.Flows), Bytes: int64(e.BytesOut + e.BytesIn)}
		switch strings.ToLower(e.Protocol) {
		case "tcp":
			pe.Protocol = v1alpha1.ProtocolTCP
		case "udp":
			pe.Protocol = v1alpha1.ProtocolUDP
		case "sctp":
			pe.Protocol = v1alpha1.ProtocolSCTP
		case "icmp", "ipv6-icmp", "icmpv6":
			pe.Protocol, pe.Port = v1alpha1.ProtocolICMP, 0
		default:
			continue
		}
		if e.Source.External {
			pe.SourceExternal = &policies.External{DNSName: e.Source.Name, Address: e.Source.Addr}
		} else {
			pe.Source = policies.Identity{Namespace: e.Source.Namespace, Labels: policies.IdentityLabels(e.Source.Labels)}
		}
		if e.Destination.External {
			pe.External = &policies.External{DNSName: e.Destination.Name, Address: e.Destination.Addr}
		} else {
			pe.Destination = &policies.Identity{Namespace: e.Destination.Namespace, Labels: policies.IdentityLabels(e.Destination.Labels)}
		}
		out = append(out, pe)
	}
	return out
}
