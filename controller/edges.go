package controller

import (
	"strings"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// PolicyEdges converts observed edges into the policies package's edges
// (identity labels only, upper-case protocol, ICMP for both ICMP
// versions). Edges of protocols a policy cannot name are skipped.
func PolicyEdges(edges []model.Edge) []policies.Edge {
	out := make([]policies.Edge, 0, len(edges))
	for _, e := range edges {
		pe := policies.Edge{Port: int32(e.Port), FirstSeen: e.FirstSeen, LastSeen: e.LastSeen,
			Flows: int64(e.Flows), Bytes: int64(e.BytesOut + e.BytesIn)}
		switch strings.ToLower(string(e.Protocol)) {
		case "tcp":
			pe.Protocol = model.ProtocolTCP
		case "udp":
			pe.Protocol = model.ProtocolUDP
		case "sctp":
			pe.Protocol = model.ProtocolSCTP
		case "icmp", "ipv6-icmp", "icmpv6":
			pe.Protocol, pe.Port = model.ProtocolICMP, 0
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
