//go:build linux

package nettest

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestConnectCarriesTCP checks the helper itself: two namespaces joined by
// Connect exchange a real TCP connection over IPv4 and IPv6, and a third,
// unconnected namespace cannot reach them.
func TestConnectCarriesTCP(t *testing.T) {
	a, b := New(t), New(t)
	Connect(t, a, b,
		[]netip.Prefix{netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("2001:db8::1/64")},
		[]netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("2001:db8::2/64")})
	var ln net.Listener
	b.Do(t, func() (err error) { ln, err = net.Listen("tcp", ":7000"); return err })
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}()
	for _, addr := range []string{"198.18.0.2:7000", "[2001:db8::2]:7000"} {
		var c net.Conn
		a.Do(t, func() (err error) { c, err = net.DialTimeout("tcp", addr, 3*time.Second); return err })
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "hi" {
			t.Fatalf("read from %s: %q, %v", addr, got, err)
		}
	}
	lonely := New(t)
	err := func() error {
		var err error
		lonely.Do(t, func() error { _, err = net.DialTimeout("tcp", "198.18.0.2:7000", 500*time.Millisecond); return nil })
		return err
	}()
	if err == nil {
		t.Fatal("unconnected namespace reached 198.18.0.2:7000")
	}
}
