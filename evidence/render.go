package evidence

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// TimeFormat is how every timestamp of a bundle is written: RFC 3339 in UTC.
const TimeFormat = time.RFC3339

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeFormat)
}

// Files renders b into the bundle's files (path → content): one JSON
// document per section and bundle.json with all of them, CSV tables with
// the same facts (units in the column names, timestamps RFC 3339 UTC), and
// report.html. Signing adds manifest.json, manifest.sig and
// signing-key.pub. Errors: encoding failures.
func Files(b *Bundle) (map[string][]byte, error) {
	b.normalize()
	files := map[string][]byte{}
	var errs []error
	putJSON := func(name string, v any) {
		raw, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			errs = append(errs, fmt.Errorf("encode %s: %w", name, err))
			return
		}
		files[name] = append(raw, '\n')
	}
	putCSV := func(name string, header []string, rows [][]string) {
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		_ = w.Write(header)
		_ = w.WriteAll(rows)
		w.Flush()
		if err := w.Error(); err != nil {
			errs = append(errs, fmt.Errorf("encode %s: %w", name, err))
			return
		}
		files[name] = buf.Bytes()
	}
	putJSON("bundle.json", b)
	putJSON("inventory.json", b.Inventory)
	putJSON("policies.json", b.Policies.Active)
	putJSON("history.json", b.Policies.History)
	putJSON("rules.json", b.Rules)
	putJSON("counters.json", b.Counters)
	putJSON("denied.json", b.Denied)
	putJSON("reachability.json", b.Reachability)
	if b.Probes != nil {
		putJSON("probes.json", b.Probes)
	}
	putJSON("cluster-network-policies.json", b.Policies.ClusterNetworkPolicies)

	var rows [][]string
	for _, w := range b.Inventory {
		for _, e := range w.Endpoints {
			var ports []string
			for _, p := range e.Ports {
				ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
			}
			rows = append(rows, []string{w.Key, w.Namespace, w.Name, labelString(w.Identity), e.Netns, strings.Join(e.Addrs, " "), strings.Join(ports, " ")})
		}
	}
	putCSV("inventory.csv", []string{"workload", "namespace", "name", "identity_labels", "endpoint_netns", "addresses", "declared_ports"}, rows)

	rows = nil
	for _, p := range b.Policies.History {
		rows = append(rows, []string{strconv.FormatUint(p.Seq, 10), ts(p.At), p.Who, p.Workload, string(p.Action), string(p.FromMode), strconv.Itoa(p.FromRevision),
			string(p.ToMode), strconv.Itoa(p.ToRevision), p.Reason, p.PrevHash, p.Hash})
	}
	putCSV("promotions.csv", []string{"seq", "at_utc", "who", "workload", "action", "from_mode", "from_revision", "to_mode", "to_revision", "reason", "prev_hash_sha256", "hash_sha256"}, rows)

	rows = nil
	for _, a := range b.Policies.Active {
		rows = append(rows, []string{a.Workload, a.Mode, strconv.Itoa(a.Revision), a.Origin, ts(a.CreatedAt), a.CreatedBy, ts(a.Since), a.PromotedBy, strconv.FormatUint(a.PromotionSeq, 10), a.Reason})
	}
	putCSV("active-policies.csv", []string{"workload", "mode", "revision", "origin", "created_at_utc", "created_by", "active_since_utc", "promoted_by", "promotion_seq", "reason"}, rows)

	rows = nil
	for _, c := range b.Policies.ClusterNetworkPolicies {
		for _, r := range c.Rules {
			rows = append(rows, []string{c.Name, c.Tier, strconv.Itoa(int(c.Priority)), r.ID, r.Name, string(r.Direction), r.Action, r.RuleID, strconv.Itoa(r.Endpoints),
				strconv.FormatUint(r.WindowPackets, 10), strconv.FormatUint(r.WindowBytes, 10), strconv.FormatUint(r.TotalPackets, 10), strconv.FormatUint(r.TotalBytes, 10)})
		}
	}
	putCSV("cluster-network-policy-rules.csv", []string{"policy", "tier", "priority", "rule", "rule_name", "direction", "action", "rule_id", "endpoints",
		"window_packets", "window_bytes", "total_packets", "total_bytes"}, rows)

	rows = nil
	for _, r := range b.Policies.ClusterNetworkPolicyRecords {
		rows = append(rows, []string{r.Name, strconv.Itoa(r.Revision), r.Action, ts(r.At), r.By}) // at_utc empty: unknown
	}
	putCSV("cluster-network-policy-records.csv", []string{"policy", "revision", "action", "at_utc", "by"}, rows)

	rows = nil
	for _, r := range b.Rules {
		for _, x := range []struct {
			state string
			rules []Rule
		}{{"programmed", r.Programmed}, {"missing", r.Missing}, {"extra", r.Extra}} {
			for _, e := range x.rules {
				rows = append(rows, []string{r.Workload, r.Netns, x.state, strconv.FormatBool(r.InSync), string(e.Direction), e.Peer, string(e.Protocol),
					strconv.Itoa(e.PortFrom), strconv.Itoa(e.PortTo), e.RuleID})
			}
		}
		if len(r.Programmed)+len(r.Missing)+len(r.Extra) == 0 {
			rows = append(rows, []string{r.Workload, r.Netns, "none", strconv.FormatBool(r.InSync), "", "", "", "", "", ""})
		}
	}
	putCSV("rules.csv", []string{"workload", "endpoint_netns", "state", "endpoint_in_sync", "direction", "peer_prefix", "protocol", "port_from", "port_to", "rule_id"}, rows)

	rows = nil
	for _, c := range b.Counters.Rules {
		rows = append(rows, []string{c.Workload, c.Netns, c.RuleID, strconv.FormatUint(c.WindowPackets, 10), strconv.FormatUint(c.WindowBytes, 10),
			ts(c.CountedFrom), c.Baseline, strconv.FormatUint(c.TotalPackets, 10), strconv.FormatUint(c.TotalBytes, 10), strconv.FormatBool(c.WindowPackets == 0)})
	}
	putCSV("counters.csv", []string{"workload", "endpoint_netns", "rule_id", "window_packets", "window_bytes", "counted_from_utc", "baseline", "total_packets", "total_bytes", "unused_in_window"}, rows)

	rows = nil
	for _, f := range b.Denied.Flows {
		rows = append(rows, []string{string(f.Verdict), f.Source, f.Destination, string(f.Protocol), strconv.Itoa(f.Port), f.RuleID, strconv.Itoa(f.Count), ts(f.First), ts(f.Last)})
	}
	putCSV("denied.csv", []string{"verdict", "source", "destination", "protocol", "port", "rule_id", "events", "first_utc", "last_utc"}, rows)

	rows = nil
	for _, e := range b.Denied.Events {
		rows = append(rows, []string{ts(e.At), e.Endpoint, string(e.Verdict), e.Source, e.Destination, string(e.Protocol), strconv.Itoa(int(e.Port)), e.RuleID})
	}
	putCSV("verdict-events.csv", []string{"at_utc", "endpoint_netns", "verdict", "source", "destination", "protocol", "port", "rule_id"}, rows)

	rows = nil
	for _, r := range b.Reachability.Rows {
		rows = append(rows, []string{r.Source, r.Destination, strconv.Itoa(r.Port), r.Protocol, string(r.Before), string(r.Now), r.Reason})
	}
	putCSV("reachability.csv", []string{"source", "destination", "port", "protocol", "before_no_policy", "now", "reason"}, rows)

	if b.Probes != nil {
		rows = nil
		for _, p := range b.Probes.Results {
			rows = append(rows, []string{p.Source, p.SourceNetns, p.Destination, p.DestNetns, p.Address, p.Protocol, strconv.Itoa(p.Port),
				string(p.Expected), strconv.FormatBool(p.ExpectReach), p.Outcome, strconv.FormatBool(p.Reached), strconv.FormatBool(p.Match),
				strconv.FormatFloat(p.DurationMS, 'f', 1, 64), p.Detail, p.DecidedBy})
		}
		putCSV("probes.csv", []string{"source", "source_netns", "destination", "destination_netns", "address", "protocol", "port", "expected", "expect_reach",
			"outcome", "reached", "match", "duration_ms", "detail", "decided_by_cluster_rule"}, rows)
	}

	html, err := ReportHTML(b)
	if err != nil {
		errs = append(errs, err)
	}
	files["report.html"] = html
	if len(errs) > 0 {
		return nil, fmt.Errorf("render bundle: %w", errs[0])
	}
	return files, nil
}

