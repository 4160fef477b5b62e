//go:build !linux

package kube

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FinderConfig configures a NetnsFinder (Linux only).
type FinderConfig struct {
	Dirs        []string
	Proc        string
	Rescan      time.Duration
	MinInterval time.Duration
	// HuntInterval, HuntFor and ByAddressOnly: see the Linux FinderConfig.
	HuntInterval  time.Duration
	HuntFor       time.Duration
	ByAddressOnly bool
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// ErrNoNetns is returned by NewNetnsFinder where network namespaces do
// not exist (every OS but Linux).
var ErrNoNetns = errors.New("network namespaces exist only on Linux")

// NetnsFinder finds the network namespaces of this node's pods; on this
// OS it cannot be built.
type NetnsFinder struct{}

// NewNetnsFinder fails with ErrNoNetns.
func NewNetnsFinder(FinderConfig) (*NetnsFinder, error) { return nil, ErrNoNetns }

// Find reports every pod not found.
func (*NetnsFinder) Find(pods map[string][]netip.Addr) map[string]Found {
	out := make(map[string]Found, len(pods))
	for k := range pods {
		out[k] = Found{Code: ReasonNotFound, Reason: ErrNoNetns.Error()}
	}
	return out
}

// Refresh does nothing.
func (*NetnsFinder) Refresh() {}

// Run waits for ctx.
func (*NetnsFinder) Run(ctx context.Context, _ func()) error {
	<-ctx.Done()
	return nil
}

// HasSynced is always true.
func (*NetnsFinder) HasSynced() bool { return true }
