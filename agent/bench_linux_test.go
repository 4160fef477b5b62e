//go:build linux

package agent

// Agent benchmarks (issue 6, "Benchmarks"): promotion latency for 10, 100
// and 1000 endpoints, and agent memory with 1000 endpoints and 100k edges.
//
// Every endpoint is a named network namespace of its own with lo up holding
// one address from 198.18.0.0/15 (no links: the kernel has no dummy driver), described to the
// agent by a labels file. The namespaces of one benchmark are created once
// (b.Loop runs the benchmark function once per -count) and removed in
// b.Cleanup, also when the benchmark fails; their names carry the test
// process's pid, so a later run removes those a killed run left behind.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/dataplane"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/inventory/host"
	"github.com/nanoseg/nanoseg/model"
)

// agentBenchPrefix starts the name of every namespace these benchmarks
// create, followed by "<pid>-"; unlike nettest's random hex names, it
// cannot be the start of another test's namespace.
const agentBenchPrefix = nettest.Prefix + "agentbench-"

// benchAddr is the address of endpoint i: 198.18.0.1 onwards, 250 per /24.
func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)})
}

// sweepStaleBenchNamespaces removes the namespaces of earlier runs of these
// benchmarks whose process no longer exists (a run killed by a timeout gets
// no cleanup).
func sweepStaleBenchNamespaces(b *testing.B) {
	b.Helper()
	names, err := nsenter.ListNamed(agentBenchPrefix)
	if err != nil {
		b.Fatalf("list namespaces: %v", err)
	}
	for _, n := range names {
		pid, _, ok := strings.Cut(strings.TrimPrefix(n, agentBenchPrefix), "-")
		if !ok {
			continue
		}
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its process still runs
		}
		if err := nsenter.DeleteNamed(n); err != nil {
			b.Logf("remove stale namespace: %v", err)
		}
	}
}

// benchNamespaces creates n namespaces named "<agentBenchPrefix><pid>-<tag>-<i>",
// each with lo up holding benchAddr(i)/32, using a few
// creators in parallel. Every name's removal is registered with b.Cleanup
// before the namespace is created, so a failure midway leaks nothing.
func benchNamespaces(b *testing.B, tag string, n int) []string {
	b.Helper()
	sweepStaleBenchNamespaces(b)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d-%s-%d", agentBenchPrefix, os.Getpid(), tag, i)
	}
	b.Cleanup(func() {
		var errs []error
		for _, name := range names {
			if err := nsenter.DeleteNamed(name); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			b.Errorf("remove bench namespaces: %v", err)
		}
	})
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				errs[i] = setupBenchNetns(names[i], benchAddr(i))
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("create bench namespaces: %v", err)
	}
	b.Logf("created %d namespaces in %v", n, time.Since(start).Round(time.Millisecond))
	return names
}

// setupBenchNetns creates the namespace name with lo up holding addr/32
// (the kernel here has no dummy links, and the endpoints need no links).
func setupBenchNetns(name string, addr netip.Addr) error {
	h, err := nsenter.NewNamed(name)
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", name, err)
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("lo up in %s: %w", name, err)
	}
	ip := addr.As4()
	if err := nl.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(ip[:]), Mask: net.CIDRMask(32, 32)}}); err != nil {
		return fmt.Errorf("add %s in %s: %w", addr, name, err)
	}
	return nil
}

// benchWorkload names the workload of endpoint i when the endpoints are
// spread over workloads workloads ("app" when there is one).
func benchWorkload(i, workloads int) string {
	if workloads == 1 {
		return "app"
	}
	return fmt.Sprintf("wl-%d", i%workloads)
}

