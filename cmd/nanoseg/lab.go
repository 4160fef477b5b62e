package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/nanoseg/nanoseg/lab"
)

func newLabCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "lab", Short: "Run a lab of container-like network namespaces from a topology file"}
	cmd.PersistentFlags().String("state-dir", "", "directory of the labs' state (default /run/nanoseg/lab)")
	cmd.AddCommand(newLabUpCmd(a), newLabStatusCmd(a), newLabDownCmd(a), newLabProbeCmd(a), newLabCheckCmd(a), newLabEdgesCmd(a), newLabEndpointCmd(a), newLabKubeCmd(a))
	return cmd
}

func newLabUpCmd(a *app) *cobra.Command {
	var file string
	var k kubeFlags
	cmd := &cobra.Command{
		Use:   "up -f TOPOLOGY.yaml",
		Short: "Create the lab's namespaces, links, servers, clients and DNS server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("lab up: --file is required")
			}
			res, err := lab.Up(cmd.Context(), a.cfg.Lab, file, lab.UpOptions{Log: a.log})
			if err != nil {
				return fmt.Errorf("lab up: %w", err)
			}
			w := cmd.OutOrStdout()
			if res.AlreadyUp {
				fmt.Fprintf(w, "lab %s is already up (%d endpoint processes restarted)\n", res.Plan.Lab, res.Started)
			} else {
				fmt.Fprintf(w, "lab %s is up: %d endpoints, switch %s\n", res.Plan.Lab, len(res.Plan.Endpoints), res.Plan.Switch)
			}
			printPlan(w, res.Plan)
			if k.enabled {
				if err := registerLab(cmd.Context(), k, res.Plan); err != nil {
					return fmt.Errorf("lab up: register in Kubernetes: %w", err)
				}
				printRegistered(cmd, res.Plan)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "topology file (YAML)")
	k.add(cmd, "also register the lab in a Kubernetes API server as Namespaces, Nodes and Pods (as lab kube register does)")
	return cmd
}

func printPlan(w interface{ Write([]byte) (int, error) }, p *lab.Plan) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tNETNS\tIPV4\tIPV6\tPORTS")
	for _, e := range p.Endpoints {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID(), e.Netns, e.IPv4, e.IPv6, portsString(e.Ports))
	}
	tw.Flush()
}

func portsString(ps []lab.Port) string {
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	return strings.Join(s, ",")
}

// labNames returns name if set, else every lab with state.
func labNames(a *app, name string) ([]string, error) {
	if name != "" {
		return []string{name}, nil
	}
	return a.cfg.Lab.Labs()
}

