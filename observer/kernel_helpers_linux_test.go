//go:build linux

package observer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// nftRule is a test-only rule in the obstest table.
type nftRule struct {
	output bool // output hook, else input
	exprs  []expr.Any
}

// ctTable creates table "inet obstest" in ns with input and output filter
// chains whose first rule uses ct (`ct state new counter`), so that the
// netns tracks connections (KERNEL.md), followed by rules.
func ctTable(t testing.TB, ns *nettest.Netns, rules ...nftRule) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle)))
	if err != nil {
		t.Fatalf("nftables in %s: %v", ns.Name, err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "obstest"})
	chains := map[bool]*nftables.Chain{}
	for _, out := range []bool{false, true} {
		hook := nftables.ChainHookInput
		name := "input"
		if out {
			hook, name = nftables.ChainHookOutput, "output"
		}
		chains[out] = c.AddChain(&nftables.Chain{Name: name, Table: tbl, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityFilter})
		c.AddRule(&nftables.Rule{Table: tbl, Chain: chains[out], Exprs: append(ctStateNew(), &expr.Counter{})})
	}
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: chains[r.output], Exprs: r.exprs})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("flush nftables in %s: %v", ns.Name, err)
	}
}

// ctStateNew is `ct state new`.
func ctStateNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// denyLogged is `tcp dport PORT ct state new log group 18 prefix PREFIX drop`.
func denyLogged(output bool, port uint16, prefix string) nftRule {
	return logged(output, port, prefix, expr.VerdictDrop)
}

// logged is `tcp dport PORT ct state new log group 18 prefix PREFIX <verdict>`.
func logged(output bool, port uint16, prefix string, verdict expr.VerdictKind) nftRule {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
	e = append(e, ctStateNew()...)
	e = append(e,
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: verdictlog.Group, Data: []byte(prefix)},
		&expr.Verdict{Kind: verdict})
	return nftRule{output: output, exprs: e}
}

// loggedEveryUDP is `udp dport PORT log group 18 prefix PREFIX accept`:
// every packet is logged, not only the first of a connection, so that a
// burst fills the kernel's NFLOG batches (several packets per netlink
// datagram, closed by an NLMSG_DONE).
func loggedEveryUDP(port uint16, prefix string) nftRule {
	return nftRule{exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: verdictlog.Group, Data: []byte(prefix)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// link joins a and b with a veth pair named nameA/nameB, like
// nettest.Connect but with free names (for more than one link per netns).
func link(t testing.TB, a, b *nettest.Netns, nameA, nameB string, addrsA, addrsB []netip.Prefix) {
	t.Helper()
	na, nb := a.Netlink(t), b.Netlink(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA}, PeerName: nameB, PeerNamespace: netlink.NsFd(b.Handle)}
	if err := na.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, s := range []struct {
		h     *netlink.Handle
		name  string
		addrs []netip.Prefix
	}{{na, nameA, addrsA}, {nb, nameB, addrsB}} {
		l, err := s.h.LinkByName(s.name)
		if err != nil {
			t.Fatalf("link %s: %v", s.name, err)
		}
		for _, p := range s.addrs {
			if err := s.h.AddrAdd(l, nettest.Addr(p)); err != nil {
				t.Fatalf("add %s: %v", p, err)
			}
		}
		if err := s.h.LinkSetUp(l); err != nil {
			t.Fatalf("up %s: %v", s.name, err)
		}
	}
}

// routeVia adds a link-scope route to dst over dev in ns.
func routeVia(t testing.TB, ns *nettest.Netns, dev string, dst netip.Prefix) {
	t.Helper()
	h := ns.Netlink(t)
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	ipn := &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipn, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatalf("route %s in %s: %v", dst, ns.Name, err)
	}
}

// echoServer listens on TCP addr inside ns and echoes what each
// connection sends, then closes it.
func echoServer(t testing.TB, ns *nettest.Netns, addr string) {
	t.Helper()
	var ln net.Listener
	ns.Do(t, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 512)
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				n, _ := c.Read(buf)
				_, _ = c.Write(buf[:n])
			}()
		}
	}()
}

// dialEcho opens n TCP connections to addr from inside ns, one after the
// other, each sending and receiving a few bytes.
func dialEcho(t testing.TB, ns *nettest.Netns, addr string, n int) {
	t.Helper()
	ns.Do(t, func() error {
		buf := make([]byte, 16)
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				c.Close()
				return err
			}
			if _, err := c.Read(buf); err != nil {
				c.Close()
				return err
			}
			c.Close()
		}
		return nil
	})
}

// harness runs an observer with an aggregator and collects its records.
type harness struct {
	obs     *Observer
	agg     *Aggregator
	metrics *Metrics
	mu      sync.Mutex
	flows   []model.Flow
	done    chan error
}

func startObserver(t testing.TB, cfg Config, inv Inventory, hook func(), nss ...*nettest.Netns) *harness {
	t.Helper()
	h := &harness{done: make(chan error, 1)}
	var err error
	h.metrics, err = NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	names := NewNames(0)
	var eps []model.Endpoint
	for _, ns := range nss {
		eps = append(eps, model.Endpoint{Netns: ns.Name, Path: ns.Path()})
	}
	h.obs, err = New(cfg, eps, func(f model.Flow) {
		h.mu.Lock()
		h.flows = append(h.flows, f)
		h.mu.Unlock()
		h.agg.Add(f)
	}, names, h.metrics, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	h.agg = NewAggregator(inv, names, h.obs.Observed)
	h.obs.beforeReceive = hook
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.obs.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("observer Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("observer did not stop within 5s")
		}
	})
	select {
	case <-h.obs.Ready():
	case err := <-h.done:
		t.Fatalf("observer: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("observer not ready after 10s")
	}
	return h
}

// waitFor polls cond every 20ms for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) snapshot() []model.Flow {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]model.Flow(nil), h.flows...)
}

func (h *harness) edge(src, dst string, proto model.Protocol, port uint16) (model.Edge, bool) {
	for _, e := range h.agg.Edges() {
		if e.Source.String() == src && e.Destination.String() == dst && e.Protocol == proto && e.Port == port {
			return e, true
		}
	}
	return model.Edge{}, false
}

var errTimeout = errors.New("timeout")

// testLogger logs at debug to stderr when NANOSEG_TEST_DEBUG is set.
func testLogger() *slog.Logger {
	if os.Getenv("NANOSEG_TEST_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
