package main

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/graph"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// policyFailed is returned when a check finds mismatches: exit code 1, the
// details already printed.
type policyFailed struct{ msg string }

func (e policyFailed) Error() string { return e.msg }
func (policyFailed) ExitCode() int   { return 1 }

func newPolicyCmd(a *app) *cobra.Command {
	_ = a
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, explain, infer, import and export policies (NanoSegments, NetworkPolicies; check, explain and matrix also ClusterNetworkPolicies)",
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyExplainCmd(a), newPolicyMatrixCmd(a), newPolicyProposeCmd(a),
		newPolicyDiffCmd(a), newPolicyImportCmd(), newPolicyExportCmd())
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check CASE.yaml...",
		Short: "Run verdict case files and print every mismatch; exit 1 on any",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			failed := 0
			for _, f := range args {
				c, err := policies.LoadCase(f)
				if err != nil {
					fmt.Fprintf(out, "FAIL %s: %v\n", f, notACase(f, err))
					failed++
					continue
				}
				ms, err := c.Run()
				for _, m := range ms {
					fmt.Fprintf(out, "FAIL %s: %s\n", f, m)
				}
				if err != nil {
					fmt.Fprintf(out, "FAIL %s: %v\n", f, err)
				}
				if err != nil || len(ms) > 0 {
					failed++
					continue
				}
				fmt.Fprintf(out, "ok   %s (%s)\n", f, c.Name)
			}
			if failed > 0 {
				return policyFailed{fmt.Sprintf("%d of %d case files failed", failed, len(args))}
			}
			return nil
		},
	}
}

// notACase returns err, the error of loading file as a verdict case, or,
// when file holds policy manifests (documents with apiVersion and kind,
// such as a bare ClusterNetworkPolicy) rather than a case, an error that
// says so, names them (or their validation errors) and what to run
// instead: a case needs a world and connections to check verdicts of.
func notACase(file string, err error) error {
	data, rerr := os.ReadFile(file)
	if rerr != nil {
		return err
	}
	var head map[string]any
	if sigsyaml.Unmarshal(data, &head) != nil || head["apiVersion"] == nil || head["kind"] == nil {
		return err
	}
	const what = "a verdict case needs name, namespaces, pods, policies and connections (policies/testdata/cases); " +
		"to evaluate policy files use policy explain or matrix with --world FILE or --case FILE and --policies " + "%s"
	objs, perr := policies.ParseObjects(file, data)
	if perr != nil {
		return fmt.Errorf("holds policy manifests, not a verdict case, and they are invalid: %w; "+what, perr, file)
	}
	refs := make([]string, len(objs))
	for i, o := range objs {
		refs[i] = o.Ref().String()
	}
	return fmt.Errorf("holds policy manifests (%s), not a verdict case: "+what, strings.Join(refs, ", "), file)
}

// readPolicySet reads the policy files (YAML, as readObjects) and returns
// them as one set, in the order given; errors name the file or the object.
func readPolicySet(files []string) (policies.PolicySet, error) {
	var all []policies.Object
	for _, f := range files {
		objs, err := readObjects(f)
		if err != nil {
			return policies.PolicySet{}, err
		}
		all = append(all, objs...)
	}
	return policies.NewObjectSet(all)
}

// worldFlags are the flags that say where the world and policies come from.
type worldFlags struct {
	world    string
	caseFile string
	policies []string
	// agent, when set, is asked for its world and active policies when
	// neither --world nor --case is given.
	agent *app
}

func (f *worldFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.world, "world", "", "world file: namespaces, pods and optional policies (case-file format)")
	cmd.Flags().StringVar(&f.caseFile, "case", "", "case file: its world and initial policies")
	cmd.Flags().StringArrayVar(&f.policies, "policies", nil, "YAML file of NetworkPolicies, NanoSegments and ClusterNetworkPolicies (repeatable); each replaces the world's or case's policy of the same kind, namespace and name")
}

