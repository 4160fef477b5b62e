package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nanoseg/nanoseg/graph"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// edgeSource fetches the observed edges of the window [since, until] (zero:
// unbounded) from a running agent, when no --edges file is given. It is the
// hook for the agent's API (wired in agent_cmds.go); while it is nil,
// `nanoseg graph` needs --edges. A *net.OpError in its error chain means
// the agent was not reachable.
var edgeSource func(ctx context.Context, a *app, since, until time.Time) ([]model.Edge, error)

// coverageSource fetches every workload's coverage since since (zero:
// everything), for the nodes of a graph drawn from the agent's edges.
var coverageSource func(ctx context.Context, a *app, since time.Time) ([]model.Coverage, error)

// worldSource fetches the agent's world and policies in force, to mark
// the edges a ClusterNetworkPolicy rule decides (wired in agent_cmds.go).
var worldSource func(ctx context.Context, a *app) (*policies.CaseState, error)

// errNoEdgeSource is returned when neither --edges nor an agent is available.
var errNoEdgeSource = errors.New("no --edges file given and no agent reachable")

type graphOptions struct {
	edgesFile  string
	output     string
	outFile    string
	namespaces []string
	workloads  []string
	verdict    string
	since      string
	until      string
	world      worldFlags
}

func newGraphCmd(a *app) *cobra.Command {
	var o graphOptions
	cmd := &cobra.Command{
		Use:   "graph [--edges FILE] [-o json|dot|graphml|mermaid|html] [--out FILE]",
		Short: "Export the communication graph as JSON, DOT, GraphML, Mermaid or an HTML page",
		Long: `graph exports the communication graph: nodes for workloads and external
peers, edges labelled with protocol/port, flow and byte counts, first and last
seen, and verdict counts. When any flow of an edge was denied or audit-denied,
its label splits the flows: "TCP/5432 · 616 flows (614 allowed, 2 denied)";
the DOT and Mermaid drawings colour an edge by the verdict of most of its
flows (red: mostly denied, orange dashed: mostly audit-denied), and the HTML
page (the agent's web page with the graph embedded, one file that loads
nothing) colours it by that verdict with a band of each verdict's share, so a
path that works but was denied twice is not drawn as a denied path.

An edge whose connections a ClusterNetworkPolicy rule decides under the
policies in force carries that rule (tier, policy, priority, rule, action):
"decidedBy" in JSON, edge data in GraphML, and in DOT the mark of
` + "`policy matrix`" + ` ("*" Admin, "+" Baseline) with the rule in its label plus tier,
policy, rule and action attributes. The policies are the agent's when the
edges come from it, or those of --world/--case/--policies.

The edges come from --edges FILE: observer edges as a JSON array, as JSON lines
(one edge per line), or as the windows that "nanoseg observe --edges -o json"
prints ({"start":…,"end":…,"edges":[…]} per line); "-" reads standard input.

Filters combine: --namespace and --workload keep an edge when either end
matches (both flags repeat), --verdict keeps edges with at least one flow of
that verdict, --since keeps edges seen in the last DURATION (or since an
RFC 3339 time).

The output format is -o, else taken from the --out file's extension
(.json, .dot, .graphml, .mmd, .html), else JSON.`,
		Example: `  nanoseg graph --edges edges.json -o html --out graph.html
  nanoseg graph --edges edges.jsonl --namespace shop --verdict deny -o dot | dot -Tsvg > denied.svg
  nanoseg observe --lab shop --edges -o json --count 1 | nanoseg graph --edges - -o mermaid`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGraph(cmd, a, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.edgesFile, "edges", "", "file of observed edges (JSON array or JSON lines; - for standard input)")
	f.StringVarP(&o.output, "output", "o", "", "output format: json, dot, graphml, mermaid, html (default from --out, else json)")
	f.StringVar(&o.outFile, "out", "", "write to this file instead of standard output")
	f.StringArrayVarP(&o.namespaces, "namespace", "n", nil, "keep edges with a workload in this namespace at either end (repeatable; in cluster mode the cluster is read whole and the graph kept to these)")
	f.StringArrayVar(&o.workloads, "workload", nil, "keep edges with this workload, NAMESPACE/NAME, at either end (repeatable)")
	f.StringVar(&o.verdict, "verdict", "", "keep edges with a flow of this verdict: observed, allow, audit-deny, deny")
	f.StringVar(&o.since, "since", "", "keep edges seen in the last DURATION (e.g. 15m) or since an RFC 3339 time")
	f.StringVar(&o.until, "until", "", "keep edges first seen before DURATION ago or an RFC 3339 time")
	o.world.add(cmd)
	return cmd
}

func runGraph(cmd *cobra.Command, a *app, o graphOptions) error {
	now := time.Now().UTC().Truncate(time.Second)
	filter, err := o.filter(now)
	if err != nil {
		return err
	}
	format, err := o.format()
	if err != nil {
		return err
	}
	var edges []model.Edge
	switch {
	case o.edgesFile != "":
		edges, err = readEdgesFile(o.edgesFile, cmd.InOrStdin())
	case edgeSource != nil:
		edges, err = edgeSource(cmd.Context(), a, filter.Since, filter.Until)
		var opErr *net.OpError
		switch {
		case errors.As(err, &opErr):
			err = fmt.Errorf("%s: %w", errNoEdgeSource, err)
		case err != nil:
			err = fmt.Errorf("fetch edges from the agent: %w", err)
		}
	default:
		err = errNoEdgeSource
	}
	if err != nil {
		return err
	}
	g := graph.Build(edges, filter)
	g.GeneratedAt = now
	if o.edgesFile == "" && coverageSource != nil {
		// Coverage per node; an older agent without it leaves the graph as it was.
		if covs, err := coverageSource(cmd.Context(), a, filter.Since); err == nil {
			g.AddCoverage(covs)
		} else if a.log != nil {
			a.log.Debug("no coverage from the agent", "err", err)
		}
	}
	if err := markDecisions(cmd.Context(), a, o, g); err != nil {
		return err
	}
	if a.log != nil {
		a.log.Debug("graph built", "edgesIn", len(edges), "nodes", len(g.Nodes), "edges", len(g.Edges), "format", format)
	}
	if o.outFile == "" || o.outFile == "-" {
		return graph.Write(cmd.OutOrStdout(), format, g)
	}
	return writeFileAtomic(o.outFile, func(w io.Writer) error { return graph.Write(w, format, g) })
}

// markDecisions marks the edges of g that a ClusterNetworkPolicy rule
// decides (graph.Link.DecidedBy): under --world/--case/--policies when
// given, else under the agent's world and policies when the edges came
// from the agent (an agent that cannot say leaves the graph unmarked).
func markDecisions(ctx context.Context, a *app, o graphOptions, g *graph.Graph) error {
	var st *policies.CaseState
	var set policies.PolicySet
	var err error
	switch {
	case o.world.world != "" || o.world.caseFile != "" || len(o.world.policies) > 0:
		if st, set, err = o.world.load(); err != nil {
			return fmt.Errorf("graph: %w", err)
		}
	case o.edgesFile == "" && worldSource != nil:
		if st, err = worldSource(ctx, a); err != nil {
			if a.log != nil {
				a.log.Debug("no world from the agent; edges not marked", "err", err)
			}
			return nil
		}
		if set, err = st.Set(); err != nil {
			return fmt.Errorf("graph: the agent's policies: %w", err)
		}
	default:
		return nil
	}
	if len(set.ClusterPolicies()) == 0 {
		return nil
	}
	g.MarkDecisions(func(src, dst graph.Node, e graph.Link) *graph.Decision {
		from, ok1 := graphEnd(st.World, src)
		to, ok2 := graphEnd(st.World, dst)
		if !ok1 || !ok2 {
			return nil
		}
		c, ok := policies.EdgeConnection(from, to, e.Protocol, e.Port)
		if !ok {
			return nil
		}
		v := policies.Evaluate(st.World, set, c)
		r := v.DecidingClusterRule()
		if v.Err != "" || r == nil {
			return nil
		}
		return &graph.Decision{Tier: string(r.Tier), Policy: r.Policy.Name, Priority: r.Priority, Rule: r.Rule, Name: r.Name, Action: string(r.Action),
			Audited: v.Egress.AuditedClusterDeny() || v.Ingress.AuditedClusterDeny()}
	})
	return nil
}

// graphEnd returns the connection end that stands for node n in world: a
// workload's pod ("<workload>-0", as the agent names them, else a pod of
// its namespace carrying its labels), or an external peer's address or
// name.
func graphEnd(world *policies.MemWorld, n graph.Node) (policies.ConnEnd, bool) {
	if n.External() {
		if addr, err := netip.ParseAddr(n.Addr); err == nil {
			return policies.ConnEnd{IP: addr, DNSName: n.Name}, true
		}
		return policies.ConnEnd{DNSName: n.Name}, n.Name != ""
	}
	if p, ok := world.Pod(n.Namespace, n.Workload+"-0"); ok {
		return policies.ConnEnd{Pod: p.Key()}, true
	}
	for _, p := range world.Pods() {
		if p.Namespace != n.Namespace || len(n.Labels) == 0 {
			continue
		}
		match := true
		for k, v := range n.Labels {
			if p.Labels[k] != v {
				match = false
				break
			}
		}
		if match {
			return policies.ConnEnd{Pod: p.Key()}, true
		}
	}
	if p, ok := world.Pod(n.Namespace, n.Workload); ok {
		return policies.ConnEnd{Pod: p.Key()}, true
	}
	return policies.ConnEnd{}, false
}

// filter turns the flags into a graph.Filter; durations count back from now.
func (o graphOptions) filter(now time.Time) (graph.Filter, error) {
	var errs []error
	f := graph.Filter{Namespaces: o.namespaces}
	for _, w := range o.workloads {
		ns, name, ok := strings.Cut(w, "/")
		if !ok || ns == "" || name == "" {
			errs = append(errs, fmt.Errorf("parse --workload %q: want NAMESPACE/NAME", w))
			continue
		}
		f.Workloads = append(f.Workloads, w)
	}
	v, err := graph.ParseVerdictFilter(o.verdict)
	if err != nil {
		errs = append(errs, err)
	}
	f.Verdict = v
	if f.Since, err = parseWhen(o.since, now); err != nil {
		errs = append(errs, fmt.Errorf("parse --since: %w", err))
	}
	if f.Until, err = parseWhen(o.until, now); err != nil {
		errs = append(errs, fmt.Errorf("parse --until: %w", err))
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		errs = append(errs, fmt.Errorf("check window: --until %s is before --since %s", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339)))
	}
	return f, errors.Join(errs...)
}

