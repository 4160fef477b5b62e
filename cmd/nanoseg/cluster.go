package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/client/kube"
)

// pluginName is the binary's name as a kubectl plugin: kubectl runs
// `kubectl-nanoseg` found on PATH for `kubectl nanoseg ...`.
const pluginName = "kubectl-nanoseg"

// isPlugin reports whether the binary runs as the kubectl plugin (named
// kubectl-nanoseg, a link or a copy).
func isPlugin() bool {
	return strings.HasPrefix(filepath.Base(os.Args[0]), pluginName)
}

// cluster holds the flags of cluster mode and its session, opened on
// first use.
type cluster struct {
	cfg     kube.Config
	flags   *pflag.FlagSet // the root's persistent flags
	session *kube.Session
	err     error
}

// addClusterFlags adds the flags that select cluster mode, named as
// kubectl names them.
func addClusterFlags(pf *pflag.FlagSet, c *cluster) {
	c.flags = pf
	pf.StringVar(&c.cfg.Kubeconfig, "kubeconfig", "", "work against the cluster of this kubeconfig (default as kubectl: $KUBECONFIG, then ~/.kube/config, when --context or -n is given or the binary runs as kubectl-nanoseg)")
	pf.StringVar(&c.cfg.Context, "context", "", "kubeconfig context (cluster mode)")
	pf.StringVarP(&c.cfg.Namespace, "namespace", "n", "", "cluster mode: read only this namespace; bare workload names are in it (default every namespace; bare names in the context's namespace)")
	pf.StringVar(&c.cfg.As, "as", "", "cluster mode: username to impersonate for the operation (as kubectl's --as)")
	pf.StringArrayVar(&c.cfg.AsGroups, "as-group", nil, "cluster mode: group to impersonate for the operation, repeatable (as kubectl's --as-group; needs --as)")
	pf.StringVar(&c.cfg.AsUID, "as-uid", "", "cluster mode: UID to impersonate for the operation (as kubectl's --as-uid; needs --as)")
	pf.DurationVar(&c.cfg.Wait, "wait-for-controller", kube.DefaultWait, "cluster mode: how long promote and rollback wait for the controller, then for the endpoints in sync")
}

// enabled reports whether the CLI works against a cluster: a cluster
// flag was given, or the binary runs as the kubectl plugin.
func (c *cluster) enabled() bool {
	if isPlugin() {
		return true
	}
	for _, f := range []string{"kubeconfig", "context", "namespace", "as", "as-group", "as-uid"} {
		if c.flags != nil && c.flags.Changed(f) {
			return true
		}
	}
	return false
}

// client returns an API client answered in-process by the cluster
// session (client/kube), opening it on first use; when it cannot be
// opened every request fails with the reason.
func (c *cluster) client(ctx context.Context, a *app) *client.Client {
	if c.session == nil && c.err == nil {
		if ctx == nil {
			ctx = context.Background()
		}
		// client-go logs through klog, to stderr: its informers' retries
		// and the watches a one-shot read ends are no news to the user.
		// They go to the CLI's logger at Debug.
		if a.log != nil {
			klogOnce.Do(func() { klog.SetSlogLogger(slog.New(demote{a.log.Handler()})) })
		}
		c.session, c.err = kube.Open(ctx, c.cfg, warnings(a.log))
	}
	if c.err != nil {
		return client.NewHTTP("http://nanoseg-cluster", &http.Client{Transport: failing{c.err}, Timeout: time.Minute})
	}
	return c.session.Client()
}

// reread drops the session, so that the next request reads the cluster
// again: a session is one read of it, and a command that polls (lab
// edges --wait) must see what the controller writes meanwhile.
func (c *cluster) reread() {
	c.session, c.err = nil, nil
}

// klogOnce sets klog's logger once per process: klog's logger is a
// global that client-go's goroutines read, so it is not set again under
// them (tests run the CLI many times in one process).
var klogOnce sync.Once

// failing is a transport that fails every request with err.
type failing struct{ err error }

func (f failing) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// warnings returns log with its Info records left out unless it logs at
// Debug: the cluster session's informers log at Info what a one-shot
// command need not say (synced caches), and warn of what matters
// (address conflicts).
func warnings(log *slog.Logger) *slog.Logger {
	if log == nil || log.Enabled(context.Background(), slog.LevelDebug) {
		return log
	}
	return slog.New(floor{log.Handler(), slog.LevelWarn})
}

// floor is a slog.Handler that drops records below min.
type floor struct {
	slog.Handler
	min slog.Level
}

func (f floor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

func (f floor) WithAttrs(as []slog.Attr) slog.Handler { return floor{f.Handler.WithAttrs(as), f.min} }

func (f floor) WithGroup(name string) slog.Handler { return floor{f.Handler.WithGroup(name), f.min} }

// demote is a slog.Handler that logs every record at Debug.
type demote struct{ slog.Handler }

func (d demote) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.Handler.Enabled(ctx, slog.LevelDebug)
}

func (d demote) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return d.Handler.Handle(ctx, r)
}

func (d demote) WithAttrs(as []slog.Attr) slog.Handler { return demote{d.Handler.WithAttrs(as)} }

func (d demote) WithGroup(name string) slog.Handler { return demote{d.Handler.WithGroup(name)} }

// proposed returns, in cluster mode with an open session, the workloads
// that have a NanoSegmentProposal (a promotion of revision 0 promotes
// it); nil otherwise.
func (c *cluster) proposed() []string {
	if c.session == nil {
		return nil
	}
	return c.session.Proposed()
}
