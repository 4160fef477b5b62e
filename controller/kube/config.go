package kube

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// LeaseName is the coordination.k8s.io Lease the replicas elect a leader
// with, in Config.Namespace.
const LeaseName = "nanoseg-controller"

// ClientQPS and ClientBurst throttle the controller's API clients
// (requests per second, and the burst above it). client-go's defaults
// (5 and 10, used when a rest.Config leaves them zero) make one round of
// proposals for 500 workloads (about 1,000 writes) take minutes and a
// promotion of every workload far longer (docs/benchmarks.md, "Cluster
// scale"); these are kube-scheduler's defaults. The API server's
// priority and fairness still queues the controller behind others when
// it is busy.
const (
	ClientQPS   = 50
	ClientBurst = 100
)

// Config configures the cluster controller (`nanoseg controller`).
type Config struct {
	// Kubeconfig is the path of a kubeconfig file; "" uses the in-cluster
	// configuration.
	Kubeconfig string `mapstructure:"kubeconfig" yaml:"kubeconfig"`
	// Namespace holds the Lease, the history head ConfigMap and the
	// ingest TLS Secret (env POD_NAMESPACE; default nanoseg-system).
	Namespace string `mapstructure:"namespace" yaml:"namespace"`
	// ID is this replica's identity in the Lease (env POD_NAME, else the
	// host name).
	ID string `mapstructure:"id" yaml:"id"`
	// Listen serves /metrics, /healthz and /readyz (plain HTTP).
	Listen string `mapstructure:"listen" yaml:"listen"`
	// Ingest serves the node agents' observation batches (HTTPS).
	Ingest string `mapstructure:"ingest" yaml:"ingest"`
	// IngestReusePort binds Ingest with SO_REUSEPORT (Linux), so that
	// replicas on one host (outside a cluster: make demo-kubernetes)
	// share one address and the kernel spreads the node agents'
	// connections over them, as the Service does in a cluster: the
	// standby answers 503 and the agent retries on a new connection.
	IngestReusePort bool `mapstructure:"ingestReusePort" yaml:"ingestReusePort"`
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's leader
	// election timings: a standby takes over at most LeaseDuration after
	// the leader last renewed; the leader gives up when it could not
	// renew within RenewDeadline.
	LeaseDuration time.Duration `mapstructure:"leaseDuration" yaml:"leaseDuration"`
	RenewDeadline time.Duration `mapstructure:"renewDeadline" yaml:"renewDeadline"`
	RetryPeriod   time.Duration `mapstructure:"retryPeriod" yaml:"retryPeriod"`
	// ProposeInterval is how often proposals are refreshed.
	ProposeInterval time.Duration `mapstructure:"proposeInterval" yaml:"proposeInterval"`
	// Window is how far back proposals take their edges.
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// MinObserved is how long a workload must have been observed (within
	// Window, which must also be observed whole: controller.EnforceGate)
	// for its proposal to be Settled, and for a promotion to enforce to
	// pass the coverage gate without force: one rule for both.
	MinObserved time.Duration `mapstructure:"minObserved" yaml:"minObserved"`
	// StatusInterval is how often NanoSegment statuses are refreshed
	// (each written only when it changed).
	StatusInterval time.Duration `mapstructure:"statusInterval" yaml:"statusInterval"`
	// CountersInterval is how often, at most, a NanoSegment's status is
	// written when only its nodes' kernel counters changed (they move
	// with every connection; any other change is written at the next
	// StatusInterval). Default 30 s.
	CountersInterval time.Duration `mapstructure:"countersInterval" yaml:"countersInterval"`
	// ConvergeTimeout bounds how long a promotion waits for the node
	// agents to report the workload's endpoints in sync.
	ConvergeTimeout time.Duration `mapstructure:"convergeTimeout" yaml:"convergeTimeout"`
	// CatchUp bounds how long a new leader waits, before it writes
	// proposals and NanoSegment status, for the node agents that the
	// status in the API server names to send their state again (default
	// 45 s: an agent's heartbeat, 15 s, plus its longest retry wait,
	// 30 s). Until then it would write from an empty graph.
	CatchUp time.Duration `mapstructure:"catchUp" yaml:"catchUp"`

	// UIListen serves the web page and its API (docs/api.md) on this
	// TCP address ("" = off), on every replica: each caller logs in with
	// a Kubernetes bearer token and is answered with it (client/kube
	// Live). Without UITLSCert and UITLSKey it must be a loopback
	// address (reached with `kubectl port-forward`), unless UIPlaintext.
	UIListen string `mapstructure:"uiListen" yaml:"uiListen"`
	// UITLSCert and UITLSKey (PEM files) serve UIListen over TLS.
	UITLSCert string `mapstructure:"uiTLSCert" yaml:"uiTLSCert"`
	UITLSKey  string `mapstructure:"uiTLSKey" yaml:"uiTLSKey"`
	// UIPlaintext allows UIListen on an address that is not loopback
	// without TLS: the callers' tokens then cross the network in the
	// clear (a mesh or another TLS terminator must protect them).
	UIPlaintext bool `mapstructure:"uiPlaintext" yaml:"uiPlaintext"`
}

