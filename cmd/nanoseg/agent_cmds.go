package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

func init() {
	edgeSource, coverageSource = agentEdges, agentCoverage
	worldSource = func(_ context.Context, a *app) (*policies.CaseState, error) { return agentWorld(a) }
}

// agentCoverage fetches every workload's coverage since since (zero:
// everything) from the agent.
func agentCoverage(ctx context.Context, a *app, since time.Time) ([]model.Coverage, error) {
	var window time.Duration
	if !since.IsZero() {
		window = time.Since(since).Round(time.Second)
	}
	return newClient(a).Coverage(ctx, window)
}

// agentEdges fetches the edges last seen since since (zero: all) from the
// agent.
func agentEdges(ctx context.Context, a *app, since, _ time.Time) ([]model.Edge, error) {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("window", time.Since(since).Round(time.Second).String())
	}
	var edges []model.Edge
	err := newClient(a).Do(ctx, "GET", "/v1/edges", q, nil, &edges)
	return edges, err
}

// revisionWorkloads returns the workloads that have a revision, sorted
// (against a cluster also those with a proposal: see cluster.proposed).
func revisionWorkloads(ctx context.Context, a *app) ([]string, error) {
	var revs []store.Revision
	if err := newClient(a).Do(ctx, "GET", "/v1/revisions", nil, nil, &revs); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, r := range revs {
		seen[r.Workload] = true
	}
	for _, w := range a.cluster.proposed() {
		seen[w] = true
	}
	out := make([]string, 0, len(seen))
	for w := range seen {
		out = append(out, w)
	}
	sort.Strings(out)
	return out, nil
}

func newVerdictsCmd(a *app) *cobra.Command {
	var window, verdict, from, to, output string
	var port int
	var expect bool
	cmd := &cobra.Command{
		Use:   "verdicts",
		Short: "List audit-denied and denied connection attempts the agent recorded (against a cluster: aggregated, from the NanoSegments' status)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if verdict != "" && verdict != "audit-deny" && verdict != "deny" {
				return fmt.Errorf("verdicts: --verdict: %q is not audit-deny or deny", verdict)
			}
			q := url.Values{}
			if window != "" {
				q.Set("window", window)
			}
			var evs []model.VerdictEvent
			if err := newClient(a).Do(cmd.Context(), "GET", "/v1/verdicts", q, nil, &evs); err != nil {
				return fmt.Errorf("verdicts: %w", err)
			}
			var ids map[string][]string
			if err := newClient(a).Do(cmd.Context(), "GET", "/v1/ruleids", nil, nil, &ids); err != nil {
				return fmt.Errorf("verdicts: %w", err)
			}
			// A policy that decided for a workload it captures (made
			// for another workload, selecting this one too) says so.
			var caps map[string][]controller.Capture
			if err := newClient(a).Do(cmd.Context(), "GET", "/v1/captures", nil, nil, &caps); err != nil {
				return fmt.Errorf("verdicts: %w", err)
			}
			captureNote := func(e model.VerdictEvent) string {
				var notes []string
				for _, w := range []string{e.Source, e.Destination} {
					for _, c := range caps[w] {
						if slices.Contains(ids[e.RuleID], "NanoSegment "+c.Policy) {
							notes = append(notes, fmt.Sprintf("%s captures %s", c.Policy, w))
						}
					}
				}
				if len(notes) == 0 {
					return ""
				}
				return " (" + strings.Join(notes, "; ") + ")"
			}
			var keep []model.VerdictEvent
			for _, e := range evs {
				if (verdict == "" || string(e.Verdict) == verdict) && (from == "" || e.Source == from) &&
					(to == "" || e.Destination == to) && (port == 0 || int(e.Port) == port) {
					keep = append(keep, e)
				}
			}
			if output == "json" {
				if err := printJSON(cmd.OutOrStdout(), keep); err != nil {
					return err
				}
			} else {
				// A cluster keeps verdicts aggregated (NanoSegment
				// status): each line then stands for ATTEMPTS alike
				// attempts, AT the last, FIRST SEEN the first.
				aggregated := slices.ContainsFunc(keep, func(e model.VerdictEvent) bool { return e.Count > 0 })
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				head := "AT\tVERDICT\tSOURCE\tDESTINATION\tPORT\tLOGGED IN\tRULE ID\tDECIDED BY"
				if aggregated {
					head += "\tATTEMPTS\tFIRST SEEN"
				}
				fmt.Fprintln(tw, head)
				for _, e := range keep {
					by := strings.Join(ids[e.RuleID], ", ")
					if by == "" {
						by = "-"
					}
					by += captureNote(e)
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%d\t%s\t%s\t%s", e.At.UTC().Format(time.RFC3339), e.Verdict, e.Source, e.Destination,
						e.Protocol, e.Port, e.Endpoint, e.RuleID, by)
					if aggregated {
						first := e.FirstAt
						if first.IsZero() {
							first = e.At
						}
						fmt.Fprintf(tw, "\t%d\t%s", e.Attempts(), first.UTC().Format(time.RFC3339))
					}
					fmt.Fprintln(tw)
				}
				tw.Flush()
			}
			if expect && len(keep) == 0 {
				return notConverged{fmt.Errorf("verdicts: none matched")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&window, "window", "", "only the last DURATION (e.g. 10m); default: all")
	f.StringVar(&verdict, "verdict", "", "audit-deny or deny")
	f.StringVar(&from, "from", "", "source workload (namespace/workload) or address")
	f.StringVar(&to, "to", "", "destination workload, DNS name or address")
	f.IntVar(&port, "port", 0, "destination port")
	outputFlag(cmd, &output, "table", "table", "json")
	f.BoolVar(&expect, "expect", false, "exit 1 if nothing matched")
	return cmd
}