func newLabStatusCmd(a *app) *cobra.Command {
	var name, output string
	var check bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the lab's endpoints with processes, addresses and live traffic counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names, err := labNames(a, name)
			if err != nil {
				return err
			}
			if len(names) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no lab is up")
				return nil
			}
			all := map[string][]lab.EndpointStatus{}
			for _, n := range names {
				_, sts, err := lab.Status(a.cfg.Lab, n)
				if err != nil {
					return fmt.Errorf("lab status: %w", err)
				}
				all[n] = sts
			}
			if check {
				var silent []string
				for _, n := range names {
					for _, s := range all[n] {
						if s.Problem != "" {
							silent = append(silent, fmt.Sprintf("%s/%s: %s", n, s.Endpoint.ID(), s.Problem))
						}
						if s.Stats == nil {
							continue
						}
						for _, t := range s.Stats.Talks {
							switch {
							case t.OK > 0:
							case t.Attempts == 0:
								silent = append(silent, fmt.Sprintf("%s/%s -> %s:%d/%s: no connection attempted yet", n, s.Endpoint.ID(), t.To, t.Port, t.Protocol))
							default:
								silent = append(silent, fmt.Sprintf("%s/%s -> %s:%d/%s: no successful connection in %d attempts (last error: %s)", n, s.Endpoint.ID(), t.To, t.Port, t.Protocol, t.Attempts, t.LastError))
							}
						}
					}
				}
				if len(silent) > 0 {
					return probeFailed{fmt.Errorf("lab status --check:\n  %s", strings.Join(silent, "\n  "))}
				}
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(all)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LAB\tENDPOINT\tPID\tIPV4\tIPV6\tRX PKTS\tTX PKTS\tSERVED\tTALKS OK/TRIED\tPROBLEM")
			sort.Strings(names)
			for _, n := range names {
				for _, s := range all[n] {
					served, ok, tried := uint64(0), uint64(0), uint64(0)
					if s.Stats != nil {
						for _, sv := range s.Stats.Servers {
							served += sv.Served
						}
						for _, t := range s.Stats.Talks {
							ok += t.OK
							tried += t.Attempts
						}
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d/%d\t%s\n", n, s.Endpoint.ID(), s.PID,
						s.Endpoint.IPv4, s.Endpoint.IPv6, s.RxPackets, s.TxPackets, served, ok, tried, s.Problem)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "lab name (default: every lab that is up)")
	outputFlag(cmd, &output, "table", "table", "json")
	cmd.Flags().BoolVar(&check, "check", false, "exit 1 if an endpoint has no process or a client has had no successful connection")
	return cmd
}

func newLabDownCmd(a *app) *cobra.Command {
	var name string
	var k kubeFlags
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove every namespace, link, process and file of the lab",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.RequireRoot(); err != nil {
				return fmt.Errorf("lab down: %w", err)
			}
			names, err := labNames(a, name)
			if err != nil {
				return err
			}
			// Every lab is taken down whatever fails: the kernel side
			// (namespaces, processes, tables) does not wait for an API
			// server, and what failed is reported after, exit 1.
			var errs []error
			for _, n := range names {
				// Pods leave the API server before their namespaces go.
				if k.enabled {
					if err := unregisterLab(cmd.Context(), k, n); err != nil {
						errs = append(errs, fmt.Errorf("lab down %s: unregister from Kubernetes: %w", n, err))
					}
				}
				if err := lab.Down(cmd.Context(), a.cfg.Lab, n, a.log); err != nil {
					errs = append(errs, fmt.Errorf("lab down %s: %w", n, err))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "lab %s is down\n", n)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "lab name (default: every lab with state)")
	k.add(cmd, "also remove what lab up --kubernetes registered in the Kubernetes API server")
	return cmd
}

// probeFailed makes `lab probe` and `lab status --check` exit 1 when the
// lab does not carry the traffic asked about.
type probeFailed struct{ error }

func (probeFailed) ExitCode() int { return 1 }

