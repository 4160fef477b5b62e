package inventory

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/model"
)

type staticSource Snapshot

func (s staticSource) List(context.Context) (Snapshot, error) { return Snapshot(s), nil }
func (staticSource) Watch(ctx context.Context, _ func()) error {
	<-ctx.Done()
	return nil
}

func TestMergeAndIndex(t *testing.T) {
	a := staticSource{Endpoints: []model.Endpoint{{Netns: "web-0", Namespace: "shop", Workload: "web", Labels: map[string]string{"app": "web", "pod-template-hash": "x"},
		Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.1")}}}, Namespaces: map[string]map[string]string{"shop": {"team": "a"}}}
	b := staticSource{Endpoints: []model.Endpoint{{Netns: "db-0", Namespace: "shop", Workload: "db", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.2")}}},
		Namespaces: map[string]map[string]string{"shop": {"team": "b"}}, Externals: map[netip.Addr]string{netip.MustParseAddr("198.19.0.1"): "pay.example"}}
	snap, err := Merge(a, b).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Endpoints) != 2 || snap.Namespaces["shop"]["team"] != "b" || len(snap.Externals) != 1 {
		t.Fatalf("merged snapshot = %+v", snap)
	}
	idx := NewIndex(nil, nil, nil)
	added, removed := idx.Replace(snap.Endpoints, snap.Namespaces, snap.Externals)
	if strings.Join(added, ",") != "db-0,web-0" || len(removed) != 0 {
		t.Errorf("added %v removed %v", added, removed)
	}
	id, ok := idx.Lookup(netip.MustParseAddr("::ffff:198.18.0.1"))
	if !ok || id.Workload != "web" || id.Labels["pod-template-hash"] != "" || id.Labels["app"] != "web" {
		t.Errorf("lookup of web's mapped address = %+v, %v (noise labels must go)", id, ok)
	}
	if ws := idx.Workloads(); strings.Join(ws, ",") != "shop/db,shop/web" {
		t.Errorf("workloads = %v", ws)
	}
	moved := append([]model.Endpoint(nil), snap.Endpoints...)
	moved[0].NetnsInode = 7 // web-0 re-created under the same name
	added, removed = idx.Replace(moved, snap.Namespaces, nil)
	if strings.Join(added, ",") != "web-0" || strings.Join(removed, ",") != "web-0" {
		t.Errorf("re-created namespace: added %v removed %v, want web-0 in both", added, removed)
	}
}
