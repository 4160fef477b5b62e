package evidence

import (
	"fmt"
	"sort"
	"time"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// String renders r as "ingress 198.18.0.5/32 tcp 5432 rule ID".
func (r Rule) String() string {
	ports := fmt.Sprintf("%d-%d", r.PortFrom, r.PortTo)
	if r.PortFrom == r.PortTo {
		ports = fmt.Sprint(r.PortFrom)
	}
	return fmt.Sprintf("%s %s %s %s rule %s", r.Direction, r.Peer, r.Protocol, ports, r.RuleID)
}

// Count is a rule's kernel counter: connection-opening packets and their
// bytes.
type Count struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Snapshot is the kernel's per-rule counters of every endpoint at one time:
// netns → rule id → counter.
type Snapshot struct {
	At       time.Time                   `json:"at"`
	Counters map[string]map[string]Count `json:"counters"`
}

// WindowCounters computes each rule's hits in the window that starts at
// start: the current counters minus those of the earliest snapshot taken at
// or after start (the counted interval then starts at that snapshot); with
// no such snapshot, or for a rule the snapshot does not hold, the totals
// since the rule was programmed. A counter lower than its snapshot (the
// table was re-created) counts from zero, marked "reset". workloadOf maps a
// netns to its workload. Rules come sorted by workload, netns and rule id;
// unused are those with no packet in the window.
func WindowCounters(now map[string]map[string]Count, snaps []Snapshot, start time.Time, workloadOf func(netns string) string) (rules, unused []RuleCounter) {
	var base *Snapshot
	for i := range snaps {
		s := &snaps[i]
		if !s.At.Before(start) && (base == nil || s.At.Before(base.At)) {
			base = s
		}
	}
	for netns, m := range now {
		for id, c := range m {
			rc := RuleCounter{Workload: workloadOf(netns), Netns: netns, RuleID: id, TotalPackets: c.Packets, TotalBytes: c.Bytes,
				WindowPackets: c.Packets, WindowBytes: c.Bytes, Baseline: "programmed"}
			if base != nil {
				if old, ok := base.Counters[netns][id]; ok {
					rc.CountedFrom = base.At.UTC()
					if c.Packets >= old.Packets && c.Bytes >= old.Bytes {
						rc.WindowPackets, rc.WindowBytes, rc.Baseline = c.Packets-old.Packets, c.Bytes-old.Bytes, "snapshot"
					} else {
						rc.Baseline = "reset"
					}
				}
			}
			rules = append(rules, rc)
		}
	}
	sort.Slice(rules, func(i, j int) bool {
		a, b := rules[i], rules[j]
		if a.Workload != b.Workload {
			return a.Workload < b.Workload
		}
		if a.Netns != b.Netns {
			return a.Netns < b.Netns
		}
		return a.RuleID < b.RuleID
	})
	for _, r := range rules {
		if r.WindowPackets == 0 {
			unused = append(unused, r)
		}
	}
	return rules, unused
}

// PruneSnapshots keeps the snapshots of the last keep duration before now,
// and at most max of them (the newest).
func PruneSnapshots(snaps []Snapshot, now time.Time, keep time.Duration, max int) []Snapshot {
	var out []Snapshot
	for _, s := range snaps {
		if now.Sub(s.At) <= keep {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}

// ReachTarget is one workload for reachability: its key, one pod of it in
// the policy world ("namespace/podname"), and its declared ports.
type ReachTarget struct {
	Workload string
	Pods     []string
	Ports    []model.ContainerPort
}

// Reach computes the reachability summary over targets: for every source
// workload, destination workload and declared destination port (TCP, UDP,
// SCTP), whether a connection would pass with no policy (always) and with
// set in world, as policies.Evaluate predicts (NetworkPolicy semantics).
// A workload to itself counts only when it has two pods (replica to
// replica). A path counts as reachable now when Evaluate allows or
// audit-denies it (audit lets it through). Each pair is evaluated between
// the first pods of each workload (replicas share their identity, so their
// verdicts agree) and between the first and second pod for a workload to
// itself. include, when not nil, keeps only the (source, destination)
// workload pairs it returns true for (a scope).
func Reach(world policies.World, set policies.PolicySet, targets []ReachTarget, include func(src, dst string) bool) Reachability {
	var r Reachability
	pairsBefore, pairsNow := map[[2]string]bool{}, map[[2]string]bool{}
	pairs := map[[2]string]bool{}
	for _, s := range targets {
		for _, d := range targets {
			if len(s.Pods) == 0 || len(d.Pods) == 0 || (include != nil && !include(s.Workload, d.Workload)) {
				continue
			}
			from, to := s.Pods[0], d.Pods[0]
			if s.Workload == d.Workload {
				if len(d.Pods) < 2 {
					continue
				}
				to = d.Pods[1]
			}
			for _, p := range d.Ports {
				conn := policies.Connection{From: policies.ConnEnd{Pod: from}, To: policies.ConnEnd{Pod: to}, Protocol: p.Protocol, Port: p.Port}
				v := policies.Evaluate(world, set, conn)
				key := [2]string{s.Workload, d.Workload}
				pairs[key] = true
				r.PathsTotal++
				r.PathsBefore++
				pairsBefore[key] = true
				if v.Action != model.VerdictDeny {
					r.PathsNow++
					pairsNow[key] = true
				}
				if v.Action == model.VerdictAuditDeny {
					r.PathsAuditOnly++
				}
				r.Rows = append(r.Rows, ReachPath{Source: s.Workload, Destination: d.Workload, Port: int(p.Port), Protocol: string(p.Protocol),
					Before: model.VerdictAllow, Now: v.Action, Reason: v.Reason()})
			}
		}
	}
	r.PairsTotal, r.PairsBefore, r.PairsNow = len(pairs), len(pairsBefore), len(pairsNow)
	if r.PathsBefore > 0 {
		r.ReductionPercent = 100 * float64(r.PathsBefore-r.PathsNow) / float64(r.PathsBefore)
	}
	return r
}
