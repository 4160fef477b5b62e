//go:build linux

package dataplane

// Cutting connections a tightened rule set no longer allows.
//
// The table accepts established and related packets before any lookup, so
// a connection accepted under an earlier rule set would live on after the
// entries that allowed it are gone. After an enforcing apply that removed
// elements (or switched to enforce), CutConnections dumps the netns's
// conntrack table, decides each entry with RuleSet.Allows (the Go twin of
// the kernel lookup) and deletes exactly the entries of disallowed
// connections. The next packet of such a connection is no longer
// "established": it meets the lookup and is dropped. The table is never
// flushed as a whole.
//
// Direction: an entry whose original destination is a local address of the
// netns is ingress (the peer is the original source); one whose original
// source is local is egress. Entries between two local addresses (loopback)
// and ICMPv6 neighbour discovery are left alone, as the table accepts them.
//
// Sources: conntrack(8); ti-mo/conntrack v0.6.0 (Dial with netlink.Config
// NetNS, Dump, Delete); nf_conntrack_tcp_loose (a mid-stream packet of a
// deleted entry is picked up as "new", so it is evaluated again).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/model"
)

// CutConnections deletes, in the netns of nsFd, the conntrack entries of
// connections rs denies (RuleSet.Decide), and returns how many it deleted.
// It does nothing unless rs enforces or has a tier deny entry. Errors: opening conntrack or rtnetlink in
// the netns, dumping, or deleting (an entry already gone is not an error).
func CutConnections(nsFd int, rs RuleSet) (int, error) {
	if !rs.denies() {
		return 0, nil
	}
	// A dump walks the kernel's conntrack hash, which all namespaces share
	// (about 10 ms on an idle host); the entry count is per netns and cheap,
	// so an empty netns skips the dump.
	if n, err := conntrackCount(nsFd); err == nil && n == 0 {
		return 0, nil
	}
	local, err := localAddrs(nsFd)
	if err != nil {
		return 0, err
	}
	ct, err := conntrack.Dial(&netlink.Config{NetNS: nsFd})
	if err != nil {
		return 0, fmt.Errorf("open conntrack: %w", err)
	}
	defer ct.Close()
	flows, err := ct.Dump(nil)
	if err != nil {
		return 0, fmt.Errorf("dump conntrack: %w", err)
	}
	cut := 0
	for _, f := range flows {
		if !disallowed(f, local, rs) {
			continue
		}
		if err := ct.Delete(f); err != nil {
			if isNotFound(err) {
				continue
			}
			return cut, fmt.Errorf("delete conntrack entry %s: %w", f.TupleOrig.IP.DestinationAddress, err)
		}
		cut++
	}
	return cut, nil
}

func isNotFound(err error) bool {
	return errors.Is(err, unix.ENOENT)
}

// disallowed reports whether the connection f is one rs would not let open.
func disallowed(f conntrack.Flow, local map[netip.Addr]bool, rs RuleSet) bool {
	src, dst := f.TupleOrig.IP.SourceAddress.Unmap(), f.TupleOrig.IP.DestinationAddress.Unmap()
	p := f.TupleOrig.Proto
	if p.Protocol == unix.IPPROTO_ICMPV6 && p.ICMPType >= 130 && p.ICMPType <= 143 {
		return false
	}
	var dir model.Direction
	var peer netip.Addr
	switch {
	case local[src] && local[dst]:
		return false
	case local[dst]:
		dir, peer = model.Ingress, src
	case local[src]:
		dir, peer = model.Egress, dst
	default:
		return false
	}
	_, v := rs.Decide(dir, peer, p.Protocol, p.DestinationPort)
	return v == model.VerdictDeny
}

// localAddrs returns the addresses configured in the netns of nsFd.
func localAddrs(nsFd int) (map[netip.Addr]bool, error) {
	h, err := vnl.NewHandleAt(netns.NsHandle(nsFd), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, vnl.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	out := map[netip.Addr]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = true
		}
	}
	return out, nil
}

// conntrackCount returns the number of conntrack entries of the netns of
// nsFd (IPCTNL_MSG_CT_GET_STATS, CTA_STATS_GLOBAL_ENTRIES). The kernel
// answers with a single message flagged NLM_F_MULTI and no NLMSG_DONE, so
// the reply is read as one raw datagram: ti-mo/conntrack v0.6.0's
// StatsGlobal and mdlayher/netlink's Receive both wait for a NLMSG_DONE
// that never comes.
func conntrackCount(nsFd int) (uint32, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFd})
	if err != nil {
		return 0, fmt.Errorf("open ctnetlink: %w", err)
	}
	defer c.Close()
	const (
		subsysCTNetlink      = 1
		msgGetStats          = 5 // IPCTNL_MSG_CT_GET_STATS
		attrStatsGlobEntries = 1 // CTA_STATS_GLOBAL_ENTRIES
		nlmsgHdrLen          = 16
		nfgenHdrLen          = 4
	)
	if _, err := c.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysCTNetlink<<8 | msgGetStats), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, 0, 0, 0},
	}); err != nil {
		return 0, fmt.Errorf("get conntrack stats: %w", err)
	}
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return 0, fmt.Errorf("get conntrack stats: %w", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("get conntrack stats: %w", err)
	}
	buf := make([]byte, 4096)
	n := 0
	var rerr error
	cerr := rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN
	})
	if err := errors.Join(cerr, rerr); err != nil {
		return 0, fmt.Errorf("get conntrack stats: %w", err)
	}
	if n < nlmsgHdrLen+nfgenHdrLen {
		return 0, fmt.Errorf("get conntrack stats: short reply of %d bytes", n)
	}
	if typ := binary.NativeEndian.Uint16(buf[4:6]); typ == unix.NLMSG_ERROR {
		return 0, fmt.Errorf("get conntrack stats: error reply")
	}
	ad, err := netlink.NewAttributeDecoder(buf[nlmsgHdrLen+nfgenHdrLen : n])
	if err != nil {
		return 0, fmt.Errorf("decode conntrack stats: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == attrStatsGlobEntries {
			return ad.Uint32(), nil
		}
	}
	return 0, errors.New("get conntrack stats: no entry count in reply")
}
