package agent

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/policies"
)

// Config configures the standalone agent.
type Config struct {
	// StateFile is the agent's store (bbolt file).
	StateFile string `mapstructure:"stateFile" yaml:"stateFile"`
	// Socket is the unix socket of the local API (mode 0660, root).
	Socket string `mapstructure:"socket" yaml:"socket"`
	// Listen is a TCP address for the API ("" = off). It is refused unless
	// TokenFile or TLS client certificates are configured.
	Listen string `mapstructure:"listen" yaml:"listen"`
	// TokenFile holds the operator's bearer token on TCP: it may do
	// everything (and log the web UI in as an operator).
	TokenFile string `mapstructure:"tokenFile" yaml:"tokenFile"`
	// ReadTokenFile holds the viewer's bearer token on TCP: it may read
	// every GET route (and log the web UI in as a viewer), and nothing
	// else ("" = no viewer token).
	ReadTokenFile string `mapstructure:"readTokenFile" yaml:"readTokenFile"`
	// TLSCert and TLSKey serve TCP over TLS; TLSClientCA, when set, makes
	// the server require client certificates signed by it.
	TLSCert     string `mapstructure:"tlsCert" yaml:"tlsCert"`
	TLSKey      string `mapstructure:"tlsKey" yaml:"tlsKey"`
	TLSClientCA string `mapstructure:"tlsClientCA" yaml:"tlsClientCA"`
	// MetricsAddr serves Prometheus metrics on /metrics ("" = off).
	MetricsAddr string `mapstructure:"metricsAddr" yaml:"metricsAddr"`
	// EvidenceKeyFile is the ed25519 key that signs evidence bundles
	// (created on first use, mode 0600; "" = evidence/signing.key next to
	// StateFile). The chain head of exported bundles is kept beside it.
	EvidenceKeyFile string `mapstructure:"evidenceKeyFile" yaml:"evidenceKeyFile"`
	// Lab names a running lab whose endpoints the agent manages.
	Lab string `mapstructure:"lab" yaml:"lab"`
	// LabelsFile describes named network namespaces (see
	// host.LabelsFile).
	LabelsFile string `mapstructure:"labelsFile" yaml:"labelsFile"`
	// FlushInterval is how often observed edges and verdict events are
	// committed to the store: a crash loses at most this much observation.
	FlushInterval time.Duration `mapstructure:"flushInterval" yaml:"flushInterval"`
	// InventoryInterval is how often the inventory is re-read, so that
	// endpoints that appear or disappear are picked up.
	InventoryInterval time.Duration `mapstructure:"inventoryInterval" yaml:"inventoryInterval"`
	// DriftInterval is how often every endpoint's table is compared with
	// its desired rule set and repaired.
	DriftInterval time.Duration `mapstructure:"driftInterval" yaml:"driftInterval"`
	// MinObserved is how long a workload must have been observed within
	// its proposal's window before a promotion of the proposal to enforce
	// goes ahead without --force (controller.Service.Promote; `promote
	// --min-observed` overrides it per request). 0: no minimum (the
	// window and silence checks remain).
	MinObserved time.Duration `mapstructure:"minObserved" yaml:"minObserved"`
	// Propose holds the thresholds of `policy propose`.
	Propose ProposeConfig `mapstructure:"propose" yaml:"propose"`
}

// ProposeConfig is the configurable part of policies.ProposeOptions (see
// there for what each threshold means; DNS servers are found by the
// default labels and port 53).
type ProposeConfig struct {
	// SharedMinClients: distinct clients that make a server port shared.
	SharedMinClients int `mapstructure:"sharedMinClients" yaml:"sharedMinClients"`
	// SharedMinNamespaces: namespaces those clients come from.
	SharedMinNamespaces int `mapstructure:"sharedMinNamespaces" yaml:"sharedMinNamespaces"`
	// SharedMinShare: or the share (0-1] of the other workloads they are.
	SharedMinShare float64 `mapstructure:"sharedMinShare" yaml:"sharedMinShare"`
	// RangeMinPorts: ports of one peer to one server that become a range.
	RangeMinPorts int `mapstructure:"rangeMinPorts" yaml:"rangeMinPorts"`
	// RangeMaxGap: unseen ports a range may span between two seen ones of
	// a server that declares no ports.
	RangeMaxGap int `mapstructure:"rangeMaxGap" yaml:"rangeMaxGap"`
	// NoWidening proposes exactly the observed edges.
	NoWidening bool `mapstructure:"noWidening" yaml:"noWidening"`
}

