package controller

// Live verification: which probes to run, what policy predicts for each,
// and the comparison with what the probes (run by the node, Node.Probe)
// found.
//
// Design: the matrix is every source workload × every destination workload
// × every declared port of the destination (TCP, UDP and SCTP ports; SCTP is
// predicted but not probed). A workload to itself counts only replica to
// replica. Each path is probed once, from one endpoint of the source to one
// endpoint of the destination; the two endpoints and the address family
// are chosen from the path's FNV-1a hash, so the same inventory always
// gives the same probes and, across paths, both families are exercised.
// When the matrix is larger than the budget, paths are ranked by the
// SHA-256 of "nanoseg-verify/v1|<src>|<dst>|<port>/<proto>" and the lowest
// ranks kept: half the budget for paths policy allows and half for paths it
// denies (a class smaller than its half leaves the rest to the other), so
// a sample always tests both that allowed paths work and that forbidden
// ones are closed. The prediction is policies.Evaluate over the agent's
// world (pods named by netns) and the active policies; a connection is
// expected to get through when the verdict is allow or audit-deny (audit
// mode lets it pass). This is the segmentation test PCI DSS 4.0
// requirement 11.4.5 asks for, run from inside the segments.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// VerifyRequest asks for a live probe run. Zero fields take defaults.
type VerifyRequest struct {
	// Scope limits the matrix to paths whose source or destination is in
	// a namespace ("shop") or is a workload ("shop/api"); "" is all.
	Scope string `json:"scope,omitempty"`
	// MaxProbes bounds the number of probes (default 512, at most 4096).
	MaxProbes int `json:"maxProbes,omitempty"`
	// TimeoutMS is each probe's timeout in milliseconds (default 1000,
	// 100 to 10000).
	TimeoutMS int `json:"timeoutMs,omitempty"`
	// Parallel is how many probes run at once (default 8, 1 to 32).
	Parallel int `json:"parallel,omitempty"`
}

// Defaults and bounds of VerifyRequest.
const (
	DefaultMaxProbes   = 512
	MaxMaxProbes       = 4096
	DefaultProbeTimout = time.Second
	DefaultParallel    = 8
)

// normalize fills defaults and checks bounds. Errors wrap ErrInvalid.
func (r *VerifyRequest) normalize() error {
	if r.MaxProbes == 0 {
		r.MaxProbes = DefaultMaxProbes
	}
	if r.TimeoutMS == 0 {
		r.TimeoutMS = int(DefaultProbeTimout / time.Millisecond)
	}
	if r.Parallel == 0 {
		r.Parallel = DefaultParallel
	}
	var bad []string
	if r.MaxProbes < 1 || r.MaxProbes > MaxMaxProbes {
		bad = append(bad, fmt.Sprintf("maxProbes: %d is not between 1 and %d", r.MaxProbes, MaxMaxProbes))
	}
	if r.TimeoutMS < 100 || r.TimeoutMS > 10000 {
		bad = append(bad, fmt.Sprintf("timeoutMs: %d is not between 100 and 10000", r.TimeoutMS))
	}
	if r.Parallel < 1 || r.Parallel > 32 {
		bad = append(bad, fmt.Sprintf("parallel: %d is not between 1 and 32", r.Parallel))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(bad, "; "))
	}
	return nil
}

// ProbeMethod describes the matrix and sampling in the report.
const ProbeMethod = "every source workload x every destination workload x every declared port of the destination " +
	"(a workload to itself only replica to replica; SCTP predicted but not probed); one probe per path, from an endpoint of the source " +
	"to an endpoint of the destination, endpoints and address family (IPv4/IPv6) chosen by the FNV-1a hash of the path; " +
	"when the matrix exceeds the budget, the paths with the lowest SHA-256 of \"nanoseg-verify/v1|src|dst|port/proto\" are kept, " +
	"half the budget for paths policy allows and half for paths it denies; every Deny rule of the Admin tier of the ClusterNetworkPolicies in force " +
	"that decides some path of the matrix gets one probe of such a path beyond the budget (the lowest ranked; a path it denies, else one of a workload in audit mode, " +
	"where it is logged as audit-deny and not dropped, so that rule is reported not held there). TCP: a completed handshake is reached, a reset is reached " +
	"(refused), no answer within the timeout is blocked. UDP: one datagram (a DNS query on port 53) and a reply or port-unreachable " +
	"is reached, silence is blocked. Expected to reach: policy verdict allow or audit-deny."

