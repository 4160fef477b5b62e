package controller

// Coverage: how well each workload was observed within a window, from the
// node's observation spans (how long an observer was attached to at least
// one of its endpoints) and the edges (what it did). Pure: ComputeCoverage
// takes what the store returned. Proposals, diff, status, the graph and
// evidence show it; a promotion to enforce of a proposed revision is
// refused without Force when it is too thin (gate).

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// DefaultMinObserved is the observation a promotion to enforce asks of a
// workload's proposal unless configured otherwise (agent config
// minObserved, `promote --min-observed`): one hour, so that traffic on a
// schedule shorter than that was seen at least once.
const DefaultMinObserved = time.Hour

// windowSlack is how much of a window may be unobserved before a
// promotion to enforce says the window was not observed: the last flush
// before the proposal (observations are committed every few seconds) and
// the time the node took to attach.
func windowSlack(window time.Duration) time.Duration {
	return max(window/100, 30*time.Second)
}

// ComputeCoverage returns the coverage of each workload of workloads
// ("namespace/workload") in the window [from, to]: from zero is
// "everything", and each workload's window then starts at its first
// observation. spans are observation spans and edges the edges of the
// window (as the store returns them for from; spans and edges outside
// it are ignored or clipped). window is the window asked for (0 for
// everything), reported as is. Result in the order of workloads.
func ComputeCoverage(workloads []string, spans []model.ObservedSpan, edges []model.Edge, window time.Duration, from, to time.Time) []model.Coverage {
	byWorkload := map[string][]model.ObservedSpan{}
	for _, sp := range spans {
		byWorkload[sp.Workload] = append(byWorkload[sp.Workload], sp)
	}
	type acc struct {
		peers map[string]bool
		ports map[string]*model.PortCoverage
		pPeer map[string]map[string]bool
	}
	cov := map[string]*model.Coverage{}
	accs := map[string]*acc{}
	out := make([]model.Coverage, 0, len(workloads))
	for _, w := range workloads {
		c := &model.Coverage{Workload: w, To: to.UTC(), WindowSeconds: window.Seconds(), Silent: true}
		wf := from
		eps := map[string]bool{}
		for _, sp := range byWorkload[w] {
			if c.FirstObserved.IsZero() || sp.Start.Before(c.FirstObserved) {
				c.FirstObserved = sp.Start.UTC()
			}
		}
		if wf.IsZero() {
			wf = c.FirstObserved
		}
		if !wf.IsZero() {
			c.From = wf.UTC()
		}
		var ivs [][2]time.Time
		for _, sp := range byWorkload[w] {
			s, e := sp.Start, sp.End
			if s.Before(wf) {
				s = wf
			}
			if e.After(to) {
				e = to
			}
			if e.After(s) {
				ivs = append(ivs, [2]time.Time{s, e})
				eps[sp.Endpoint] = true
			}
		}
		c.ObservedSeconds = unionLength(ivs).Seconds()
		c.Endpoints = len(eps)
		cov[w] = c
		accs[w] = &acc{peers: map[string]bool{}, ports: map[string]*model.PortCoverage{}, pPeer: map[string]map[string]bool{}}
	}
	for _, e := range edges {
		if (!from.IsZero() && e.LastSeen.Before(from)) || e.FirstSeen.After(to) {
			continue // outside the window
		}
		for _, side := range []struct {
			me, other model.Peer
			server    bool
		}{{e.Source, e.Destination, false}, {e.Destination, e.Source, true}} {
			if side.me.External {
				continue
			}
			c := cov[side.me.String()]
			if c == nil {
				continue
			}
			a := accs[c.Workload]
			c.Flows += e.Flows
			c.Failed += e.Failed
			if e.Succeeded() > 0 || e.Bytes() > 0 {
				c.Silent = false
			}
			a.peers[side.other.String()] = true
			if e.FirstSeen.After(c.LastNew) {
				c.LastNew = e.FirstSeen.UTC()
			}
			if !side.server {
				continue
			}
			k := fmt.Sprintf("%s/%d", e.Protocol, e.Port)
			pc := a.ports[k]
			if pc == nil {
				pc = &model.PortCoverage{Protocol: e.Protocol, Port: e.Port, FirstSeen: e.FirstSeen.UTC()}
				a.ports[k] = pc
				a.pPeer[k] = map[string]bool{}
			}
			pc.Flows += e.Flows
			pc.Failed += e.Failed
			a.pPeer[k][side.other.String()] = true
			if e.FirstSeen.Before(pc.FirstSeen) {
				pc.FirstSeen = e.FirstSeen.UTC()
			}
			if e.FirstSeen.After(pc.LastNew) {
				pc.LastNew = e.FirstSeen.UTC()
			}
		}
	}
	for _, w := range workloads {
		c, a := cov[w], accs[w]
		c.Peers = len(a.peers)
		for k, pc := range a.ports {
			pc.Peers = len(a.pPeer[k])
			c.Ports = append(c.Ports, *pc)
		}
		sort.Slice(c.Ports, func(i, j int) bool {
			if c.Ports[i].Protocol != c.Ports[j].Protocol {
				return c.Ports[i].Protocol < c.Ports[j].Protocol
			}
			return c.Ports[i].Port < c.Ports[j].Port
		})
		out = append(out, *c)
	}
	return out
}