// writeBenchLabels writes a labels file describing names as endpoints of
// namespace "bench", spread round-robin over workloads workloads, each with
// label app=<workload>, its address, and a named port http=8080.
func writeBenchLabels(b *testing.B, dir string, names []string, workloads int) string {
	b.Helper()
	var sb strings.Builder
	sb.WriteString("namespaces: [{name: bench, labels: {team: bench}}]\nendpoints:\n")
	for i, n := range names {
		w := benchWorkload(i, workloads)
		fmt.Fprintf(&sb, "  - {netns: %s, namespace: bench, workload: %s, labels: {app: %s, pod: %q}, addrs: [%s], ports: [{name: http, port: 8080}]}\n",
			n, w, w, fmt.Sprint(i), benchAddr(i))
	}
	path := filepath.Join(dir, "labels.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchPolicy returns a NanoSegment for workload w with a rule set of the
// same size whatever the number of endpoints: ingress from 198.18.0.0/15
// on the named port http and TCP 9090, egress to 198.19.0.0/16 on TCP 443
// and to the workload db on TCP 5432 (selecting nothing here).
func benchPolicy(w string) string {
	return fmt.Sprintf(`apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: %[1]s, namespace: bench}
spec:
  selector: {matchLabels: {app: %[1]s}}
  policyTypes: [Ingress, Egress]
  ingress:
    - id: from-bench
      peers: [{ipBlock: {cidr: 198.18.0.0/15}}]
      ports: [{protocol: TCP, port: http}, {protocol: TCP, port: 9090}]
  egress:
    - id: partners
      peers: [{ipBlock: {cidr: 198.19.0.0/16}}]
      ports: [{protocol: TCP, port: 443}]
    - id: db
      peers: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{protocol: TCP, port: 5432}]
`, w)
}

// startBenchAgent starts an agent over the labels file in dir (state file
// and socket there too, no metrics listener), waits until its first
// reconcile pass finished (its socket exists), and stops it in b.Cleanup.
// Register the namespaces' removal before calling it: cleanups run last
// registered first, so the agent stops before its namespaces go.
func startBenchAgent(b *testing.B, dir, labels string) *Agent {
	b.Helper()
	cfg := Defaults()
	cfg.StateFile = filepath.Join(dir, "state.db")
	cfg.Socket = filepath.Join(dir, "agent.sock")
	cfg.MetricsAddr = ""
	cfg.LabelsFile = labels
	a, err := New(cfg, host.LabSource{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("agent: %v", err)
			}
		case <-time.After(time.Minute):
			b.Errorf("agent did not stop within a minute")
		}
	})
	start := time.Now()
	for {
		if _, err := os.Stat(cfg.Socket); err == nil {
			break
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			b.Fatalf("agent stopped while starting: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > 3*time.Minute {
			b.Fatalf("agent not ready after %v", time.Since(start))
		}
	}
	b.Logf("agent ready with %d endpoints in %v", len(a.Inventory().Endpoints()), time.Since(start).Round(time.Millisecond))
	return a
}

// benchPromote promotes workload w to mode and fails b unless every
// endpoint converged.
func benchPromote(b *testing.B, a *Agent, w string, mode model.Mode) {
	res, err := a.Service().Promote(context.Background(), controller.PromoteRequest{Workload: w, To: mode, Reason: "benchmark"}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	if !res.Converged {
		b.Fatalf("promote %s to %s: not converged within %v: %v", w, mode, controller.DefaultConvergeTimeout, res.Errors)
	}
}

// singleApply returns the mean time of one dataplane Apply of rs on one
// endpoint of its own, alternating audit and enforce like the promotions.
func singleApply(b *testing.B, rs dataplane.RuleSet, reps int) time.Duration {
	b.Helper()
	path := nsenter.Path(benchNamespaces(b, "single", 1)[0])
	dp := dataplane.New(nil)
	rs.Mode = model.ModeAudit
	if _, err := dp.Apply(path, rs); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i := range reps {
		rs.Mode = model.ModeEnforce
		if i%2 == 1 {
			rs.Mode = model.ModeAudit
		}
		if _, err := dp.Apply(path, rs); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start) / time.Duration(reps)
}

// BenchmarkAgentPromote measures the time from Promote to the last
// endpoint's rule set programmed (PromoteResult.Converged), with one
// workload whose replicas are all the endpoints, alternating audit and
// enforce so that every promotion rewrites every endpoint's table. The
// agent runs for real meanwhile (observers, drift checks every 5 s).
// Baseline in the same run: one dataplane Apply of the same rule set and
// change on a single endpoint ("x single-apply" is the ratio).
func BenchmarkAgentPromote(b *testing.B) {
	nettest.RequireRoot(b)
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			dir, err := os.MkdirTemp("", "nanoseg-bench-")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
			names := benchNamespaces(b, fmt.Sprint(n), n)
			a := startBenchAgent(b, dir, writeBenchLabels(b, dir, names, 1))
			const w = "bench/app"
			if _, err := a.Service().ApplyPolicies("bench.yaml", []byte(benchPolicy("app")), "bench"); err != nil {
				b.Fatal(err)
			}
			benchPromote(b, a, w, model.ModeAudit) // creates the policy chains
			desired, ok := a.Node().Desired(names[0])
			if !ok {
				b.Fatalf("no rule set for %s", names[0])
			}
			b.Logf("rule set per endpoint: %d ingress, %d egress entries", len(desired.Ingress), len(desired.Egress))
			single := singleApply(b, desired, 20)
			b.ReportAllocs()
			modes := []model.Mode{model.ModeEnforce, model.ModeAudit}
			i := 0
			for b.Loop() {
				benchPromote(b, a, w, modes[i%2])
				i++
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(per.Microseconds())/1000, "ms/promote")
			b.ReportMetric(float64(n)/per.Seconds(), "endpoints/s")
			b.ReportMetric(float64(single.Microseconds())/1000, "ms/single-apply")
			b.ReportMetric(float64(per)/float64(single), "x-single-apply")
		})
	}
}