// probePlan is one planned probe.
type probePlan struct {
	evidence.Probe
	src  model.Endpoint
	addr netip.AddrPort
	rank string
	// adminDeny is the adminDenyKey of the Admin Deny rule that denies
	// the path (its direction's verdict is deny), or "".
	adminDeny string
	// auditedDeny is the adminDenyKey of an Admin Deny rule that decides
	// a direction of the path only as audit-deny (its subject is in audit
	// mode: logged, not dropped), or "".
	auditedDeny string
}

// adminDenyKey identifies a rule of an Admin ClusterNetworkPolicy.
func adminDenyKey(policy, rule string) string { return policy + "\x00" + rule }

// inScope reports whether workload key w is in scope ("" everything, a
// namespace, or a workload key).
func inScope(scope, w string) bool {
	if scope == "" || scope == w {
		return true
	}
	ns, _, _ := strings.Cut(w, "/")
	return !strings.Contains(scope, "/") && ns == scope
}

func pathHash(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}

// planProbes builds the probe matrix over eps (the inventory) for the
// paths in scope, predicts each with policies.Evaluate over world and set,
// and samples it down to max probes, plus one path for each Admin Deny
// rule that decides a path of the matrix but none of the sample (a path
// it denies; else one where it is only audit-deny). It returns the
// planned probes sorted by source, destination and port, the size of the
// matrix, and per Admin Deny rule (adminDenyKey) the workloads in audit
// mode on which it decides some path of the matrix only as audit-deny,
// sorted.
func planProbes(eps []model.Endpoint, world policies.World, set policies.PolicySet, scope string, max int) ([]probePlan, int, map[string][]string) {
	byW := map[string][]model.Endpoint{}
	for _, e := range eps {
		byW[e.Key()] = append(byW[e.Key()], e)
	}
	ws := make([]string, 0, len(byW))
	for w := range byW {
		ws = append(ws, w)
		sort.Slice(byW[w], func(i, j int) bool { return byW[w][i].Netns < byW[w][j].Netns })
	}
	sort.Strings(ws)
	var allowed, denied []probePlan
	audited := map[string][]string{}
	matrix := 0
	for _, sw := range ws {
		for _, dw := range ws {
			if !inScope(scope, sw) && !inScope(scope, dw) {
				continue
			}
			srcs, dsts := byW[sw], byW[dw]
			if sw == dw && len(dsts) < 2 {
				continue
			}
			for _, pt := range declaredPorts(dsts) {
				matrix++
				if pt.Protocol == model.ProtocolSCTP {
					continue
				}
				key := fmt.Sprintf("%s|%s|%d/%s", sw, dw, pt.Port, pt.Protocol)
				h := pathHash(key)
				si := int(h % uint32(len(srcs)))
				di := int((h / 7) % uint32(len(dsts)))
				if sw == dw && si == di {
					di = (di + 1) % len(dsts)
				}
				src, dst := srcs[si], dsts[di]
				addr, ok := pickAddr(dst.Addrs, h%2 == 1)
				if !ok {
					continue
				}
				conn := policies.Connection{From: policies.ConnEnd{Pod: src.Namespace + "/" + src.Netns}, To: policies.ConnEnd{Pod: dst.Namespace + "/" + dst.Netns},
					Protocol: pt.Protocol, Port: pt.Port}
				v := policies.Evaluate(world, set, conn)
				sum := sha256.Sum256([]byte("nanoseg-verify/v1|" + key))
				p := probePlan{src: src, addr: netip.AddrPortFrom(addr, uint16(pt.Port)), rank: hex.EncodeToString(sum[:]),
					Probe: evidence.Probe{Source: sw, SourceNetns: src.Netns, Destination: dw, DestNetns: dst.Netns,
						Address: netip.AddrPortFrom(addr, uint16(pt.Port)).String(), Protocol: string(pt.Protocol), Port: int(pt.Port),
						Expected: v.Action, ExpectReach: v.Action != model.VerdictDeny, Reason: v.Reason()}}
				if r := v.DecidingClusterRule(); r != nil {
					p.DecidedBy = r.String()
				}
				for _, d := range []policies.DirectionEvaluation{v.Egress, v.Ingress} {
					r := d.ClusterRule
					if r == nil || r.Tier != cnpv1alpha2.TierAdmin || r.Action != cnpv1alpha2.ActionDeny {
						continue
					}
					key := adminDenyKey(r.Policy.Name, r.Rule)
					switch {
					case d.Action == model.VerdictDeny && p.adminDeny == "":
						p.adminDeny = key
					case d.AuditedClusterDeny():
						w := sw
						if d.Direction == model.Ingress {
							w = dw
						}
						if !slices.Contains(audited[key], w) {
							audited[key] = append(audited[key], w)
						}
						if p.auditedDeny == "" {
							p.auditedDeny = key
						}
					}
				}
				if p.ExpectReach {
					allowed = append(allowed, p)
				} else {
					denied = append(denied, p)
				}
			}
		}
	}
	out := withAdminDenies(sample(allowed, denied, max), denied, allowed)
	for _, ws := range audited {
		slices.Sort(ws)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		if a.Destination != b.Destination {
			return a.Destination < b.Destination
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Protocol < b.Protocol
	})
	return out, matrix, audited
}

