//go:build linux

package observer

import (
	"net"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/nanoseg/nanoseg/model"
)

// TestKernelFailedConnections: a TCP connection refused with a reset, a
// SYN nobody answers and a UDP datagram answered only by an ICMP port
// unreachable end as failed (reset, unanswered, unanswered); an echo
// exchange does not. The entries still alive are ended by flushing the
// client's conntrack table, which sends their DESTROY events at once.
func TestKernelFailedConnections(t *testing.T) {
	cli, srv := pair(t, nil, nil)
	h := startObserver(t, Config{}, shopInventory(), nil, cli, srv)
	echoServer(t, srv, "198.18.1.2:8080")
	dialEcho(t, cli, "198.18.1.2:8080", 1)
	cli.Do(t, func() error {
		if c, err := net.DialTimeout("tcp", "198.18.1.2:9", time.Second); err == nil {
			c.Close()
			t.Errorf("connected to a closed port")
		}
		// Nobody holds 198.18.1.99: the SYN is never answered.
		if c, err := net.DialTimeout("tcp", "198.18.1.99:7", 300*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("connected to an address nobody holds")
		}
		c, err := net.Dial("udp", "198.18.1.2:9")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("anyone?"))
		return err
	})
	time.Sleep(200 * time.Millisecond) // the port unreachable comes back
	// Only the client's table: the socket is opened in its netns by fd.
	ct, err := conntrack.Dial(&netlink.Config{NetNS: int(cli.Handle)})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	if err := ct.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		dst          string
		proto        model.Protocol
		port         uint16
		failed, rset uint64
	}{
		{"shop/api", model.ProtocolTCP, 8080, 0, 0},
		{"shop/api", model.ProtocolTCP, 9, 1, 1},
		{"198.18.1.99", model.ProtocolTCP, 7, 1, 0},
		{"shop/api", model.ProtocolUDP, 9, 1, 0},
	}
	waitFor(t, 5*time.Second, "the failed connections counted", func() bool {
		for _, w := range want {
			e, ok := h.edge("shop/frontend", w.dst, w.proto, w.port)
			if !ok || e.Flows != 1 || (w.failed > 0 && e.Failed != w.failed) {
				return false
			}
		}
		return true
	})
	for _, w := range want {
		e, _ := h.edge("shop/frontend", w.dst, w.proto, w.port)
		if e.Failed != w.failed || e.Reset != w.rset {
			t.Errorf("%s %s/%d: failed %d reset %d, want %d and %d", w.dst, w.proto, w.port, e.Failed, e.Reset, w.failed, w.rset)
		}
	}
}
