package transport

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// TestGraphCountsACrossNodeConnectionOnce: web (replicas on nodes a and
// c) connects to db (on node b); node a and c count their connections at
// web's egress, node b the same connections at db's ingress, with the
// audit-deny its ingress rule logged. The merged edge counts each
// connection once, keeps b's verdicts, and an edge only the server's node
// reports (an external client) is summed as before.
func TestGraphCountsACrossNodeConnectionOnce(t *testing.T) {
	g := NewGraph(100, 100)
	t0 := time.Now().Add(-time.Minute).UTC()
	web := model.Peer{Namespace: "shop", Workload: "web"}
	db := model.Peer{Namespace: "shop", Workload: "db"}
	world := model.Peer{External: true, Addr: netip.MustParseAddr("198.19.0.9")}
	edge := func(src model.Peer, flows, bytes uint64, v model.VerdictCounts, at time.Time) model.Edge {
		return model.Edge{Source: src, Destination: db, Protocol: model.ProtocolTCP, Port: 5432,
			Traffic: model.Traffic{FirstSeen: at, LastSeen: at, Flows: flows, BytesOut: bytes, Verdicts: v}}
	}
	apply := func(node string, eps []EndpointState, edges ...model.Edge) {
		t.Helper()
		if err := g.Apply(node, Batch{Node: node, Epoch: "e", Seq: 1, Full: true, Edges: edges, Endpoints: eps}); err != nil {
			t.Fatal(err)
		}
	}
	apply("a", []EndpointState{{Key: "shop_web-0", Workload: "shop/web", InSync: true}},
		edge(web, 2, 200, model.VerdictCounts{Observed: 2}, t0))
	apply("c", []EndpointState{{Key: "shop_web-1", Workload: "shop/web", InSync: true}},
		edge(web, 3, 300, model.VerdictCounts{Observed: 3}, t0.Add(time.Second)))
	apply("b", []EndpointState{{Key: "shop_db-0", Workload: "shop/db", InSync: true}},
		edge(web, 5, 500, model.VerdictCounts{Observed: 5, AuditDenied: 5}, t0.Add(2*time.Second)),
		edge(world, 4, 40, model.VerdictCounts{Observed: 4}, t0))
	apply("d", []EndpointState{{Key: "shop_db-1", Workload: "shop/db", InSync: true}},
		edge(world, 1, 10, model.VerdictCounts{Observed: 1}, t0))
	edges, err := g.Edges(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]model.Edge{}
	for _, e := range edges {
		got[e.Source.String()] = e
	}
	w := got["shop/web"]
	if w.Flows != 5 || w.BytesOut != 500 || w.Verdicts.Observed != 5 || w.Verdicts.AuditDenied != 5 ||
		!w.FirstSeen.Equal(t0) || !w.LastSeen.Equal(t0.Add(2*time.Second)) {
		t.Errorf("web -> db merged: %+v; want 5 flows, 500 bytes, 5 audit-denied, seen from t0 to t0+2s", w.Traffic)
	}
	if x := got[world.String()]; x.Flows != 5 || x.BytesOut != 50 {
		t.Errorf("world -> db merged: %+v; want 5 flows, 50 bytes (the servers' nodes summed)", x.Traffic)
	}
}
