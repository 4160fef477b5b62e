package evidence

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"strings"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

//go:embed report.html.tmpl
var reportTemplate string

var report = sync.OnceValues(func() (*template.Template, error) {
	return template.New("report").Funcs(template.FuncMap{
		"brk":      breakAfter,
		"hash":     hashGroups,
		"plural":   plural[int],
		"plural64": plural[uint64],
	}).Parse(reportTemplate)
})

// breakAfter writes s as segments that each end after a "/" or a ".", each
// segment kept whole (CSS white-space: nowrap) with a line-break
// opportunity (<wbr>) between them: "seg/kube-system/dns/from-monitoring-
// prometheus" wraps only at its slashes, and its column is as wide as its
// longest segment instead of one character.
func breakAfter(s string) template.HTML {
	var b strings.Builder
	for s != "" {
		i := strings.IndexAny(s, "/.") + 1
		if i == 0 {
			i = len(s)
		}
		if b.Len() > 0 {
			b.WriteString("<wbr>")
		}
		b.WriteString("<span>" + template.HTMLEscapeString(s[:i]) + "</span>")
		s = s[i:]
	}
	return template.HTML(b.String())
}

// hashGroups writes a hex digest in groups of 16 digits that may wrap
// between groups, so a SHA-256 takes two or four even lines.
func hashGroups(h string) template.HTML {
	var b strings.Builder
	for len(h) > 0 {
		n := min(16, len(h))
		if b.Len() > 0 {
			b.WriteString("<wbr>")
		}
		b.WriteString("<span>" + template.HTMLEscapeString(h[:n]) + "</span>")
		h = h[n:]
	}
	return template.HTML(b.String())
}

