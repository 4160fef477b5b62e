//go:build linux

package dataplane

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// Test topology: client netns (several addresses, for prefix edges) and
// server netns, joined by one veth pair. Only 198.18.0.0/15 and 2001:db8::/32.
var (
	server4 = netip.MustParseAddr("198.18.0.100")
	server6 = netip.MustParseAddr("2001:db8::100")
	// client addresses around the edges of 198.18.0.8/30 and 2001:db8::8/126.
	client4 = []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.7"),
		netip.MustParseAddr("198.18.0.8"), netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")}
	client6 = []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::7"),
		netip.MustParseAddr("2001:db8::8"), netip.MustParseAddr("2001:db8::b"), netip.MustParseAddr("2001:db8::c")}
)

// blocked is how long a probe waits before calling a path closed.
const blocked = 300 * time.Millisecond

type pair struct {
	client, server *nettest.Netns
}

func newPair(t testing.TB) pair {
	t.Helper()
	c, s := nettest.New(t), nettest.New(t)
	var ca, sa []netip.Prefix
	for _, a := range client4 {
		ca = append(ca, netip.PrefixFrom(a, 24))
	}
	for _, a := range client6 {
		ca = append(ca, netip.PrefixFrom(a, 64))
	}
	sa = []netip.Prefix{netip.PrefixFrom(server4, 24), netip.PrefixFrom(server6, 64)}
	// No duplicate address detection on the link-local addresses either:
	// while they are tentative, the first IPv6 packets wait for neighbour
	// discovery (about 2 s).
	for _, ns := range []*nettest.Netns{c, s} {
		ns.Do(t, func() error {
			for _, k := range []string{"all", "default"} {
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/accept_dad", []byte("0"), 0o644); err != nil {
					return err
				}
			}
			return nil
		})
	}
	nettest.Connect(t, c, s, ca, sa)
	// IPv6 on a new veth starts only once the kernel has seen the carrier
	// come up (linkwatch, up to about 1-2 s): wait for it here, before any
	// table exists, so probes do not time out on it.
	deadline := time.Now().Add(5 * time.Second)
	for probeICMP(c, client6[0], server6, 50*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("IPv6 between the test namespaces not up after 5s")
		}
	}
	return pair{client: c, server: s}
}

// serve starts TCP and UDP echo servers on the given ports in ns (all
// addresses, both families), stopped at cleanup.
func serve(t testing.TB, ns *nettest.Netns, ports ...int) {
	t.Helper()
	var closers []io.Closer
	ns.Do(t, func() error {
		for _, p := range ports {
			l, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", p))
			if err != nil {
				return err
			}
			closers = append(closers, l)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() { _, _ = io.Copy(c, c); c.Close() }()
				}
			}()
			u, err := net.ListenPacket("udp", fmt.Sprintf("[::]:%d", p))
			if err != nil {
				return err
			}
			closers = append(closers, u)
			go func() {
				buf := make([]byte, 1500)
				for {
					n, from, err := u.ReadFrom(buf)
					if err != nil {
						return
					}
					_, _ = u.WriteTo(buf[:n], from)
				}
			}()
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range closers {
			c.Close()
		}
	})
}

// dialTCP opens a TCP connection from src in ns to dst, with SO_LINGER 0 so
// closing leaves no TIME_WAIT.
func dialTCP(ns *nettest.Netns, src netip.Addr, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var derr error
	err := nettestDo(ns, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, derr = d.Dial("tcp", dst.String())
		return nil
	})
	if err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	_ = c.(*net.TCPConn).SetLinger(0)
	return c, nil
}

func nettestDo(ns *nettest.Netns, fn func() error) error {
	return nsenter.Do(ns.Handle, fn)
}

// echo writes a byte on c and waits up to timeout for it to come back.
func echo(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err := io.ReadFull(c, b)
	return err
}

// probeTCP reports whether a TCP connection from src to dst opens and
// echoes within timeout.
func probeTCP(ns *nettest.Netns, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	c, err := dialTCP(ns, src, dst, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return echo(c, timeout)
}

// probeUDP sends one datagram from src to dst and waits for the echo.
func probeUDP(ns *nettest.Netns, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	err := nettestDo(ns, func() error {
		var err error
		d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err = d.Dial("udp", dst.String())
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	return echo(c, timeout)
}

// probeICMP sends an echo request from src to dst over a raw socket in ns
// and waits for the reply.
func probeICMP(ns *nettest.Netns, src, dst netip.Addr, timeout time.Duration) error {
	var pc *icmp.PacketConn
	network, typ, proto := "ip4:icmp", icmp.Type(ipv4.ICMPTypeEcho), 1
	if dst.Is6() {
		network, typ, proto = "ip6:ipv6-icmp", ipv6.ICMPTypeEchoRequest, 58
	}
	err := nettestDo(ns, func() error {
		var err error
		pc, err = icmp.ListenPacket(network, src.String())
		return err
	})
	if err != nil {
		return err
	}
	defer pc.Close()
	id := int(time.Now().UnixNano() & 0xffff)
	m := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("nanoseg")}}
	b, err := m.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	_ = pc.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		r, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		if e, ok := r.Body.(*icmp.Echo); ok && e.ID == id && (r.Type == ipv4.ICMPTypeEchoReply || r.Type == ipv6.ICMPTypeEchoReply) {
			return nil
		}
	}
}