// addAgentPolicyCmds adds the agent-backed policy subcommands to pc.
func addAgentPolicyCmds(pc *cobra.Command, a *app) *cobra.Command {
	pc.AddCommand(newPolicyShowCmd(a), newPolicyApplyCmd(a), newPolicyDeleteCmd(a))
	return pc
}

func newPolicyShowCmd(a *app) *cobra.Command {
	var revision int
	var output string
	cmd := &cobra.Command{
		Use:   "show [WORKLOAD] [--revision N] | show networkpolicy NAMESPACE/NAME | show clusternetworkpolicy [NAME]",
		Short: "Show stored policies (from the agent): nanosegment revisions, NetworkPolicies and ClusterNetworkPolicies, a list, or one as YAML",
		Long: `Show stored policies (from the agent). Without arguments: every
nanosegment revision, then the NetworkPolicies in force (enforced since they
were applied), then the ClusterNetworkPolicies in force. With WORKLOAD: its
revisions (--revision N prints one as YAML). With networkpolicy
NAMESPACE/NAME: that NetworkPolicy as YAML and its records (applies and
deletions). With clusternetworkpolicy [NAME]: the ClusterNetworkPolicies in
force as YAML, or that one with its records (applies and deletions, who and
when) as YAML comments, exactly as applied: ` + "`policy apply -f`" + ` of that
output changes nothing.`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flagNotNegative("--revision", revision); err != nil {
				return fmt.Errorf("policy show: %w", err)
			}
			if len(args) >= 1 && isClusterNetworkPolicyWord(args[0]) {
				name := ""
				if len(args) == 2 {
					name = args[1]
				}
				return showClusterNetworkPolicies(cmd, a, name)
			}
			if len(args) == 2 || (len(args) == 1 && isNetworkPolicyWord(args[0])) {
				if len(args) != 2 || !isNetworkPolicyWord(args[0]) {
					return fmt.Errorf("policy show: want WORKLOAD or networkpolicy NAMESPACE/NAME")
				}
				return showNetworkPolicy(cmd, a, args[1])
			}
			q := url.Values{}
			if len(args) == 1 {
				q.Set("workload", args[0])
			}
			c := newClient(a)
			if revision > 0 {
				if len(args) == 0 {
					return fmt.Errorf("policy show: --revision needs a WORKLOAD")
				}
				q.Set("revision", fmt.Sprint(revision))
				var r store.Revision
				if err := c.Do(cmd.Context(), "GET", "/v1/revisions", q, nil, &r); err != nil {
					return fmt.Errorf("policy show: %w", err)
				}
				return writeRevisionYAML(cmd.OutOrStdout(), r)
			}
			var revs []store.Revision
			if err := c.Do(cmd.Context(), "GET", "/v1/revisions", q, nil, &revs); err != nil {
				return fmt.Errorf("policy show: %w", err)
			}
			if output == "yaml" {
				for _, r := range revs {
					fmt.Fprintln(cmd.OutOrStdout(), "---")
					if err := writeRevisionYAML(cmd.OutOrStdout(), r); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORKLOAD\tREV\tORIGIN\tCREATED\tBY\tINGRESS RULES\tEGRESS RULES")
			for _, r := range revs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\n", r.Workload, r.Number, r.Origin, r.CreatedAt.UTC().Format(time.RFC3339), r.CreatedBy,
					len(r.Policy.Spec.Ingress), len(r.Policy.Spec.Egress))
			}
			if err := tw.Flush(); err != nil || len(args) == 1 {
				return err
			}
			var nps []store.NetworkPolicyRecord
			if err := c.Do(cmd.Context(), "GET", "/v1/networkpolicies", nil, nil, &nps); err != nil {
				return fmt.Errorf("policy show: %w", err)
			}
			if len(nps) == 0 {
				return listClusterNetworkPolicies(cmd, a)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			tw = tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NETWORKPOLICY\tREV\tENFORCED SINCE\tBY\tPOD SELECTOR\tPOLICY TYPES")
			for _, r := range nps {
				sel, _ := metav1.LabelSelectorAsSelector(&r.Policy.Spec.PodSelector)
				selStr := "(every pod)"
				if sel != nil && !sel.Empty() {
					selStr = sel.String()
				}
				iso := policies.EffectivePolicyTypes(r.Policy.Spec.PolicyTypes, len(r.Policy.Spec.Egress))
				var types []string
				for d, on := range iso {
					if on {
						types = append(types, string(model.Directions[d]))
					}
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Key(), r.Revision, r.At.UTC().Format(time.RFC3339), r.By, selStr, strings.Join(types, ","))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return listClusterNetworkPolicies(cmd, a)
		},
	}
	cmd.Flags().IntVar(&revision, "revision", 0, "print this revision as YAML")
	outputFlag(cmd, &output, "table", "table", "yaml")
	return cmd
}

func writeRevisionYAML(w interface{ Write([]byte) (int, error) }, r store.Revision) error {
	raw, err := yaml.Marshal(r.Policy)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# %s revision %d, %s by %s at %s\n", r.Workload, r.Number, r.Origin, r.CreatedBy, r.CreatedAt.UTC().Format(time.RFC3339))
	_, err = w.Write(raw)
	return err
}

// expandPolicyFiles returns paths with every directory replaced by the
// .yaml, .yml and .json files directly in it, sorted; a directory with
// none of them is an error naming it.
func expandPolicyFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil || !st.IsDir() {
			out = append(out, p) // a missing file is reported when read
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		n := len(out)
		for _, e := range ents {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					out = append(out, filepath.Join(p, e.Name()))
				}
			}
		}
		if len(out) == n {
			return nil, fmt.Errorf("%s: a directory without .yaml, .yml or .json files", p)
		}
	}
	return out, nil
}