// withAdminDenies returns out with, for every Admin Deny rule that denies
// some path of denied but none of out, the path of lowest rank it
// denies, and for every Admin Deny rule that denies no path at all but is
// audit-deny on some path of allowed (its workloads are in audit mode),
// the path of lowest rank of those unless out has one: each Admin Deny
// gets a live probe whatever the budget.
func withAdminDenies(out, denied, allowed []probePlan) []probePlan {
	covered, coveredAudit, denies := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, p := range out {
		covered[p.adminDeny] = true
		coveredAudit[p.auditedDeny] = true
	}
	best := map[string]probePlan{}
	for _, p := range denied {
		if p.adminDeny == "" {
			continue
		}
		denies[p.adminDeny] = true
		if covered[p.adminDeny] {
			continue
		}
		if b, ok := best[p.adminDeny]; !ok || p.rank < b.rank {
			best[p.adminDeny] = p
		}
	}
	for _, p := range allowed {
		k := p.auditedDeny
		if k == "" || denies[k] || coveredAudit[k] {
			continue
		}
		if b, ok := best[k]; !ok || p.rank < b.rank {
			best[k] = p
		}
	}
	for _, k := range slices.Sorted(maps.Keys(best)) {
		out = append(out, best[k])
	}
	return out
}

// adminDenyChecks returns one check per Deny rule of the Admin tier of
// set, each with the first of plans/results the rule denies, else the
// first where it is only audit-deny (not held: logged, not dropped), and
// the workloads audited (planProbes) on which it is not enforced.
func adminDenyChecks(set policies.PolicySet, plans []probePlan, results []evidence.Probe, audited map[string][]string) []evidence.AdminDenyCheck {
	first, firstAudit := map[string]int{}, map[string]int{}
	for i := len(plans) - 1; i >= 0; i-- {
		if plans[i].adminDeny != "" {
			first[plans[i].adminDeny] = i
		}
		if plans[i].auditedDeny != "" {
			firstAudit[plans[i].auditedDeny] = i
		}
	}
	var out []evidence.AdminDenyCheck
	for _, cp := range set.ClusterPolicies() {
		if cp.Tier != cnpv1alpha2.TierAdmin {
			continue
		}
		for _, dir := range []model.Direction{model.Ingress, model.Egress} {
			for _, r := range cp.Rules[dir.Index()] {
				if r.Action != cnpv1alpha2.ActionDeny {
					continue
				}
				key := adminDenyKey(cp.Ref.Name, r.ID)
				c := evidence.AdminDenyCheck{Policy: cp.Ref.Name, Priority: cp.Priority, Rule: r.ID, Name: r.Name, Audited: audited[key]}
				if i, ok := first[key]; ok {
					p := results[i]
					c.Probe, c.Held = &p, !p.Reached
				} else if i, ok := firstAudit[key]; ok {
					p := results[i]
					c.Probe = &p
				} else if len(c.Audited) == 0 {
					c.Note = "no probe: no path between endpoints in scope on a declared port is decided by this rule (its peers are outside the inventory, its ports declared by no endpoint, or an earlier rule decides first)"
				}
				if len(c.Audited) > 0 {
					c.Note = auditedNote(c.Audited, c.Held)
				}
				out = append(out, c)
			}
		}
	}
	return out
}