// Defaults fills the zero fields.
func (c *Config) Defaults() {
	if c.Namespace == "" {
		c.Namespace = "nanoseg-system"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9990"
	}
	if c.Ingest == "" {
		c.Ingest = ":9443"
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = 10 * time.Second
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = 2 * time.Second
	}
	if c.ProposeInterval == 0 {
		c.ProposeInterval = 30 * time.Second
	}
	if c.Window == 0 {
		c.Window = 24 * time.Hour
	}
	if c.MinObserved == 0 {
		c.MinObserved = time.Hour
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = 5 * time.Second
	}
	if c.CountersInterval == 0 {
		c.CountersInterval = 30 * time.Second
	}
	if c.ConvergeTimeout == 0 {
		c.ConvergeTimeout = 15 * time.Second
	}
	if c.CatchUp == 0 {
		c.CatchUp = 45 * time.Second
	}
}

// Validate reports every bad field at once, each named.
func (c Config) Validate() error {
	var errs []error
	if c.Namespace == "" || strings.ContainsAny(c.Namespace, " /_") {
		errs = append(errs, fmt.Errorf("controller.namespace: %q is no namespace name", c.Namespace))
	}
	if c.ID == "" {
		errs = append(errs, errors.New("controller.id: empty: set --id or POD_NAME (the pod's name through the downward API)"))
	}
	for _, a := range []struct{ name, v string }{{"listen", c.Listen}, {"ingest", c.Ingest}} {
		if a.v == "" {
			continue
		}
		_, port, err := net.SplitHostPort(a.v)
		if err != nil {
			errs = append(errs, fmt.Errorf("controller.%s: %q: %w", a.name, a.v, err))
			continue
		}
		// A service name (":https") is left to the listener; a number
		// must be a port.
		if n, err := strconv.ParseUint(port, 10, 64); err == nil && n > 65535 {
			errs = append(errs, fmt.Errorf("controller.%s: %q: port %d is not from 0 to 65535", a.name, a.v, n))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"leaseDuration", c.LeaseDuration}, {"renewDeadline", c.RenewDeadline}, {"retryPeriod", c.RetryPeriod},
		{"proposeInterval", c.ProposeInterval}, {"window", c.Window}, {"minObserved", c.MinObserved},
		{"statusInterval", c.StatusInterval}, {"countersInterval", c.CountersInterval}, {"convergeTimeout", c.ConvergeTimeout}, {"catchUp", c.CatchUp}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("controller.%s: %s: must be positive", d.name, d.v))
		}
	}
	errs = append(errs, c.validateUI()...)
	// client-go's own rules, said with our names.
	if c.LeaseDuration > 0 && c.RenewDeadline >= c.LeaseDuration {
		errs = append(errs, fmt.Errorf("controller.renewDeadline: %s: must be shorter than leaseDuration (%s)", c.RenewDeadline, c.LeaseDuration))
	}
	if c.RetryPeriod > 0 && float64(c.RenewDeadline) <= 1.2*float64(c.RetryPeriod) {
		errs = append(errs, fmt.Errorf("controller.retryPeriod: %s: renewDeadline (%s) must exceed 1.2 × retryPeriod", c.RetryPeriod, c.RenewDeadline))
	}
	return errors.Join(errs...)
}

// validateUI checks the page's settings (UIListen and the rest).
func (c Config) validateUI() []error {
	var errs []error
	if (c.UITLSCert == "") != (c.UITLSKey == "") {
		errs = append(errs, fmt.Errorf("controller.uiTLSCert: %q and controller.uiTLSKey: %q: give both or neither", c.UITLSCert, c.UITLSKey))
	}
	if c.UIListen == "" {
		if c.UITLSCert != "" || c.UIPlaintext {
			errs = append(errs, errors.New("controller.uiListen: empty, but the page's other settings (uiTLSCert, uiPlaintext) are set: give the address to serve it on"))
		}
		return errs
	}
	host, port, err := net.SplitHostPort(c.UIListen)
	if err != nil {
		return append(errs, fmt.Errorf("controller.uiListen: %q: %w", c.UIListen, err))
	}
	if n, err := strconv.ParseUint(port, 10, 64); err != nil || n > 65535 {
		errs = append(errs, fmt.Errorf("controller.uiListen: %q: port %q is not a number from 0 to 65535", c.UIListen, port))
	}
	ip, _ := netip.ParseAddr(host)
	loopback := host == "localhost" || (ip.IsValid() && ip.IsLoopback())
	if c.UITLSCert == "" && !loopback && !c.UIPlaintext {
		errs = append(errs, fmt.Errorf("controller.uiListen: %q is not a loopback address and the page has no TLS: the callers' Kubernetes tokens would cross the network in the clear; "+
			"give controller.uiTLSCert and controller.uiTLSKey, listen on 127.0.0.1 and use kubectl port-forward, or set controller.uiPlaintext", c.UIListen))
	}
	return errs
}
