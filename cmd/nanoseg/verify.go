package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
)

// verifyMismatch makes `nanoseg verify` exit 1 when a probe's outcome
// differs from what policy predicts.
type verifyMismatch struct{ error }

func (verifyMismatch) ExitCode() int { return 1 }

func newVerifyCmd(a *app) *cobra.Command {
	var req controller.VerifyRequest
	var timeout time.Duration
	var output string
	var all bool
	cmd := &cobra.Command{
		Use:   "verify [--scope NAMESPACE|WORKLOAD] [--max-probes N] [--timeout 1s] [--parallel N]",
		Short: "Probe every allowed and denied path from inside the endpoints and compare with policy",
		Long: `Ask the agent to try real connections from inside endpoint network namespaces:
for every source workload, destination workload and declared destination port,
one TCP connection (or one UDP datagram expecting a reply), and compare whether
it got through with what the active policies predict. Every difference is a
finding; the command exits 1 when there is any. Large matrices are sampled
deterministically (see the method line of the output). Probes use only
endpoint addresses and close every socket they open.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req.TimeoutMS = int(timeout / time.Millisecond)
			var run evidence.ProbeRun
			// A full matrix may take longer than a minute; ctx (Ctrl-C) bounds it.
			c := newClient(a).WithTimeout(0)
			if err := c.Do(cmd.Context(), "POST", "/v1/verify", nil, req, &run); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				if err := printJSON(w, run); err != nil {
					return err
				}
			} else {
				printProbeRun(w, &run, all)
			}
			if run.Mismatches > 0 {
				return verifyMismatch{fmt.Errorf("verify: %d of %d probes differ from what policy predicts", run.Mismatches, run.Probed)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Scope, "scope", "", "only paths from or to this namespace (shop) or workload (shop/api)")
	f.IntVar(&req.MaxProbes, "max-probes", controller.DefaultMaxProbes, "at most this many probes (sampled deterministically beyond)")
	f.DurationVar(&timeout, "timeout", controller.DefaultProbeTimout, "timeout of each probe")
	f.IntVar(&req.Parallel, "parallel", controller.DefaultParallel, "probes running at once")
	outputFlag(cmd, &output, "table", "table", "json")
	f.BoolVar(&all, "all", false, "list every probe, not only mismatches")
	return cmd
}

// printProbeRun writes a probe run's summary and its mismatches (every
// probe with all).
func printProbeRun(w io.Writer, run *evidence.ProbeRun, all bool) {
	fmt.Fprintf(w, "probed %d of %d paths in %s (timeout %s per probe, %d in parallel): %d expected to connect, %d expected blocked, %d mismatches\n",
		run.Probed, run.Matrix, run.Finished.Sub(run.Started).Round(time.Millisecond), time.Duration(run.Timeout), run.Parallel,
		run.ExpectedAllowed, run.ExpectedDenied, run.Mismatches)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := false
	for _, r := range run.Results {
		if r.Match && !all {
			continue
		}
		if !header {
			fmt.Fprintln(tw, "\nMATCH\tFROM\tTO\tADDRESS\tEXPECTED\tOUTCOME\tTIME")
			header = true
		}
		m := "ok"
		if !r.Match {
			m = "MISMATCH"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%s\t%.1f ms\n", m, r.SourceNetns, r.DestNetns, r.Address, r.Protocol, r.Expected, r.Outcome, r.DurationMS)
	}
	tw.Flush()
	for _, r := range run.Results {
		if !r.Match {
			fmt.Fprintf(w, "finding: %s -> %s %d/%s: policy says %s (%s), the probe was %s\n", r.Source, r.Destination, r.Port, r.Protocol, r.Expected, r.Reason, r.Outcome)
		}
	}
}
