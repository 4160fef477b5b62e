package observer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// DNSAnswer is one address a DNS response gave for the name a workload
// asked: Name is the question's name (lower case, no trailing dot), also
// when the address came at the end of a CNAME chain; TTL is the answer
// record's TTL.
type DNSAnswer struct {
	Name string
	Addr netip.Addr
	TTL  time.Duration
}

// dnsDecoder decodes DNS responses from captured IP packets with gopacket's
// layers.DNS. One decoder serves one goroutine.
type dnsDecoder struct {
	pkt *packetDecoder
	dns layers.DNS
}

func newDNSDecoder() *dnsDecoder { return &dnsDecoder{pkt: newPacketDecoder()} }

// decode returns the A and AAAA answers of the DNS response carried by the
// IP packet b (UDP or TCP from port 53; a TCP segment must hold one whole
// length-prefixed message). Queries, error responses and responses without
// addresses give no answers and no error. Malformed input fails with
// ErrMalformedPacket or ErrMalformedDNS; it never panics.
func (d *dnsDecoder) decode(b []byte) (out []DNSAnswer, err error) {
	pi, err := d.pkt.decode(b)
	if err != nil {
		return nil, err
	}
	msg := pi.Payload
	switch {
	case pi.SrcPort != 53:
		return nil, nil
	case pi.Proto == 6:
		if len(msg) == 0 {
			return nil, nil // handshake or ACK
		}
		if len(msg) < 2 || int(binary.BigEndian.Uint16(msg)) != len(msg)-2 {
			return nil, fmt.Errorf("decode DNS over TCP: message split over segments: %w", ErrMalformedDNS)
		}
		msg = msg[2:]
	case pi.Proto != 17:
		return nil, nil
	}
	return d.decodeMessage(msg)
}

// decodeMessage returns the address answers of the DNS message msg (no
// transport framing).
func (d *dnsDecoder) decodeMessage(msg []byte) (out []DNSAnswer, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("decode DNS: recovered %v: %w", r, ErrMalformedDNS)
		}
	}()
	if err := d.dns.DecodeFromBytes(msg, gopacket.NilDecodeFeedback); err != nil {
		return nil, fmt.Errorf("decode DNS: %v: %w", err, ErrMalformedDNS)
	}
	if !d.dns.QR || d.dns.ResponseCode != layers.DNSResponseCodeNoErr || len(d.dns.Questions) == 0 {
		return nil, nil
	}
	name := normalizeName(d.dns.Questions[0].Name)
	if name == "" {
		return nil, nil
	}
	for _, rr := range d.dns.Answers {
		if rr.Class != layers.DNSClassIN || (rr.Type != layers.DNSTypeA && rr.Type != layers.DNSTypeAAAA) {
			continue
		}
		a, ok := netip.AddrFromSlice(rr.IP)
		if !ok {
			continue
		}
		out = append(out, DNSAnswer{Name: name, Addr: a.Unmap(), TTL: time.Duration(rr.TTL) * time.Second})
	}
	return out, nil
}

func normalizeName(b []byte) string {
	return strings.TrimSuffix(strings.ToLower(string(b)), ".")
}

// Names maps addresses to the DNS name a workload asked for them, for as
// long as the answer's TTL (at least MinNameTTL). Safe for concurrent use.
// The zero value is not usable; call NewNames.
type Names struct {
	mu  sync.RWMutex
	m   map[netip.Addr]nameEntry
	max int
}

type nameEntry struct {
	name    string
	expires time.Time
}

// MinNameTTL is the shortest time an answer is remembered: workloads and
// their resolvers keep answers a little beyond short TTLs, and a connection
// opened just after a 0-second answer should still be named.
const MinNameTTL = 60 * time.Second

// NewNames returns an empty name table holding at most max addresses
// (max <= 0: 65536). When full, expired entries go first, then arbitrary
// ones.
func NewNames(max int) *Names {
	if max <= 0 {
		max = 65536
	}
	return &Names{m: map[netip.Addr]nameEntry{}, max: max}
}

// Put records a at time now.
func (n *Names) Put(a DNSAnswer, now time.Time) {
	ttl := max(a.TTL, MinNameTTL)
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.m[a.Addr]; !ok && len(n.m) >= n.max {
		for k, e := range n.m {
			if now.After(e.expires) {
				delete(n.m, k)
			}
		}
		for k := range n.m {
			if len(n.m) < n.max {
				break
			}
			delete(n.m, k)
		}
	}
	n.m[a.Addr] = nameEntry{name: a.Name, expires: now.Add(ttl)}
}

// Lookup returns the name last answered for addr, if it has not expired
// at now.
func (n *Names) Lookup(addr netip.Addr, now time.Time) (string, bool) {
	if n == nil {
		return "", false
	}
	n.mu.RLock()
	e, ok := n.m[addr.Unmap()]
	n.mu.RUnlock()
	if !ok || now.After(e.expires) {
		return "", false
	}
	return e.name, true
}

// Len returns the number of addresses held, expired or not.
func (n *Names) Len() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.m)
}
