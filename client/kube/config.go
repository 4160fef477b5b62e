package kube

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config says which cluster, as whom, and where.
type Config struct {
	// Kubeconfig is the kubeconfig file (--kubeconfig); "" loads as
	// kubectl does: $KUBECONFIG (a list of files), else ~/.kube/config.
	Kubeconfig string
	// Context is the kubeconfig context to use ("" its current context).
	Context string
	// Namespace (-n) limits what is read to one namespace (but for the
	// observations: proposals of every namespace, when the user may list
	// them, so peers elsewhere keep their coverage) and is the namespace
	// of a workload named without one; "" reads every namespace, and a bare workload name is in the context's namespace
	// ("default" when it names none).
	Namespace string
	// As, AsGroups and AsUID impersonate a user, its groups and its UID
	// (--as, --as-group, --as-uid, as kubectl's flags: client-go's
	// clientcmd ConfigOverrides.AuthInfo.Impersonate*); the kubeconfig's
	// user needs the right to impersonate them. Groups or a UID without a
	// user are refused, as kubectl refuses them.
	As       string
	AsGroups []string
	AsUID    string
	// Wait bounds how long promote and rollback wait for the controller
	// to carry out a promotion, then for the NanoSegment's endpoints to be
	// in sync (default DefaultWait).
	Wait time.Duration
	// Poll is how often they look (default 250ms).
	Poll time.Duration
	// InventoryTimeout bounds listing the cluster's pods, namespaces,
	// services and endpoint slices (default 30s).
	InventoryTimeout time.Duration
	// EvidenceDir keeps the state of evidence exports made from this
	// machine (controller.Config.EvidenceDir: the signing key, the chain
	// of exports, counter snapshots); "" is <user config dir>/nanoseg/
	// evidence (os.UserConfigDir: $XDG_CONFIG_HOME or ~/.config).
	EvidenceDir string
}

// evidenceDir is EvidenceDir or its default.
func (c Config) evidenceDir() (string, error) {
	if c.EvidenceDir != "" {
		return c.EvidenceDir, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("evidence directory: %w (set XDG_CONFIG_HOME or HOME)", err)
	}
	return filepath.Join(d, "nanoseg", "evidence"), nil
}

// DefaultWait is how long promote and rollback wait for the controller.
const DefaultWait = time.Minute

func (c *Config) defaults() {
	if c.Wait <= 0 {
		c.Wait = DefaultWait
	}
	if c.Poll <= 0 {
		c.Poll = 250 * time.Millisecond
	}
	if c.InventoryTimeout <= 0 {
		c.InventoryTimeout = 30 * time.Second
	}
}

// REST resolves c as kubectl does (client-go's clientcmd loading rules:
// --kubeconfig, else $KUBECONFIG, else ~/.kube/config; --context;
// -n over the context's namespace) and returns the client configuration
// and the namespace of bare workload names.
func (c Config) REST() (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.Kubeconfig
	if c.As == "" && (len(c.AsGroups) > 0 || c.AsUID != "") {
		return nil, "", fmt.Errorf("--as-group and --as-uid need --as: requesting groups or a uid without impersonating a user is not allowed")
	}
	over := &clientcmd.ConfigOverrides{CurrentContext: c.Context}
	over.Context.Namespace = c.Namespace
	over.AuthInfo.Impersonate = c.As
	over.AuthInfo.ImpersonateGroups = c.AsGroups
	over.AuthInfo.ImpersonateUID = c.AsUID
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, over)
	rc, err := cc.ClientConfig()
	if err != nil {
		empty := clientcmd.IsEmptyConfig(err) || errors.Is(err, clientcmd.ErrEmptyConfig)
		switch {
		case empty && c.Kubeconfig != "":
			return nil, "", fmt.Errorf("--kubeconfig %s: no cluster, context or user in it", c.Kubeconfig)
		case empty && os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
			return nil, "", fmt.Errorf("%s: no cluster, context or user in it (or no such file)", c.source())
		case empty:
			return nil, "", fmt.Errorf("no kubeconfig: give --kubeconfig, set KUBECONFIG, or write ~/.kube/config")
		}
		return nil, "", fmt.Errorf("%s: %w", c.source(), loadCause(err))
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("%s: namespace: %w", c.source(), loadCause(err))
	}
	if ns == "" {
		ns = "default"
	}
	rc.UserAgent = "nanoseg-cli"
	return rc, ns, nil
}

// source names where the kubeconfig comes from, for errors: the flag
// and its file, $KUBECONFIG, or the default file.
func (c Config) source() string {
	if c.Kubeconfig != "" {
		return "--kubeconfig " + c.Kubeconfig
	}
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
		return "$KUBECONFIG " + env
	}
	return "kubeconfig " + clientcmd.RecommendedHomeFile
}

// loadCause is client-go's error loading a kubeconfig without what
// source already says: "no such file" for a missing file, else its
// reason without the "error loading config file" prefix.
func loadCause(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return errors.New("no such file")
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "error loading config file "); ok {
		if _, after, ok := strings.Cut(rest, "\": "); ok {
			msg = after
		}
	}
	return errors.New(msg)
}