// unionLength returns the length of the union of intervals.
func unionLength(ivs [][2]time.Time) time.Duration {
	sort.Slice(ivs, func(i, j int) bool { return ivs[i][0].Before(ivs[j][0]) })
	var total time.Duration
	var cur [2]time.Time
	for i, iv := range ivs {
		switch {
		case i == 0:
			cur = iv
		case !iv[0].After(cur[1]):
			if iv[1].After(cur[1]) {
				cur[1] = iv[1]
			}
		default:
			total += cur[1].Sub(cur[0])
			cur = iv
		}
	}
	if len(ivs) > 0 {
		total += cur[1].Sub(cur[0])
	}
	return total
}

// Coverage returns the coverage of every workload of the inventory within
// window (everything for 0), up to now, from what is stored. It writes
// nothing (see CommitObservations).
func (s *Service) Coverage(window time.Duration) ([]model.Coverage, error) {
	return s.coverageAt(s.inv.Workloads(), window, time.Now())
}

// coverageAt is the coverage of workloads within window ending at to.
func (s *Service) coverageAt(workloads []string, window time.Duration, to time.Time) ([]model.Coverage, error) {
	var from time.Time
	if window > 0 {
		from = to.Add(-window)
	}
	spans, err := s.obs.Observed(from)
	if err != nil {
		return nil, err
	}
	edges, err := s.obs.Edges(from)
	if err != nil {
		return nil, err
	}
	return ComputeCoverage(workloads, spans, edges, window, from, to), nil
}

// EnforceGate is the coverage gate of a promotion to enforce of a
// proposed revision of workload ("namespace/workload"), the one rule that
// both Promote and the cluster controller's Settled condition apply:
// GateReasons of the workload's own coverage (the first of covs whose
// Workload is workload; absent: never observed), and, for every other
// workload of its namespace in covs that is silent, that whatever it does
// with workload will be denied. covs is the coverage in the proposal's
// window (asked as window; 0 for every edge), minObserved the observation
// asked for (0 or less: no minimum). It returns the workload's coverage
// and the reasons, empty when a promotion to enforce may go ahead
// without force.
func EnforceGate(workload string, covs []model.Coverage, window, minObserved time.Duration) (model.Coverage, []string) {
	c := model.Coverage{Workload: workload, Silent: true, WindowSeconds: window.Seconds()}
	ns, _, _ := strings.Cut(workload, "/")
	var silent []model.Coverage
	found := false
	for _, o := range covs {
		switch {
		case o.Workload == workload && !found:
			c, found = o, true
		case o.Workload != workload && o.Silent && strings.HasPrefix(o.Workload, ns+"/"):
			silent = append(silent, o)
		}
	}
	reasons := GateReasons(c, window, minObserved)
	for _, o := range silent {
		// Without the time since the last new peer, which grows with the
		// clock: the reasons are a condition's message, rewritten when
		// they change.
		o.LastNew = time.Time{}
		reasons = append(reasons, fmt.Sprintf("%s, in its namespace, had no observed traffic in that window (%s): whatever it does with %s will be denied", o.Workload, o.Summary(), workload))
	}
	return c, reasons
}

// GateReasons returns why a promotion to enforce of a proposal with
// coverage c (in the proposal's window, asked as window; 0 for every edge)
// should be refused: observed less than minObserved (0 or less: no
// minimum) or less than the window asked (both beyond windowSlack, the
// lag of the last commit before the proposal), or silent. Empty when it may
// go ahead.
func GateReasons(c model.Coverage, window, minObserved time.Duration) []string {
	var out []string
	obs := c.Observed()
	if minObserved > 0 && obs < minObserved-windowSlack(minObserved) {
		r := fmt.Sprintf("observed for %s, less than the %s required (--min-observed)", model.ShortDuration(obs), model.ShortDuration(minObserved))
		if window > 0 && window < minObserved-windowSlack(minObserved) {
			// No amount of waiting helps: the window caps what counts.
			r += fmt.Sprintf(", which its %s window (--window) can never hold: propose again with a window of at least %s, or lower --min-observed",
				model.ShortDuration(window), model.ShortDuration(minObserved))
		}
		out = append(out, r)
	}
	if window > 0 && obs < window-windowSlack(window) {
		out = append(out, fmt.Sprintf("its proposal asked for a %s window (--window) but it was observed for only %s of it", model.ShortDuration(window), model.ShortDuration(obs)))
	}
	if c.Silent {
		out = append(out, "no observed traffic in its proposal's window: its policy would deny everything it does")
	}
	return out
}