func newPolicyApplyCmd(a *app) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "apply -f FILE...",
		Short: "Store NanoSegments as declared revisions (promote them to take effect), NetworkPolicies and ClusterNetworkPolicies as themselves (enforced at once); nothing is stored if any is invalid",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return fmt.Errorf("policy apply: -f FILE is required")
			}
			files, err := expandPolicyFiles(files)
			if err != nil {
				return fmt.Errorf("policy apply: nothing stored: %w", err)
			}
			// Every file is read and checked before any is sent: one
			// invalid file stores nothing, not the files before it.
			raws := make([][]byte, len(files))
			var errs []error
			for i, f := range files {
				raw, err := os.ReadFile(f)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				objs, err := policies.ParseObjects(f, raw)
				if err != nil {
					errs = append(errs, err)
				}
				// Invalid ClusterNetworkPolicies are refused here too, so
				// the files before this one stay unstored.
				for _, c := range policies.ClusterNetworkPolicies(objs) {
					if _, err := policies.CompileClusterNetworkPolicy(&c); err != nil {
						errs = append(errs, fmt.Errorf("%s: %w", f, err))
					}
				}
				raws[i] = raw
			}
			if len(errs) > 0 {
				return fmt.Errorf("policy apply: nothing stored: %w", errors.Join(errs...))
			}
			c := newClient(a)
			// The agent checks every file before the first is applied
			// (what only it can check: which workload a NanoSegment
			// selects), so that one refused file stores nothing.
			if len(files) > 1 {
				for i, f := range files {
					if err := c.Do(cmd.Context(), "POST", "/v1/policies", url.Values{"file": {f}, "dryRun": {"true"}}, raws[i], nil); err != nil {
						errs = append(errs, err)
					}
				}
				if len(errs) > 0 {
					return fmt.Errorf("policy apply: nothing stored: %w", errors.Join(errs...))
				}
			}
			for i, f := range files {
				raw := raws[i]
				var res controller.ApplyResult
				if err := c.Do(cmd.Context(), "POST", "/v1/policies", url.Values{"file": {f}}, raw, &res); err != nil {
					return fmt.Errorf("policy apply: %w", err)
				}
				w := cmd.OutOrStdout()
				for _, r := range res.Revisions {
					fmt.Fprintf(w, "%s: revision %d (%s by %s at %s); promote it to take effect\n", r.Workload, r.Number, r.Origin, r.CreatedBy, r.CreatedAt.UTC().Format(time.RFC3339))
				}
				for _, n := range res.NetworkPolicies {
					sel := "selects no workload now"
					if len(n.Selects) > 0 {
						sel = "selects " + strings.Join(n.Selects, ", ")
					}
					if n.Unchanged {
						fmt.Fprintf(w, "NetworkPolicy %s: unchanged, revision %d, enforced since %s (%s)\n", n.Record.Key(), n.Record.Revision, n.Record.At.UTC().Format(time.RFC3339), sel)
						continue
					}
					fmt.Fprintf(w, "NetworkPolicy %s: revision %d, enforced now (%s)\n", n.Record.Key(), n.Record.Revision, sel)
				}
				for _, c := range res.ClusterNetworkPolicies {
					state := fmt.Sprintf("revision %d, enforced now", c.Revision)
					if c.Unchanged {
						state = fmt.Sprintf("unchanged, revision %d, enforced", c.Revision)
					}
					fmt.Fprintf(w, "ClusterNetworkPolicy %s (%s, priority %d): %s\n", c.Name, c.Tier, c.Priority, state)
				}
				if !res.Converged {
					return notConverged{fmt.Errorf("policy apply: %s: the dataplane did not converge: %v", f, res.Errors)}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "YAML file, or a directory of .yaml/.yml/.json files such as policy propose --out writes (repeatable)")
	return cmd
}

