package graph

import (
	"net/netip"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// t0 is the fixture's start of observation.
var t0 = time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)

func wl(ns, name string, labels map[string]string) model.Peer {
	return model.Peer{Namespace: ns, Workload: name, Labels: labels}
}

// shopEdges is the shop lab's traffic after ten minutes of observation:
// two frontend replicas (two records of one identity) → api:8080, api → db,
// cache and payments.example, every workload → kube-system/dns:53/udp,
// monitoring/prometheus → every workload :9090, an intruder denied on its
// way to db, and an audit-denied probe of cache by the intruder.
func shopEdges() []model.Edge {
	var (
		frontend   = wl("shop", "frontend", map[string]string{"app": "frontend", "tier": "web"})
		api        = wl("shop", "api", map[string]string{"app": "api", "tier": "backend"})
		db         = wl("shop", "db", map[string]string{"app": "db", "tier": "data"})
		cache      = wl("shop", "cache", map[string]string{"app": "cache", "tier": "data"})
		intruder   = wl("shop", "intruder", map[string]string{"app": "intruder"})
		dns        = wl("kube-system", "dns", map[string]string{"app": "dns", "k8s-app": "kube-dns"})
		prometheus = wl("monitoring", "prometheus", map[string]string{"app": "prometheus"})
		payments   = model.Peer{External: true, Name: "payments.example"}
		unnamed    = model.Peer{External: true, Addr: netip.MustParseAddr("198.19.0.99")}
	)
	edge := func(src, dst model.Peer, proto model.Protocol, port uint16, start, end time.Duration, flows uint64) model.Edge {
		return model.Edge{Source: src, Destination: dst, Protocol: proto, Port: port, Traffic: model.Traffic{FirstSeen: t0.Add(start), LastSeen: t0.Add(end), Flows: flows, PacketsOut: flows * 6, BytesOut: flows * 420, PacketsIn: flows * 5, BytesIn: flows * 1300, Verdicts: model.VerdictCounts{Observed: flows}}}
	}
	es := []model.Edge{
		edge(frontend, api, model.ProtocolTCP, 8080, 2*time.Second, 5*time.Minute, 300),
		edge(frontend, api, model.ProtocolTCP, 8080, 3*time.Second, 10*time.Minute, 298),
		edge(api, db, model.ProtocolTCP, 5432, 2*time.Second, 10*time.Minute, 600),
		edge(api, cache, model.ProtocolTCP, 6379, 2*time.Second, 10*time.Minute, 600),
		edge(api, payments, model.ProtocolTCP, 443, 4*time.Second, 10*time.Minute, 300),
		edge(api, unnamed, model.ProtocolICMP, 0, 7*time.Minute, 7*time.Minute, 1),
	}
	for _, p := range []model.Peer{frontend, api, db, cache, intruder, prometheus} {
		es = append(es, edge(p, dns, model.ProtocolUDP, 53, time.Second, 10*time.Minute, 120))
	}
	for _, p := range []model.Peer{frontend, api, db, cache, intruder, dns} {
		es = append(es, edge(prometheus, p, model.ProtocolTCP, 9090, 2*time.Second, 10*time.Minute, 300))
	}
	denied := edge(intruder, db, model.ProtocolTCP, 5432, 8*time.Minute, 8*time.Minute+30*time.Second, 4)
	denied.Verdicts = model.VerdictCounts{Denied: 4}
	denied.PacketsIn, denied.BytesIn = 0, 0
	audit := edge(intruder, cache, model.ProtocolTCP, 6379, 6*time.Minute, 6*time.Minute, 2)
	audit.Verdicts = model.VerdictCounts{Observed: 2, AuditDenied: 2}
	return append(es, denied, audit)
}