// normalize puts every time in UTC and replaces nil slices by empty ones,
// so the JSON always has arrays.
func (b *Bundle) normalize() {
	b.Meta.GeneratedAt = b.Meta.GeneratedAt.UTC()
	b.Meta.WindowStart = b.Meta.WindowStart.UTC()
	if b.Inventory == nil {
		b.Inventory = []Workload{}
	}
	if b.Policies.Active == nil {
		b.Policies.Active = []ActiveRevision{}
	}
	if b.Policies.History == nil {
		b.Policies.History = []model.Promotion{}
	}
	for i := range b.Policies.History {
		b.Policies.History[i].At = b.Policies.History[i].At.UTC()
	}
	for i := range b.Policies.Active {
		a := &b.Policies.Active[i]
		a.Since, a.CreatedAt = a.Since.UTC(), a.CreatedAt.UTC()
	}
	if b.Rules == nil {
		b.Rules = []EndpointRules{}
	}
	if b.Policies.ClusterNetworkPolicies == nil {
		b.Policies.ClusterNetworkPolicies = []ClusterPolicy{}
	}
	for i := range b.Policies.ClusterNetworkPolicies {
		c := &b.Policies.ClusterNetworkPolicies[i]
		c.Since = c.Since.UTC()
	}
	if b.Policies.ClusterNetworkPolicyRecords == nil {
		b.Policies.ClusterNetworkPolicyRecords = []ClusterNetworkPolicyRecord{}
	}
	for i := range b.Policies.ClusterNetworkPolicyRecords {
		r := &b.Policies.ClusterNetworkPolicyRecords[i]
		r.At = r.At.UTC()
	}
	if b.Counters.Rules == nil {
		b.Counters.Rules = []RuleCounter{}
	}
	if b.Counters.Unused == nil {
		b.Counters.Unused = []RuleCounter{}
	}
	if b.Denied.Flows == nil {
		b.Denied.Flows = []DeniedFlow{}
	}
	if b.Denied.Events == nil {
		b.Denied.Events = []model.VerdictEvent{}
	}
	for i := range b.Denied.Events {
		b.Denied.Events[i].At = b.Denied.Events[i].At.UTC()
	}
	if b.Reachability.Rows == nil {
		b.Reachability.Rows = []ReachPath{}
	}
	if b.Probes != nil {
		b.Probes.Started, b.Probes.Finished = b.Probes.Started.UTC(), b.Probes.Finished.UTC()
		if b.Probes.Results == nil {
			b.Probes.Results = []Probe{}
		}
	}
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

// GroupDenied groups verdict events by verdict, source, destination,
// protocol, port and rule id; the most frequent group comes first.
func GroupDenied(evs []model.VerdictEvent) []DeniedFlow {
	type key struct {
		v    model.Verdict
		s, d string
		p    model.Protocol
		port uint16
		rule string
	}
	m := map[key]*DeniedFlow{}
	for _, e := range evs {
		k := key{e.Verdict, e.Source, e.Destination, e.Protocol, e.Port, e.RuleID}
		f := m[k]
		if f == nil {
			f = &DeniedFlow{Verdict: e.Verdict, Source: e.Source, Destination: e.Destination, Protocol: e.Protocol, Port: int(e.Port), RuleID: e.RuleID, First: e.At.UTC()}
			m[k] = f
		}
		f.Count++
		if e.At.Before(f.First) {
			f.First = e.At.UTC()
		}
		if e.At.After(f.Last) {
			f.Last = e.At.UTC()
		}
	}
	out := make([]DeniedFlow, 0, len(m))
	for _, f := range m {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return fmt.Sprint(a.Verdict, a.Source, a.Destination, a.Protocol, a.Port, a.RuleID) < fmt.Sprint(b.Verdict, b.Source, b.Destination, b.Protocol, b.Port, b.RuleID)
	})
	return out
}
