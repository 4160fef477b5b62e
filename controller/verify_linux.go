//go:build linux

package controller

// Live verification, the kernel half: real connections from inside
// endpoint namespaces. Each probe opens one socket on a thread inside the
// source endpoint's netns (internal/nsenter), connects to a destination
// endpoint address from the inventory (never anything else), and closes
// the socket before returning, so a run leaves no socket, no conntrack
// entry beyond its normal timeout, and no rule behind. Sources: connect(2)
// (ECONNREFUSED on a TCP reset or an ICMP port unreachable for a connected
// UDP socket), udp(7).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// Verify runs the live probe matrix of req (see verify.go for the method)
// and compares each outcome with the verdict policy predicts. A probe
// whose outcome differs from the prediction is a mismatch; Mismatches
// counts them. Errors: an invalid request (ErrInvalid), an unknown scope,
// or failing to compile the active policies; a probe that fails is a
// result, not an error.
func (a *Agent) Verify(ctx context.Context, req VerifyRequest) (*evidence.ProbeRun, error) {
	if err := req.normalize(); err != nil {
		return nil, err
	}
	eps := a.inv.Endpoints()
	if req.Scope != "" && !scopeKnown(eps, req.Scope) {
		return nil, fmt.Errorf("%w: scope %q is neither a namespace nor a workload of the inventory", ErrInvalid, req.Scope)
	}
	world, set, err := a.policyWorld()
	if err != nil {
		return nil, err
	}
	plans, matrix := planProbes(eps, world, set, req.Scope, req.MaxProbes)
	timeout := time.Duration(req.TimeoutMS) * time.Millisecond
	run := &evidence.ProbeRun{Started: time.Now().UTC(), Method: ProbeMethod, Matrix: matrix, Probed: len(plans),
		Timeout: evidence.Duration(timeout), Parallel: req.Parallel, Results: make([]evidence.Probe, len(plans))}
	sem := make(chan struct{}, req.Parallel)
	var wg sync.WaitGroup
	for i, p := range plans {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := p.Probe
			start := time.Now()
			r.Outcome, r.Reached, r.Detail = a.probe(ctx, p.src.Path, p.Protocol, p.addr, timeout)
			r.DurationMS = float64(time.Since(start).Microseconds()) / 1000
			r.Match = r.Reached == r.ExpectReach
			run.Results[i] = r
		}()
	}
	wg.Wait()
	run.Finished = time.Now().UTC()
	for _, r := range run.Results {
		if r.ExpectReach {
			run.ExpectedAllowed++
		} else {
			run.ExpectedDenied++
		}
		if !r.Match {
			run.Mismatches++
			a.log.Warn("probe mismatch", "from", r.SourceNetns, "to", r.Address, "protocol", r.Protocol, "expected", r.Expected, "outcome", r.Outcome)
		}
	}
	a.log.Info("verify finished", "probes", run.Probed, "mismatches", run.Mismatches, "duration", run.Finished.Sub(run.Started))
	return run, nil
}

// policyWorld returns the agent's policy world and its active policies as
// a policy set, as compileAll sees them.
func (a *Agent) policyWorld() (*policies.MemWorld, policies.PolicySet, error) {
	active, err := a.Active()
	if err != nil {
		return nil, policies.PolicySet{}, err
	}
	world, err := a.inv.World(a.knownNames())
	if err != nil {
		return nil, policies.PolicySet{}, err
	}
	set, err := activeSet(active)
	if err != nil {
		return nil, policies.PolicySet{}, err
	}
	return world, set, nil
}

// scopeKnown reports whether scope names a namespace or workload of eps.
func scopeKnown(eps []Endpoint, scope string) bool {
	for _, e := range eps {
		if inScope(scope, e.Key()) {
			return true
		}
	}
	return false
}

