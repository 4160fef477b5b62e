package model

import "time"

// VerdictCounts counts the verdicts of an edge's flows. Observed counts the
// connections conntrack saw (each counted once); Allowed, AuditDenied and
// Denied count verdict-log records with that verdict (one per connection
// attempt).
//
// JSON: {"observed":12,"allowed":3,"auditDenied":1,"denied":2}, zero
// counts left out.
type VerdictCounts struct {
	Observed    uint64 `json:"observed,omitempty"`
	Allowed     uint64 `json:"allowed,omitempty"`
	AuditDenied uint64 `json:"auditDenied,omitempty"`
	Denied      uint64 `json:"denied,omitempty"`
}

// Of returns the count of verdict v.
func (c VerdictCounts) Of(v Verdict) uint64 {
	switch v {
	case VerdictObserved:
		return c.Observed
	case VerdictAllow:
		return c.Allowed
	case VerdictAuditDeny:
		return c.AuditDenied
	case VerdictDeny:
		return c.Denied
	}
	return 0
}

// Inc adds one to the count of verdict v (nothing for another value).
func (c *VerdictCounts) Inc(v Verdict) {
	switch v {
	case VerdictObserved:
		c.Observed++
	case VerdictAllow:
		c.Allowed++
	case VerdictAuditDeny:
		c.AuditDenied++
	case VerdictDeny:
		c.Denied++
	}
}

// Add sums o into c.
func (c *VerdictCounts) Add(o VerdictCounts) {
	c.Observed += o.Observed
	c.Allowed += o.Allowed
	c.AuditDenied += o.AuditDenied
	c.Denied += o.Denied
}

// Edge is the aggregate of the flows from one source to one destination on
// one protocol and destination port (docs/architecture.md "Words"); the source port
// never appears.
//
// JSON form (stable; fields only added):
//
//	{"source":{"namespace":"shop","workload":"frontend"},
//	 "destination":{"namespace":"shop","workload":"api"},
//	 "protocol":"TCP","port":8080,"firstSeen":"…","lastSeen":"…",
//	 "flows":12,"packetsOut":72,"bytesOut":5040,"packetsIn":48,"bytesIn":9000,
//	 "verdicts":{"observed":12}}
//
// Files written before the one vocabulary spell the protocol in lower case
// ("tcp", "ipv6-icmp"); they decode to the same Edge (see Protocol).
// Port is 0 for protocols without ports (ICMP). Packet and byte counters
// ("Out" from source to destination, "In" back) come from conntrack
// accounting, read every few seconds while connections live and when they
// end.
type Edge struct {
	Source      Peer     `json:"source"`
	Destination Peer     `json:"destination"`
	Protocol    Protocol `json:"protocol"`
	Port        uint16   `json:"port,omitempty"`
	Traffic
}

// Traffic is what an edge (or a drawing of one) counts: when its flows
// were seen, how many, their packets and bytes, and their verdicts. Its
// JSON fields appear inline in an Edge's.
type Traffic struct {
	// FirstSeen and LastSeen bound the flows.
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
	// Flows counts connections (each once), failed ones included.
	Flows uint64 `json:"flows"`
	// Failed counts the connections of Flows that never succeeded (see
	// model.Failure): counted when the connection ended, so a connection
	// still open, or one that ended after the edge was read, is not
	// among them yet. Reset counts those of Failed answered with a reset
	// ("connection refused"); the others got no answer at all. Records
	// written before these fields existed decode with both 0.
	Failed uint64 `json:"failed,omitempty"`
	Reset  uint64 `json:"reset,omitempty"`
	// PacketsOut/BytesOut go from source to destination, PacketsIn/BytesIn
	// back.
	PacketsOut uint64        `json:"packetsOut,omitempty"`
	BytesOut   uint64        `json:"bytesOut,omitempty"`
	PacketsIn  uint64        `json:"packetsIn,omitempty"`
	BytesIn    uint64        `json:"bytesIn,omitempty"`
	Verdicts   VerdictCounts `json:"verdicts"`
}

// Add folds o's counters into t: flows, failures, packets, bytes and verdict counts
// are summed, FirstSeen keeps the earliest non-zero time and LastSeen the
// latest.
func (t *Traffic) Add(o Traffic) {
	if !o.FirstSeen.IsZero() && (t.FirstSeen.IsZero() || o.FirstSeen.Before(t.FirstSeen)) {
		t.FirstSeen = o.FirstSeen
	}
	if o.LastSeen.After(t.LastSeen) {
		t.LastSeen = o.LastSeen
	}
	t.Flows += o.Flows
	t.Failed += o.Failed
	t.Reset += o.Reset
	t.PacketsOut += o.PacketsOut
	t.BytesOut += o.BytesOut
	t.PacketsIn += o.PacketsIn
	t.BytesIn += o.BytesIn
	t.Verdicts.Add(o.Verdicts)
}

// Succeeded returns the flows that neither failed nor were denied by the
// dataplane (Flows - Failed - Verdicts.Denied, never below 0; a denied
// attempt never reaches conntrack, so it is never also counted failed).
func (t *Traffic) Succeeded() uint64 {
	bad := t.Failed + t.Verdicts.Denied
	if bad >= t.Flows {
		return 0
	}
	return t.Flows - bad
}

// OnlyFailed reports whether every connection counted was a failed one:
// at least one flow, none succeeded. Proposals never learn such an edge
// as an allow.
func (t *Traffic) OnlyFailed() bool { return t.Flows > 0 && t.Failed >= t.Flows }

// Bytes returns the bytes of both directions.
func (t *Traffic) Bytes() uint64 { return t.BytesOut + t.BytesIn }