func (f *worldFlags) load() (*policies.CaseState, policies.PolicySet, error) {
	var st *policies.CaseState
	var err error
	switch {
	case f.world != "" && f.caseFile != "":
		return nil, policies.PolicySet{}, errors.New("give --world or --case, not both")
	case f.world != "":
		st, err = policies.LoadWorld(f.world)
	case f.caseFile != "":
		var c *policies.Case
		if c, err = policies.LoadCase(f.caseFile); err == nil {
			st, err = c.NewCaseState()
		}
	case f.agent != nil:
		st, err = agentWorld(f.agent)
	default:
		return nil, policies.PolicySet{}, errors.New("need --world FILE or --case FILE")
	}
	if err != nil {
		return nil, policies.PolicySet{}, err
	}
	// The files' objects replace the world's (or the case's) of the same
	// kind, namespace and name: a preview of changed policies. Within the
	// files one object is given once.
	from := map[string]string{}
	for _, pf := range f.policies {
		objs, err := readObjects(pf)
		if err != nil {
			return nil, policies.PolicySet{}, err
		}
		for _, o := range objs {
			ref := o.Ref().String()
			if prev, ok := from[ref]; ok {
				return nil, policies.PolicySet{}, fmt.Errorf("--policies %s: %s is also in %s: give each policy once", pf, ref, prev)
			}
			from[ref] = pf
			st.Policies[ref] = o
		}
	}
	set, err := st.Set()
	return st, set, err
}

func readObjects(file string) ([]policies.Object, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	return policies.ParseObjects(file, data)
}

// parsePortProto parses "5432/TCP" (protocol defaults to TCP).
func parsePortProto(s string) (int32, model.Protocol, error) {
	num, proto, _ := strings.Cut(s, "/")
	n, err := strconv.ParseInt(num, 10, 32)
	if err != nil {
		return 0, "", fmt.Errorf("parse port %q: want PORT[/TCP|UDP|SCTP|ICMP]", s)
	}
	p := model.Protocol(strings.ToUpper(proto))
	switch p {
	case "":
		p = model.ProtocolTCP
	case model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP, model.ProtocolICMP:
	default:
		return 0, "", fmt.Errorf("parse port %q: unknown protocol %q", s, proto)
	}
	// ICMP has no port (0); the others' ports are 1 to 65535.
	if n < 0 || n > 65535 || (n == 0 && p != model.ProtocolICMP) {
		return 0, "", fmt.Errorf("parse port %q: port %d is not from 1 to 65535", s, n)
	}
	return int32(n), p, nil
}

