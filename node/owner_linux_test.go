//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// TestOneOwnerPerNetns (issue 11, item 3): two nodes, as two agents over
// two inventory sources, are given the same network namespace. The first
// programs it; the second refuses it with an error naming the first (its
// pid), programs nothing there and starts no observer, however long both
// run: the table stays the first one's, and a denied connection stays
// denied.
func TestOneOwnerPerNetns(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	dir := ownerDir(t)
	a, stopA := startNode(t, Config{OwnerDir: dir, Owner: "node a"}, nil)
	a.SetInventory(ctx, tp.snapshot())
	if err := a.Enforce(ctx, policies.InForce{NanoSegments: []v1alpha1.NanoSegment{dbPolicy(t, model.ModeEnforce, 5432)}}, []string{"shop/db"}); err != nil {
		t.Fatal(err)
	}
	want, ok := a.Desired(tp.ep.Netns)
	if !ok || want.Mode != model.ModeEnforce {
		t.Fatalf("first node's rule set: %+v, %v", want, ok)
	}
	if !tp.open(5432) || tp.open(9090) {
		t.Fatalf("under the first node's enforce: 5432 open %v (want true), 9090 open %v (want false)", tp.open(5432), tp.open(9090))
	}

	b, _ := startNode(t, Config{OwnerDir: dir, Owner: "node b"}, nil)
	b.SetInventory(ctx, tp.snapshot())
	if err := b.Enforce(ctx, policies.InForce{}, nil); err != nil { // nothing in force in b's store
		t.Fatal(err)
	}
	err := b.Applied(tp.ep.Netns).Err
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d, node a", os.Getpid())) || !errors.Is(err, ErrOwned) {
		t.Errorf("second node's status of the endpoint: err %v, want a refusal naming the owner (pid %d)", err, os.Getpid())
	}
	// Several drift passes of both nodes.
	time.Sleep(10 * a.cfg.DriftInterval)
	st, err := dataplane.New(nil).Read(tp.ep.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Equal(want) {
		t.Errorf("table after both nodes ran: mode %s, %d ingress entries; want the first node's", st.RuleSet.Mode, len(st.RuleSet.Ingress))
	}
	if tp.open(9090) {
		t.Errorf("client -> db 9090 open: the second node weakened the first one's table")
	}
	if rs, _ := a.rec.Status(tp.ep.Netns); rs.Repairs != 0 {
		t.Errorf("the first node repaired its table %d times: someone else wrote it", rs.Repairs)
	}
	if v := gaugeValue(t, b.metrics.refused); v != 1 {
		t.Errorf("nanoseg_node_endpoints_refused = %v, want 1", v)
	}

	// The first node stops: the second takes the endpoint over on its
	// next refresh, and keeps the enforcing table its store does not know.
	stopA()
	b.SetInventory(ctx, tp.snapshot())
	if s := b.Applied(tp.ep.Netns); s.Err != nil || s.Adopted != "enforce" {
		t.Errorf("second node after the first stopped: %+v, want managed, adopted enforce", s)
	}
	if tp.open(9090) || !tp.open(5432) {
		t.Errorf("after the takeover: 9090 open %v (want false), 5432 open %v (want true)", tp.open(9090), tp.open(5432))
	}
}

// TestPeerWithoutPath: an endpoint without Path (a pod of another node,
// or one whose netns was not found) is a peer only: the node neither
// claims, observes nor programs it, nor reports it refused, and policies
// still resolve its identity (a pod selector allows it by its labels).
func TestPeerWithoutPath(t *testing.T) {
	tp := newTopo(t)
	ctx := context.Background()
	n, _ := startNode(t, Config{OwnerDir: ownerDir(t)}, nil)
	snap := tp.snapshot()
	peer := model.Endpoint{Netns: "shop_client-0", Namespace: "shop", Workload: "client", Labels: map[string]string{"app": "client"},
		Addrs: []netip.Addr{clientAddr}}
	snap.Endpoints = append(snap.Endpoints, peer)
	n.SetInventory(ctx, snap)
	np := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{port: 5432}]
`
	objs, err := policies.ParseObjects("np.yaml", []byte(np))
	if err != nil {
		t.Fatal(err)
	}
	nps, _ := policies.SplitObjects(objs)
	if err := n.Enforce(ctx, policies.InForce{NetworkPolicies: nps}, []string{"shop/db", "shop/client"}); err != nil {
		t.Fatal(err)
	}
	if !tp.open(5432) || tp.open(9090) {
		t.Errorf("client (a peer) -> db: 5432 open %v (want true), 9090 open %v (want false)", tp.open(5432), tp.open(9090))
	}
	if n.owns(peer.Netns) {
		t.Errorf("the node claimed a peer without Path")
	}
	if r := n.Refused(); len(r) != 0 {
		t.Errorf("refused: %v, want none (a peer is not refused)", r)
	}
	if _, ok := n.rec.Status(peer.Netns); ok {
		t.Errorf("the reconciler knows the peer")
	}
	n.mu.Lock()
	_, observed := n.observers[peer.Netns]
	n.mu.Unlock()
	if observed {
		t.Errorf("the node observes the peer")
	}
	// The peer's netns appears (its Path found): now it is the node's.
	st, _ := dataplane.New(nil).Read(tp.client.Path())
	if st != nil && st.Present {
		t.Fatalf("client netns has a table before it was claimed")
	}
	var ino unix.Stat_t
	if err := unix.Stat(tp.client.Path(), &ino); err != nil {
		t.Fatal(err)
	}
	snap.Endpoints[1].Path, snap.Endpoints[1].NetnsInode = tp.client.Path(), ino.Ino
	n.SetInventory(ctx, snap)
	if !n.owns(peer.Netns) {
		t.Errorf("the node did not claim the endpoint once its Path was known")
	}
	if _, ok := n.rec.Status(peer.Netns); !ok {
		t.Errorf("the endpoint was not programmed once its Path was known")
	}
}
