package observer

import "errors"

// Sentinel errors; check with errors.Is.
var (
	// ErrNotNanoseg: an NFLOG prefix that is not "nanoseg:…" (someone
	// else's log rule in the same group). Skipped, not a decode error.
	ErrNotNanoseg = errors.New("not a nanoseg verdict-log prefix")
	// ErrMalformedPrefix: a "nanoseg:…" prefix that does not parse.
	ErrMalformedPrefix = errors.New("malformed verdict-log prefix")
	// ErrMalformedPacket: a logged or captured packet, or a netlink
	// message carrying it, that cannot be decoded.
	ErrMalformedPacket = errors.New("malformed packet")
	// ErrMalformedDNS: a DNS message that cannot be decoded.
	ErrMalformedDNS = errors.New("malformed DNS message")
)
