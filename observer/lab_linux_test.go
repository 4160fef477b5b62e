//go:build linux

package observer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/model"
)

// labInventory resolves workload replicas of a lab plan; externals are
// left unknown so that DNS names them.
func labInventory(p *lab.Plan) Inventory {
	m := map[netip.Addr]model.Identity{}
	for _, e := range p.Endpoints {
		if !e.External {
			for _, a := range []netip.Addr{e.IPv4, e.IPv6} {
				m[a] = model.Identity{Namespace: e.Namespace, Workload: e.Workload}
			}
		}
	}
	return InventoryFunc(func(a netip.Addr) (model.Identity, bool) { id, ok := m[a.Unmap()]; return id, ok })
}

// TestKernelLabShop brings up manifests/lab/shop.yaml in-process, observes
// every workload endpoint, and checks that every declared client-server
// pair becomes an edge with the right workloads, protocol and port, and
// that the external payment provider is named by its DNS name.
func TestKernelLabShop(t *testing.T) {
	nettest.RequireRoot(t)
	raw, err := os.ReadFile("../manifests/lab/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "obs" + hex.EncodeToString(b[:])
	raw = []byte(strings.Replace(string(raw), "\nname: shop\n", "\nname: "+name+"\n", 1))
	topo, err := lab.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := lab.NewPlan(topo, raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg := lab.Config{StateDir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		if err := lab.Down(dctx, cfg, name, nil); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if err := lab.Create(ctx, cfg, plan, nil); err != nil {
		t.Fatalf("lab create: %v", err)
	}
	// The dataplane's table would make each endpoint track connections;
	// this test stands in with the obstest table.
	var observed []*nettest.Netns
	for _, e := range plan.Endpoints {
		h, err := netns.GetFromPath("/run/netns/" + e.Netns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		ns := &nettest.Netns{Name: e.Netns, Handle: h}
		ctTable(t, ns)
		if !e.External {
			observed = append(observed, ns)
		}
	}
	h := startObserver(t, Config{}, labInventory(plan), nil, observed...)
	for _, e := range plan.Endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := lab.RunEndpoint(ctx, plan, e, "", nil); err != nil && ctx.Err() == nil {
				t.Errorf("run endpoint %s: %v", e.ID(), err)
			}
		}()
	}

	type want struct {
		src, dst string
		proto    model.Protocol
		port     uint16
	}
	var wants []want
	externals := map[string]bool{}
	for _, x := range topo.Externals {
		externals[x.DNS] = true
	}
	ports := func(key string) []lab.Port {
		for _, x := range topo.Externals {
			if x.DNS == key {
				return x.Ports
			}
		}
		for _, w := range topo.Workloads {
			if w.Key() == key {
				return w.Ports
			}
		}
		return nil
	}
	for _, w := range topo.Workloads {
		for _, tk := range w.Talks {
			dst := tk.To
			if !externals[dst] && !strings.Contains(dst, "/") {
				dst = w.Namespace + "/" + dst
			}
			port, proto := tk.Port.Number, model.Protocol(strings.ToUpper(tk.Protocol))
			for _, p := range ports(dst) {
				if (tk.Port.Name != "" && p.Name == tk.Port.Name) || (tk.Port.Name == "" && p.Port == tk.Port.Number) {
					port = p.Port
					if proto == "" {
						proto = model.Protocol(strings.ToUpper(p.Protocol))
					}
				}
			}
			if proto == "" {
				proto = model.ProtocolTCP
			}
			wants = append(wants, want{w.Key(), dst, proto, uint16(port)})
		}
	}
	if len(wants) < 5 {
		t.Fatalf("shop.yaml declares only %d talks: %+v", len(wants), wants)
	}
	start := time.Now()
	missing := func() []want {
		var out []want
		for _, w := range wants {
			if e, ok := h.edge(w.src, w.dst, w.proto, w.port); !ok || e.Flows == 0 {
				out = append(out, w)
			}
		}
		return out
	}
	for len(missing()) > 0 && time.Since(start) < 20*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		var got []string
		for _, e := range h.agg.Edges() {
			got = append(got, fmt.Sprintf("%s -> %s %s/%d (%d)", e.Source, e.Destination, e.Protocol, e.Port, e.Flows))
		}
		t.Fatalf("after %v, declared pairs without an edge: %+v\nedges:\n%s", time.Since(start), m, strings.Join(got, "\n"))
	}
	t.Logf("all %d declared pairs are edges after %v; %d edges in all", len(wants), time.Since(start).Round(time.Millisecond), h.agg.Len())
	for _, e := range h.agg.Edges() {
		t.Logf("  %s -> %s %s/%d flows=%d", e.Source, e.Destination, e.Protocol, e.Port, e.Flows)
	}
	// Replicas collapse: frontend has two, and every frontend edge names the workload.
	for _, e := range h.agg.Edges() {
		if strings.Contains(e.Source.String(), "frontend-") || strings.Contains(e.Destination.String(), "frontend-") {
			t.Errorf("replica-level edge %+v", e)
		}
		if e.Source.External && e.Source.Name == "" && !e.Source.Addr.IsValid() {
			t.Errorf("unnamed source %+v", e)
		}
	}
}