// isNetworkPolicyWord reports whether s names the NetworkPolicy kind.
func isNetworkPolicyWord(s string) bool {
	switch strings.ToLower(s) {
	case "networkpolicy", "networkpolicies", "netpol":
		return true
	}
	return false
}

// splitNamespaced splits "NAMESPACE/NAME".
func splitNamespaced(s string) (string, string, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("%q: want NAMESPACE/NAME", s)
	}
	return ns, name, nil
}

// showNetworkPolicy prints NetworkPolicy ref (NAMESPACE/NAME): its records,
// then the one in force as YAML.
func showNetworkPolicy(cmd *cobra.Command, a *app, ref string) error {
	ns, name, err := splitNamespaced(ref)
	if err != nil {
		return fmt.Errorf("policy show: networkpolicy %w", err)
	}
	var recs []store.NetworkPolicyRecord
	q := url.Values{"records": {"true"}, "namespace": {ns}, "name": {name}}
	if err := newClient(a).Do(cmd.Context(), "GET", "/v1/networkpolicies", q, nil, &recs); err != nil {
		return fmt.Errorf("policy show: %w", err)
	}
	if len(recs) == 0 {
		return fmt.Errorf("policy show: NetworkPolicy %s/%s was never applied", ns, name)
	}
	w := cmd.OutOrStdout()
	for _, r := range recs {
		fmt.Fprintf(w, "# NetworkPolicy %s record %d: %s by %s at %s\n", r.Key(), r.Revision, r.Action, r.By, r.At.UTC().Format(time.RFC3339))
	}
	last := recs[len(recs)-1]
	if last.Action != store.ActionApply {
		fmt.Fprintf(w, "# not in force (deleted)\n")
		return nil
	}
	fmt.Fprintf(w, "# in force since %s\n", last.At.UTC().Format(time.RFC3339))
	raw, err := yaml.Marshal(last.Policy)
	if err != nil {
		return err
	}
	_, err = w.Write(raw)
	return err
}

func newPolicyDeleteCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "delete networkpolicy NAMESPACE/NAME | delete clusternetworkpolicy NAME",
		Short: "Delete a stored NetworkPolicy or ClusterNetworkPolicy: it stops being enforced at once",
		Long: `Delete a stored NetworkPolicy or ClusterNetworkPolicy: it stops being
enforced at once, and the rule sets of every endpoint are reprogrammed before
the command returns. The deletion is recorded with who and when (see
` + "`policy show networkpolicy NAMESPACE/NAME`" + ` and ` + "`policy show clusternetworkpolicy NAME`" + `);
for a ClusterNetworkPolicy the command prints the policy as it was.
Nanosegments are not deleted: roll them back or promote them to observe.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if isClusterNetworkPolicyWord(args[0]) {
				return deleteClusterNetworkPolicy(cmd, a, args[1])
			}
			if !isNetworkPolicyWord(args[0]) {
				return fmt.Errorf("policy delete: %q: only NetworkPolicies and ClusterNetworkPolicies are deleted (policy delete networkpolicy NAMESPACE/NAME, policy delete clusternetworkpolicy NAME)", args[0])
			}
			ns, name, err := splitNamespaced(args[1])
			if err != nil {
				return fmt.Errorf("policy delete: %w", err)
			}
			var res controller.DeleteResult
			if err := newClient(a).Do(cmd.Context(), "DELETE", "/v1/networkpolicies", url.Values{"namespace": {ns}, "name": {name}}, nil, &res); err != nil {
				return fmt.Errorf("policy delete: %w", err)
			}
			r := res.Record
			fmt.Fprintf(cmd.OutOrStdout(), "NetworkPolicy %s deleted (record %d, by %s at %s); no longer enforced\n", r.Key(), r.Revision, r.By, r.At.UTC().Format(time.RFC3339))
			if !res.Converged {
				return notConverged{fmt.Errorf("policy delete: the dataplane did not converge: %v", res.Errors)}
			}
			return nil
		},
	}
}

// isClusterNetworkPolicyWord reports whether s names the
// ClusterNetworkPolicy kind.
func isClusterNetworkPolicyWord(s string) bool {
	switch strings.ToLower(s) {
	case "clusternetworkpolicy", "clusternetworkpolicies", "cnp":
		return true
	}
	return false
}

// deleteClusterNetworkPolicy deletes ClusterNetworkPolicy name through the
// agent and prints what was in force until then.
func deleteClusterNetworkPolicy(cmd *cobra.Command, a *app, name string) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("policy delete: clusternetworkpolicy %q: want NAME (cluster-scoped, no namespace)", name)
	}
	var res controller.ClusterDeleteResult
	if err := newClient(a).Do(cmd.Context(), "DELETE", "/v1/clusternetworkpolicies", url.Values{"name": {name}}, nil, &res); err != nil {
		return fmt.Errorf("policy delete: %w", err)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "ClusterNetworkPolicy %s (%s, priority %d) deleted (record %d, by %s at %s); no longer enforced; it was:\n", res.Name, res.Tier, res.Priority, res.Revision, res.By, res.At.UTC().Format(time.RFC3339))
	if res.Policy != nil {
		raw, err := yaml.Marshal(res.Policy)
		if err != nil {
			return err
		}
		if _, err := w.Write(raw); err != nil {
			return err
		}
	}
	if !res.Converged {
		return notConverged{fmt.Errorf("policy delete: the dataplane did not converge: %v", res.Errors)}
	}
	return nil
}

// listClusterNetworkPolicies prints a table of the ClusterNetworkPolicies
// in force, nothing when there are none.
func listClusterNetworkPolicies(cmd *cobra.Command, a *app) error {
	var cnps []cnpv1alpha2.ClusterNetworkPolicy
	if err := newClient(a).Do(cmd.Context(), "GET", "/v1/clusternetworkpolicies", nil, nil, &cnps); err != nil {
		return fmt.Errorf("policy show: %w", err)
	}
	if len(cnps) == 0 {
		return nil
	}
	fmt.Fprintln(cmd.OutOrStdout())
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTERNETWORKPOLICY\tTIER\tPRIORITY\tINGRESS RULES\tEGRESS RULES")
	for _, c := range cnps {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", c.Name, c.Spec.Tier, c.Spec.Priority, len(c.Spec.Ingress), len(c.Spec.Egress))
	}
	return tw.Flush()
}

// showClusterNetworkPolicies prints the ClusterNetworkPolicies in force
// as YAML (all, or, with name, showClusterNetworkPolicy); with none (and
// no name) it says so on stderr.
func showClusterNetworkPolicies(cmd *cobra.Command, a *app, name string) error {
	if name != "" {
		return showClusterNetworkPolicy(cmd, a, name)
	}
	var cnps []cnpv1alpha2.ClusterNetworkPolicy
	if err := newClient(a).Do(cmd.Context(), "GET", "/v1/clusternetworkpolicies", nil, nil, &cnps); err != nil {
		return fmt.Errorf("policy show: %w", err)
	}
	var out []any
	for i := range cnps {
		if name == "" || cnps[i].Name == name {
			out = append(out, &cnps[i])
		}
	}
	if name != "" && len(out) == 0 {
		return fmt.Errorf("policy show: ClusterNetworkPolicy %s is not in force", name)
	}
	if len(out) == 0 {
		// On stderr: stdout stays an (empty) YAML stream.
		fmt.Fprintln(cmd.ErrOrStderr(), "no ClusterNetworkPolicy in force")
		return nil
	}
	return writeYAMLStream(cmd.OutOrStdout(), out)
}

// showClusterNetworkPolicy prints ClusterNetworkPolicy name as
// showNetworkPolicy prints a NetworkPolicy: its records (applies and
// deletions, with who and when) as YAML comments, then the one in force
// as YAML, exactly as applied (`policy apply -f` of the output changes
// nothing). One never applied is an error.
func showClusterNetworkPolicy(cmd *cobra.Command, a *app, name string) error {
	if strings.Contains(name, "/") {
		return fmt.Errorf("policy show: clusternetworkpolicy %q: want NAME (cluster-scoped, no namespace)", name)
	}
	var recs []store.ClusterNetworkPolicyRecord
	q := url.Values{"records": {"true"}, "name": {name}}
	if err := newClient(a).Do(cmd.Context(), "GET", "/v1/clusternetworkpolicies", q, nil, &recs); err != nil {
		return fmt.Errorf("policy show: %w", err)
	}
	if len(recs) == 0 {
		return fmt.Errorf("policy show: ClusterNetworkPolicy %s was never applied", name)
	}
	w := cmd.OutOrStdout()
	for _, r := range recs {
		by := r.By
		if by == "" {
			by = "(not recorded)"
		}
		fmt.Fprintf(w, "# ClusterNetworkPolicy %s record %d: %s by %s at %s\n", r.Name, r.Revision, r.Action, by, recordTime(r.At))
	}
	last := recs[len(recs)-1]
	if last.Action != store.ActionApply || last.Policy == nil {
		fmt.Fprintf(w, "# not in force (deleted)\n")
		return nil
	}
	fmt.Fprintf(w, "# in force since %s\n", recordTime(last.At))
	return writeYAMLStream(w, []any{last.Policy})
}

// recordTime formats a record's time in UTC (RFC 3339); the zero time
// (a record upgraded from a store that kept none) is "an unknown time".
func recordTime(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.UTC().Format(time.RFC3339)
}

// writeProposals writes one YAML file per proposed revision into dir.
func writeProposals(dir string, res []controller.ProposeResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, r := range res {
		name := strings.ReplaceAll(r.Workload, "/", "_") + ".yaml"
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = writeRevisionYAML(f, r.Revision)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// labProtocol reads a lab topology's protocol word in model's spelling
// (lab files may write "tcp"); unknown words are kept as written.
func labProtocol(s string) model.Protocol {
	if p, err := model.ParseProtocol(s); err == nil {
		return p
	}
	return model.Protocol(s)
}

// edgeWant is one workload-level edge a lab declares.
type edgeWant struct {
	src, dst string
	port     int
	proto    model.Protocol
}

func newLabEdgesCmd(a *app) *cobra.Command {
	var name string
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "edges",
		Short: "Check that the agent has observed every edge the lab declares (each talk, and DNS over UDP and TCP for every client)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := labName(a, name)
			if err != nil {
				return fmt.Errorf("lab edges: %w", err)
			}
			p, err := lab.LoadPlan(a.cfg.Lab, n)
			if err != nil {
				return fmt.Errorf("lab edges: %w", err)
			}
			talks, err := p.DeclaredTalks()
			if err != nil {
				return fmt.Errorf("lab edges: %w", err)
			}
			want := map[edgeWant]bool{}
			for _, t := range talks {
				want[edgeWant{t.From.Key(), t.DstKey, t.Port, labProtocol(t.Protocol)}] = false
				// Clients resolve over UDP, and over TCP every fourth lookup.
				want[edgeWant{t.From.Key(), p.Topology.DNS, 53, model.ProtocolUDP}] = false
				want[edgeWant{t.From.Key(), p.Topology.DNS, 53, model.ProtocolTCP}] = false
			}
			deadline := time.Now().Add(wait)
			for first := true; ; first = false {
				if !first && a.cluster.enabled() {
					a.cluster.reread() // the proposals written since
				}
				edges, err := agentEdges(cmd.Context(), a, time.Time{}, time.Time{})
				if err != nil {
					return fmt.Errorf("lab edges: %w", err)
				}
				for _, e := range edges {
					dst := e.Destination.String()
					k := edgeWant{e.Source.String(), dst, int(e.Port), e.Protocol}
					if _, ok := want[k]; ok {
						want[k] = true
					}
				}
				missing := 0
				for _, seen := range want {
					if !seen {
						missing++
					}
				}
				if missing == 0 || time.Now().After(deadline) {
					keys := make([]edgeWant, 0, len(want))
					for k := range want {
						keys = append(keys, k)
					}
					sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
					for _, k := range keys {
						mark := "seen   "
						if !want[k] {
							mark = "MISSING"
						}
						fmt.Fprintf(cmd.OutOrStdout(), "%s %-22s -> %-22s %s/%d\n", mark, k.src, k.dst, k.proto, k.port)
					}
					if missing > 0 {
						return probeFailed{fmt.Errorf("lab edges: %d of %d declared edges not observed after %s", missing, len(want), wait)}
					}
					fmt.Fprintf(cmd.OutOrStdout(), "all %d declared edges observed\n", len(want))
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "lab name (default: the only lab that is up)")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "keep checking this long")
	return cmd
}

// proposeFromAgent asks the agent to propose and store revisions.
func proposeFromAgent(cmd *cobra.Command, a *app, window time.Duration, includeDenied bool, outDir string) error {
	q := url.Values{}
	if window > 0 {
		q.Set("window", window.String())
	}
	if includeDenied {
		q.Set("includeDenied", "true")
	}
	var rep controller.ProposeReport
	if err := newClient(a).Do(cmd.Context(), "POST", "/v1/propose", q, nil, &rep); err != nil {
		return fmt.Errorf("policy propose: %w", err)
	}
	w := cmd.OutOrStdout()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tREVISION\tNEW\tINGRESS RULES\tEGRESS RULES")
	for _, r := range rep.Proposals {
		fmt.Fprintf(tw, "%s\t%d\t%v\t%d\t%d\n", r.Workload, r.Revision.Number, r.New, len(r.Revision.Policy.Spec.Ingress), len(r.Revision.Policy.Spec.Egress))
	}
	tw.Flush()
	var review []string
	for _, r := range rep.Proposals {
		for _, rule := range append(slices.Clone(r.Revision.Policy.Spec.Ingress), r.Revision.Policy.Spec.Egress...) {
			if wd := rule.Provenance.Widened; wd != nil {
				line := fmt.Sprintf("%s %s: %s", r.Workload, rule.ID, wd.Note)
				if len(wd.Clients) > 0 {
					line += fmt.Sprintf(" (clients seen: %s)", strings.Join(wd.Clients, ", "))
				}
				if len(wd.SeenPorts) > 0 {
					line += fmt.Sprintf(" (ports seen: %s)", strings.Join(wd.SeenPorts, ", "))
				}
				review = append(review, line)
			}
		}
	}
	if len(review) > 0 {
		fmt.Fprintf(w, "widened beyond what was observed, to review (accept, or narrow the rule before promoting):\n")
		for _, l := range review {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if len(rep.Forbidden) > 0 {
		fmt.Fprintf(w, "left out, because an Admin ClusterNetworkPolicy rule denies them (no nanosegment can allow them; --include-denied does not change that):\n")
		for _, f := range rep.Forbidden {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	if len(rep.Excluded) > 0 {
		fmt.Fprintf(w, "left out, because they were denied in the window and the policies in force still deny them (review with `policy diff`; --include-denied to propose them anyway):\n")
		for _, e := range rep.Excluded {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	if len(rep.Failed) > 0 {
		fmt.Fprintf(w, "left out, because every connection failed (never learned as allows):\n")
		for _, e := range rep.Failed {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(w, "no proposal:\n")
		for _, s := range rep.Skipped {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	printCoverage(w, rep.Coverage, window)
	if len(rep.Silent) > 0 {
		fmt.Fprintf(w, "silent in the window (no proposal; their peers' policies allow them only through widened rules: DNS, shared servers; promote to enforce of their namespace refuses while they are):\n")
		for _, s := range rep.Silent {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	for _, warn := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if outDir != "" {
		if err := writeProposals(outDir, rep.Proposals); err != nil {
			return fmt.Errorf("policy propose: write %s: %w", outDir, err)
		}
		fmt.Fprintf(w, "wrote %d proposals to %s\n", len(rep.Proposals), outDir)
	}
	return nil
}

// printCoverage prints a coverage report: per workload how long it was
// observed of window (everything for 0), flows, failed flows, peers,
// server ports and when its newest peer or port appeared.
func printCoverage(w io.Writer, covs []model.Coverage, window time.Duration) {
	if len(covs) == 0 {
		return
	}
	of := "everything observed"
	if window > 0 {
		of = "the " + model.ShortDuration(window) + " window asked"
	}
	fmt.Fprintf(w, "coverage (of %s):\n", of)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  WORKLOAD\tOBSERVED\tENDPOINTS\tFLOWS\tFAILED\tPEERS\tSERVER PORTS\tNEW PEER (ago)\tNOTE")
	for _, c := range covs {
		obs := model.ShortDuration(c.Observed())
		if window > 0 {
			obs += " of " + model.ShortDuration(window)
		}
		var ports []string
		for _, p := range c.Ports {
			ports = append(ports, fmt.Sprintf("%d/%s(%d)", p.Port, p.Protocol, p.Peers))
		}
		if len(ports) == 0 {
			ports = []string{"-"}
		}
		lastNew := "-"
		if !c.LastNew.IsZero() {
			lastNew = model.ShortDuration(c.To.Sub(c.LastNew))
		}
		var note []string
		if c.Silent {
			note = append(note, "silent")
		}
		if window > 0 && c.Observed() < window*99/100 {
			note = append(note, "window not fully observed")
		}
		if c.ObservedSeconds == 0 {
			note = append(note, "never observed")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", c.Workload, obs, c.Endpoints, c.Flows, c.Failed, c.Peers, strings.Join(ports, ","), lastNew, strings.Join(note, ", "))
	}
	tw.Flush()
}

// diffFromAgent prints the agent's diff of the latest revisions against
// the active policies.
func diffFromAgent(cmd *cobra.Command, a *app, workload string, window time.Duration, output string) error {
	q := url.Values{}
	if workload != "" {
		q.Set("workload", workload)
	}
	if window > 0 {
		q.Set("window", window.String())
	}
	var rep policies.DiffReport
	if err := newClient(a).Do(cmd.Context(), "GET", "/v1/diff", q, nil, &rep); err != nil {
		return fmt.Errorf("policy diff: %w", err)
	}
	w := cmd.OutOrStdout()
	if output == "json" {
		return printJSON(w, rep)
	}
	fmt.Fprintf(w, "rules the proposal would add: %d\n", len(rep.Added))
	for _, r := range rep.Added {
		fmt.Fprintf(w, "  + %v\n", r)
	}
	fmt.Fprintf(w, "active rules unused in the window: %d\n", len(rep.Unused))
	for _, r := range rep.Unused {
		fmt.Fprintf(w, "  ? %v\n", r)
	}
	fmt.Fprintf(w, "observed flows the active policies deny or would deny: %d\n", len(rep.Denied))
	for _, d := range rep.Denied {
		fmt.Fprintf(w, "  ! %-10s %s  (%d flows; %s)\n", d.Action, d.Edge, d.Flows, d.Reason)
	}
	if len(rep.Forbidden) > 0 {
		fmt.Fprintf(w, "observed flows an Admin ClusterNetworkPolicy rule denies (never proposed): %d\n", len(rep.Forbidden))
		for _, f := range rep.Forbidden {
			fmt.Fprintf(w, "  x %s\n", f)
		}
	}
	if len(rep.Shadowed) > 0 {
		fmt.Fprintf(w, "rules shadowed by an Admin ClusterNetworkPolicy rule (decided before them): %d\n", len(rep.Shadowed))
		for _, sh := range rep.Shadowed {
			fmt.Fprintf(w, "  ~ %s\n", sh)
		}
	}
	printCoverage(w, rep.Coverage, window)
	return nil
}

// explainFromAgent asks the agent to evaluate one connection.
func explainFromAgent(cmd *cobra.Command, a *app, from, to, port, output string) error {
	var v policies.Evaluation
	q := url.Values{"from": {from}, "to": {to}, "port": {port}}
	if err := newClient(a).Do(cmd.Context(), "GET", "/v1/explain", q, nil, &v); err != nil {
		return fmt.Errorf("policy explain: %w", err)
	}
	if output == "json" {
		return printJSON(cmd.OutOrStdout(), v)
	}
	if v.Err != "" {
		return fmt.Errorf("policy explain: %s", v.Err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s %s: %s\n  %s\n", from, to, port, v.Action, strings.ReplaceAll(v.Reason(), "; ", "\n  "))
	if t := v.DecidedByCluster(); t != "" {
		fmt.Fprintf(cmd.OutOrStdout(), "  decided in the %s tier of ClusterNetworkPolicies\n", t)
	}
	return nil
}

// agentWorld fetches the agent's world and active policies as a case state
// (pods named "<workload>-<n>").
func agentWorld(a *app) (*policies.CaseState, error) {
	var w controller.AgentWorld
	if err := newClient(a).Do(context.Background(), "GET", "/v1/world", nil, nil, &w); err != nil {
		return nil, fmt.Errorf("no --world or --case given, and the agent's world: %w", err)
	}
	c := &policies.Case{Name: "agent", Namespaces: w.Namespaces, Nodes: w.Nodes, Pods: w.Pods}
	for i := range w.NanoSegments {
		c.Policies = append(c.Policies, policies.Object{NanoSegment: &w.NanoSegments[i]})
	}
	for i := range w.NetworkPolicies {
		c.Policies = append(c.Policies, policies.Object{NetworkPolicy: &w.NetworkPolicies[i]})
	}
	for i := range w.ClusterNetworkPolicies {
		c.Policies = append(c.Policies, policies.Object{ClusterNetworkPolicy: &w.ClusterNetworkPolicies[i]})
	}
	return c.NewCaseState()
}
