//go:build linux

package nodeagent

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/node"
	storekube "github.com/nanoseg/nanoseg/store/kube"
)

// New returns the node agent of cfg.NodeName over the API server of
// restCfg (RESTConfig): the Kubernetes inventory source with the netns
// finder (inventory/kube), the policy watcher (store/kube), Events on
// unfound pods and on rejected policies (PolicyRejected, once per
// rejected version from this node), the API server contact check, and
// the live probes of this node (NanoSegmentProbes). reg receives every metric (nil: a private registry); log
// nil discards.
func New(cfg Config, restCfg *rest.Config, reg *prometheus.Registry, log *slog.Logger) (*Agent, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	restCfg = rest.CopyConfig(restCfg)
	restCfg.UserAgent = "nanoseg-node/" + cfg.NodeName
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	finder, err := invkube.NewNetnsFinder(invkube.FinderConfig{Logger: log, Registerer: reg, ByAddressOnly: cfg.LateFind})
	if err != nil {
		return nil, err
	}
	src, err := invkube.New(client, invkube.Config{NodeName: cfg.NodeName, Nodes: true, Finder: finder, Logger: log, Registerer: reg, ByAddressOnly: cfg.LateFind})
	if err != nil {
		return nil, err
	}
	w := storekube.NewPolicyWatcher(client, dyn, log)
	// The last valid version of every policy, on the host beside the
	// owner files (a tmpfs that lives as long as the kernel's tables): a
	// restarted agent keeps an invalid edit from lifting what the kernel
	// enforced. A malformed file is logged and not used.
	_ = w.KeepLastValid(LastValidFile(cfg))
	w.RecordRejections(storekube.RejectionEvent(client, storekube.Reporter{Component: "nanoseg-node", Host: cfg.NodeName,
		Controller: "nanoseg.io/node", Instance: "nanoseg-node-" + cfg.NodeName}))
	if err := w.Register(reg); err != nil {
		return nil, err
	}
	parts := Parts{
		Inventory: src,
		Policies:  w,
		Unfound: func() []UnfoundPod {
			var out []UnfoundPod
			for _, u := range src.Unfound() {
				out = append(out, UnfoundPod{Pod: u.Pod, Code: u.Code, Reason: u.Reason, Netns: u.Netns})
			}
			return out
		},
		Event: PodEvent(client, cfg.NodeName),
		Found: PodFoundEvent(client, cfg.NodeName),
		Probe: Probe(client, dyn),
		Ping:  Ping(client),
		// The controller's CA, for the observation transport.
		ControllerCA: ControllerCA(client, cfg.ControllerCA),
		// Live probes asked through the API server (verify, evidence).
		Probes: NewProbeWatcher(dyn, cfg.NodeName, log),
	}
	return NewAgent(cfg, parts, reg, log)
}

// LastValidFile is where the node agent keeps the last valid version of
// every policy (store/kube PolicyWatcher.KeepLastValid):
// "<ownerDir>/policies-<nodeName>.json", ownerDir defaulting to the owner
// files' directory (/run/nanoseg). One file per node name, so two agents
// of one host (a test, a demo) do not share it.
func LastValidFile(cfg Config) string {
	dir := cfg.OwnerDir
	if dir == "" {
		dir = node.DefaultOwnerDir
	}
	return filepath.Join(dir, "policies-"+cfg.NodeName+".json")
}