// auditedNote says that an Admin Deny rule is not enforced on the
// workloads ws (in audit mode), and, when held, that it held where it is.
func auditedNote(ws []string, held bool) string {
	which := "the workload " + ws[0] + " is"
	if len(ws) > 1 {
		which = "the workloads " + strings.Join(ws, ", ") + " are"
	}
	note := "logged as audit-deny, not dropped: " + which + " in audit mode (the rule is enforced there once they are promoted to enforce)"
	if held {
		note = "held where enforced; " + note
	}
	return note
}

// sample keeps at most max plans: the lowest ranks of each class, half the
// budget each, a class's unused half going to the other.
func sample(allowed, denied []probePlan, max int) []probePlan {
	if len(allowed)+len(denied) <= max {
		return append(allowed, denied...)
	}
	byRank := func(ps []probePlan) {
		sort.Slice(ps, func(i, j int) bool { return ps[i].rank < ps[j].rank })
	}
	byRank(allowed)
	byRank(denied)
	na := min(len(allowed), max/2)
	nd := min(len(denied), max-na)
	na = min(len(allowed), max-nd)
	return append(allowed[:na:na], denied[:nd]...)
}

// declaredPorts returns the union of the declared ports of eps, sorted.
func declaredPorts(eps []model.Endpoint) []model.ContainerPort {
	seen := map[model.ContainerPort]bool{}
	var out []model.ContainerPort
	for _, e := range eps {
		for _, p := range e.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = model.ProtocolTCP
			}
			k := model.ContainerPort{Port: p.Port, Protocol: proto}
			if !seen[k] {
				seen[k] = true
				k.Name = p.Name
				out = append(out, k)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].Protocol < out[j].Protocol
	})
	return out
}

