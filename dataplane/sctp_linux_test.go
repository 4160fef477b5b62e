//go:build linux

package dataplane

// SCTP through the table, without SCTP sockets.
//
// The kernel of these machines tracks SCTP (conntrack's SCTP state machine
// is built in) but has no SCTP sockets (CONFIG_IP_SCTP=n, KERNEL.md). So the
// test plays both ends of an association's first two chunks itself: it
// builds INIT and INIT-ACK packets with gopacket (common header with a
// CRC32c checksum, RFC 9260 3.1 and appendix A) and sends them on raw IP
// sockets of protocol 132. Raw sockets receive after the input hook
// (ip_local_deliver -> NF_INET_LOCAL_IN -> raw_local_deliver), so the
// server's raw socket sees exactly what the table accepted.
//
// Sources: RFC 9260 (3.1 common header, 3.3.2 INIT, 3.3.3 INIT ACK, 8.5
// verification tag); the kernel's nf_conntrack_proto_sctp.c (the state
// table; an INIT records its initiate tag as the reply direction's tag, the
// INIT ACK its own as the original direction's; a bad CRC32c makes the
// packet invalid, so it is not tracked);
// ti-mo/conntrack v0.6.0 (ProtoInfoSCTP).

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// SCTP ports of the test: NGAP's port is allowed, the next one is not.
const (
	sctpAllowed = 38412
	sctpDenied  = 38413
)

const (
	// sctpCTCookieWait is conntrack's SCTP state after an INIT in the
	// original direction "or also an INIT_ACK chunk in the reply direction"
	// (SCTP_CONNTRACK_COOKIE_WAIT, nf_conntrack_proto_sctp.c); the next
	// state needs a COOKIE ECHO.
	sctpCTCookieWait = 2
	// sctpParamStateCookie is the INIT ACK's mandatory State Cookie
	// parameter (RFC 9260 3.3.3.1).
	sctpParamStateCookie = 7
)

// sctpConn is a raw IP socket of protocol SCTP bound to one address in a
// netns. The kernel writes the IP header; reads return the SCTP packet
// without it.
type sctpConn struct {
	c     *net.IPConn
	local netip.Addr
}

func listenSCTP(t *testing.T, ns *nettest.Netns, local netip.Addr) *sctpConn {
	t.Helper()
	network := "ip4:132"
	if local.Is6() {
		network = "ip6:132"
	}
	var c net.PacketConn
	ns.Do(t, func() error {
		var err error
		c, err = net.ListenPacket(network, local.String())
		return err
	})
	t.Cleanup(func() { c.Close() })
	return &sctpConn{c: c.(*net.IPConn), local: local}
}

// sctpPacket serializes an SCTP common header and one INIT or INIT ACK
// chunk (chunk.Type says which), and checks the CRC32c gopacket wrote against its own computation
// (the checksum field zeroed, then stored little-endian: RFC 9260 appendix A).
func sctpPacket(t *testing.T, src, dst layers.SCTPPort, vtag uint32, chunk layers.SCTPInit) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	hdr := &layers.SCTP{SrcPort: src, DstPort: dst, VerificationTag: vtag}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, hdr, &chunk); err != nil {
		t.Fatalf("serialize SCTP: %v", err)
	}
	b := buf.Bytes()
	zeroed := append([]byte(nil), b...)
	clear(zeroed[8:12])
	if got, want := binary.LittleEndian.Uint32(b[8:12]), crc32.Checksum(zeroed, crc32.MakeTable(crc32.Castagnoli)); got != want {
		t.Fatalf("SCTP checksum %#08x, want CRC32c %#08x", got, want)
	}
	return b
}

func (s *sctpConn) send(t *testing.T, to netip.Addr, pkt []byte) {
	t.Helper()
	if _, err := s.c.WriteTo(pkt, &net.IPAddr{IP: to.AsSlice()}); err != nil {
		t.Fatalf("send SCTP from %s to %s: %v", s.local, to, err)
	}
}

// recv returns the first INIT or INIT ACK chunk (with its common header)
// addressed to port dst that arrives within timeout; ok is false when none
// does.
func (s *sctpConn) recv(t *testing.T, dst layers.SCTPPort, timeout time.Duration) (hdr *layers.SCTP, init *layers.SCTPInit, ok bool) {
	t.Helper()
	if err := s.c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := s.c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, nil, false
		}
		if err != nil {
			t.Fatalf("receive SCTP on %s: %v", s.local, err)
		}
		p := gopacket.NewPacket(append([]byte(nil), buf[:n]...), layers.LayerTypeSCTP, gopacket.Default)
		h, _ := p.Layer(layers.LayerTypeSCTP).(*layers.SCTP)
		if h == nil || h.DstPort != dst {
			continue
		}
		for _, lt := range []gopacket.LayerType{layers.LayerTypeSCTPInit, layers.LayerTypeSCTPInitAck} {
			if c, _ := p.Layer(lt).(*layers.SCTPInit); c != nil {
				return h, c, true
			}
		}
	}
}

// sctpFlows returns the conntrack entries of ns for SCTP to port dport.
func sctpFlows(t *testing.T, ns *nettest.Netns, dport uint16) []conntrack.Flow {
	t.Helper()
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatalf("open conntrack in %s: %v", ns.Name, err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		t.Fatalf("dump conntrack in %s: %v", ns.Name, err)
	}
	var out []conntrack.Flow
	for _, fl := range flows {
		if fl.TupleOrig.Proto.Protocol == unix.IPPROTO_SCTP && fl.TupleOrig.Proto.DestinationPort == dport {
			out = append(out, fl)
		}
	}
	return out
}

