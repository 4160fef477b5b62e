package controller

// Which observed edges a proposal leaves out: those the verdict log shows
// denied (or audit-denied) within the window AND that the policies in
// force now still deny (or audit-deny), evaluated with policies.Evaluate
// against the current inventory. A denial older than the window, or one
// under a revision no longer in force that the policies in force now
// allow, leaves nothing out: the edge is proposed like any other.

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// denials is what the verdict log recorded of one edge within a window.
type denials struct {
	denied, auditDenied int      // connection attempts
	last                *attempt // the latest attempt
	lastAt              time.Time
}

// edgeDenials groups verdict events into attempts per edge key (see
// attempt.edgeKey).
func edgeDenials(evs []model.VerdictEvent) map[string]*denials {
	out := map[string]*denials{}
	for _, at := range attempts(evs, nil) {
		k := at.edgeKey()
		d := out[k]
		if d == nil {
			d = &denials{}
			out[k] = d
		}
		if at.verdict == model.VerdictDeny {
			d.denied++
		} else {
			d.auditDenied++
		}
		for _, e := range at.events {
			if !e.At.Before(d.lastAt) {
				d.last, d.lastAt = at, e.At
			}
		}
	}
	return out
}

// observedEdgeKey is the key of e as attempt.edgeKey builds it.
func observedEdgeKey(e model.Edge) string {
	return fmt.Sprintf("%s|%s|%s|%d", e.Source.String(), e.Destination.String(), e.Protocol, e.Port)
}

// stillDenied evaluates e against the policies in force and returns the
// verdict, or an error when e cannot be evaluated (a workload no longer in
// the inventory).
func (s *Service) stillDenied(world *policies.MemWorld, set policies.PolicySet, names map[netip.Addr][]string, e model.Edge) (model.Verdict, error) {
	v, err := s.evaluateEdge(world, set, names, e)
	if err != nil {
		return "", err
	}
	return v.Action, nil
}

// evaluateEdge evaluates e against set in world (policies.Evaluate), or
// fails when e cannot be evaluated (a workload no longer in the
// inventory, a protocol evaluation does not know).
func (s *Service) evaluateEdge(world *policies.MemWorld, set policies.PolicySet, names map[netip.Addr][]string, e model.Edge) (policies.Evaluation, error) {
	from, err := s.peerEndpoint(e.Source, names)
	if err != nil {
		return policies.Evaluation{}, err
	}
	to, err := s.peerEndpoint(e.Destination, names)
	if err != nil {
		return policies.Evaluation{}, err
	}
	c := policies.Connection{From: from, To: to, Port: int32(e.Port)}
	switch e.Protocol {
	case model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP:
		c.Protocol = e.Protocol
	case model.ProtocolICMP, model.ProtocolICMPv6:
		c.Protocol, c.Port = model.ProtocolICMP, 0
	default:
		return policies.Evaluation{}, fmt.Errorf("protocol %q cannot be evaluated", e.Protocol)
	}
	v := policies.Evaluate(world, set, c)
	if v.Err != "" {
		return v, fmt.Errorf("evaluate: %s", v.Err)
	}
	return v, nil
}

// peerEndpoint returns the endpoint that stands for p in the policy world:
// a workload's first endpoint, or an external address (looked up in names
// when the peer is known by DNS name only) with its name.
func (s *Service) peerEndpoint(p model.Peer, names map[netip.Addr][]string) (policies.ConnEnd, error) {
	if !p.External {
		eps := s.inv.Workload(p.String())
		if len(eps) == 0 {
			return policies.ConnEnd{}, fmt.Errorf("workload %s is not in the inventory", p)
		}
		return policies.ConnEnd{Pod: eps[0].Namespace + "/" + eps[0].Netns}, nil
	}
	ep := policies.ConnEnd{IP: p.Addr, DNSName: p.Name}
	if !ep.IP.IsValid() && p.Name != "" {
		for addr, ns := range names {
			for _, n := range ns {
				if strings.EqualFold(strings.TrimSuffix(n, "."), strings.TrimSuffix(p.Name, ".")) && (!ep.IP.IsValid() || addr.Less(ep.IP)) {
					ep.IP = addr
				}
			}
		}
	}
	return ep, nil
}

// deniedBy names the rule sets that logged attempt at: each logging
// endpoint's workload with the revision and mode it had at the time (from
// the promotion history), or the endpoint when it is gone. An end that
// was in observe mode then cannot have denied it and is named only when
// nothing else is.
func (s *Service) deniedBy(at *attempt, hist map[string][]model.Promotion) (string, error) {
	workloadOf := map[string]string{}
	for _, e := range s.inv.Endpoints() {
		workloadOf[e.Netns] = e.Key()
	}
	var names, observing []string
	seen := map[string]bool{}
	add := func(list *[]string, n string) {
		if !seen[n] {
			seen[n] = true
			*list = append(*list, n)
		}
	}
	for _, e := range at.events {
		if e.Verdict != at.verdict {
			continue // the weaker end of an attempt logged in two modes
		}
		w, ok := workloadOf[e.Endpoint]
		if !ok {
			add(&names, "the rule set of "+e.Endpoint)
			continue
		}
		h, ok := hist[w]
		if !ok {
			var err error
			if h, err = s.store.History(w); err != nil {
				return "", err
			}
			hist[w] = h
		}
		mode, rev := model.ModeObserve, 0
		for _, p := range h {
			if !p.At.After(e.At) {
				mode, rev = p.ToMode, p.ToRevision
			}
		}
		n := fmt.Sprintf("%s revision %d (%s)", w, rev, mode)
		if mode == model.ModeObserve {
			add(&observing, n)
		} else {
			add(&names, n)
		}
	}
	if len(names) == 0 {
		names = observing
	}
	return strings.Join(names, " and "), nil
}

// excludedLine says why edge e is left out of a proposal.
func excludedLine(e model.Edge, d *denials, by string, now model.Verdict, evalErr error) string {
	var counts []string
	if d.denied > 0 {
		counts = append(counts, fmt.Sprintf("%d denied", d.denied))
	}
	if d.auditDenied > 0 {
		counts = append(counts, fmt.Sprintf("%d audit-denied", d.auditDenied))
	}
	line := fmt.Sprintf("%s -> %s %s/%d: %s in the window, the last at %s by %s; ", e.Source, e.Destination, e.Protocol, e.Port,
		strings.Join(counts, " and "), d.lastAt.UTC().Format(time.RFC3339), by)
	if evalErr != nil {
		return line + "left out because it cannot be evaluated against the policies in force: " + evalErr.Error()
	}
	return line + "the policies in force still " + string(now) + " it"
}