// parseWhen parses a duration back from now ("15m") or an RFC 3339 time;
// "" is the zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("negative duration %q", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (15m, 2h) nor an RFC 3339 time", s)
	}
	return t, nil
}

// format returns -o, else the format of --out's extension, else JSON.
func (o graphOptions) format() (graph.Format, error) {
	if o.output != "" {
		f := graph.Format(strings.ToLower(o.output))
		if f == "mmd" {
			f = graph.FormatMermaid
		}
		for _, known := range graph.Formats {
			if f == known {
				return f, nil
			}
		}
		return "", fmt.Errorf("parse --output %q: %w (want json, dot, graphml, mermaid or html)", o.output, graph.ErrUnknownFormat)
	}
	if f, ok := graph.FormatOf(o.outFile); ok {
		return f, nil
	}
	if ext := filepath.Ext(o.outFile); ext != "" && o.outFile != "-" && !strings.EqualFold(ext, ".json") {
		return "", fmt.Errorf("--out %s: no format for %q; give -o json, dot, graphml, mermaid or html", o.outFile, ext)
	}
	return graph.FormatJSON, nil
}

// readEdgesFile reads observer edges from path ("-": stdin); see
// graph.DecodeEdges for the forms accepted.
func readEdgesFile(path string, stdin io.Reader) ([]model.Edge, error) {
	var r io.Reader = stdin
	name := "standard input"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read edges: %w", err)
		}
		defer f.Close()
		r, name = f, path
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read edges %s: %w", name, err)
	}
	edges, err := graph.DecodeEdges(data)
	if err != nil {
		return nil, fmt.Errorf("read edges %s: %w", name, err)
	}
	return edges, nil
}

// writeFileAtomic writes path through a temporary file in the same folder
// and renames it into place, so a reader never sees half a graph.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	if err := write(bw); err != nil {
		tmp.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}