// Probe source ports: probes bind their source port in ProbePortMin to
// ProbePortMax, above Linux's default ephemeral range (32768-60999), and
// register (source port, destination) before connecting, so the agent
// recognises their flows and verdict-log records and keeps them out of the
// observed graph, the verdict events and so out of proposals.
const (
	ProbePortMin = 61000
	ProbePortMax = 65535
)

// probeKey identifies a probe's connection as the observer reports it.
type probeKey struct {
	srcPort uint16
	dst     netip.AddrPort
}

// probeMemory is how long a probe's flows are recognised: longer than a
// TCP connection's conntrack entry lingers after a reset.
const probeMemory = 3 * time.Minute

// markProbe picks a free probe source port for dst, records it and returns it.
func (a *Agent) markProbe(dst netip.AddrPort) uint16 {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if a.probes == nil {
		a.probes = map[probeKey]time.Time{}
	}
	for k, at := range a.probes {
		if now.Sub(at) > probeMemory {
			delete(a.probes, k)
		}
	}
	for range ProbePortMax - ProbePortMin + 1 {
		a.probePort++
		port := uint16(ProbePortMin + int(a.probePort)%(ProbePortMax-ProbePortMin+1))
		k := probeKey{srcPort: port, dst: dst}
		if _, used := a.probes[k]; !used {
			a.probes[k] = now
			return port
		}
	}
	return 0 // every port in use for dst: let the kernel choose
}

// isProbe reports whether flow record f belongs to one of the agent's probes.
func (a *Agent) isProbe(f model.Flow) bool {
	if f.SrcPort < ProbePortMin {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.probes[probeKey{srcPort: f.SrcPort, dst: netip.AddrPortFrom(f.Dst.Unmap(), f.DstPort)}]
	return ok
}

// probe makes one connection attempt from the netns at nsPath to addr
// over proto (TCP or UDP), from a registered probe source port, and returns
// its outcome (connected, refused, reply, timeout, dropped at source,
// error), whether the network let it through, and a detail for errors. It
// closes everything it opens; TCP probes close with a reset, leaving no
// TIME_WAIT behind.
func (a *Agent) probe(ctx context.Context, nsPath, proto string, addr netip.AddrPort, timeout time.Duration) (string, bool, string) {
	if err := ctx.Err(); err != nil {
		return "error", false, err.Error()
	}
	h, err := netns.GetFromPath(nsPath)
	if err != nil {
		return "error", false, fmt.Sprintf("open netns %s: %v", nsPath, err)
	}
	defer h.Close()
	var conn net.Conn
	network := "tcp"
	if proto == "UDP" {
		network = "udp"
	}
	port := int(a.markProbe(netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())))
	d := net.Dialer{Timeout: timeout}
	if network == "tcp" {
		d.LocalAddr = &net.TCPAddr{Port: port}
	} else {
		d.LocalAddr = &net.UDPAddr{Port: port}
	}
	err = nsenter.Do(h, func() (err error) {
		conn, err = d.Dial(network, addr.String())
		return err
	})
	if err != nil {
		return classify(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
		return "connected", true, ""
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(udpPayload(addr.String())); err != nil {
		return classify(err)
	}
	buf := make([]byte, 1500)
	if _, err := conn.Read(buf); err != nil {
		return classify(err)
	}
	return "reply", true, ""
}

// classify maps a connection error to an outcome.
func classify(err error) (string, bool, string) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused", true, ""
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout", false, ""
	case errors.Is(err, syscall.EPERM):
		// The source's own output hook dropped the first packet.
		return "dropped at source", false, ""
	}
	return "error", false, err.Error()
}

// udpPayload is a DNS query (for a name under .invalid, which no resolver
// forwards) to port 53, and one text line to any other port.
func udpPayload(addr string) []byte {
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "53" {
		m := new(dns.Msg)
		m.SetQuestion("probe.nanoseg.invalid.", dns.TypeA)
		if raw, err := m.Pack(); err == nil {
			return raw
		}
	}
	return []byte("probe from nanoseg verify\n")
}