// plural writes n with the singular or plural noun: "1 rule", "2 rules".
func plural[T int | uint64](n T, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

type reportMeta struct {
	GeneratedAt, WindowStart, Host, Agent, Lab, RequestedBy string
	ChainOK                                                 bool
	ChainText                                               string
}

type reportData struct {
	Meta                                         reportMeta
	Scope, Window, Frameworks                    string
	NWorkloads, NEndpoints, NEnforced, NAudit    int
	NObserve, NInSync, NRules, NDeniedEvents     int
	NUsed, NUnused, NCounters, NHistory          int
	PathsTotal, PathsBefore, PathsNow, AuditOnly int
	PairsTotal, PairsBefore, PairsNow            int
	Reduction                                    string
	Inventory                                    []reportWorkload
	Active                                       []reportActive
	History                                      []reportEvent
	Rules                                        []reportRules
	Counters                                     []reportCounter
	Denied                                       []reportDenied
	Reach                                        []ReachPath
	Probes                                       *ProbeRun
	ProbeStart, ProbeEnd, ProbeTimeout           string
	Coverage                                     []reportCoverage
	NSilent                                      int
	// CNPs are the ClusterNetworkPolicies in force; NAdminProbed the
	// Admin Deny rules with a live probe, NAdminHeld those that held and
	// are enforced everywhere they decide, NAdminAudited those logged as
	// audit-deny, not dropped, on some workload in audit mode.
	CNPs []ClusterPolicy
	// CNPRecords are every record of them (At "unknown" when zero).
	CNPRecords                              []reportCNPRecord
	NAdminProbed, NAdminHeld, NAdminAudited int
}

type reportCNPRecord struct {
	Name, Action, At, By string
	Revision             int
}

type reportCoverage struct {
	Workload, Observed, From, LastNew, Ports, Note string
	Endpoints, Peers                               int
	Flows, Failed                                  uint64
	Silent                                         bool
}

type reportWorkload struct {
	Key, Labels string
	Endpoints   []struct{ Netns, Addrs, Ports string }
}

type reportActive struct {
	Workload, Mode, Origin, Since, PromotedBy, Reason string
	Revision                                          int
	Seq                                               uint64
}

type reportEvent struct {
	Seq                                         uint64
	At, Who, Workload, Action, From, To, Reason string
	Hash                                        string
}

type reportRules struct {
	Netns, Workload, Mode string
	N                     int
	InSync                bool
	Drift                 []string
}

type reportCounter struct {
	RuleCounter
	// First: the first rule of its endpoint; the report heads each
	// endpoint's rules with its workload and netns.
	First bool
	// FromWords and FromTime say where the window's count starts: a
	// snapshot's time, when the rule was programmed (no time known), or
	// when the table was re-created (after FromTime).
	FromWords, FromTime string
}

type reportDenied struct {
	DeniedFlow
	First, Last string
}

// ReportHTML renders b as one self-contained HTML page (no scripts, no
// external resources; printable): a summary, then inventory, policies and
// history, rules and drift, counters, denied flows, reachability and
// probes. Every number carries its unit and every time is RFC 3339 UTC.
// Printed (report.pdf is this page printed by a headless Chromium), every
// table repeats its column names on each page and each page is numbered;
// rule ids and netns names wrap only after "/" and ".". Errors: template
// failures.
func ReportHTML(b *Bundle) ([]byte, error) {
	t, err := report()
	if err != nil {
		return nil, fmt.Errorf("parse report template: %w", err)
	}
	d := reportData{
		Meta: reportMeta{GeneratedAt: ts(b.Meta.GeneratedAt), WindowStart: ts(b.Meta.WindowStart), Host: b.Meta.Host, Agent: b.Meta.Agent,
			Lab: b.Meta.Lab, RequestedBy: b.Meta.RequestedBy, ChainOK: b.Policies.Chain.Verified},
		Scope: b.Meta.Scope, Window: time.Duration(b.Meta.Window).String(), Frameworks: strings.Join(b.Meta.Frameworks, "; "),
		NWorkloads: len(b.Inventory), NRules: len(b.Rules), NDeniedEvents: len(b.Denied.Events), NCounters: len(b.Counters.Rules),
		NUnused: len(b.Counters.Unused), NHistory: len(b.Policies.History),
		PathsTotal: b.Reachability.PathsTotal, PathsBefore: b.Reachability.PathsBefore, PathsNow: b.Reachability.PathsNow,
		AuditOnly: b.Reachability.PathsAuditOnly, PairsTotal: b.Reachability.PairsTotal, PairsBefore: b.Reachability.PairsBefore,
		PairsNow: b.Reachability.PairsNow, Reduction: fmt.Sprintf("%.1f", b.Reachability.ReductionPercent), Reach: b.Reachability.Rows,
		Probes: b.Probes,
	}
	if d.Scope == "" {
		d.Scope = "every workload"
	}
	if b.Policies.Chain.Verified {
		d.Meta.ChainText = "verified"
	} else {
		d.Meta.ChainText = "BROKEN: " + b.Policies.Chain.Error
	}
	d.NUsed = d.NCounters - d.NUnused
	for _, w := range b.Inventory {
		rw := reportWorkload{Key: w.Key, Labels: strings.ReplaceAll(labelString(w.Identity), ",", ", ")}
		for _, e := range w.Endpoints {
			var ports []string
			for _, p := range e.Ports {
				s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
				if p.Name != "" {
					s += " (" + p.Name + ")"
				}
				ports = append(ports, s)
			}
			rw.Endpoints = append(rw.Endpoints, struct{ Netns, Addrs, Ports string }{e.Netns, strings.Join(e.Addrs, ", "), strings.Join(ports, ", ")})
		}
		d.NEndpoints += len(w.Endpoints)
		d.Inventory = append(d.Inventory, rw)
	}
	modes := map[string]string{}
	for _, a := range b.Policies.Active {
		modes[a.Workload] = a.Mode
		d.Active = append(d.Active, reportActive{Workload: a.Workload, Mode: a.Mode, Origin: a.Origin, Since: ts(a.Since), PromotedBy: a.PromotedBy,
			Reason: a.Reason, Revision: a.Revision, Seq: a.PromotionSeq})
	}
	for _, n := range b.Policies.NetworkPolicies {
		d.Active = append(d.Active, reportActive{Workload: "NetworkPolicy " + n.Namespace + "/" + n.Name, Mode: "enforce", Origin: "applied",
			Since: ts(n.At), PromotedBy: n.By, Reason: "a NetworkPolicy is enforced from when it is applied", Revision: n.Revision})
	}
	for _, w := range b.Inventory {
		switch modes[w.Key] {
		case "enforce":
			d.NEnforced++
		case "audit":
			d.NAudit++
		default:
			d.NObserve++
		}
	}
	for _, p := range b.Policies.History {
		reason := p.Reason
		if len(p.Forced) > 0 {
			reason += " [forced past the coverage gate: " + strings.Join(p.Forced, "; ") + "]"
		}
		d.History = append(d.History, reportEvent{Seq: p.Seq, At: ts(p.At), Who: p.Who, Workload: p.Workload, Action: string(p.Action),
			From: fmt.Sprintf("%s rev %d", p.FromMode, p.FromRevision), To: fmt.Sprintf("%s rev %d", p.ToMode, p.ToRevision), Reason: reason, Hash: p.Hash})
	}
	for _, c := range b.Coverage {
		rc := reportCoverage{Workload: c.Workload, Observed: model.ShortDuration(c.Observed()), From: ts(c.From), Endpoints: c.Endpoints,
			Peers: c.Peers, Flows: c.Flows, Failed: c.Failed, Silent: c.Silent}
		if !c.LastNew.IsZero() {
			rc.LastNew = ts(c.LastNew)
		}
		var ports []string
		for _, p := range c.Ports {
			ports = append(ports, fmt.Sprintf("%d/%s (%d clients)", p.Port, p.Protocol, p.Peers))
		}
		rc.Ports = strings.Join(ports, ", ")
		if c.Silent {
			rc.Note = "silent: no successful connection in the window"
			d.NSilent++
		}
		d.Coverage = append(d.Coverage, rc)
	}
	for _, r := range b.Rules {
		if r.InSync {
			d.NInSync++
		}
		drift := r.Drift
		if r.Error != "" {
			drift = append([]string{"read error: " + r.Error}, drift...)
		}
		d.Rules = append(d.Rules, reportRules{Netns: r.Netns, Workload: r.Workload, Mode: r.Mode, N: len(r.Programmed), InSync: r.InSync, Drift: drift})
	}
	for i, c := range b.Counters.Rules {
		rc := reportCounter{RuleCounter: c, First: i == 0 || b.Counters.Rules[i-1].Netns != c.Netns}
		switch c.Baseline {
		case "snapshot":
			rc.FromTime = ts(c.CountedFrom)
		case "reset":
			rc.FromWords, rc.FromTime = "table re-created after", ts(c.CountedFrom)
		default:
			rc.FromWords = "rule programmed"
		}
		d.Counters = append(d.Counters, rc)
	}
	for _, f := range b.Denied.Flows {
		if len(f.DecidedBy) > 0 {
			f.RuleID += " (" + strings.Join(f.DecidedBy, ", ") + ")"
		}
		d.Denied = append(d.Denied, reportDenied{DeniedFlow: f, First: ts(f.First), Last: ts(f.Last)})
	}
	if b.Probes != nil {
		d.ProbeStart, d.ProbeEnd, d.ProbeTimeout = ts(b.Probes.Started), ts(b.Probes.Finished), time.Duration(b.Probes.Timeout).String()
		for _, c := range b.Probes.AdminDenies {
			if len(c.Audited) > 0 {
				d.NAdminAudited++
			}
			if c.Probe != nil {
				d.NAdminProbed++
				if c.Held && len(c.Audited) == 0 {
					d.NAdminHeld++
				}
			}
		}
	}
	d.CNPs = b.Policies.ClusterNetworkPolicies
	for _, r := range b.Policies.ClusterNetworkPolicyRecords {
		at := ts(r.At)
		if at == "" {
			at = "unknown"
		}
		d.CNPRecords = append(d.CNPRecords, reportCNPRecord{Name: r.Name, Action: r.Action, At: at, By: r.By, Revision: r.Revision})
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("write report html: %w", err)
	}
	return buf.Bytes(), nil
}
