package observer

// Design: which side opened a connection (the direction of its edge).
//
// Conntrack's original tuple is the direction of the first packet the
// kernel tracked. That is the opener's only when the kernel saw the
// connection open. A network namespace tracks connections only once a rule
// there uses ct, so when the dataplane's table is first installed (or an
// entry expired, or the table was flushed) connections already under way
// are picked up from whichever packet comes next:
//
//   - TCP (nf_conntrack_tcp_loose, on by default): a packet that is not a
//     SYN creates an entry in state ESTABLISHED (or later) whose original
//     direction is that packet's. The kernel marks such an entry: both
//     directions carry IP_CT_TCP_FLAG_BE_LIBERAL in CTA_PROTOINFO_TCP_FLAGS_*
//     (tcp_new() in net/netfilter/nf_conntrack_proto_tcp.c), which an entry
//     opened by a SYN never has. NEW events and dumps carry those flags;
//     DESTROY events carry only the state.
//   - UDP: any packet creates an entry; a reply that arrives first makes
//     the reply the original direction. Nothing in the entry tells.
//   - SCTP: an entry opened by INIT starts in COOKIE_WAIT; one created by a
//     HEARTBEAT (HEARTBEAT_SENT) did not see the association open.
//   - ICMP and ICMPv6: only requests (echo, timestamp, ...) create entries,
//     so the original direction is always the requester's.
//
// Where conntrack cannot tell, the endpoint's own sockets can (sock_diag,
// sockdiag_linux.go): a listening TCP socket on the local port makes the
// endpoint the server; a connected socket on an ephemeral local port with
// no listener makes it the client. For UDP a connected socket (connect(2),
// as resolvers and most clients do) makes it the client, and an unconnected
// socket bound to a fixed port answering an ephemeral remote port the
// server. UDP entries shaped like a request (ephemeral source port to a
// fixed destination port, the common case) are trusted without asking the
// sockets. What remains undecided is reported with DirectionUnknown, never
// guessed from the first packet. See origin().
//
// "Ephemeral" is the endpoint netns's net.ipv4.ip_local_port_range (read at
// attach), also applied to the remote port.
//
// A packet of the verdict log is judged by the same rule, as the NEW event
// of the entry it created (packetEvent in nflog.go): the dataplane logs
// packets of state new, and a reply whose request went untracked is one.

import (
	"net/netip"

	"github.com/nanoseg/nanoseg/model"
)

// origin says how a conntrack entry's original tuple relates to the side
// that opened the connection.
type origin uint8

const (
	// originOpener: the original tuple runs from the opener (conntrack saw
	// the connection open, or the observer established it).
	originOpener origin = iota
	// originReply: the original tuple is the reply direction; records turn
	// it around.
	originReply
	// originUnknown: the opener could not be established; records are
	// marked DirectionUnknown.
	originUnknown
)

func (o origin) String() string {
	switch o {
	case originOpener:
		return "opener"
	case originReply:
		return "reply"
	}
	return "unknown"
}

// IP protocol numbers (IANA).
const (
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoICMPv6  = 58
	protoSCTP    = 132
	protoUDPLite = 136
)

// Conntrack protocol states and flags, from
// include/uapi/linux/netfilter/nf_conntrack_tcp.h and nf_conntrack_sctp.h.
const (
	ipCTTCPFlagBeLiberal = 0x08 // IP_CT_TCP_FLAG_BE_LIBERAL

	sctpCookieWait    = 2 // SCTP_CONNTRACK_COOKIE_WAIT: opened by INIT
	sctpHeartbeatSent = 8 // SCTP_CONNTRACK_HEARTBEAT_SENT: created by a HEARTBEAT
)

// sock_diag socket states (include/net/tcp_states.h); UDP sockets use
// TCP_ESTABLISHED when connected and TCP_CLOSE when not.
const (
	tcpEstablished = 1
	tcpClose       = 7
	tcpListen      = 10
)

// sockInfo is one socket of the endpoint, as sock_diag reports it.
type sockInfo struct {
	State         uint8
	Local, Remote netip.AddrPort // addresses unmapped; Remote is unspecified for unconnected and listening sockets
}

// portRange is an inclusive range of ports: the ephemeral ports.
type portRange struct{ lo, hi uint16 }

// defaultEphemeral is the kernel's default ip_local_port_range.
var defaultEphemeral = portRange{32768, 60999}

func (r portRange) contains(p uint16) bool { return r.lo <= p && p <= r.hi }

// role is the endpoint's part in a connection.
type role uint8

const (
	roleUnknown role = iota
	roleClient
	roleServer
)

