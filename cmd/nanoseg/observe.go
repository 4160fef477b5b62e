package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/observer"
)

// observeOptions are the flags of `nanoseg observe`.
type observeOptions struct {
	noVerdictLog bool
	labName      string
	netns        []string
	output       string
	workload     string
	namespace    string
	verdict      string
	port         uint16
	edges        bool
	window       time.Duration
	count        int
	track        bool
}

func newObserveCmd(a *app) *cobra.Command {
	var o observeOptions
	cmd := &cobra.Command{
		Use:   "observe (--lab NAME | --netns NAME...)",
		Short: "Stream the flows of endpoint namespaces, or print their aggregated edges",
		Long: `observe attaches to every endpoint network namespace of a running lab
(--lab), or to the named namespaces (--netns), and reports each connection
from conntrack events, the dataplane's NFLOG verdict log and the DNS answers
the endpoints receive.

Without --edges it streams flow records: one line per record for people, or
one JSON object per line with -o json (the form documented on model.Flow).
With --edges it aggregates flows into edges (source workload, destination
workload or external peer, protocol, destination port) and prints the edges
of each --window as it closes (-o json: one object per window).

A namespace tracks connections only once an nftables rule there uses
conntrack, as the dataplane's table does; --track installs the dataplane's
observe-mode table in endpoints that have no nanoseg table yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runObserve(cmd.Context(), a, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.String("state-dir", "", "directory of the labs' state (default /run/nanoseg/lab)")
	f.StringVar(&o.labName, "lab", "", "observe every workload endpoint of this running lab (its plan is the inventory)")
	f.BoolVar(&o.noVerdictLog, "no-verdict-log", false, "do not read the verdict log (needed while a nanoseg agent reads it)")
	f.StringSliceVar(&o.netns, "netns", nil, "observe these named network namespaces (under /run/netns); with --lab, only these")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.StringVar(&o.workload, "workload", "", "only flows or edges with this workload (or external DNS name) on either side")
	f.StringVarP(&o.namespace, "namespace", "n", "", "only flows or edges with this namespace on either side")
	f.StringVar(&o.verdict, "verdict", "", "only this verdict: observed, allow, audit-deny, deny")
	f.Uint16Var(&o.port, "port", 0, "only this destination port")
	f.BoolVar(&o.edges, "edges", false, "print aggregated edges per window instead of flow records")
	f.DurationVar(&o.window, "window", 30*time.Second, "edge aggregation window (with --edges)")
	f.IntVar(&o.count, "count", 0, "with --edges, stop after this many windows (0: until interrupted)")
	f.BoolVar(&o.track, "track", false, "install the dataplane's observe-mode table where none exists, so conntrack tracks connections")
	return cmd
}

// labInventory adapts a lab plan to observer.Inventory: workload replicas
// are identities (noise labels removed); externals are not, so that they
// are named by the DNS answers their clients receive.
type labInventory map[netip.Addr]model.Identity

func newLabInventory(p *lab.Plan) labInventory {
	inv := labInventory{}
	for _, e := range p.Endpoints {
		if e.External {
			continue
		}
		id := model.Identity{Namespace: e.Namespace, Workload: e.Workload, Labels: model.IdentityLabels(e.Labels)}
		for _, a := range []netip.Addr{e.IPv4, e.IPv6} {
			if a.IsValid() {
				inv[a.Unmap()] = id
			}
		}
	}
	return inv
}

// Lookup implements observer.Inventory.
func (l labInventory) Lookup(a netip.Addr) (model.Identity, bool) {
	id, ok := l[a.Unmap()]
	return id, ok
}

func runObserve(ctx context.Context, a *app, o observeOptions, w io.Writer) error {
	if o.labName == "" && len(o.netns) == 0 {
		return errors.New("observe: --lab or --netns is required")
	}
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("observe: --output %q is not text or json", o.output)
	}
	if o.verdict != "" {
		v, err := model.ParseVerdict(o.verdict)
		if err != nil {
			return fmt.Errorf("observe: --verdict: %w", err)
		}
		o.verdict = string(v)
	}
	if o.edges && o.window <= 0 {
		return fmt.Errorf("observe: --window %v must be positive", o.window)
	}
	log := a.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var inv observer.Inventory
	var eps []model.Endpoint
	only := map[string]bool{}
	for _, n := range o.netns {
		only[n] = true
	}
	if o.labName != "" {
		p, err := lab.LoadPlan(a.cfg.Lab, o.labName)
		if err != nil {
			return fmt.Errorf("observe: %w", err)
		}
		inv = newLabInventory(p)
		for _, e := range p.Endpoints {
			if e.External || (len(only) > 0 && !only[e.Netns]) {
				continue
			}
			delete(only, e.Netns)
			eps = append(eps, model.Endpoint{Netns: e.Netns, Path: nsenter.Path(e.Netns)})
		}
		if len(only) > 0 {
			return fmt.Errorf("observe: lab %s has no workload endpoint netns %v", o.labName, keys(only))
		}
	} else {
		for _, n := range o.netns {
			eps = append(eps, model.Endpoint{Netns: n, Path: nsenter.Path(n)})
		}
	}
	if len(eps) == 0 {
		return errors.New("observe: no endpoints to observe")
	}
	dp := dataplane.New(log)
	for _, e := range eps {
		st, err := dp.Read(e.Path)
		if err != nil && !o.track {
			log.Warn("read nanoseg table", "netns", e.Netns, "err", err)
			continue
		}
		if err != nil {
			return fmt.Errorf("observe: %w", err)
		}
		if st.Present {
			continue
		}
		if !o.track {
			log.Warn("no nanoseg table in this netns: conntrack may not track its connections (use --track)", "netns", e.Netns)
		} else {
			name := strings.TrimPrefix(e.Netns, lab.NetnsPrefix)
			if _, err := dp.Apply(e.Path, dataplane.RuleSet{Name: name, Mode: model.ModeObserve}); err != nil {
				return fmt.Errorf("observe: track %s: %w", e.Netns, err)
			}
		}
	}

	names := observer.NewNames(0)
	var agg *observer.Aggregator
	var out sync.Mutex
	enc := json.NewEncoder(w)
	handle := func(f model.Flow) {
		if agg != nil {
			agg.Add(f)
			return
		}
		if !o.matchFlow(f, inv) {
			return
		}
		out.Lock()
		defer out.Unlock()
		if o.output == "json" {
			_ = enc.Encode(&f)
			return
		}
		fmt.Fprintf(w, "%s %s%s\n", f.Start.Local().Format("15:04:05.000"), f.String(), identities(f, inv))
	}
	obs, err := observer.New(observer.Config{DisableVerdictLog: o.noVerdictLog}, eps, handle, names, nil, log)
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	if o.edges {
		agg = observer.NewAggregator(inv, names, obs.Observed)
	}
	log.Info("observing", "endpoints", len(eps), "lab", o.labName, "edges", o.edges, "window", o.window)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- obs.Run(ctx) }()
	if !o.edges {
		return <-errc
	}
	t := time.NewTicker(o.window)
	defer t.Stop()
	start := time.Now()
	for n := 0; o.count == 0 || n < o.count; n++ {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done(): // print the partial window, then stop
		case <-t.C:
		}
		end := time.Now()
		o.printEdges(w, agg.Take(), start, end)
		start = end
		if ctx.Err() != nil {
			break
		}
	}
	cancel()
	return <-errc
}

// matchFlow applies the filters to a flow record.
func (o observeOptions) matchFlow(f model.Flow, inv observer.Inventory) bool {
	if o.verdict != "" && string(f.Verdict) != o.verdict {
		return false
	}
	if o.port != 0 && f.DstPort != o.port {
		return false
	}
	if o.workload == "" && o.namespace == "" {
		return true
	}
	if o.namespace == "" && f.RemoteName == o.workload {
		return true // an external peer, by its DNS name
	}
	if inv == nil {
		return false
	}
	for _, a := range []netip.Addr{f.Src, f.Dst} {
		if id, ok := inv.Lookup(a); ok && (o.workload == "" || id.Workload == o.workload) && (o.namespace == "" || id.Namespace == o.namespace) {
			return true
		}
	}
	return false
}

func (o observeOptions) matchEdge(e model.Edge) bool {
	if o.port != 0 && e.Port != o.port {
		return false
	}
	switch model.Verdict(o.verdict) {
	case model.VerdictObserved:
		if e.Verdicts.Observed == 0 {
			return false
		}
	case model.VerdictAllow:
		if e.Verdicts.Allowed == 0 {
			return false
		}
	case model.VerdictAuditDeny:
		if e.Verdicts.AuditDenied == 0 {
			return false
		}
	case model.VerdictDeny:
		if e.Verdicts.Denied == 0 {
			return false
		}
	}
	if o.workload == "" && o.namespace == "" {
		return true
	}
	for _, p := range []model.Peer{e.Source, e.Destination} {
		if p.External && o.namespace == "" && p.Name == o.workload {
			return true
		}
		if !p.External && (o.workload == "" || p.Workload == o.workload) && (o.namespace == "" || p.Namespace == o.namespace) {
			return true
		}
	}
	return false
}

// edgeWindow is the JSON form of one window of edges.
type edgeWindow struct {
	Start time.Time    `json:"start"`
	End   time.Time    `json:"end"`
	Edges []model.Edge `json:"edges"`
}

func (o observeOptions) printEdges(w io.Writer, all []model.Edge, start, end time.Time) {
	edges := make([]model.Edge, 0, len(all))
	for _, e := range all {
		if o.matchEdge(e) {
			edges = append(edges, e)
		}
	}
	if o.output == "json" {
		_ = json.NewEncoder(w).Encode(edgeWindow{Start: start, End: end, Edges: edges})
		return
	}
	fmt.Fprintf(w, "# edges %s - %s (%d)\n", start.Local().Format("15:04:05"), end.Local().Format("15:04:05"), len(edges))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tPROTO\tPORT\tFLOWS\tBYTES OUT/IN\tVERDICTS\tFIRST\tLAST")
	for _, e := range edges {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d/%d\t%s\t%s\t%s\n", e.Source, e.Destination, e.Protocol, e.Port, e.Flows,
			e.BytesOut, e.BytesIn, verdictString(e.Verdicts), e.FirstSeen.Local().Format("15:04:05"), e.LastSeen.Local().Format("15:04:05"))
	}
	_ = tw.Flush()
}

func verdictString(v model.VerdictCounts) string {
	var parts []string
	for _, w := range model.Verdicts {
		if n := v.Of(w); n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", w, n))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

// identities renders " src=ns/workload dst=ns/workload" for the known ends of f.
func identities(f model.Flow, inv observer.Inventory) string {
	if inv == nil {
		return ""
	}
	s := ""
	if id, ok := inv.Lookup(f.Src); ok {
		s += " src=" + id.Namespace + "/" + id.Workload
	}
	if id, ok := inv.Lookup(f.Dst); ok {
		s += " dst=" + id.Namespace + "/" + id.Workload
	}
	return s
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