// TestSCTPKernel: with an enforcing rule set that allows SCTP to one port,
// an INIT to that port reaches the server and its INIT ACK the client, and
// the server's conntrack holds the association with both verification
// tags; an INIT to another port is dropped (logged, never delivered, not
// tracked). The rule's counter counts the one INIT.
func TestSCTPKernel(t *testing.T) {
	nettest.RequireRoot(t)
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			p := newPair(t)
			cli := f.clients[0]
			client, server := listenSCTP(t, p.client, cli), listenSCTP(t, p.server, f.server)
			logs := listenNFLOG(t, p.server)
			dp := New(nil)
			rs := RuleSet{Name: "sctp", Mode: model.ModeEnforce, Ingress: []Entry{
				{Peer: f.lan, Protocol: model.ProtocolSCTP, Port: sctpAllowed, RuleID: "ngap"},
			}}
			mustApply(t, dp, p.server, rs)

			// Allowed: INIT (verification tag 0, RFC 9260 8.5.1) and INIT ACK
			// (tagged with the INIT's initiate tag, carrying a state cookie).
			const cport, tagC, tagS = 40000, 0x1c1c1c1c, 0x5e5e5e5e
			client.send(t, f.server, sctpPacket(t, cport, sctpAllowed, 0, layers.SCTPInit{
				SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeInit}, InitiateTag: tagC, AdvertisedReceiverWindowCredit: 65536, OutboundStreams: 1, InboundStreams: 1, InitialTSN: 1}))
			h, init, ok := server.recv(t, sctpAllowed, time.Second)
			if !ok {
				t.Fatalf("INIT to allowed port %d not delivered to the server", sctpAllowed)
			}
			if init.Type != layers.SCTPChunkTypeInit || init.InitiateTag != tagC || h.SrcPort != cport {
				t.Fatalf("server got %v from port %d with initiate tag %#x, want INIT from %d with %#x", init.Type, h.SrcPort, init.InitiateTag, cport, tagC)
			}
			server.send(t, cli, sctpPacket(t, sctpAllowed, cport, tagC, layers.SCTPInit{
				SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeInitAck}, InitiateTag: tagS, AdvertisedReceiverWindowCredit: 65536, OutboundStreams: 1, InboundStreams: 1, InitialTSN: 1,
				Parameters: []layers.SCTPInitParameter{{Type: sctpParamStateCookie, Value: []byte("nanoseg-cookie")}}}))
			h, ack, ok := client.recv(t, cport, time.Second)
			if !ok {
				t.Fatalf("INIT ACK of the allowed association not delivered to the client")
			}
			if ack.Type != layers.SCTPChunkTypeInitAck || h.VerificationTag != tagC || ack.InitiateTag != tagS {
				t.Fatalf("client got %v with tag %#x, initiate tag %#x; want INIT ACK with %#x, %#x", ack.Type, h.VerificationTag, ack.InitiateTag, tagC, tagS)
			}
			flows := sctpFlows(t, p.server, sctpAllowed)
			if len(flows) != 1 {
				t.Fatalf("conntrack in the server holds %d SCTP entries to port %d, want 1: %+v", len(flows), sctpAllowed, flows)
			}
			fl := flows[0]
			if fl.TupleOrig.IP.SourceAddress != cli || fl.TupleOrig.Proto.SourcePort != cport || !fl.Status.SeenReply() {
				t.Errorf("conntrack entry %v:%d, seen reply %v; want from %v:%d with the reply seen",
					fl.TupleOrig.IP.SourceAddress, fl.TupleOrig.Proto.SourcePort, fl.Status.SeenReply(), cli, cport)
			}
			if s := fl.ProtoInfo.SCTP; s == nil || s.State != sctpCTCookieWait || s.VTagReply != tagC || s.VTagOriginal != tagS {
				t.Errorf("conntrack SCTP info %+v; want state COOKIE_WAIT (%d) with vtag original %#x (from the INIT ACK), reply %#x (from the INIT)",
					s, sctpCTCookieWait, tagS, tagC)
			}

			// Denied: an INIT to another port is dropped by the table.
			client.send(t, f.server, sctpPacket(t, cport+1, sctpDenied, 0, layers.SCTPInit{
				SCTPChunk: layers.SCTPChunk{Type: layers.SCTPChunkTypeInit}, InitiateTag: tagC + 1, AdvertisedReceiverWindowCredit: 65536, OutboundStreams: 1, InboundStreams: 1, InitialTSN: 1}))
			if !logs.wait(verdictlog.Format(model.VerdictDeny, rs.Name), 2*time.Second) {
				t.Errorf("no %q verdict log for the INIT to port %d", verdictlog.Format(model.VerdictDeny, rs.Name), sctpDenied)
			}
			if _, _, ok := server.recv(t, sctpDenied, blocked); ok {
				t.Errorf("INIT to port %d delivered to the server, want dropped", sctpDenied)
			}
			if flows := sctpFlows(t, p.server, sctpDenied); len(flows) != 0 {
				t.Errorf("conntrack tracks the dropped INIT: %+v", flows)
			}
			st := mustRead(t, dp, p.server)
			if c := st.Counters["ngap"]; c.Packets != 1 {
				t.Errorf("counter of rule ngap = %+v, want 1 packet (the allowed INIT; the INIT ACK is a reply)", c)
			}
		})
	}
}
