//go:build linux

// Per-netns setup: conntrack sysctls written from a thread inside the
// netns, the nfnetlink_log binding of the verdict-log group, and the DNS
// packet sockets. Sources: nf_conntrack-sysctl.rst, nfnetlink_log.h,
// packet(7), Documentation/networking/filter.rst.

package observer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nsenter"
)

// Per-netns conntrack sysctls the observer switches on. Both apply to
// conntrack entries created afterwards. Source:
// Documentation/networking/nf_conntrack-sysctl.rst.
const (
	SysctlAcct      = "/proc/sys/net/netfilter/nf_conntrack_acct"      // packets and bytes per direction
	SysctlTimestamp = "/proc/sys/net/netfilter/nf_conntrack_timestamp" // start and stop time
)

// EnableAccounting sets nf_conntrack_acct and nf_conntrack_timestamp to 1
// in the network namespace ns. /proc/sys/net resolves to the namespace of
// the thread that opens it, so the files are written from a thread inside
// ns (nsenter.Do); the host's values do not change.
func EnableAccounting(ns netns.NsHandle) error {
	return nsenter.Do(ns, func() error {
		for _, p := range []string{SysctlAcct, SysctlTimestamp} {
			if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("enable conntrack accounting: %w", err)
			}
		}
		return nil
	})
}

// ReadSysctl returns the value of the sysctl file path as seen from ns.
func ReadSysctl(ns netns.NsHandle, path string) (string, error) {
	var v string
	err := nsenter.Do(ns, func() error {
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", path, err)
	}
	return v, nil
}

// setReadBufferForce sets the receive buffer of c to bytes with
// SO_RCVBUFFORCE (root may exceed net.core.rmem_max), falling back to
// SO_RCVBUF.
func setReadBufferForce(c *netlink.Conn, bytes int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("set read buffer: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
		if serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, bytes)
		}
	}); err != nil {
		return fmt.Errorf("set read buffer: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set read buffer %d: %w", bytes, serr)
	}
	return nil
}

// bindNFLOG opens a NETLINK_NETFILTER socket (in cfg.NetNS) bound to NFLOG
// group, copying up to 256 bytes of each packet (headers are enough) and
// flushing batches after 10ms.
// Only one socket per netns can bind a group: EBUSY means another reader.
func bindNFLOG(cfg *netlink.Config, group uint16) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("dial verdict log: %w", err)
	}
	send := func(what string, attrs []netfilter.Attribute) error {
		m, err := netfilter.MarshalNetlink(netfilter.Header{
			SubsystemID: netfilter.NFSubsysULOG, MessageType: nfulnlMsgConfig,
			Family: netfilter.ProtoUnspec, ResourceID: group,
			Flags: netlink.Request | netlink.Acknowledge,
		}, attrs)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if _, err := c.Execute(m); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	mode := []byte{0, 0, 1, 0, nfulnlCopyPacket, 0} // be32 copy_range 256, copy_mode, pad
	if err := send("bind NFLOG group", []netfilter.Attribute{{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdBind}}}); err != nil {
		c.Close()
		if errors.Is(err, unix.EPERM) {
			// nfnetlink_log gives a group to one socket per netns.
			return nil, fmt.Errorf("verdict log group %d: %w (another process, such as a running nanoseg agent, already reads it in this netns; ask the agent instead, or observe with --no-verdict-log)", group, err)
		}
		return nil, fmt.Errorf("verdict log group %d: %w", group, err)
	}
	if err := send("set NFLOG copy mode", []netfilter.Attribute{{Type: nfulaCfgMode, Data: mode}}); err != nil {
		c.Close()
		return nil, fmt.Errorf("verdict log group %d: %w", group, err)
	}
	// The kernel batches up to 100 packets or 1s by default; flush after
	// 10ms or 32 packets so records (and their times) are prompt.
	if err := send("set NFLOG flush timeout", []netfilter.Attribute{
		{Type: nfulaCfgTimeout, Data: netfilter.Uint32Bytes(1)},
		{Type: nfulaCfgQThresh, Data: netfilter.Uint32Bytes(32)}}); err != nil {
		c.Close()
		return nil, fmt.Errorf("verdict log group %d: %w", group, err)
	}
	if err := setReadBufferForce(c, 1<<20); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// openDNSCapture opens an AF_PACKET SOCK_DGRAM socket for ethertype
// ethType (unix.ETH_P_IP or unix.ETH_P_IPV6) on all interfaces of ns (on a
// thread inside ns) with dnsFilter attached, non-blocking, as an *os.File
// so that Close unblocks Read. A protocol-specific packet socket sees
// received packets only (answers come in), and unlike an ETH_P_ALL tap it
// costs nothing on transmit.
func openDNSCapture(ns netns.NsHandle, ethType uint16) (*os.File, error) {
	raw, err := bpf.Assemble(dnsFilter)
	if err != nil {
		return nil, fmt.Errorf("assemble DNS filter: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	var fd int
	err = nsenter.Do(ns, func() error {
		var err error
		proto := int(htons(ethType))
		// Protocol 0 first: no packet is queued before the filter is in place.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("attach DNS filter: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto)}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "dns-capture"), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