// nflog reads verdict log prefixes from verdictlog.Group in one netns.
type nflog struct {
	mu       sync.Mutex
	prefixes []string
	conn     *netlink.Conn
}

const (
	nfnlSubsysULOG  = 4
	nfulnlMsgPacket = 0
	nfulnlMsgConfig = 1
	nfulaCfgCmd     = 1
	nfulaCfgQThresh = 4
	nfulaPrefix     = 10
	nfulnlCmdBind   = 1
)

// listenNFLOG binds verdictlog.Group in ns and collects prefixes until cleanup.
func listenNFLOG(t testing.TB, ns *nettest.Netns) *nflog {
	t.Helper()
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatalf("dial nfnetlink_log: %v", err)
	}
	hdr := []byte{unix.AF_UNSPEC, 0, 0, 0}
	binary.BigEndian.PutUint16(hdr[2:], verdictlog.Group)
	// Bind the group, and flush every record at once (queue threshold 1;
	// the default batches up to 100 records or 1 s).
	attrs, _ := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nfulaCfgCmd, Data: []byte{nfulnlCmdBind}},
		{Type: nfulaCfgQThresh, Data: binary.BigEndian.AppendUint32(nil, 1)},
	})
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(hdr, attrs...),
	})
	if err != nil {
		c.Close()
		t.Fatalf("bind NFLOG group %d: %v", verdictlog.Group, err)
	}
	l := &nflog{conn: c}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msgs, err := c.Receive()
			if err != nil {
				return
			}
			for _, m := range msgs {
				if m.Header.Type != netlink.HeaderType(nfnlSubsysULOG<<8|nfulnlMsgPacket) || len(m.Data) < 4 {
					continue
				}
				ad, err := netlink.NewAttributeDecoder(m.Data[4:])
				if err != nil {
					continue
				}
				for ad.Next() {
					if ad.Type() == nfulaPrefix {
						l.mu.Lock()
						l.prefixes = append(l.prefixes, strings.TrimRight(ad.String(), "\x00"))
						l.mu.Unlock()
					}
				}
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return l
}

// wait returns true once prefix has been logged, or false after timeout.
func (l *nflog) wait(prefix string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		for _, p := range l.prefixes {
			if p == prefix {
				l.mu.Unlock()
				return true
			}
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *nflog) has(prefix string) bool { return l.wait(prefix, 0) }

// atomicLab is the setting of the tests that an update is atomic: a
// server netns of the first family serving TCP 80, its NFLOG records, and
// two Admin entries: accept allows client c0, deny drops the LAN (so c1)
// on TCP 80.
type atomicLab struct {
	f            family
	p            pair
	logs         *nflog
	dp           *Dataplane
	accept, deny Entry
}

func newAtomicLab(t testing.TB) *atomicLab {
	f := families[0]
	l := &atomicLab{f: f, p: newPair(t), dp: New(nil),
		accept: Entry{Peer: host(f.clients[0]), Protocol: model.ProtocolTCP, Port: 80, RuleID: "cnp/admin/open/ingress-0", Action: ActionAccept},
		deny:   Entry{Peer: f.lan, Protocol: model.ProtocolTCP, Port: 80, RuleID: "cnp/admin/close/ingress-0", Action: ActionDeny}}
	serve(t, l.p.server, 80)
	l.logs = listenNFLOG(t, l.p.server)
	return l
}

// flipCounts are the connections of atomicLab.flip's connect loops: from
// c0, opened and failed; from c1, leaked (opened).
type flipCounts struct{ opened, failed, leaked int64 }

// flip applies even and odd alternately, n updates from the one already
// applied (even first), 25 ms apart, while connect loops run from c0 (each
// attempt given c0Timeout) and c1 (100 ms); each update's result goes to
// each (an error fails the test).
func (l *atomicLab) flip(t testing.TB, n int, even, odd RuleSet, c0Timeout time.Duration, each func(i int, res ApplyResult)) flipCounts {
	t.Helper()
	var opened, failed, leaked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(src netip.Addr, ok, bad *atomic.Int64, timeout time.Duration) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := probeTCP(l.p.client, src, ap(l.f.server, 80), timeout); err == nil {
				ok.Add(1)
			} else if bad != nil {
				bad.Add(1)
			}
		}
	}
	wg.Go(func() { loop(l.f.clients[0], &opened, &failed, c0Timeout) })
	wg.Go(func() { loop(l.f.clients[1], &leaked, nil, 100*time.Millisecond) })
	for i := range n {
		rs := odd
		if i%2 == 0 {
			rs = even
		}
		res, err := l.dp.Apply(l.p.server.Path(), rs)
		if err != nil {
			t.Errorf("update %d: %v", i, err)
		}
		if each != nil {
			each(i, res)
		}
		time.Sleep(25 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	return flipCounts{opened.Load(), failed.Load(), leaked.Load()}
}

// reachedDefault reports whether a connection met the default verdict of
// a rule set whose IngressDefault is "default-reached".
func (l *atomicLab) reachedDefault() (string, bool) {
	w := verdictlog.Format(model.VerdictDeny, "default-reached")
	return w, l.logs.has(w)
}
