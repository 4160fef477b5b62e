package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	ctrlkube "github.com/nanoseg/nanoseg/controller/kube"
	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/nodeagent"
	storekube "github.com/nanoseg/nanoseg/store/kube"
)

// controllerBind maps the cluster controller's configuration keys to its
// flags (both it and the agent have --listen).
var controllerBind = map[string]string{
	"log.level":                   "log-level",
	"log.format":                  "log-format",
	"controller.kubeconfig":       "kubeconfig",
	"controller.namespace":        "namespace",
	"controller.id":               "id",
	"controller.listen":           "listen",
	"controller.ingest":           "ingest",
	"controller.ingestReusePort":  "ingest-reuse-port",
	"controller.leaseDuration":    "lease-duration",
	"controller.renewDeadline":    "renew-deadline",
	"controller.retryPeriod":      "retry-period",
	"controller.proposeInterval":  "propose-interval",
	"controller.window":           "window",
	"controller.minObserved":      "min-observed",
	"controller.catchUp":          "catch-up",
	"controller.countersInterval": "counters-interval",
	"controller.uiListen":         "ui-listen",
	"controller.uiTLSCert":        "ui-tls-cert",
	"controller.uiTLSKey":         "ui-tls-key",
	"controller.uiPlaintext":      "ui-plaintext",
}

func newControllerCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the Kubernetes cluster controller: proposals, promotions and NanoSegment status (a Deployment with leader election)",
		Long: `Run the cluster controller (the nanoseg-controller Deployment, two replicas).
The replicas elect a leader with the Lease nanoseg-controller in --namespace
(env POD_NAMESPACE); only the leader writes. The leader takes the node agents'
observation batches on --ingest (HTTPS), keeps the merged graph in memory,
refreshes one NanoSegmentProposal per workload every --propose-interval from
the edges of --window, carries out NanoSegmentPromotions (oldest first) by
recording them in the hash-chained history and writing the NanoSegment, and
keeps every NanoSegment's status. A standby takes over within
--lease-duration when the leader dies; SIGTERM releases the Lease at once.
/metrics, /healthz and /readyz are served on --listen.

With --ui-listen every replica, leader or standby, serves the web page and
its API (docs/api.md): a user logs in with a Kubernetes bearer token
(kubectl create token, or their own) and every request is answered over
the API server with that token, so RBAC decides what they see and a
promotion from the page is recorded as theirs. Without --ui-tls-cert and
--ui-tls-key it listens only on a loopback address (kubectl port-forward).`,
		Args: cobra.NoArgs,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.bind = controllerBind
			if err := a.load(cmd); err != nil {
				return err
			}
			c := &a.cfg.Controller
			if c.Namespace == "" {
				c.Namespace = os.Getenv("POD_NAMESPACE")
			}
			if c.ID == "" {
				c.ID = os.Getenv("POD_NAME")
			}
			if c.ID == "" {
				if h, err := os.Hostname(); err == nil {
					c.ID = h
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := a.cfg.Controller
			cfg.Defaults()
			if err := cfg.Validate(); err != nil {
				return withFlagNames(err, controllerBind)
			}
			a.log.Info("effective configuration", "controller", fmt.Sprintf("%+v", cfg))
			ctx := cmd.Context()
			rc, err := nodeagent.RESTConfigFor("controller.kubeconfig", cfg.Kubeconfig)
			if err != nil {
				return err // it names the setting and the flag
			}
			ui, err := listenUI(cfg, rest.CopyConfig(rc), a)
			if err != nil {
				return err // it names the setting and the flag
			}
			c, err := buildController(ctx, cfg, rc, a)
			if err != nil {
				if ui != nil {
					ui.l.Close()
				}
				return fmt.Errorf("controller: %w", err)
			}
			if ui != nil {
				ui.run(ctx, a)
			}
			context.AfterFunc(ctx, func() {
				a.log.Info("controller stopping: releasing the Lease so a standby takes over at once", "cause", context.Cause(ctx).Error())
			})
			if err := c.Run(ctx); err != nil {
				// Leadership lost while running: exit, so that nothing
				// this process still holds writes; the Deployment
				// restarts it as a standby.
				return fmt.Errorf("controller: %w", err)
			}
			a.log.Info("controller stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.String("kubeconfig", "", "kubeconfig file (default: the in-cluster configuration)")
	f.String("namespace", "", "namespace of the Lease, the history head and the ingest TLS Secret (default $POD_NAMESPACE, else nanoseg-system)")
	f.String("id", "", "this replica's identity in the Lease (default $POD_NAME, else the host name)")
	f.String("listen", "", "serve /metrics, /healthz and /readyz here (default 127.0.0.1:9990)")
	f.String("ingest", "", "serve the node agents' observation batches here, HTTPS (default :9443)")
	f.Bool("ingest-reuse-port", false, "bind --ingest with SO_REUSEPORT, so replicas on one host share it as they share a Service (outside a cluster, as make demo-kubernetes runs them)")
	f.Duration("lease-duration", 15*time.Second, "how long a Lease holds without renewal: a standby takes over within it")
	f.Duration("renew-deadline", 10*time.Second, "the leader gives up when it could not renew the Lease within this")
	f.Duration("retry-period", 2*time.Second, "how often candidates try the Lease")
	f.Duration("propose-interval", 30*time.Second, "how often proposals are refreshed")
	f.Duration("window", 24*time.Hour, "how far back proposals take their edges; Settled, and a promotion to enforce without force, need all of it observed")
	f.Duration("min-observed", time.Hour, "observation a proposal needs to be Settled and a promotion to enforce needs without force (besides its whole --window observed)")
	f.Duration("counters-interval", 30*time.Second, "write a NanoSegment's status at most this often when only its nodes' kernel counters changed")
	f.String("ui-listen", "", "serve the web page and its API here, on every replica (default off); each user logs in with a Kubernetes bearer token and is answered with it")
	f.String("ui-tls-cert", "", "PEM certificate to serve --ui-listen over TLS (with --ui-tls-key); without TLS --ui-listen must be a loopback address")
	f.String("ui-tls-key", "", "PEM private key of --ui-tls-cert")
	f.Bool("ui-plaintext", false, "allow --ui-listen on a non-loopback address without TLS: tokens cross the network in the clear (only behind another TLS terminator)")
	f.Duration("catch-up", 45*time.Second, "how long a new leader waits for the node agents its NanoSegments' status names to resend their state before it writes status and proposals")
	return cmd
}

// buildController composes the cluster controller from client-go: the
// cluster-wide inventory, the cluster store, and the observation ingest.
func buildController(ctx context.Context, cfg ctrlkube.Config, rc *rest.Config, a *app) (*ctrlkube.Controller, error) {
	rc.UserAgent = "nanoseg-controller/" + cfg.ID
	// client-go's default of 5 requests a second (burst 10) throttled
	// every promotion (reads, the head's compare-and-swap, the record,
	// the NanoSegment, status, Events) to about 7 s: `promote --all` of
	// the shop lab's 7 workloads took 47 s, and 8 s with these.
	rc.QPS, rc.Burst = ctrlkube.ClientQPS, ctrlkube.ClientBurst
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	// Nodes: the nodes peers of ClusterNetworkPolicies match their
	// addresses in proposals and explain, as on the node agents.
	inv, err := invkube.New(client, invkube.Config{Logger: a.log, Registerer: reg, Nodes: true})
	if err != nil {
		return nil, err
	}
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	st, err := storekube.NewStore(client, dyn, storekube.StoreConfig{Namespace: cfg.Namespace, Log: a.log, Metadata: md})
	if err != nil {
		return nil, err
	}
	var c *ctrlkube.Controller
	leading := func() bool { return c != nil && c.Leading() }
	in, err := newIngest(ctx, client, cfg, reg, a, leading)
	if err != nil {
		return nil, err
	}
	c, err = ctrlkube.New(cfg, client, dyn, ctrlkube.Parts{Store: ctrlkube.StoreOf(st), Graph: in.graph, Inventory: inv, Resync: in.resync, Ingest: in.serve}, reg, a.log)
	return c, err
}

// ingest is the observation transport as the controller uses it.
type ingest struct {
	graph  ctrlkube.Graph
	resync func()
	serve  ctrlkube.ServeFunc
}

// withFlagNames returns err with each configuration key it names
// ("controller.catchUp: …") followed by its flag ("controller.catchUp
// (--catch-up): …"), from bind (key → flag).
func withFlagNames(err error, bind map[string]string) error {
	msg := err.Error()
	for key, flag := range bind {
		msg = strings.ReplaceAll(msg, key+":", key+" (--"+flag+"):")
	}
	return errors.New(msg)
}
