//go:build !linux

package host

import (
	"errors"
	"net/netip"
)

// NetnsAddrs needs Linux network namespaces.
func NetnsAddrs(path string) ([]netip.Addr, error) {
	return nil, errors.New("read netns addresses: network namespaces need Linux")
}