// benchEdges returns n (at most 100k) distinct edges from the workloads of
// a 10-workload inventory: half to workloads (100 pairs × TCP ports 1000
// onwards), half to external addresses in 198.19.0.0/16 on TCP 443.
func benchEdges(n int) []model.Edge {
	now := time.Now().UTC()
	out := make([]model.Edge, 0, n)
	peer := func(i int) model.Peer {
		w := benchWorkload(i, 10)
		return model.Peer{Namespace: "bench", Workload: w, Labels: map[string]string{"app": w}}
	}
	for i := range n {
		j := i / 2
		e := model.Edge{Source: peer(j), Protocol: model.ProtocolTCP, Traffic: model.Traffic{FirstSeen: now, LastSeen: now, Flows: 3, PacketsOut: 18, BytesOut: 1200, PacketsIn: 12, BytesIn: 4000, Verdicts: model.VerdictCounts{Observed: 3}}}
		if i%2 == 0 {
			e.Destination = peer(j / 10)
			e.Port = uint16(1000 + j/100)
		} else {
			k := j / 10
			e.Destination = model.Peer{External: true, Addr: netip.AddrFrom4([4]byte{198, 19, byte(k >> 8), byte(k)})}
			e.Port = 443
		}
		out = append(out, e)
	}
	return out
}

// rssMiB returns the process's resident set size (VmRSS) in MiB.
func rssMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}

// heapMiB returns the heap in use after a full GC, in MiB.
func heapMiB() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// BenchmarkAgentMemory runs an agent with 1000 endpoints (10 workloads of
// 100, each with a policy in audit) and 100k edges merged into its store,
// then reports the heap in use after GC (MiB-heap), the process's RSS
// (MiB-rss), the store file's size (MiB-store) and goroutines, with the
// same process's heap and RSS before the agent started as the baseline
// (MiB-heap-base, MiB-rss-base). Each iteration is one flush of 10k edges
// the store knows already, as the agent's flush loop does.
func BenchmarkAgentMemory(b *testing.B) {
	nettest.RequireRoot(b)
	const endpoints, workloads, edges, batch = 1000, 10, 100_000, 10_000
	dir, err := os.MkdirTemp("", "nanoseg-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	names := benchNamespaces(b, "mem", endpoints)
	labels := writeBenchLabels(b, dir, names, workloads)
	baseHeap, baseRSS := heapMiB(), rssMiB()
	a := startBenchAgent(b, dir, labels)
	var docs []string
	for k := range workloads {
		docs = append(docs, benchPolicy(benchWorkload(k, workloads)))
	}
	if _, err := a.Service().ApplyPolicies("bench.yaml", []byte(strings.Join(docs, "---\n")), "bench"); err != nil {
		b.Fatal(err)
	}
	for k := range workloads {
		benchPromote(b, a, "bench/"+benchWorkload(k, workloads), model.ModeAudit)
	}
	all := benchEdges(edges)
	for i := 0; i < len(all); i += batch {
		if err := a.Store().MergeEdges(all[i : i+batch]); err != nil {
			b.Fatal(err)
		}
	}
	again := all[:batch:batch]
	all = nil
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Store().MergeEdges(again); err != nil {
			b.Fatal(err)
		}
	}
	again = nil
	stored, err := a.Store().Edges(time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	if len(stored) != edges {
		b.Fatalf("store holds %d edges, want %d", len(stored), edges)
	}
	stored = nil
	heap, rss := heapMiB(), rssMiB()
	fi, err := os.Stat(filepath.Join(dir, "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(heap, "MiB-heap")
	b.ReportMetric(baseHeap, "MiB-heap-base")
	b.ReportMetric(rss, "MiB-rss")
	b.ReportMetric(baseRSS, "MiB-rss-base")
	b.ReportMetric(float64(fi.Size())/(1<<20), "MiB-store")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
}