func newPolicyExplainCmd(a *app) *cobra.Command {
	wf := worldFlags{agent: a}
	var from, to, port, output string
	cmd := &cobra.Command{
		Use:   "explain --from NS/POD|IP --to NS/POD|IP --port PORT/PROTO [--world FILE|--case FILE] [--policies FILE...]",
		Short: "Say whether one connection is allowed, and which policy and rule decided",
		Long: `Say whether one connection is allowed, and which policy and rule decided.
With --world or --case it evaluates files; without, it asks the running agent
about its inventory and active policies (--from and --to may then also be
workloads such as shop/api). --policies without --world or --case
evaluates the files' policies in the agent's world (its namespaces, pods
and nodes), next to its policies in force: each replaces the one of the
same kind, namespace and name (a preview; nothing is applied).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromAgent := wf.world == "" && wf.caseFile == ""
			if fromAgent && len(wf.policies) == 0 {
				return explainFromAgent(cmd, a, from, to, port, output)
			}
			st, set, err := wf.load()
			if err != nil {
				return err
			}
			if fromAgent {
				// The agent's world names pods "<workload>-<n>": a
				// workload is its first pod, as the agent explains.
				from, to = agentPod(st, from), agentPod(st, to)
				fmt.Fprintf(cmd.ErrOrStderr(), "note: evaluated in the agent's world with its policies in force and those of %s in place of the same kind, namespace and name (nothing applied)\n",
					strings.Join(wf.policies, ", "))
			}
			f, err := policies.ParseConnEnd(from)
			if err != nil {
				return err
			}
			t, err := policies.ParseConnEnd(to)
			if err != nil {
				return err
			}
			n, proto, err := parsePortProto(port)
			if err != nil {
				return err
			}
			v := policies.Evaluate(st.World, set, policies.Connection{From: f, To: t, Protocol: proto, Port: n})
			out := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(out, v)
			}
			fmt.Fprintf(out, "%s: %s\n  %s\n", v.Connection, v.Action, strings.ReplaceAll(v.Reason(), "; ", "\n  "))
			if t := v.DecidedByCluster(); t != "" {
				fmt.Fprintf(out, "  decided in the %s tier of ClusterNetworkPolicies\n", t)
			}
			printWarnings(cmd, st, set)
			if v.Err != "" {
				return errors.New(v.Err)
			}
			return nil
		},
	}
	wf.add(cmd)
	cmd.Flags().StringVar(&from, "from", "", "source: namespace/pod or an address")
	cmd.Flags().StringVar(&to, "to", "", "destination: namespace/pod or an address")
	cmd.Flags().StringVar(&port, "port", "", "destination port and protocol, such as 5432/TCP")
	outputFlag(cmd, &output, "text", "text", "json")
	for _, f := range []string{"from", "to", "port"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

// agentPod returns ref, or, when ref is a workload "namespace/workload"
// of the agent's world (agentWorld: pods "<workload>-<n>") and no pod of
// that name, its first pod.
func agentPod(st *policies.CaseState, ref string) string {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok {
		return ref
	}
	if _, ok := st.World.Pod(ns, name); ok {
		return ref
	}
	if _, ok := st.World.Pod(ns, name+"-0"); ok {
		return ref + "-0"
	}
	return ref
}

// printWarnings prints, on stderr, the policies that select no pod and
// the ClusterNetworkPolicies whose order is undefined upstream.
func printWarnings(cmd *cobra.Command, st *policies.CaseState, set policies.PolicySet) {
	for _, w := range append(policies.SelectsNothing(st.World, set), policies.SamePriority(st.World, set)...) {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
	}
}

type matrixCell struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	Action   string `json:"action"`
	Reason   string `json:"reason"`
	// Tier is Admin or Baseline when a ClusterNetworkPolicy rule decided
	// the cell (policies.Evaluation.DecidedByCluster).
	Tier string `json:"tier,omitempty"`
}

// tierMarks are the table's markers of cells a ClusterNetworkPolicy rule
// decided.
var tierMarks = map[string]string{policies.TierAdmin: "*", policies.TierBaseline: "+"}

func newPolicyMatrixCmd(a *app) *cobra.Command {
	wf := worldFlags{agent: a}
	var ports []string
	var output string
	cmd := &cobra.Command{
		Use:   "matrix [--world FILE|--case FILE] [--policies FILE...] [--ports 80/TCP,53/UDP]",
		Short: "Print the truth table of a world: pods × pods × ports, as a table, CSV or JSON; cells an Admin or Baseline ClusterNetworkPolicy rule decided are marked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, set, err := wf.load()
			if err != nil {
				return err
			}
			pods := st.World.Pods()
			var cells []matrixCell
			for _, pp := range ports {
				n, proto, err := parsePortProto(pp)
				if err != nil {
					return err
				}
				for _, f := range pods {
					for _, t := range pods {
						v := policies.Evaluate(st.World, set, policies.Connection{From: policies.ConnEnd{Pod: f.Key()}, To: policies.ConnEnd{Pod: t.Key()}, Protocol: proto, Port: n})
						cells = append(cells, matrixCell{f.Key(), t.Key(), n, string(proto), string(v.Action), v.Reason(), v.DecidedByCluster()})
					}
				}
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				return writeJSON(out, cells)
			case "csv":
				w := csv.NewWriter(out)
				_ = w.Write([]string{"from", "to", "port", "protocol", "action", "reason", "tier"})
				for _, c := range cells {
					_ = w.Write([]string{c.From, c.To, strconv.Itoa(int(c.Port)), c.Protocol, c.Action, c.Reason, c.Tier})
				}
				w.Flush()
				return w.Error()
			case "table":
				i := 0
				tiers := len(set.ClusterPolicies()) > 0
				for _, pp := range ports {
					legend := "A allow, . deny, a audit-deny"
					if tiers {
						legend += "; * decided by an Admin ClusterNetworkPolicy rule, + by a Baseline one"
					}
					fmt.Fprintf(out, "port %s (rows: from, columns: to; %s)\n", pp, legend)
					tw := tabwriter.NewWriter(out, 0, 0, 1, ' ', 0)
					fmt.Fprint(tw, "\t")
					for _, t := range pods {
						fmt.Fprintf(tw, "%s\t", t.Key())
					}
					fmt.Fprintln(tw)
					for _, f := range pods {
						fmt.Fprintf(tw, "%s\t", f.Key())
						for range pods {
							mark := map[string]string{"allow": "A", "deny": ".", "audit-deny": "a"}[cells[i].Action]
							if tiers {
								mark += cmp.Or(tierMarks[cells[i].Tier], " ")
							}
							fmt.Fprintf(tw, "%s\t", mark)
							i++
						}
						fmt.Fprintln(tw)
					}
					if err := tw.Flush(); err != nil {
						return err
					}
				}
				return nil
			}
			return fmt.Errorf("unknown output %q: want table, csv or json", output)
		},
	}
	wf.add(cmd)
	cmd.Flags().StringSliceVar(&ports, "ports", []string{"80/TCP"}, "ports to tabulate, PORT/PROTO")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, csv or json")
	return cmd
}

// readEdges reads edges for inference: edges as nanoseg writes them
// (`observe --edges -o json`, the agent's /v1/edges; see graph.DecodeEdges).
func readEdges(file string) ([]model.Edge, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read edges: %w", err)
	}
	edges, err := graph.DecodeEdges(data)
	if err != nil {
		return nil, fmt.Errorf("parse edges %s: %w", file, err)
	}
	return edges, nil
}

func newPolicyProposeCmd(a *app) *cobra.Command {
	var edgesFile, identitiesFile, outDir string
	var active []string
	var window time.Duration
	var includeDenied bool
	cmd := &cobra.Command{
		Use:   "propose [--edges FILE [--identities FILE]] [--window D] [--out DIR]",
		Short: "Infer one NanoSegment per workload identity from observed edges",
		Long: `Infer one NanoSegment per workload identity from observed edges.
Without --edges it asks the running agent, which proposes from the edges of
--window and stores each changed proposal as a new revision (review it with
` + "`policy show`" + `, compare with ` + "`policy diff`" + `, activate with ` + "`promote`" + `); --out writes
one YAML file per workload. The agent leaves out an edge that was denied or
audit-denied within --window and that the policies in force now still deny
or audit-deny, and says which revision denied it and when (--include-denied
keeps it); denials older than the window, or under a policy no longer in
force, leave nothing out. An edge whose every connection failed (refused
with a reset, or never answered: a closed port, a scan) is never proposed;
the report lists it with the reason, offline too. Beside the proposals the
agent prints a coverage report: per workload how long it was observed of
the window asked, its flows, failed flows, peers, server ports and when
its newest peer appeared, and names the workloads that were silent (no
proposal, and promote to enforce refuses while they are). An edge a Deny rule
of the Admin tier of the ClusterNetworkPolicies in force decides is never
proposed (no nanosegment can allow it), --include-denied or not: the report
names the rule. With --edges it works offline on an edges file and prints
YAML (with --policies, the edges an Admin Deny in those files forbids are
left out and listed on stderr).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window < 0 {
				return fmt.Errorf("policy propose: --window: %s must not be negative", window)
			}
			if edgesFile == "" {
				return proposeFromAgent(cmd, a, window, includeDenied, outDir)
			}
			edges, err := readEdges(edgesFile)
			if err != nil {
				return err
			}
			var ids []model.Identity
			if identitiesFile != "" {
				data, err := os.ReadFile(identitiesFile)
				if err != nil {
					return fmt.Errorf("read identities: %w", err)
				}
				if err := json.Unmarshal(data, &ids); err != nil {
					return fmt.Errorf("parse identities %s: %w", identitiesFile, err)
				}
			}
			_, failed := controller.LeaveOutFailed(edges)
			for _, f := range failed {
				fmt.Fprintf(cmd.ErrOrStderr(), "left out: %s\n", f)
			}
			if len(active) > 0 {
				set, err := readPolicySet(active)
				if err != nil {
					return fmt.Errorf("policy propose: --policies: %w", err)
				}
				var forbidden []policies.ForbiddenEdge
				edges, forbidden = policies.LeaveOutForbidden(edges, set)
				for _, f := range forbidden {
					fmt.Fprintf(cmd.ErrOrStderr(), "left out: %s\n", f)
				}
			}
			// All edges: the proposer never learns the failed ones, and
			// no port range spans their ports.
			segs := policies.Propose(edges, ids)
			objs := make([]any, len(segs))
			for i := range segs {
				objs[i] = segs[i]
			}
			return writeYAMLStream(cmd.OutOrStdout(), objs)
		},
	}
	cmd.Flags().StringVar(&edgesFile, "edges", "", "edges file: edges as observe --edges -o json or /v1/edges write them, JSON or JSON lines (offline; default: ask the agent)")
	cmd.Flags().StringVar(&identitiesFile, "identities", "", "JSON array of every known identity {namespace, workload, labels}")
	cmd.Flags().StringArrayVar(&active, "policies", nil, "offline: YAML of the policies in force (repeatable); edges an Admin ClusterNetworkPolicy Deny forbids are left out and listed on stderr")
	cmd.Flags().DurationVar(&window, "window", 0, "agent: propose from edges last seen within this window (default: all)")
	cmd.Flags().StringVar(&outDir, "out", "", "agent: also write one YAML file per workload into this directory")
	cmd.Flags().BoolVar(&includeDenied, "include-denied", false, "agent: also propose edges denied in the window that the policies in force still deny or audit-deny")
	return cmd
}

