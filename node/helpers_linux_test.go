//go:build linux

package node

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// Test topology: a client netns (198.18.0.1, not an endpoint of the
// nodes: only a peer) and the endpoint shop/db (198.18.0.100), joined by
// one veth pair; db serves TCP 5432 and 9090.
var (
	clientAddr = netip.MustParseAddr("198.18.0.1")
	dbAddr     = netip.MustParseAddr("198.18.0.100")
)

// blocked is how long a probe waits before calling a path closed.
const blocked = 500 * time.Millisecond

type topo struct {
	client, db *nettest.Netns
	ep         model.Endpoint
}

func newTopo(t *testing.T) topo {
	t.Helper()
	c, d := nettest.New(t), nettest.New(t)
	nettest.Connect(t, c, d, []netip.Prefix{netip.PrefixFrom(clientAddr, 24)}, []netip.Prefix{netip.PrefixFrom(dbAddr, 24)})
	nettest.ServeTCP(t, d, 5432)
	nettest.ServeTCP(t, d, 9090)
	var st unix.Stat_t
	if err := unix.Stat(d.Path(), &st); err != nil {
		t.Fatal(err)
	}
	ep := model.Endpoint{Netns: d.Name, Path: d.Path(), NetnsInode: st.Ino, Namespace: "shop", Workload: "db",
		Labels: map[string]string{"app": "db"}, Addrs: []netip.Addr{dbAddr}}
	// The path is up once a first connection gets through.
	deadline := time.Now().Add(5 * time.Second)
	for nettest.DialTCP(c, netip.AddrPortFrom(dbAddr, 5432), 100*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			t.Fatal("client -> db not up after 5s")
		}
	}
	return topo{client: c, db: d, ep: ep}
}

// open reports whether client -> db on port opens and echoes.
func (tp topo) open(port uint16) bool {
	return nettest.DialTCP(tp.client, netip.AddrPortFrom(dbAddr, port), blocked) == nil
}

// snapshot is the inventory of both nodes: the one endpoint shop/db.
func (tp topo) snapshot() inventory.Snapshot {
	return inventory.Snapshot{Endpoints: []model.Endpoint{tp.ep},
		Namespaces: map[string]map[string]string{"shop": {"kubernetes.io/metadata.name": "shop"}}}
}

// dbPolicy is a nanosegment for shop/db in mode that allows only the
// client on TCP port.
func dbPolicy(t *testing.T, mode model.Mode, port int) v1alpha1.NanoSegment {
	t.Helper()
	objs, err := policies.ParseObjects("db.yaml", []byte(dbPolicyYAML(mode, port)))
	if err != nil {
		t.Fatal(err)
	}
	_, segs := policies.SplitObjects(objs)
	if len(segs) != 1 {
		t.Fatalf("parsed %d nanosegments", len(segs))
	}
	return segs[0]
}

// dbPolicyYAML is dbPolicy's document.
func dbPolicyYAML(mode model.Mode, port int) string {
	return `apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  mode: ` + string(mode) + `
  policyTypes: [Ingress]
  ingress:
    - id: from-client
      peers: [{ipBlock: {cidr: 198.18.0.1/32}}]
      ports: [{protocol: TCP, port: ` + strconv.Itoa(port) + `}]
`
}

// startNode returns a running node with an empty inventory and its stop
// function (stop Run, then Close; also called at cleanup). cfg's zero
// intervals get short test defaults; log may be nil.
func startNode(t *testing.T, cfg Config, log *slog.Logger) (*Node, func()) {
	t.Helper()
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 200 * time.Millisecond
	}
	if cfg.DriftInterval == 0 {
		cfg.DriftInterval = 200 * time.Millisecond
	}
	n, err := New(cfg, inventory.NewIndex(nil, nil, nil), store.NewMem(), prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = n.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			n.Close()
		})
	}
	t.Cleanup(stop)
	return n, stop
}

// ownerDir returns a fresh directory for owner files.
func ownerDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "nanoseg-owners-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