// socketRole tells the endpoint's role in the connection local <-> remote
// of protocol proto from socks, the endpoint's sockets of that protocol
// whose local port is local's. TCP: a listener on the local port (bound to
// the local address or to any) makes it the server; else a socket of this
// very connection on an ephemeral local port makes it the client (an
// accepted connection whose listener has gone could look the same, hence
// the port condition). UDP: a socket connected to remote, with no
// unconnected socket on the same port, makes it the client; an unconnected
// socket on a fixed local port, talking to an ephemeral remote port, makes
// it the server. Anything else is roleUnknown.
func socketRole(proto uint8, socks []sockInfo, local, remote netip.AddrPort, eph portRange) role {
	boundHere := func(s sockInfo) bool {
		return s.Local.Port() == local.Port() && (s.Local.Addr() == local.Addr() || s.Local.Addr().IsUnspecified() || !s.Local.Addr().IsValid())
	}
	var listening, connected, unconnected bool
	for _, s := range socks {
		if !boundHere(s) {
			continue
		}
		switch {
		case proto == protoTCP && s.State == tcpListen:
			listening = true
		case proto == protoTCP && s.Remote == remote:
			connected = true
		case proto != protoTCP && s.State == tcpEstablished && s.Remote == remote:
			connected = true
		case proto != protoTCP && s.State == tcpClose:
			unconnected = true
		}
	}
	switch proto {
	case protoTCP:
		if listening {
			return roleServer
		}
		if connected && eph.contains(local.Port()) {
			return roleClient
		}
	default:
		if connected && !unconnected {
			return roleClient
		}
		if unconnected && !eph.contains(local.Port()) && eph.contains(remote.Port()) {
			return roleServer
		}
	}
	return roleUnknown
}

// classifier establishes the origin of conntrack entries of one endpoint.
type classifier struct {
	isLocal func(netip.Addr) bool
	eph     portRange
	// sockets returns the endpoint's sockets of protocol proto (TCP or
	// UDP) whose local port is port, both address families.
	sockets func(proto uint8, port uint16) ([]sockInfo, error)
	// onError reports a failed socket lookup (the entry is then judged
	// without it).
	onError func(error)
}

// origin establishes how ev's original tuple relates to the opener; see
// the design note at the top of this file.
func (c *classifier) origin(ev *ctEvent) origin {
	switch ev.Proto {
	case protoICMP, protoICMPv6:
		return originOpener
	case protoTCP:
		if ev.HasTCPFlags && (ev.TCPFlagsOrig|ev.TCPFlagsReply)&ipCTTCPFlagBeLiberal == 0 {
			return originOpener // conntrack saw the SYN
		}
		o := c.bySockets(ev)
		if o == originUnknown && !ev.HasTCPFlags {
			// A DESTROY whose NEW was lost (socket overflow): no flags to
			// tell a pickup by. Entries opened by a SYN are the rule; a
			// pickup whose NEW was lost too is the residue this accepts.
			return originOpener
		}
		return o
	case protoUDP, protoUDPLite:
		sp, dp := c.eph.contains(ev.SrcPort), c.eph.contains(ev.DstPort)
		if sp && !dp {
			return originOpener // shaped like a request: ephemeral -> fixed
		}
		if o := c.bySockets(ev); o != originUnknown {
			return o
		}
		if !sp && dp {
			return originUnknown // shaped like a reply, and no socket tells
		}
		return originOpener // both ports ephemeral or both fixed: nothing says it is a reply
	case protoSCTP:
		if !ev.HasSCTPState {
			return originOpener
		}
		if ev.Type == ctNew && ev.SCTPState != sctpCookieWait || ev.SCTPState == sctpHeartbeatSent {
			return originUnknown
		}
		return originOpener
	}
	return originOpener // other protocols: conntrack's generic tracker; no opener to establish
}

// bySockets asks the endpoint's sockets which side of ev is the opener.
func (c *classifier) bySockets(ev *ctEvent) origin {
	if c.sockets == nil || c.isLocal == nil {
		return originUnknown
	}
	proto := ev.Proto
	if proto == protoUDPLite {
		return originUnknown // sock_diag is asked for TCP and UDP only
	}
	src, dst := netip.AddrPortFrom(ev.Src, ev.SrcPort), netip.AddrPortFrom(ev.Dst, ev.DstPort)
	roleOf := func(local, remote netip.AddrPort) role {
		socks, err := c.sockets(proto, local.Port())
		if err != nil {
			if c.onError != nil {
				c.onError(err)
			}
			return roleUnknown
		}
		return socketRole(proto, socks, local, remote, c.eph)
	}
	srcLocal, dstLocal := c.isLocal(ev.Src), c.isLocal(ev.Dst)
	if dstLocal {
		switch roleOf(dst, src) {
		case roleServer:
			return originOpener
		case roleClient:
			if !srcLocal {
				return originReply
			}
		}
	}
	if srcLocal {
		switch roleOf(src, dst) {
		case roleServer:
			return originReply
		case roleClient:
			if !dstLocal {
				return originOpener
			}
		}
	}
	return originUnknown
}

// orient applies o to f, a record built from conntrack's original tuple:
// originReply turns the record around (addresses, ports, counters and
// direction), originUnknown marks it DirectionUnknown.
func orient(f *model.Flow, o origin, isLocal func(netip.Addr) bool) {
	switch o {
	case originReply:
		f.Src, f.Dst = f.Dst, f.Src
		f.SrcPort, f.DstPort = f.DstPort, f.SrcPort
		f.PacketsOut, f.PacketsIn = f.PacketsIn, f.PacketsOut
		f.BytesOut, f.BytesIn = f.BytesIn, f.BytesOut
		f.Direction = direction(f.Src, f.Dst, isLocal)
	case originUnknown:
		f.DirectionUnknown = true
	}
}

// direction is Egress when the endpoint holds src (or holds neither), else
// Ingress.
func direction(src, dst netip.Addr, isLocal func(netip.Addr) bool) model.Direction {
	if isLocal == nil || isLocal(src) || !isLocal(dst) {
		return model.Egress
	}
	return model.Ingress
}
