//go:build linux

package node

// Live verification, the kernel half: real connections from inside
// endpoint namespaces. Each probe opens one socket on a thread inside the
// source endpoint's netns (internal/nsenter), connects to a destination
// endpoint address from the inventory (never anything else), and closes
// the socket before returning, so a run leaves no socket, no conntrack
// entry beyond its normal timeout, and no rule behind. Sources: connect(2)
// (ECONNREFUSED on a TCP reset or an ICMP port unreachable for a connected
// UDP socket), udp(7).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/model"
)

// Probe source ports: probes bind their source port in ProbePortMin to
// ProbePortMax, above Linux's default ephemeral range (32768-60999), and
// register (source port, destination) before connecting, so the node
// recognises their flows and verdict-log records and keeps them out of the
// observed graph, the verdict events and so out of proposals.
const (
	ProbePortMin = 61000
	ProbePortMax = 65535
)

// probeKey identifies a probe's connection as the observer reports it.
type probeKey struct {
	srcPort uint16
	dst     netip.AddrPort
}

// probeMemory is how long a probe's flows are recognised: longer than a
// TCP connection's conntrack entry lingers after a reset.
const probeMemory = 3 * time.Minute

// markProbe picks a free probe source port for dst, records it and returns it.
func (n *Node) markProbe(dst netip.AddrPort) uint16 {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if n.probes == nil {
		n.probes = map[probeKey]time.Time{}
	}
	for k, at := range n.probes {
		if now.Sub(at) > probeMemory {
			delete(n.probes, k)
		}
	}
	for range ProbePortMax - ProbePortMin + 1 {
		n.probePort++
		port := uint16(ProbePortMin + int(n.probePort)%(ProbePortMax-ProbePortMin+1))
		k := probeKey{srcPort: port, dst: dst}
		if _, used := n.probes[k]; !used {
			n.probes[k] = now
			return port
		}
	}
	return 0 // every port in use for dst: let the kernel choose
}

// isProbe reports whether flow record f belongs to one of the node's probes.
func (n *Node) isProbe(f model.Flow) bool {
	if f.SrcPort < ProbePortMin {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.probes[probeKey{srcPort: f.SrcPort, dst: netip.AddrPortFrom(f.Dst.Unmap(), f.DstPort)}]
	return ok
}

// Probe implements controller.Node: one connection attempt from the netns
// of src to addr over proto (TCP or UDP), from a registered probe source
// port. The outcome is connected, refused, reply, timeout, dropped at
// source or error. It closes everything it opens; TCP probes close with a
// reset, leaving no TIME_WAIT behind.
func (n *Node) Probe(ctx context.Context, src model.Endpoint, proto string, addr netip.AddrPort, timeout time.Duration) controller.ProbeOutcome {
	outcome, reached, detail := n.probe(ctx, src.Path, proto, addr, timeout)
	return controller.ProbeOutcome{Outcome: outcome, Reached: reached, Detail: detail}
}

func (n *Node) probe(ctx context.Context, nsPath, proto string, addr netip.AddrPort, timeout time.Duration) (string, bool, string) {
	if err := ctx.Err(); err != nil {
		return "error", false, err.Error()
	}
	h, err := netns.GetFromPath(nsPath)
	if err != nil {
		return "error", false, fmt.Sprintf("open netns %s: %v", nsPath, err)
	}
	defer h.Close()
	var conn net.Conn
	network := "tcp"
	if proto == "UDP" {
		network = "udp"
	}
	port := int(n.markProbe(netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())))
	d := net.Dialer{Timeout: timeout}
	if network == "tcp" {
		d.LocalAddr = &net.TCPAddr{Port: port}
	} else {
		d.LocalAddr = &net.UDPAddr{Port: port}
	}
	err = nsenter.Do(h, func() (err error) {
		conn, err = d.Dial(network, addr.String())
		return err
	})
	if err != nil {
		return classify(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
		return "connected", true, ""
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(udpPayload(addr.String())); err != nil {
		return classify(err)
	}
	buf := make([]byte, 1500)
	if _, err := conn.Read(buf); err != nil {
		return classify(err)
	}
	return "reply", true, ""
}

// classify maps a connection error to an outcome.
func classify(err error) (string, bool, string) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused", true, ""
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout", false, ""
	case errors.Is(err, syscall.EPERM):
		// The source's own output hook dropped the first packet.
		return "dropped at source", false, ""
	}
	return "error", false, err.Error()
}

// udpPayload is a DNS query (for a name under .invalid, which no resolver
// forwards) to port 53, and one text line to any other port.
func udpPayload(addr string) []byte {
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "53" {
		m := new(dns.Msg)
		m.SetQuestion("probe.nanoseg.invalid.", dns.TypeA)
		if raw, err := m.Pack(); err == nil {
			return raw
		}
	}
	return []byte("probe from nanoseg verify\n")
}
