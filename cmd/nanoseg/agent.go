package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nanoseg/nanoseg/agent"
	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/inventory/host"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/web"
)

func newAgentCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the standalone agent: observer, controller and dataplane for this host's endpoints",
		Long: `Run the standalone agent. It observes every endpoint of its inventory (a running
lab with --lab, named network namespaces described by --labels, the running
containers of the container runtimes named by --containers, or several),
keeps edges, policy revisions and the promotion history in one store file,
programs each endpoint's nftables table, and serves the API on a unix socket
(and on TCP only with --token-file, --read-token-file or TLS client
certificates). On TCP it also serves the web UI at / : a browser logs in
once with a token and gets a session cookie; the --read-token-file token
may look but not promote.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("agent: needs root: it programs nftables and reads conntrack in other network namespaces")
			}
			a.log.Info("effective configuration", "agent", fmt.Sprintf("%+v", a.cfg.Agent))
			ag, err := agent.New(a.cfg.Agent, host.LabSource{Config: a.cfg.Lab}, a.log, nil)
			if err != nil {
				return fmt.Errorf("agent: %w", err)
			}
			ag.Server().SetUI(web.Handler()) // the page, on the TCP listener only
			return ag.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.String("lab", "", "manage the endpoints of this running lab")
	f.String("labels", "", "labels file describing named network namespaces")
	f.StringArray("containers", nil, "protect the running containers of this runtime (repeatable): podman:///run/podman/podman.sock, docker:///var/run/docker.sock, 'containerd:///run/containerd/containerd.sock?namespace=default' (quote a URI with '?': the shell globs it)")
	f.String("state-file", "", "store file (default /var/lib/nanoseg/state.db)")
	f.String("socket", "", "unix socket of the API (default /run/nanoseg/agent.sock)")
	f.String("listen", "", "also serve the API on this TCP address (needs --token-file or TLS client certificates)")
	f.String("token-file", "", "file holding the operator's bearer token for TCP clients and the web UI (may do everything)")
	f.String("read-token-file", "", "file holding a viewer's bearer token for TCP clients and the web UI (may read, not change)")
	f.String("metrics-addr", "", "serve Prometheus metrics here (default 127.0.0.1:9618; empty string to disable)")
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printContainers prints the container section of `nanoseg status`: the
// runtimes that cannot be reached, the containers not enforced and the
// container labels not used; nothing when every runtime answers and every
// container is enforced with all its labels.
func printContainers(w io.Writer, st controller.ContainerStatus) {
	for _, r := range st.Runtimes {
		if !r.Reachable {
			fmt.Fprintf(w, "\ncontainer runtime %s: unreachable for %s: %s; its %d last known endpoints keep their rules as they are\n",
				r.Name, model.ShortDuration(time.Since(r.Since)), r.Error, r.Endpoints)
		}
	}
	if len(st.NotEnforced) > 0 {
		fmt.Fprintf(w, "\ncontainers not enforced:\n")
		for _, n := range st.NotEnforced {
			fmt.Fprintf(w, "  %s (%s): %s\n", n.Container, n.Runtime, n.Reason)
		}
	}
	if len(st.LabelsNotUsed) > 0 {
		fmt.Fprintf(w, "\ncontainer labels not used (the containers are enforced without them):\n")
		for _, n := range st.LabelsNotUsed {
			fmt.Fprintf(w, "  %s (%s): %s\n", n.Container, n.Runtime, n.Reason)
		}
	}
}

func newStatusCmd(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show per workload its mode, revision, rule hits, and would-deny or denied flows since promotion",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st []controller.WorkloadStatus
			if err := newClient(a).Do(cmd.Context(), "GET", "/v1/status", nil, nil, &st); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return printJSON(w, st)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORKLOAD\tMODE\tREV\tENDPOINTS\tIN SYNC\tRULE HITS (pkts)\tNO RULE (pkts)\tWOULD-DENY\tDENIED\tOBSERVED\tNEW PEER (ago)")
			var zeroSince []string // workloads whose rules have 0 hits since their promotion
			for _, s := range st {
				sync, unreported, hits, unmatched := 0, 0, uint64(0), uint64(0)
				mode := string(s.Mode)
				for _, e := range s.Endpoints {
					if e.InSync {
						sync++
					}
					if e.Unreported {
						unreported++
					}
					// What the kernel enforces, not the store's default.
					if e.Adopted != "" && (mode == string(s.Mode) || e.Adopted == string(model.ModeEnforce)) {
						mode = e.Adopted + " (adopted)"
					}
				}
				// A policy of another workload that selects this one
				// decides what its endpoints enforce.
				if len(s.CapturedBy) > 0 && s.EffectiveMode != s.Mode {
					mode = string(s.EffectiveMode) + " (captured)"
				}
				for _, h := range s.RuleHits {
					hits += h.Packets
				}
				for _, h := range s.DefaultHits {
					unmatched += h.Packets
				}
				observed, lastNew := "-", "-"
				if c := s.Coverage; c != nil {
					observed = model.ShortDuration(c.Observed())
					if !c.LastNew.IsZero() {
						lastNew = model.ShortDuration(time.Since(c.LastNew))
					}
				}
				// Unreported endpoints are unknown, not out of sync
				// (against a cluster: a workload without a NanoSegment).
				inSync := fmt.Sprintf("%d/%d", sync, len(s.Endpoints)-unreported)
				if unreported > 0 && unreported == len(s.Endpoints) {
					inSync = "-"
				}
				// The kernel counts the rule set a promotion installed
				// from 0: right after one, 0 says nothing about the
				// traffic before it.
				ruleHits := strconv.FormatUint(hits, 10)
				if hits == 0 && !s.Since.IsZero() {
					ruleHits = "0 since promotion"
					zeroSince = append(zeroSince, s.Workload)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.Workload, mode, s.Revision, len(s.Endpoints), inSync, ruleHits, unmatched, s.WouldDeny, s.Denied,
					observed, lastNew)
			}
			tw.Flush()
			if len(zeroSince) > 0 {
				fmt.Fprintf(w, "\nRULE HITS 0 since promotion (%s): the kernel counts the rules of the rule set a promotion installs from 0; "+
					"traffic before it is in the observed edges (nanoseg graph), not in these counters\n", strings.Join(zeroSince, ", "))
			}
			for _, s := range st {
				if len(s.Endpoints) == 0 {
					fmt.Fprintf(w, "\n%s: selects no pod: its %s policy applies to nothing running\n", s.Workload, s.Mode)
				}
			}
			for _, s := range st {
				if c := s.Coverage; c != nil && c.Silent {
					fmt.Fprintf(w, "\n%s: silent: no successful connection in the %s observed; a proposal allows nothing it might do\n", s.Workload, model.ShortDuration(c.Observed()))
				}
			}
			for _, s := range st {
				for _, e := range s.Endpoints {
					if e.Adopted != "" {
						fmt.Fprintf(w, "\n%s: endpoint %s: adopted, unknown to the store: %s (kept as found; promote %s to decide)\n", s.Workload, e.Netns, e.Adopted, s.Workload)
					}
					if e.Error != "" {
						fmt.Fprintf(w, "\n%s: endpoint %s: %s\n", s.Workload, e.Netns, e.Error)
					}
				}
			}
			for _, s := range st {
				// Audit-denied attempts are what enforcing would break;
				// denied ones are dropped already (by this workload's
				// enforcement or by a policy enforced whatever its mode,
				// such as a NetworkPolicy or an Admin Deny, which
				// deny without any promotion).
				denied := "denied since promotion at " + s.Since.UTC().Format(time.RFC3339)
				if s.Since.IsZero() {
					denied = "denied (never promoted: by a policy enforced whatever its mode)"
				}
				groups := []struct {
					what    string
					verdict model.Verdict
				}{{"enforcing would break", model.VerdictAuditDeny}, {denied, model.VerdictDeny}}
				for _, g := range groups {
					var rows []controller.DeniedCount
					for _, b := range s.Breaks {
						if b.Verdict == g.verdict {
							rows = append(rows, b)
						}
					}
					if len(rows) == 0 {
						continue
					}
					fmt.Fprintf(w, "\n%s: %s:\n", s.Workload, g.what)
					for _, b := range rows {
						by := ""
						if len(b.DecidedBy) > 0 {
							by = "; decided by " + strings.Join(b.DecidedBy, ", ")
						}
						fmt.Fprintf(w, "  %-10s %s -> %s %s/%d  x%d  (rule id %s%s)\n", b.Verdict, b.Source, b.Destination, b.Protocol, b.Port, b.Count, b.RuleID, by)
					}
				}
			}
			for _, s := range st {
				if len(s.CapturedBy) > 0 {
					fmt.Fprintf(w, "\n%s is captured: policies of other workloads select it and apply to it (narrow their selectors, or promote a policy of its own):\n", s.Workload)
					for _, c := range s.CapturedBy {
						fmt.Fprintf(w, "  %s\n", c)
					}
				}
			}
			for _, s := range st {
				if len(s.NetworkPolicies) > 0 {
					fmt.Fprintf(w, "\n%s is also selected by (enforced whatever its mode): %s\n", s.Workload, strings.Join(s.NetworkPolicies, ", "))
				}
			}
			for _, s := range st {
				if len(s.AuditedDenies) > 0 {
					fmt.Fprintf(w, "\n%s is in audit mode: these ClusterNetworkPolicy Deny rules are logged as audit-deny, not dropped, until it is promoted to enforce:\n", s.Workload)
					for _, r := range s.AuditedDenies {
						fmt.Fprintf(w, "  %s\n", r)
					}
				}
			}
			// The container runtimes: a cluster's session (and an older
			// agent) has no such route.
			ctrs, err := newClient(a).Containers(cmd.Context())
			var se *client.StatusError
			if errors.As(err, &se) && se.Code == http.StatusNotFound {
				return nil
			}
			if err != nil {
				return fmt.Errorf("status: containers: %w", err)
			}
			printContainers(w, ctrs)
			return nil
		},
	}
	outputFlag(cmd, &output, "table", "table", "json")
	return cmd
}

// printPromotion prints what a promotion or rollback (action) did.
func printPromotion(w io.Writer, action string, r controller.PromoteResult) {
	p := r.Promotion
	switch {
	case r.Unchanged && p.Seq == 0:
		fmt.Fprintf(w, "%s %s: no change: already %s rev %d; nothing recorded\n", action, p.Workload, p.ToMode, p.ToRevision)
	case r.Unchanged:
		fmt.Fprintf(w, "%s %s: no change: already %s rev %d (event %d, by %s at %s); nothing recorded\n", action, p.Workload, p.ToMode, p.ToRevision,
			p.Seq, p.Who, p.At.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "%s %s: %s rev %d -> %s rev %d (event %d, by %s: %q)\n", p.Action, p.Workload, p.FromMode, p.FromRevision, p.ToMode, p.ToRevision, p.Seq, p.Who, p.Reason)
	}
	if c := r.Coverage; c != nil {
		fmt.Fprintf(w, "coverage of its proposal: %s\n", c.Summary())
	}
	for _, f := range p.Forced {
		fmt.Fprintf(w, "warning: forced (recorded in the history): %s\n", f)
	}
	if r.Converged {
		if !r.Unchanged {
			fmt.Fprintln(w, "dataplane converged: every endpoint holds the new rule set")
		}
		return
	}
	fmt.Fprintln(w, "dataplane NOT converged:")
	for n, e := range r.Errors {
		fmt.Fprintf(w, "  %s: %s\n", n, e)
	}
}

// promoteOutcome is what became of one workload's promotion.
type promoteOutcome int

// Outcomes, in the order the summary lists them.
const (
	outcomePromoted promoteOutcome = iota
	outcomeAlreadyThere
	outcomeFailed
	outcomeUnknown
	outcomeNotAttempted
	nOutcomes
)

var outcomeNames = [nOutcomes]string{"promoted", "already there (nothing recorded)", "failed", "unknown (check `nanoseg history`)", "not attempted"}

// promoteEach promotes every workload of targets (req.Workload is set for
// each) in order, printing each result to w. An error answer fails that
// workload and goes on with the next; a lost answer makes it ask the
// agent's history whether that promotion committed, and stop. When ctx
// ends (Ctrl-C) it stops after the promotion in flight (deciding it from
// the history when its answer was cut) and lists the rest as not
// attempted. With many
// targets (or all) it ends with one line per outcome. The error says how
// many were not promoted; it exits 1, as does a dataplane that did not
// converge.
func promoteEach(ctx context.Context, c *client.Client, w io.Writer, req controller.PromoteRequest, targets []string, all bool) error {
	filter := ""
	if len(targets) == 1 {
		filter = targets[0]
	}
	before, err := c.History(ctx, filter)
	if err != nil {
		return fmt.Errorf("promote: read the agent's history first: %w", err)
	}
	var head uint64
	for _, p := range before {
		head = max(head, p.Seq)
	}
	many := all || len(targets) > 1
	var by [nOutcomes][]string
	unconverged := 0
	var lastErr error
	interrupted := false
	for i, wl := range targets {
		if ctx.Err() != nil {
			// Interrupted (Ctrl-C): the one in flight was answered or
			// decided from the history; none is started after it.
			interrupted = true
			by[outcomeNotAttempted] = append(by[outcomeNotAttempted], targets[i:]...)
			break
		}
		r := req
		r.Workload = wl
		res, err := c.Promote(ctx, r)
		var se *client.StatusError
		switch {
		case err == nil:
			printPromotion(w, "promote", res)
			if res.Unchanged {
				by[outcomeAlreadyThere] = append(by[outcomeAlreadyThere], wl)
			} else {
				by[outcomePromoted] = append(by[outcomePromoted], wl)
			}
			if !res.Converged {
				unconverged++
			}
			continue
		case errors.As(err, &se) && ctx.Err() == nil:
			lastErr = fmt.Errorf("promote %s: %w", wl, err)
			if many {
				fmt.Fprintln(w, lastErr)
			}
			by[outcomeFailed] = append(by[outcomeFailed], wl)
			continue
		}
		// No answer (or an interrupted one): the promotion may have
		// committed.
		interrupted = ctx.Err() != nil
		o, msg := lostAnswer(ctx, c, r, head, err)
		if many {
			fmt.Fprintln(w, msg)
		}
		lastErr = errors.New(msg)
		by[o] = append(by[o], wl)
		by[outcomeNotAttempted] = append(by[outcomeNotAttempted], targets[i+1:]...)
		break
	}
	if interrupted {
		fmt.Fprintln(w, "interrupted: stopped after the promotion in flight; nothing after it was attempted")
	}
	if many {
		for o, ws := range by {
			if len(ws) > 0 {
				fmt.Fprintf(w, "%s: %s\n", outcomeNames[o], strings.Join(ws, ", "))
			}
		}
	}
	notDone := len(by[outcomeFailed]) + len(by[outcomeUnknown]) + len(by[outcomeNotAttempted])
	switch {
	case lastErr != nil && (notDone == 0 || !many):
		// One workload, or a lost answer that committed as the last one.
		return lastErr
	case notDone > 0:
		var parts []string
		for _, o := range []struct {
			o    promoteOutcome
			name string
		}{{outcomeFailed, "failed"}, {outcomeUnknown, "unknown"}, {outcomeNotAttempted, "not attempted"}} {
			if n := len(by[o.o]); n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, o.name))
			}
		}
		return fmt.Errorf("promote: %d of %d workloads not promoted (%s)", notDone, len(targets), strings.Join(parts, ", "))
	case unconverged > 0:
		return notConverged{fmt.Errorf("promote: the dataplane did not converge for %d workloads", unconverged)}
	}
	return nil
}

// lostAnswer decides what became of promotion req whose answer did not
// arrive (err), from the agent's history if it still answers: an event
// for the workload after head, to the requested mode (and revision),
// committed it.
func lostAnswer(ctx context.Context, c *client.Client, req controller.PromoteRequest, head uint64, err error) (promoteOutcome, string) {
	what := fmt.Sprintf("promote %s: no answer from the agent (%v)", req.Workload, err)
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	hist, herr := c.WithTimeout(10*time.Second).History(hctx, req.Workload)
	if herr != nil {
		return outcomeUnknown, fmt.Sprintf("%s, and its history cannot be read (%v): it may or may not have committed", what, herr)
	}
	for _, p := range hist {
		if p.Seq > head && p.Workload == req.Workload && p.Action == model.ActionPromote && p.ToMode == req.To &&
			(req.Revision == 0 || p.ToRevision == req.Revision) {
			return outcomePromoted, fmt.Sprintf("%s; the agent's history has event %d: it committed (%s rev %d -> %s rev %d); see `nanoseg status` for the dataplane",
				what, p.Seq, p.FromMode, p.FromRevision, p.ToMode, p.ToRevision)
		}
	}
	return outcomeFailed, what + "; the agent's history has no such event: not recorded"
}

// flagNotNegative refuses a negative revision number n given with flag.
func flagNotNegative(flag string, n int) error {
	if n < 0 {
		return fmt.Errorf("%s: %d is negative (revisions are 1, 2, ...)", flag, n)
	}
	return nil
}

// notConverged makes promote and rollback exit 1 when the event was
// recorded but the dataplane did not converge.
type notConverged struct{ error }

func (notConverged) ExitCode() int { return 1 }

func newPromoteCmd(a *app) *cobra.Command {
	var req controller.PromoteRequest
	var to string
	var all bool
	cmd := &cobra.Command{
		Use:   "promote (WORKLOAD | --all) --to observe|audit|enforce [--revision N] --reason TEXT",
		Short: "Change a workload's mode (and revision); recorded with who, when and why",
		Long: `Change a workload's mode, and with --revision its policy revision (default:
the latest). Each promotion is recorded (who, when, from, to, why) in the
agent's hash-chained history, and the command waits until every endpoint of
the workload holds the new rule set. A workload already in that mode at that
revision is reported as "no change" and nothing is recorded. --all promotes
every workload that has a policy revision, one recorded event each, and ends
with what was promoted, already there, failed, unknown or not attempted.

Promoting a proposed revision to enforce is gated on coverage: the agent
refuses, naming each workload and reason, when the workload was observed
for less than --min-observed (default: the agent's minObserved, 1h; 0: no
minimum, the other checks remain) within
its proposal's window, when that window (policy propose --window) is longer
than what was observed of it, when the workload had no observed traffic, or
when another workload of its namespace had none (whatever it does would be
denied). --force enforces anyway and records the reasons in the promotion
event. Promotions to observe or audit are never gated (audit is how to learn
safely), nor are declared revisions (policy apply).

When the agent's answer is lost (the connection dropped, the agent died),
the command asks the agent's history whether that promotion committed,
stops there, and exits 1: run it again once the agent is back; the
workloads already promoted are then reported as already there.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flagNotNegative("--revision", req.Revision); err != nil {
				return fmt.Errorf("promote: %w", err)
			}
			// --min-observed means what agent.minObserved means: 0 is no
			// minimum (the API's negative), and a negative duration is a
			// mistake, not a silent way to turn the minimum off.
			if req.MinObserved < 0 {
				return fmt.Errorf("promote: --min-observed: %s must not be negative (0: no minimum)", req.MinObserved)
			}
			if cmd.Flags().Changed("min-observed") && req.MinObserved == 0 {
				req.MinObserved = -1
			}
			mode := model.Mode(to)
			if !mode.Valid() {
				return fmt.Errorf("promote: --to: %q is not observe, audit or enforce", to)
			}
			var targets []string
			switch {
			case all && len(args) == 0 && req.Revision == 0:
				ws, err := revisionWorkloads(cmd.Context(), a)
				if err != nil {
					return fmt.Errorf("promote: %w", err)
				}
				if len(ws) == 0 {
					return fmt.Errorf("promote --all: no workload has a policy revision; run `nanoseg policy propose` first")
				}
				targets = ws
			case !all && len(args) == 1:
				targets = args
			default:
				return fmt.Errorf("promote: give one WORKLOAD, or --all without WORKLOAD and --revision")
			}
			r := req
			r.To = mode
			return promoteEach(cmd.Context(), newClient(a), cmd.OutOrStdout(), r, targets, all)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "observe, audit or enforce")
	cmd.Flags().IntVar(&req.Revision, "revision", 0, "policy revision (default: the latest)")
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why (recorded in the history)")
	cmd.Flags().BoolVar(&all, "all", false, "every workload that has a policy revision")
	cmd.Flags().BoolVar(&req.Force, "force", false, "enforce although the coverage gate refuses; the reasons are recorded in the history")
	cmd.Flags().DurationVar(&req.MinObserved, "min-observed", 0, "enforce: the observation a proposal needs in its window (default: the agent's minObserved; 0: no minimum)")
	_ = cmd.MarkFlagRequired("to")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func newRollbackCmd(a *app) *cobra.Command {
	var req controller.RollbackRequest
	cmd := &cobra.Command{
		Use:   "rollback WORKLOAD [--to-revision N] [--reason TEXT]",
		Short: "Undo a workload's last promotion, or return to revision N; recorded like a promotion",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flagNotNegative("--to-revision", req.ToRevision); err != nil {
				return fmt.Errorf("rollback: %w", err)
			}
			req.Workload = args[0]
			var res controller.PromoteResult
			if err := newClient(a).Do(cmd.Context(), "POST", "/v1/rollback", nil, req, &res); err != nil {
				return fmt.Errorf("rollback: %w", err)
			}
			printPromotion(cmd.OutOrStdout(), "rollback", res)
			if !res.Converged {
				return notConverged{fmt.Errorf("rollback: the dataplane did not converge")}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&req.ToRevision, "to-revision", 0, "return to this revision, keeping the mode")
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why (recorded in the history)")
	return cmd
}

// historyBroken makes `history --verify` exit 1 when the chain does not
// verify.
type historyBroken struct{ error }

func (historyBroken) ExitCode() int { return 1 }

func (e historyBroken) Unwrap() error { return e.error }

func newHistoryCmd(a *app) *cobra.Command {
	var output string
	var verify bool
	cmd := &cobra.Command{
		Use:   "history [WORKLOAD]",
		Short: "Show the promotion history (hash-chained, append-only)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if len(args) == 1 {
				q.Set("workload", args[0])
			}
			var hist []model.Promotion
			if err := newClient(a).Do(cmd.Context(), "GET", "/v1/history", q, nil, &hist); err != nil {
				return fmt.Errorf("history: %w", err)
			}
			if output == "json" {
				if err := printJSON(cmd.OutOrStdout(), hist); err != nil || !verify {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tAT\tWHO\tWORKLOAD\tACTION\tFROM\tTO\tREASON")
				for _, p := range hist {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s@%d\t%s@%d\t%s\n", p.Seq, p.At.Format("2006-01-02T15:04:05Z"), p.Who, p.Workload, p.Action,
						p.FromMode, p.FromRevision, p.ToMode, p.ToRevision, strconv.Quote(p.Reason))
				}
				if err := tw.Flush(); err != nil || !verify {
					return err
				}
			}
			if len(args) == 1 {
				// The chain links every workload's records: check it whole.
				if err := newClient(a).Do(cmd.Context(), "GET", "/v1/history", nil, nil, &hist); err != nil {
					return fmt.Errorf("history: %w", err)
				}
			}
			if err := model.VerifyPromotions(hist); err != nil {
				return historyBroken{fmt.Errorf("history: %w", err)}
			}
			head := "(empty)"
			if len(hist) > 0 {
				head = hist[len(hist)-1].Hash
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "history verified: %d records, hash chain intact, head %s\n", len(hist), head)
			return nil
		},
	}
	outputFlag(cmd, &output, "table", "table", "json")
	cmd.Flags().BoolVar(&verify, "verify", false, "also check the whole hash chain (sequence, links, hashes); exit 1 when a record was altered, removed or reordered")
	return cmd
}
