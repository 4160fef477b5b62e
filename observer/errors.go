package observer

import "errors"

// Sentinel errors; check with errors.Is.
var (
	// ErrMalformedPacket: a logged or captured packet, or a netlink
	// message carrying it, that cannot be decoded.
	ErrMalformedPacket = errors.New("malformed packet")
	// ErrMalformedDNS: a DNS message that cannot be decoded.
	ErrMalformedDNS = errors.New("malformed DNS message")
)