// Options returns c as policies.ProposeOptions.
func (c ProposeConfig) Options() policies.ProposeOptions {
	return policies.ProposeOptions{SharedMinClients: c.SharedMinClients, SharedMinNamespaces: c.SharedMinNamespaces,
		SharedMinShare: c.SharedMinShare, RangeMinPorts: c.RangeMinPorts, RangeMaxGap: c.RangeMaxGap, NoWidening: c.NoWidening}
}

// Defaults returns the agent settings used where nothing else is set.
func Defaults() Config {
	return Config{
		StateFile:         "/var/lib/nanoseg/state.db",
		Socket:            "/run/nanoseg/agent.sock",
		MetricsAddr:       "127.0.0.1:9618",
		FlushInterval:     2 * time.Second,
		InventoryInterval: 2 * time.Second,
		DriftInterval:     5 * time.Second,
		MinObserved:       time.Hour,
		Propose:           defaultPropose(),
	}
}

func defaultPropose() ProposeConfig {
	d := policies.DefaultProposeOptions()
	return ProposeConfig{SharedMinClients: d.SharedMinClients, SharedMinNamespaces: d.SharedMinNamespaces, SharedMinShare: d.SharedMinShare,
		RangeMinPorts: d.RangeMinPorts, RangeMaxGap: d.RangeMaxGap}
}

// Validate reports every invalid setting at once, each with its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) { errs = append(errs, fmt.Errorf(key+": "+format, a...)) }
	if !filepath.IsAbs(c.StateFile) {
		bad("stateFile", "%q must be an absolute path", c.StateFile)
	}
	if c.EvidenceKeyFile != "" && !filepath.IsAbs(c.EvidenceKeyFile) {
		bad("evidenceKeyFile", "%q must be an absolute path", c.EvidenceKeyFile)
	}
	if !filepath.IsAbs(c.Socket) {
		bad("socket", "%q must be an absolute path", c.Socket)
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("listen", "%q is not host:port", c.Listen)
		}
		if c.TokenFile == "" && c.ReadTokenFile == "" && c.TLSClientCA == "" {
			bad("listen", "a TCP listener needs tokenFile, readTokenFile or tlsClientCA: nanoseg never serves its API on TCP without authentication")
		}
		if c.TokenFile != "" && c.TokenFile == c.ReadTokenFile {
			bad("readTokenFile", "%q is also tokenFile: the viewer's token must differ from the operator's", c.ReadTokenFile)
		}
		if c.TLSClientCA != "" && (c.TLSCert == "" || c.TLSKey == "") {
			bad("tlsClientCA", "client certificates need tlsCert and tlsKey for the server")
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tlsCert", "tlsCert and tlsKey go together")
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			bad("metricsAddr", "%q is not host:port", c.MetricsAddr)
		}
	}
	if c.MinObserved < 0 {
		bad("minObserved", "%s must not be negative (0: no minimum)", c.MinObserved)
	}
	for key, d := range map[string]time.Duration{"flushInterval": c.FlushInterval, "inventoryInterval": c.InventoryInterval, "driftInterval": c.DriftInterval} {
		if d < 100*time.Millisecond || d > time.Hour {
			bad(key, "%s must be between 100ms and 1h", d)
		}
	}
	if err := c.Propose.Options().Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			errs = append(errs, errors.New("propose."+line))
		}
	}
	// The proposer reads a zero threshold as its default, so a 0 written
	// here (Defaults fills every one) would silently mean something else:
	// rangeMaxGap 0, asked to keep ranges contiguous, would allow 4 gaps.
	d := policies.DefaultProposeOptions()
	for _, z := range []struct {
		key  string
		zero bool
		def  any
	}{
		{"sharedMinClients", c.Propose.SharedMinClients == 0, d.SharedMinClients},
		{"sharedMinNamespaces", c.Propose.SharedMinNamespaces == 0, d.SharedMinNamespaces},
		{"sharedMinShare", c.Propose.SharedMinShare == 0, d.SharedMinShare},
		{"rangeMinPorts", c.Propose.RangeMinPorts == 0, d.RangeMinPorts},
		{"rangeMaxGap", c.Propose.RangeMaxGap == 0, d.RangeMaxGap},
	} {
		if z.zero {
			bad("propose."+z.key, "0 is not a threshold here: the proposer would read it as its default, %v (noWidening: true proposes only what was seen)", z.def)
		}
	}
	return errors.Join(errs...)
}
