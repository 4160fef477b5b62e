package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// shopBundle is an export of the shop lab as the agent makes it: eleven
// endpoints, real netns names and rule ids, one drifted endpoint, counters
// of every baseline, denied flows, reachability and probes. The report's
// golden file and its layout are checked against it.
func shopBundle() *Bundle {
	at := time.Date(2026, 3, 9, 14, 30, 0, 0, time.UTC)
	start := at.Add(-24 * time.Hour)
	netns := func(ns, w string, r int) string { return fmt.Sprintf("nanoseg-lab-shop.%s-%s-%d", ns, w, r) }
	type wl struct {
		ns, name string
		replicas int
		labels   map[string]string
		ports    []model.ContainerPort
		rules    []string // rule names of its nanosegment
	}
	metrics := model.ContainerPort{Name: "metrics", Port: 9090, Protocol: "TCP"}
	wls := []wl{
		{"kube-system", "dns", 1, map[string]string{"app": "dns", "k8s-app": "kube-dns"},
			[]model.ContainerPort{{Name: "dns", Port: 53, Protocol: "UDP"}, {Name: "dns-tcp", Port: 53, Protocol: "TCP"}, metrics},
			[]string{"from-shop-frontend", "from-shop-api", "from-shop-db", "from-monitoring-prometheus"}},
		{"monitoring", "prometheus", 1, map[string]string{"app": "prometheus"}, []model.ContainerPort{{Name: "web", Port: 9090, Protocol: "TCP"}},
			[]string{"to-kube-system-dns", "to-shop-frontend", "to-shop-api", "to-shop-db", "to-shop-cache"}},
		{"shop", "api", 1, map[string]string{"app": "api", "tier": "backend"}, []model.ContainerPort{{Name: "http", Port: 8080, Protocol: "TCP"}, metrics},
			[]string{"from-frontend", "from-monitoring-prometheus", "to-db", "to-cache", "to-payments-example", "to-kube-system-dns"}},
		{"shop", "cache", 1, map[string]string{"app": "cache", "tier": "data"}, []model.ContainerPort{{Name: "redis", Port: 6379, Protocol: "TCP"}, metrics},
			[]string{"from-api", "from-monitoring-prometheus"}},
		{"shop", "db", 1, map[string]string{"app": "db", "tier": "data"}, []model.ContainerPort{{Name: "postgres", Port: 5432, Protocol: "TCP"}, metrics},
			[]string{"from-api", "from-monitoring-prometheus"}},
		{"shop", "frontend", 2, map[string]string{"app": "frontend", "tier": "web"}, []model.ContainerPort{{Name: "http", Port: 80, Protocol: "TCP"}, metrics},
			[]string{"from-monitoring-prometheus", "to-api", "to-kube-system-dns"}},
		{"shop", "intruder", 1, map[string]string{"app": "intruder"}, []model.ContainerPort{metrics}, nil},
	}
	b := &Bundle{
		Meta: Meta{GeneratedAt: at, Host: "lab-host-01", Agent: "v0.4.0-12-g79b15a9", Lab: "shop", Window: Duration(24 * time.Hour),
			WindowStart: start, RequestedBy: "uid 0 (root)",
			Frameworks: []string{"PCI DSS 4.0 requirement 11.4.5 (segmentation controls tested)", "NIST SP 800-53 SC-7 (boundary protection)"}},
		Policies: Policies{Chain: ChainCheck{Verified: true}},
	}
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	addr := 10
	prev := ""
	seq := uint64(0)
	for _, w := range wls {
		key := w.ns + "/" + w.name
		iw := Workload{Key: key, Namespace: w.ns, Name: w.name, Identity: w.labels}
		for r := 0; r < w.replicas; r++ {
			n := netns(w.ns, w.name, r)
			iw.Endpoints = append(iw.Endpoints, Endpoint{Netns: n, Ports: w.ports,
				Addrs: []string{fmt.Sprintf("198.18.0.%d", addr), fmt.Sprintf("2001:db8:18::%x", addr)}})
			addr++
			er := EndpointRules{Netns: n, Workload: key, Present: true, Mode: "enforce", DesiredMode: "enforce", InSync: true,
				Name: w.ns + "/" + n}
			for i, rule := range w.rules {
				id := "seg/" + w.ns + "/" + w.name + "/" + rule
				er.Programmed = append(er.Programmed, Rule{Direction: model.Ingress, Peer: "198.18.0.0/16", Protocol: model.ProtocolTCP, PortFrom: 9090, PortTo: 9090, RuleID: id})
				c := RuleCounter{Workload: key, Netns: n, RuleID: id, TotalPackets: uint64(40000 + 997*i), TotalBytes: uint64(2400000 + 59820*i)}
				switch i % 3 {
				case 0:
					c.Baseline, c.CountedFrom, c.WindowPackets, c.WindowBytes = "snapshot", start.Add(3*time.Minute), uint64(8640+i), uint64(518400+60*i)
				case 1:
					c.Baseline, c.WindowPackets, c.WindowBytes = "programmed", c.TotalPackets, c.TotalBytes
				case 2:
					c.Baseline, c.CountedFrom, c.WindowPackets, c.WindowBytes = "reset", start.Add(3*time.Minute), uint64(120*i), uint64(7200*i)
				}
				if rule == "to-payments-example" {
					c.WindowPackets, c.WindowBytes = 0, 0
				}
				b.Counters.Rules = append(b.Counters.Rules, c)
				if c.WindowPackets == 0 {
					b.Counters.Unused = append(b.Counters.Unused, c)
				}
			}
			if key == "shop/cache" {
				er.InSync, er.Mode = false, "audit"
				er.Drift = []string{"mode is audit, want enforce",
					"missing entry: Ingress 198.18.0.12/32 TCP 6379 rule seg/shop/cache/from-api",
					"unexpected entry: Ingress 0.0.0.0/0 TCP 6379 rule seg/shop/cache/from-anywhere-added-by-hand"}
			}
			b.Rules = append(b.Rules, er)
		}
		b.Inventory = append(b.Inventory, iw)
		if w.rules == nil {
			continue
		}
		for _, step := range []struct{ from, to string }{{"observe", "audit"}, {"audit", "enforce"}} {
			seq++
			p := model.Promotion{Seq: seq, At: start.Add(time.Duration(seq) * 7 * time.Minute), Who: "uid 1000 (alice)", Workload: key, Action: model.ActionPromote,
				FromMode: model.Mode(step.from), ToMode: model.Mode(step.to), FromRevision: 1, ToRevision: 1,
				Reason: "change CHG-2291: " + step.to + " after a week without unexpected denials", PrevHash: prev}
			p.Hash = hash(fmt.Sprint(p))
			prev = p.Hash
			b.Policies.History = append(b.Policies.History, p)
		}
		b.Policies.Active = append(b.Policies.Active, ActiveRevision{Workload: key, Mode: "enforce", Revision: 1, Origin: "proposed",
			CreatedAt: start, CreatedBy: "uid 1000 (alice)", Since: b.Policies.History[len(b.Policies.History)-1].At,
			PromotedBy: "uid 1000 (alice)", PromotionSeq: seq, Reason: b.Policies.History[len(b.Policies.History)-1].Reason})
	}
	b.Policies.Chain.Events, b.Policies.Chain.Head = len(b.Policies.History), prev
	for i := range 14 {
		b.Denied.Events = append(b.Denied.Events, model.VerdictEvent{At: start.Add(time.Duration(i) * time.Hour), Endpoint: netns("shop", "db", 0),
			Verdict: "deny", RuleID: "shop/" + netns("shop", "db", 0), Source: "shop/intruder", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432})
	}
	for i := range 3 {
		b.Denied.Events = append(b.Denied.Events, model.VerdictEvent{At: start.Add(time.Duration(i) * 5 * time.Hour), Endpoint: netns("shop", "api", 0),
			Verdict: "audit-deny", RuleID: "shop/" + netns("shop", "api", 0), Source: "monitoring/prometheus", Destination: "shop/api", Protocol: model.ProtocolTCP, Port: 8080})
	}
	b.Denied.Flows = GroupDenied(b.Denied.Events)
	r := &b.Reachability
	for _, src := range wls {
		for _, dst := range wls {
			if src.name == dst.name {
				continue
			}
			for _, p := range dst.ports {
				row := ReachPath{Source: src.ns + "/" + src.name, Destination: dst.ns + "/" + dst.name, Port: int(p.Port), Protocol: string(p.Protocol),
					Before: "allow", Now: "deny", Reason: "no ingress rule of " + dst.ns + "/" + dst.name + " (nanosegment " + dst.name + ", enforce) allows it"}
				if src.name == "prometheus" && p.Name == "metrics" || dst.name == "dns" && p.Port == 53 {
					row.Now, row.Reason = "allow", "allowed by seg/"+dst.ns+"/"+dst.name+"/from-"+src.ns+"-"+src.name
				}
				r.Rows = append(r.Rows, row)
				r.PathsTotal++
				r.PathsBefore++
				if row.Now == "allow" {
					r.PathsNow++
				}
			}
		}
	}
	r.PairsTotal, r.PairsBefore, r.PairsNow = 42, 42, 11
	r.ReductionPercent = 100 * float64(r.PathsBefore-r.PathsNow) / float64(r.PathsBefore)
	pr := &ProbeRun{Started: at.Add(-40 * time.Second), Finished: at.Add(-3 * time.Second), Timeout: Duration(2 * time.Second), Parallel: 8,
		Method: "every (source workload, destination workload, declared port) path, one probe from the first replica of the source to every replica of the destination"}
	for i, row := range r.Rows {
		if i%4 != 0 {
			continue
		}
		p := Probe{Source: row.Source, Destination: row.Destination, SourceNetns: "nanoseg-lab-shop." + slug(row.Source) + "-0",
			DestNetns: "nanoseg-lab-shop." + slug(row.Destination) + "-0", Address: fmt.Sprintf("198.18.0.%d:%d", 10+i%11, row.Port),
			Protocol: row.Protocol, Port: row.Port, Expected: row.Now, ExpectReach: row.Now == "allow", DurationMS: 0.4 + float64(i%7)*0.31}
		p.Outcome, p.Reached = "timeout", false
		if p.ExpectReach {
			p.Outcome, p.Reached = "connected", true
		}
		p.Match = true
		pr.Results = append(pr.Results, p)
		pr.Probed++
		if p.ExpectReach {
			pr.ExpectedAllowed++
		} else {
			pr.ExpectedDenied++
		}
	}
	pr.Matrix = len(r.Rows)
	b.Probes = pr
	return b
}

func slug(key string) string {
	out := []byte(key)
	for i, c := range out {
		if c == '/' {
			out[i] = '-'
		}
	}
	return string(out)
}