// pickAddr returns an IPv6 address of addrs when v6 (else IPv4), falling
// back to the other family.
func pickAddr(addrs []netip.Addr, v6 bool) (netip.Addr, bool) {
	for _, want := range []bool{v6, !v6} {
		for _, a := range addrs {
			if is6 := a.Is6() && !a.Is4In6(); is6 == want {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// Verify runs the live probe matrix of req (see verify.go for the method)
// and compares each outcome with the verdict policy predicts. A probe
// whose outcome differs from the prediction is a mismatch; Mismatches
// counts them. Errors: an invalid request (ErrInvalid), an unknown scope,
// or failing to compile the active policies; a probe that fails is a
// result, not an error.
func (s *Service) Verify(ctx context.Context, req VerifyRequest) (*evidence.ProbeRun, error) {
	if err := req.normalize(); err != nil {
		return nil, err
	}
	eps := s.inv.Endpoints()
	if req.Scope != "" && !scopeKnown(eps, req.Scope) {
		return nil, fmt.Errorf("%w: scope %q is neither a namespace nor a workload of the inventory", ErrInvalid, Clip(req.Scope))
	}
	world, set, err := s.policyWorld()
	if err != nil {
		return nil, err
	}
	probed, err := s.withObservedPorts(eps)
	if err != nil {
		return nil, err
	}
	plans, matrix, audited := planProbes(probed, world, set, req.Scope, req.MaxProbes)
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
			o := s.node.Probe(ctx, p.src, p.Protocol, p.addr, timeout)
			r.Outcome, r.Reached, r.Detail = o.Outcome, o.Reached, o.Detail
			took := time.Since(start)
			if o.Duration > 0 {
				took = o.Duration
			}
			r.DurationMS = float64(took.Microseconds()) / 1000
			r.Match = r.Reached == r.ExpectReach
			run.Results[i] = r
		}()
	}
	wg.Wait()
	run.Finished = time.Now().UTC()
	run.AdminDenies = adminDenyChecks(set, plans, run.Results, audited)
	for _, r := range run.Results {
		if r.ExpectReach {
			run.ExpectedAllowed++
		} else {
			run.ExpectedDenied++
		}
		if !r.Match {
			run.Mismatches++
			s.log.Warn("probe mismatch", "from", r.SourceNetns, "to", r.Address, "protocol", r.Protocol, "expected", r.Expected, "outcome", r.Outcome)
		}
	}
	s.log.Info("verify finished", "probes", run.Probed, "mismatches", run.Mismatches, "duration", run.Finished.Sub(run.Started))
	return run, nil
}

// scopeKnown reports whether scope names a namespace or workload of eps.
func scopeKnown(eps []model.Endpoint, scope string) bool {
	for _, e := range eps {
		if inScope(scope, e.Key()) {
			return true
		}
	}
	return false
}

// withObservedPorts returns eps, except that the endpoints of a workload
// none of whose endpoints declares a port (a container run without
// --expose or -p) carry the ports it was observed serving instead: the
// destination ports of the stored edges into it with at least one
// connection that succeeded. The reachability of Change, the evidence
// bundle and verify's probes are computed over declared ports
// (declaredPorts); without this a workload that declares none would have
// no paths at all. eps itself is not modified.
func (s *Service) withObservedPorts(eps []model.Endpoint) ([]model.Endpoint, error) {
	declared := map[string]bool{}
	for _, e := range eps {
		if len(e.Ports) > 0 {
			declared[e.Key()] = true
		}
	}
	bare := false
	for _, e := range eps {
		bare = bare || !declared[e.Key()]
	}
	if !bare {
		return eps, nil
	}
	edges, err := s.obs.Edges(time.Time{})
	if err != nil {
		return nil, fmt.Errorf("read observed edges: %w", err)
	}
	served := map[string][]model.ContainerPort{}
	seen := map[string]map[model.ContainerPort]bool{}
	for _, e := range edges {
		d := e.Destination
		if d.External || e.Flows <= e.Failed || e.Port == 0 {
			continue
		}
		k := d.Namespace + "/" + d.Workload
		if declared[k] {
			continue
		}
		p := model.ContainerPort{Port: int32(e.Port), Protocol: e.Protocol}
		if seen[k] == nil {
			seen[k] = map[model.ContainerPort]bool{}
		}
		if !seen[k][p] {
			seen[k][p] = true
			served[k] = append(served[k], p)
		}
	}
	out := slices.Clone(eps)
	for i := range out {
		if ps := served[out[i].Key()]; !declared[out[i].Key()] && len(ps) > 0 {
			out[i].Ports = ps
		}
	}
	return out, nil
}
