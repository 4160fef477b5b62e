//go:build linux

package nettest

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/nanoseg/nanoseg/internal/nsenter"
)

// ServeTCP listens on TCP port in n (all addresses, both families) and
// echoes what each connection sends, until cleanup.
func ServeTCP(t testing.TB, n *Netns, port int) {
	t.Helper()
	var l net.Listener
	n.Do(t, func() error {
		var err error
		l, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
}

// DialTCP opens a TCP connection from inside n to dst, writes one byte and
// waits for its echo, all within timeout. It returns nil when the echo
// came back: the path is open. The connection is closed with SO_LINGER 0
// (no TIME_WAIT).
func DialTCP(n *Netns, dst netip.AddrPort, timeout time.Duration) error {
	return DialTCPIn(n.Handle, dst, timeout)
}

// DialTCPIn is DialTCP from the network namespace behind handle h (one
// the test did not create, e.g. a real pod's).
func DialTCPIn(h netns.NsHandle, dst netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	var derr error
	if err := nsenter.Do(h, func() error {
		d := net.Dialer{Timeout: timeout}
		c, derr = d.Dial("tcp", dst.String())
		return nil
	}); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err := io.ReadFull(c, b)
	return err
}