func newPolicyDiffCmd(a *app) *cobra.Command {
	var edgesFile, proposal, workload, output string
	var active []string
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "diff [--workload W] [--window D] | diff --edges FILE --proposal FILE --policies FILE...",
		Short: "Compare a proposal with the active policies: rules added, rules unused, flows denied",
		Long: `Compare a proposal with the active policies over observed edges: proposal
rules that would be added, active rules unused in the window, and flows of the
window that the active policies deny or (in audit mode) would deny: what
enforcing would break. Without --edges it asks the running agent (the latest
revision of each workload against what is active).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window < 0 {
				return fmt.Errorf("policy diff: --window: %s must not be negative", window)
			}
			// Each form's flags are refused in the other, not ignored.
			offline, agent := []string{"policies", "proposal"}, []string{"workload", "window"}
			if edgesFile == "" {
				for _, f := range offline {
					if cmd.Flags().Changed(f) {
						return fmt.Errorf("policy diff: --%s is for the offline diff (with --edges FILE); against the agent the latest revisions are compared with the policies in force", f)
					}
				}
				return diffFromAgent(cmd, a, workload, window, output)
			}
			for _, f := range agent {
				if cmd.Flags().Changed(f) {
					return fmt.Errorf("policy diff: --%s is for the diff against the agent (without --edges); the offline diff reads every edge of --edges", f)
				}
			}
			edges, err := readEdges(edgesFile)
			if err != nil {
				return err
			}
			var prop []v1alpha1.NanoSegment
			if proposal != "" {
				objs, err := readObjects(proposal)
				if err != nil {
					return err
				}
				_, prop = policies.SplitObjects(objs)
			}
			set, err := readPolicySet(active)
			if err != nil {
				return err
			}
			rep, err := policies.Diff(prop, set, edges)
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), rep)
		},
	}
	cmd.Flags().StringVar(&edgesFile, "edges", "", "edges file: edges as observe --edges -o json or /v1/edges write them, JSON or JSON lines (offline; default: ask the agent)")
	cmd.Flags().StringVar(&proposal, "proposal", "", "YAML of proposed NanoSegments")
	cmd.Flags().StringArrayVar(&active, "policies", nil, "YAML of the active policies (repeatable)")
	cmd.Flags().StringVar(&workload, "workload", "", "agent: only this workload (namespace/workload)")
	cmd.Flags().DurationVar(&window, "window", 0, "agent: edges last seen within this window (default: all)")
	outputFlag(cmd, &output, "text", "text", "json")
	return cmd
}

func newPolicyImportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE...",
		Short: "Convert NetworkPolicy YAML into NanoSegments in observe mode (YAML on stdout); promotions decide their mode",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []any
			for _, f := range args {
				objs, err := readObjects(f)
				if err != nil {
					return err
				}
				for _, o := range objs {
					if o.ClusterNetworkPolicy != nil {
						return fmt.Errorf("policy import: %s: ClusterNetworkPolicy %s: only NetworkPolicies convert into NanoSegments", f, o.Key())
					}
					if o.NetworkPolicy == nil {
						out = append(out, o.NanoSegment)
						continue
					}
					s, err := policies.ImportNetworkPolicy(o.NetworkPolicy)
					if err != nil {
						return err
					}
					out = append(out, s)
				}
			}
			return writeYAMLStream(cmd.OutOrStdout(), out)
		},
	}
}

func newPolicyExportCmd() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "export FILE... [--to networkpolicy|cilium|clusternetworkpolicy|cilium-clusterwide]",
		Short: "Convert NanoSegments (and NetworkPolicies) into NetworkPolicy, CiliumNetworkPolicy, ClusterNetworkPolicy or CiliumClusterwideNetworkPolicy YAML; what cannot be expressed is reported on stderr",
		Long: `Convert NanoSegments (and NetworkPolicies, read as the nanosegments they
import as) into another policy language; every difference is reported on
stderr as "warning: POLICY: FIELD: DETAIL", nothing is dropped silently.

--to clusternetworkpolicy writes Baseline-tier ClusterNetworkPolicies
(policy.networking.k8s.io/v1alpha2): per policy "<namespace>.<name>" with one
Accept rule per allow rule (priority 500) and "<namespace>.<name>.isolate"
with a Deny for each isolated direction (priority 501), so the allows of
several policies selecting one pod still add up. Baseline, because it is
consulted exactly where no NetworkPolicy isolates the pod, as a namespace
owner's default; it never overrides NetworkPolicies as the Admin tier would.
ClusterNetworkPolicies in the input are written back as they are (export of
what ` + "`policy show clusternetworkpolicy`" + ` printed, applied again, changes nothing);
they have no faithful form in the other languages (tiers, priorities, Deny
and Pass), so the other targets refuse them.

--to cilium-clusterwide writes CiliumClusterwideNetworkPolicies (cilium.io/v2):
the CiliumNetworkPolicy export, cluster-scoped, named "<namespace>.<name>".`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch to {
			case "networkpolicy", "cilium", "clusternetworkpolicy", "cilium-clusterwide":
			default:
				return fmt.Errorf("policy export: --to: unknown target %q: want networkpolicy, cilium, clusternetworkpolicy or cilium-clusterwide", to)
			}
			var out []any
			var probs []policies.Problem
			for _, f := range args {
				objs, err := readObjects(f)
				if err != nil {
					return err
				}
				for _, o := range objs {
					if c := o.ClusterNetworkPolicy; c != nil {
						if to != "clusternetworkpolicy" {
							return fmt.Errorf("policy export: %s: ClusterNetworkPolicy %s: --to %s cannot express a ClusterNetworkPolicy (tiers, priorities, Deny and Pass rules); --to clusternetworkpolicy writes it back as it is", f, o.Key(), to)
						}
						if _, err := policies.CompileClusterNetworkPolicy(c); err != nil {
							return fmt.Errorf("policy export: %s: %w", f, err)
						}
						c = c.DeepCopy()
						c.APIVersion, c.Kind = cnpv1alpha2.SchemeGroupVersion.String(), cnpv1alpha2.Kind
						out = append(out, c)
						continue
					}
					s := o.NanoSegment
					if s == nil {
						if s, err = policies.ImportNetworkPolicy(o.NetworkPolicy); err != nil {
							return err
						}
						s.Spec.Mode = model.ModeEnforce // a NetworkPolicy enforces
					}
					switch to {
					case "networkpolicy":
						np, p := policies.ExportNetworkPolicy(s)
						out, probs = append(out, np), append(probs, p...)
					case "cilium":
						c, p := policies.ExportCilium(s)
						out, probs = append(out, c), append(probs, p...)
					case "cilium-clusterwide":
						c, p := policies.ExportCiliumClusterwide(s)
						out, probs = append(out, c), append(probs, p...)
					case "clusternetworkpolicy":
						cs, p := policies.ExportClusterNetworkPolicy(s)
						for _, c := range cs {
							out = append(out, c)
						}
						probs = append(probs, p...)
					}
				}
			}
			for _, p := range probs {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", p)
			}
			return writeYAMLStream(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().StringVar(&to, "to", "networkpolicy", "networkpolicy, cilium, clusternetworkpolicy or cilium-clusterwide")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return nil
}

func writeYAMLStream(w io.Writer, objs []any) error {
	for i, o := range objs {
		b, err := sigsyaml.Marshal(o)
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}
