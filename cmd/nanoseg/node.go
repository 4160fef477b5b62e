package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nanoseg/nanoseg/nodeagent"
)

// nodeBind maps the node agent's configuration keys to its flags; it
// replaces the agent's bindings (both have --listen).
var nodeBind = map[string]string{
	"log.level":         "log-level",
	"log.format":        "log-format",
	"node.kubeconfig":   "kubeconfig",
	"node.nodeName":     "node-name",
	"node.listen":       "listen",
	"node.ownerDir":     "owner-dir",
	"node.controller":   "controller",
	"node.controllerCA": "controller-ca",
	"node.tokenFile":    "token-file",
	"node.lateFind":     "late-find",
}

func newNodeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run the Kubernetes node agent: enforce the cluster's NetworkPolicies and NanoSegments on this node's pods",
		Long: `Run the node agent of a Kubernetes cluster (the nanoseg DaemonSet). It watches
Pods, Namespaces, Services, EndpointSlices, NetworkPolicies and NanoSegments
through the API server (in-cluster, or --kubeconfig), finds the network
namespace of each pod of --node-name (env NODE_NAME) by its addresses, and
programs one nftables table per pod netns. Nothing is enforced before the
caches have synced; tables are never removed when it stops: on SIGTERM or
SIGINT it logs so and exits 0.
/metrics, /healthz and /readyz are served on --listen.

With --controller, the edges, verdict events and endpoint states it
observes go to the cluster controller over HTTPS in batches, authenticated
by the projected ServiceAccount token in --token-file; without it they stay
in the agent's bounded memory.`,
		Args: cobra.NoArgs,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.bind = nodeBind
			if err := a.load(cmd); err != nil {
				return err
			}
			if a.cfg.Node.NodeName == "" {
				a.cfg.Node.NodeName = os.Getenv("NODE_NAME")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("node: needs root: it programs nftables and reads conntrack in other network namespaces")
			}
			cfg := a.cfg.Node
			cfg.Defaults()
			if err := cfg.Validate(); err != nil {
				return withFlagNames(err, nodeBind)
			}
			a.log.Info("effective configuration", "node", fmt.Sprintf("%+v", cfg))
			rc, err := nodeagent.RESTConfig(cfg.Kubeconfig)
			if err != nil {
				return err
			}
			ag, err := nodeagent.New(cfg, rc, nil, a.log)
			if err != nil {
				return fmt.Errorf("node: %w", err)
			}
			ctx := cmd.Context()
			// SIGTERM (a DaemonSet pod deleted or rolled) or SIGINT ends
			// the context (main's signal.NotifyContext, whose cause names
			// the signal): say what stays before the agent winds down.
			context.AfterFunc(ctx, func() {
				a.log.Info("node agent stopping: the pods' tables stay in the kernel and keep enforcing; the next agent takes them over in place",
					"cause", context.Cause(ctx).Error())
			})
			if err := ag.Run(ctx); err != nil {
				return err
			}
			a.log.Info("node agent stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.String("kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.String("node-name", "", "this node's name, spec.nodeName of its pods (default $NODE_NAME)")
	f.String("listen", "", "serve /metrics, /healthz and /readyz here (default 127.0.0.1:9990)")
	f.String("owner-dir", "", "owner files of the pod netns this agent manages (default /run/nanoseg/owners)")
	f.String("controller", "", "send observations to the controller at this `URL` (https://nanoseg-controller.nanoseg-system.svc:9443); default: keep them in memory")
	f.String("controller-ca", "", "CA of the controller's certificate: `configmap` (nanoseg-system/nanoseg-controller-ca), configmap:NS/NAME, or a PEM file (default: the system's roots)")
	f.String("token-file", "", "bearer token for the controller, a projected ServiceAccount token of audience nanoseg-controller (default /var/run/secrets/nanoseg/token)")
	f.Bool("late-find", false, "find a pod's netns only by its posted addresses and place no fail-closed placeholder (lets a new pod's first connections pass unjudged; for measurements)")
	return cmd
}
