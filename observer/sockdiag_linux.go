//go:build linux

// The endpoint's own sockets, for establishing who opened a connection
// that conntrack picked up in mid-flight (origin.go): a NETLINK_SOCK_DIAG
// socket in the endpoint's netns (netlink.Config.NetNS), asked for the TCP
// or UDP sockets on one local port. The kernel filters a dump by
// id.idiag_sport, so an answer holds the few sockets on that port; IPv4
// connections are looked up in both families (a dual-stack IPv6 socket
// serves them too, with IPv4-mapped addresses). Asked only for entries
// whose opener conntrack cannot tell (TCP pickups, UDP entries not shaped
// like a request): not on the path of ordinary connections. Sources:
// sock_diag(7), include/uapi/linux/inet_diag.h, include/net/tcp_states.h.

package observer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nsenter"
)

// sock_diag message layout, from include/uapi/linux/sock_diag.h and inet_diag.h.
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqLen   = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
)

// dumpSockets asks sock_diag (c, a NETLINK_SOCK_DIAG socket in the
// endpoint's netns) for the sockets of family (AF_INET, AF_INET6) and
// proto (IPPROTO_TCP, IPPROTO_UDP) whose local port is port, in all states.
func dumpSockets(c *netlink.Conn, family, proto uint8, port uint16, out []sockInfo) ([]sockInfo, error) {
	req := make([]byte, inetDiagReqLen)
	req[0], req[1] = family, proto
	binary.NativeEndian.PutUint32(req[4:], 0xffffffff) // idiag_states: all
	binary.BigEndian.PutUint16(req[8:], port)          // id.idiag_sport
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: sockDiagByFamily, Flags: netlink.Request | netlink.Dump},
		Data:   req,
	})
	if err != nil {
		return out, fmt.Errorf("dump sockets: %w", err)
	}
	for _, m := range msgs {
		d := m.Data
		if len(d) < inetDiagMsgLen || (d[0] != unix.AF_INET && d[0] != unix.AF_INET6) {
			continue
		}
		sport, dport := binary.BigEndian.Uint16(d[4:]), binary.BigEndian.Uint16(d[6:])
		var src, dst netip.Addr
		if d[0] == unix.AF_INET {
			src, dst = netip.AddrFrom4([4]byte(d[8:12])), netip.AddrFrom4([4]byte(d[24:28]))
		} else {
			src, dst = netip.AddrFrom16([16]byte(d[8:24])).Unmap(), netip.AddrFrom16([16]byte(d[24:40])).Unmap()
		}
		if sport != port {
			continue
		}
		out = append(out, sockInfo{State: d[1], Local: netip.AddrPortFrom(src, sport), Remote: netip.AddrPortFrom(dst, dport)})
	}
	return out, nil
}

// sockets returns the endpoint's sockets of proto whose local port is
// port, in both families. Only the conntrack reader calls it.
func (s *endpointState) sockets(proto uint8, port uint16) ([]sockInfo, error) {
	var out []sockInfo
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		var err error
		if out, err = dumpSockets(s.diag, fam, proto, port, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sysctlPortRange is the ephemeral port range, per netns.
const sysctlPortRange = "/proc/sys/net/ipv4/ip_local_port_range"

// readPortRange reads net.ipv4.ip_local_port_range in ns; the kernel's
// default when it cannot.
func readPortRange(ns netns.NsHandle) portRange {
	var b []byte
	if err := nsenter.Do(ns, func() (err error) { b, err = os.ReadFile(sysctlPortRange); return err }); err != nil {
		return defaultEphemeral
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultEphemeral
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 16)
	hi, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || lo > hi {
		return defaultEphemeral
	}
	return portRange{uint16(lo), uint16(hi)}
}
