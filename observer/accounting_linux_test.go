//go:build linux

package observer

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/nanoseg/nanoseg/model"
)

// TestKernelCountersWhileTracked: a TCP connection that has closed (its
// conntrack entry waits out TIME_WAIT, 120 s) and one that stays open
// have their packet and byte counters on their edges within a few
// seconds, with default settings; once their entries are destroyed the
// edges hold exactly the kernel's totals (nothing counted twice) and one
// flow each.
func TestKernelCountersWhileTracked(t *testing.T) {
	cli, srv := pair(t, nil, nil)
	h := startObserver(t, Config{DisableVerdictLog: true, DisableDNS: true}, shopInventory(), nil, cli, srv)
	var lns []net.Listener
	srv.Do(t, func() error {
		for _, addr := range []string{"198.18.1.2:8080", "198.18.1.2:8081"} {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	})
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
	})
	// The server reads 1000 bytes, answers 2000 and closes.
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(30 * time.Second))
					if _, err := io.ReadFull(c, make([]byte, 1000)); err != nil {
						return
					}
					_, _ = c.Write(make([]byte, 2000))
					_, _ = io.Copy(io.Discard, c) // until the client closes
				}()
			}
		}()
	}
	var long net.Conn
	cli.Do(t, func() error {
		talk := func(addr string) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return nil, err
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(make([]byte, 1000)); err != nil {
				return nil, err
			}
			_, err = io.ReadFull(c, make([]byte, 2000))
			return c, err
		}
		short, err := talk("198.18.1.2:8080")
		if err != nil {
			return err
		}
		short.Close()
		long, err = talk("198.18.1.2:8081")
		return err
	})
	defer long.Close()
	start := time.Now()
	waitFor(t, 6*time.Second, "bytes of the closed and the open connection on their edges", func() bool {
		e1, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 8080)
		e2, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, 8081)
		return e1.BytesOut >= 1000 && e1.BytesIn >= 2000 && e2.BytesOut >= 1000 && e2.BytesIn >= 2000
	})
	t.Logf("counters on the edges %v after the traffic", time.Since(start).Round(time.Millisecond))

	// The kernel's totals, then the end of both entries (a flush of the
	// client's table sends their DESTROY now instead of after TIME_WAIT).
	ct, err := conntrack.Dial(&netlink.Config{NetNS: int(cli.Handle)})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	time.Sleep(3 * time.Second) // let a few more counter reads pass: they must not add anything
	flows, err := ct.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	type counts struct{ flows, packetsOut, bytesOut, packetsIn, bytesIn uint64 }
	want := map[uint16]counts{}
	for _, f := range flows {
		if p := f.TupleOrig.Proto.DestinationPort; f.TupleOrig.Proto.Protocol == 6 && (p == 8080 || p == 8081) {
			want[p] = counts{1, f.CountersOrig.Packets, f.CountersOrig.Bytes, f.CountersReply.Packets, f.CountersReply.Bytes}
		}
	}
	if len(want) != 2 {
		t.Fatalf("conntrack entries of the two connections: %+v", want)
	}
	if err := ct.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "end records of both connections", func() bool {
		n := 0
		for _, f := range h.snapshot() {
			if f.Phase == model.PhaseEnd && f.Endpoint == cli.Name && (f.DstPort == 8080 || f.DstPort == 8081) {
				n++
			}
		}
		return n == 2
	})
	time.Sleep(100 * time.Millisecond)
	for port, w := range want {
		e, _ := h.edge("shop/frontend", "shop/api", model.ProtocolTCP, port)
		got := counts{e.Flows, e.PacketsOut, e.BytesOut, e.PacketsIn, e.BytesIn}
		if got != w {
			t.Errorf("edge to %d: flows/packets/bytes %+v, want the kernel's %+v", port, got, w)
		}
	}
}
