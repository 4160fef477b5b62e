package nodeagent

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/transport"
)

// Config configures the node agent (`nanoseg node`).
type Config struct {
	// Kubeconfig is the path of a kubeconfig file; "" uses the in-cluster
	// configuration (the pod's ServiceAccount token and the
	// KUBERNETES_SERVICE_HOST/PORT environment).
	Kubeconfig string `mapstructure:"kubeconfig" yaml:"kubeconfig"`
	// NodeName is the Kubernetes node this agent runs on (spec.nodeName of
	// the pods it programs); `nanoseg node` reads it from NODE_NAME too.
	NodeName string `mapstructure:"nodeName" yaml:"nodeName"`
	// Listen is the address of /metrics, /healthz and /readyz.
	Listen string `mapstructure:"listen" yaml:"listen"`
	// OwnerDir holds the owner files (node.Config.OwnerDir): the same for
	// every agent of the host.
	OwnerDir string `mapstructure:"ownerDir" yaml:"ownerDir"`
	// FlushInterval is how often observations go to the in-memory sink.
	FlushInterval time.Duration `mapstructure:"flushInterval" yaml:"flushInterval"`
	// DriftInterval is how often every table is compared with its desired
	// rule set and repaired.
	DriftInterval time.Duration `mapstructure:"driftInterval" yaml:"driftInterval"`
	// ResyncInterval is how often the agent recompiles everything from its
	// caches even without an event (a safety net; events do the work).
	ResyncInterval time.Duration `mapstructure:"resyncInterval" yaml:"resyncInterval"`
	// APIServerCheckInterval is how often the agent checks that the API
	// server answers (GET /readyz; nanoseg_node_apiserver_reachable).
	APIServerCheckInterval time.Duration `mapstructure:"apiServerCheckInterval" yaml:"apiServerCheckInterval"`
	// MaxEdges and MaxVerdicts bound the in-memory observation sink.
	MaxEdges    int `mapstructure:"maxEdges" yaml:"maxEdges"`
	MaxVerdicts int `mapstructure:"maxVerdicts" yaml:"maxVerdicts"`
	// Controller is the base URL of the cluster controller's observation
	// endpoint (https://nanoseg-controller.nanoseg-system.svc:9443); the
	// agent sends its observations there (package transport). "" keeps
	// them in this agent's memory only.
	Controller string `mapstructure:"controller" yaml:"controller"`
	// ControllerCA says where the CA of the controller's serving
	// certificate comes from: "configmap" (ConfigMap
	// nanoseg-controller-ca of nanoseg-system, read through the API
	// server), "configmap:<namespace>/<name>", or the path of a PEM file;
	// "" trusts the system's roots.
	ControllerCA string `mapstructure:"controllerCA" yaml:"controllerCA"`
	// TokenFile holds the bearer token sent to the controller: a projected
	// ServiceAccount token of audience nanoseg-controller, read again when
	// it changes (default /var/run/secrets/nanoseg/token).
	TokenFile string `mapstructure:"tokenFile" yaml:"tokenFile"`
	// SendInterval is how often observations go to the controller
	// (default 5s).
	SendInterval time.Duration `mapstructure:"sendInterval" yaml:"sendInterval"`
	// CounterInterval is how often the agent reads each endpoint's
	// kernel counters (per rule and default verdict) for its reports to
	// the controller (default 15s): a read is a netlink dump of the
	// endpoint's table, so it is not done at every send.
	CounterInterval time.Duration `mapstructure:"counterInterval" yaml:"counterInterval"`
	// LateFind finds a pod's network namespace only by its posted
	// addresses (status.podIPs) and places no fail-closed placeholder:
	// the agent as it was before early finding (newpod_linux.go), which
	// lets a new pod's first connections pass unjudged. For measurements.
	LateFind bool `mapstructure:"lateFind" yaml:"lateFind"`
}

// Defaults fills the zero fields.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9990"
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 10 * time.Second
	}
	if c.DriftInterval == 0 {
		c.DriftInterval = 30 * time.Second
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = 5 * time.Minute
	}
	if c.APIServerCheckInterval == 0 {
		c.APIServerCheckInterval = 10 * time.Second
	}
	if c.MaxEdges == 0 {
		c.MaxEdges = 50_000
	}
	if c.MaxVerdicts == 0 {
		c.MaxVerdicts = 10_000
	}
	if c.Controller != "" && c.TokenFile == "" {
		c.TokenFile = transport.DefaultTokenFile
	}
	if c.SendInterval == 0 {
		c.SendInterval = 5 * time.Second
	}
	if c.CounterInterval == 0 {
		c.CounterInterval = 15 * time.Second
	}
}

// Validate reports every bad field at once, each named.
func (c Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node.nodeName: empty: set --node-name or NODE_NAME (the pod's spec.nodeName through the downward API)"))
	} else if strings.ContainsAny(c.NodeName, " /_") {
		errs = append(errs, fmt.Errorf("node.nodeName: %q is no Kubernetes node name", c.NodeName))
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("node.listen: %q: %w", c.Listen, err))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"flushInterval", c.FlushInterval}, {"driftInterval", c.DriftInterval}, {"resyncInterval", c.ResyncInterval}, {"apiServerCheckInterval", c.APIServerCheckInterval}, {"counterInterval", c.CounterInterval}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("node.%s: %s is negative", d.name, d.v))
		}
	}
	if c.Controller != "" {
		if u, err := url.Parse(c.Controller); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("node.controller: %q: want an https:// URL such as https://nanoseg-controller.nanoseg-system.svc:9443", c.Controller))
		}
	}
	if rest, ok := strings.CutPrefix(c.ControllerCA, "configmap:"); ok {
		if ns, name, ok := strings.Cut(rest, "/"); !ok || ns == "" || name == "" {
			errs = append(errs, fmt.Errorf("node.controllerCA: %q: want configmap:<namespace>/<name>", c.ControllerCA))
		}
	}
	if c.SendInterval < 0 {
		errs = append(errs, fmt.Errorf("node.sendInterval: %s is negative", c.SendInterval))
	}
	if c.MaxEdges < 0 || c.MaxVerdicts < 0 {
		errs = append(errs, fmt.Errorf("node.maxEdges, node.maxVerdicts: %d, %d: must not be negative", c.MaxEdges, c.MaxVerdicts))
	}
	return errors.Join(errs...)
}
