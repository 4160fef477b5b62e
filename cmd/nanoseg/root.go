package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/nanoseg/nanoseg/client"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

// app carries what every subcommand needs once the configuration is loaded.
type app struct {
	configPath string
	configUsed string
	cfg        Config
	log        *slog.Logger
	// bind maps configuration keys to flag names of the running command.
	bind map[string]string
	// stderr is the running command's error output (warnings).
	stderr io.Writer
	// ctx is the running command's context.
	ctx context.Context
	// cluster is cluster mode (--kubeconfig, --context, -n, or run as
	// kubectl-nanoseg): the API answered in-process over the cluster.
	cluster cluster
}

// exitCoder is an error that asks for a specific exit code.
type exitCoder interface {
	error
	ExitCode() int
}

func asExitCoder(err error, target *exitCoder) bool { return errors.As(err, target) }

func newRootCmd() *cobra.Command {
	a := &app{bind: map[string]string{
		"log.level":           "log-level",
		"log.format":          "log-format",
		"lab.stateDir":        "state-dir",
		"agent.lab":           "lab",
		"agent.labelsFile":    "labels",
		"agent.containers":    "containers",
		"agent.stateFile":     "state-file",
		"agent.socket":        "socket",
		"agent.listen":        "listen",
		"agent.tokenFile":     "token-file",
		"agent.readTokenFile": "read-token-file",
		"agent.metricsAddr":   "metrics-addr",
		"server":              "server",
		"token":               "token",
	}}
	root := &cobra.Command{
		Use:   "nanoseg",
		Short: "Network microsegmentation for containers: observe, propose, audit, enforce",
		Long: `nanoseg observes which workloads talk to which, proposes per-workload
allow-list policies (nanosegments) from that graph and what people declare,
and enforces them with nftables inside each container's network namespace.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.load(cmd) },
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "YAML config file (default "+defaultConfigFile+" if it exists)")
	pf.String("log-level", "", "log level: debug, info, warn, error")
	pf.String("log-format", "", "log format: text or json")
	pf.String("server", "", "the agent's API: unix socket path or http(s):// URL (default agent.socket)")
	pf.String("token", "", "bearer token for a TCP server")
	addClusterFlags(pf, &a.cluster)
	if isPlugin() {
		// kubectl's plugin convention: usage and help say the command
		// as the user types it (cobra takes the name from Use's first
		// word, so the display name is an annotation).
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl nanoseg"}
	}
	root.AddCommand(newVersionCmd(), newConfigCmd(a), newLabCmd(a), newAgentCmd(a), newStatusCmd(a), newPromoteCmd(a), newRollbackCmd(a), newHistoryCmd(a), newVerdictsCmd(a), addAgentPolicyCmds(newPolicyCmd(a), a), newObserveCmd(a), newGraphCmd(a))
	root.AddCommand(newVerifyCmd(a), newEvidenceCmd(a), newNodeCmd(a), newControllerCmd(a))
	return root
}

// load builds the configuration of the running command (loadConfig with
// a.bind) and the logger.
func (a *app) load(cmd *cobra.Command) error {
	if err := zeroDurations(cmd); err != nil {
		return err
	}
	if err := emptyArrayItems(cmd, a.bind); err != nil {
		return err
	}
	cfg, used, err := loadConfig(a.configPath, cmd.Flags(), a.bind)
	if err != nil {
		return err
	}
	a.cfg, a.configUsed = cfg, used
	a.log = newLogger(cfg.Log)
	a.stderr = cmd.ErrOrStderr()
	a.ctx = cmd.Context()
	return nil
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print nanoseg's version and commit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, c := buildVersion()
			fmt.Fprintf(cmd.OutOrStdout(), "nanoseg %s (commit %s)\n", v, c)
			return nil
		},
	}
}

// buildVersion returns the version and commit set at link time, falling back
// to the VCS revision that the Go toolchain records.
func buildVersion() (string, string) {
	v, c := version, commit
	if info, ok := debug.ReadBuildInfo(); ok && c == "" {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				c = s.Value
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}

func newConfigCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect nanoseg's configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (defaults, file, NANOSEG_* environment, flags) as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			shown := a.cfg
			if shown.Token != "" {
				shown.Token = "<redacted>"
			}
			out, err := yaml.Marshal(shown)
			if err != nil {
				return fmt.Errorf("marshal config: %w", err)
			}
			src := a.configUsed
			if src == "" {
				src = "none"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# config file: %s\n%s", src, out)
			return nil
		},
	})
	return cmd
}

// newClient returns an API client for the configured server (a unix
// socket path or an http(s):// URL; default: the agent's socket), or, in
// cluster mode, one answered in-process over the cluster (cluster.go).
func newClient(a *app) *client.Client {
	if a.cluster.enabled() {
		return a.cluster.client(a.ctx, a)
	}
	server := a.cfg.Server
	if server == "" {
		server = a.cfg.Agent.Socket
	}
	stderr := a.stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	return client.New(server, a.cfg.Token).OnWarning(func(msg string) { fmt.Fprintf(stderr, "warning: %s\n", msg) })
}

// zeroDurations refuses a duration flag given as 0 whose default is not
// 0 and whose help gives 0 no meaning ("0: …"): the settings behind such
// flags read 0 as "not set" and would silently take their default, so
// `--catch-up 0` ran with 45 s. The error names the flag and its default.
// emptyArrayItems refuses an empty value of a repeatable flag bound to a
// configuration key (`--containers ""`): viper reads a flag of one empty
// item as no item at all, which would drop it silently. The error names
// the key and the item's index (agent.containers[0]).
func emptyArrayItems(cmd *cobra.Command, bind map[string]string) error {
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(bind)) {
		f := cmd.Flags().Lookup(bind[key])
		if f == nil || !f.Changed || f.Value.Type() != "stringArray" {
			continue
		}
		// GetStringArray goes through the flag's String form, which
		// loses a lone empty item too: read the values themselves.
		sv, ok := f.Value.(pflag.SliceValue)
		if !ok {
			continue
		}
		for i, v := range sv.GetSlice() {
			if strings.TrimSpace(v) == "" {
				errs = append(errs, fmt.Errorf("%s[%d] (--%s): empty: give a value or leave the flag out", key, i, f.Name))
			}
		}
	}
	return errors.Join(errs...)
}

func zeroDurations(cmd *cobra.Command) error {
	var errs []error
	check := func(f *pflag.Flag) {
		if f.Value.Type() != "duration" || f.DefValue == "0s" || strings.Contains(f.Usage, "0:") {
			return
		}
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d == 0 {
			errs = append(errs, fmt.Errorf("--%s: 0s: must be positive (leave the flag out for the default %s)", f.Name, f.DefValue))
		}
	}
	cmd.Flags().Visit(check)
	cmd.InheritedFlags().Visit(check)
	return errors.Join(errs...)
}