func newLabProbeCmd(a *app) *cobra.Command {
	var name, from, to, proto string
	var port, family int
	var timeout time.Duration
	var noDNS bool
	cmd := &cobra.Command{
		Use:   "probe --from ENDPOINT --to PEER --port N",
		Short: "Try one connection from inside a lab endpoint; exit 0 if it is answered, 1 if not",
		Long: `Try one connection from inside a lab endpoint, as its workload would.
--from is an endpoint ("shop/intruder-0") or a workload ("shop/intruder", first replica).
--to is a workload ("shop/db"), an external DNS name ("payments.example") or an IP address.
A workload's name is resolved through the lab's DNS server, as its clients do,
unless --no-dns connects to its address directly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.RequireRoot(); err != nil {
				return fmt.Errorf("lab probe: %w", err)
			}
			if from == "" || to == "" || port == 0 {
				return fmt.Errorf("lab probe: --from, --to and --port are required")
			}
			if port < 1 || port > 65535 {
				return fmt.Errorf("lab probe: --port: %d is out of range 1-65535", port)
			}
			if timeout <= 0 {
				return fmt.Errorf("lab probe: --timeout: %s must be positive", timeout)
			}
			if family != 4 && family != 6 {
				return fmt.Errorf("lab probe: --family: %d is not 4 or 6", family)
			}
			name, err := labName(a, name)
			if err != nil {
				return fmt.Errorf("lab probe: %w", err)
			}
			p, err := lab.LoadPlan(a.cfg.Lab, name)
			if err != nil {
				return fmt.Errorf("lab probe: %w", err)
			}
			src := p.Find(from)
			if len(src) == 0 {
				return fmt.Errorf("lab probe: --from: no endpoint %q in lab %s", from, name)
			}
			target := to
			if dst := p.Find(to); len(dst) > 0 {
				target = dst[0].FQDN()
				if noDNS {
					target = dst[0].IPv4.String()
					if family == 6 {
						target = dst[0].IPv6.String()
					}
				}
			}
			cl, err := lab.NewClient(p, src[0])
			if err != nil {
				return err
			}
			defer cl.Close()
			res, err := cl.Talk(cmd.Context(), target, port, strings.ToUpper(proto), family, 0, timeout)
			if err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "FAIL %s -> %s:%d/%s: %v\n", src[0].ID(), to, port, strings.ToUpper(proto), err)
				return probeFailed{fmt.Errorf("probe failed")}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK   %s -> %s (%s/%s): %s\n", src[0].ID(), to, res.Addr, strings.ToUpper(proto), printableReply(res.Reply))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "lab name (default: the only lab that is up)")
	f.StringVar(&from, "from", "", "source endpoint or workload")
	f.StringVar(&to, "to", "", "destination workload, external DNS name or IP address")
	f.IntVar(&port, "port", 0, "destination port")
	f.StringVar(&proto, "protocol", "TCP", "TCP or UDP")
	f.IntVar(&family, "family", 4, "IP family: 4 or 6")
	f.DurationVar(&timeout, "timeout", 2*time.Second, "give up after this long")
	f.BoolVar(&noDNS, "no-dns", false, "connect to the destination's address without asking the lab's DNS server (as a scanner would)")
	return cmd
}

func newLabEndpointCmd(a *app) *cobra.Command {
	var name, endpoint string
	cmd := &cobra.Command{
		Use:    lab.EndpointCommand,
		Short:  "Run one lab endpoint's servers and clients (started by `lab up`)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := lab.LoadPlan(a.cfg.Lab, name)
			if err != nil {
				return err
			}
			for _, e := range p.Endpoints {
				if e.Netns == endpoint {
					return lab.RunEndpoint(cmd.Context(), p, e, a.cfg.Lab.StatsPath(name, e), a.log)
				}
			}
			return fmt.Errorf("lab endpoint: no endpoint %q in lab %s", endpoint, name)
		},
	}
	cmd.Flags().StringVar(&name, "lab", "", "lab name")
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "endpoint netns name")
	return cmd
}

// labName returns name, or the only lab that is up.
func labName(a *app, name string) (string, error) {
	if name != "" {
		return name, nil
	}
	labs, err := a.cfg.Lab.Labs()
	if err != nil {
		return "", err
	}
	if len(labs) != 1 {
		return "", fmt.Errorf("--name is required when %d labs are up", len(labs))
	}
	return labs[0], nil
}

func newLabCheckCmd(a *app) *cobra.Command {
	var name string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Connect once for every declared talk of every replica, over IPv4 and IPv6; exit 1 if any fails",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.RequireRoot(); err != nil {
				return fmt.Errorf("lab check: %w", err)
			}
			n, err := labName(a, name)
			if err != nil {
				return fmt.Errorf("lab check: %w", err)
			}
			p, err := lab.LoadPlan(a.cfg.Lab, n)
			if err != nil {
				return fmt.Errorf("lab check: %w", err)
			}
			res, err := lab.ProbeTalks(cmd.Context(), p, []int{4, 6}, timeout)
			if err != nil {
				return fmt.Errorf("lab check: %w", err)
			}
			failed := 0
			w := cmd.OutOrStdout()
			for _, r := range res {
				mark := "ok  "
				if r.Err != "" {
					mark, failed = "FAIL", failed+1
				}
				fmt.Fprintf(w, "%s %-24s -> %-26s %5d/%s IPv%d %s\n", mark, r.From.ID(), r.DstKey, r.Port, r.Protocol, r.Family, r.Err)
			}
			fmt.Fprintf(w, "%d of %d declared connections work\n", len(res)-failed, len(res))
			if failed > 0 {
				return probeFailed{fmt.Errorf("lab check: %d declared connections failed", failed)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "lab name (default: the only lab that is up)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "per connection")
	return cmd
}

// printableReply returns a probe's reply as is when it is printable text,
// else quoted with escapes: a DNS server answers a probe with binary
// bytes, which would otherwise reach the terminal raw.
func printableReply(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.QuoteToGraphic(s)
		}
	}
	return s
}
