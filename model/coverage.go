package model

import (
	"fmt"
	"strings"
	"time"
)

// Failure says why a connection never succeeded, as conntrack saw it when
// the connection ended. The empty Failure is a connection that succeeded
// (or one whose outcome is unknown).
type Failure string

// Failures of connections.
const (
	// FailureReset: the other side answered, but the connection was never
	// established: a TCP (or SCTP) connection answered with a reset, as a
	// closed port answers ("connection refused"); a port scan looks the
	// same.
	FailureReset Failure = "reset"
	// FailureUnanswered: nothing ever came back: a TCP SYN or a UDP or
	// ICMP request without any reply until conntrack timed the entry out
	// (an ICMP error answer, such as port or host unreachable, also
	// leaves the entry unanswered). One-way UDP (syslog, statsd) looks
	// the same.
	FailureUnanswered Failure = "unanswered"
)

// ObservedSpan is a time during which a node observed one endpoint: its
// observer was attached from Start and still was at End. A node records a
// span for each observer it starts and moves End forward every time it
// commits observations, so a node that stops or dies leaves the span
// ending at its last commit: time without an observer is never counted as
// observed, and a restart starts a new span instead of resetting or
// stretching the old one.
//
// JSON: {"endpoint":"nanoseg-lab-shop-api-0","workload":"shop/api",
// "start":"…","end":"…"}.
type ObservedSpan struct {
	// Endpoint is the netns name of the observed endpoint.
	Endpoint string `json:"endpoint"`
	// Workload is the endpoint's workload, "namespace/workload".
	Workload string    `json:"workload"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
}

// SpanKey identifies a span: one endpoint's observer started at one time.
func (s ObservedSpan) SpanKey() string {
	return s.Endpoint + "|" + s.Start.UTC().Format(time.RFC3339Nano)
}

// Coverage is how well one workload was observed within a window: how
// long, what it did, and how recently it did something new. The
// controller computes it from the observation spans and the edges
// (controller.ComputeCoverage); proposals, diff, status, the graph and
// evidence show it, and a promotion to enforce is gated on it.
//
// JSON: {"workload":"shop/api","from":"…","to":"…","windowSeconds":86400,
// "observedSeconds":35.2,"firstObserved":"…","endpoints":2,"flows":12,
// "failed":1,"peers":3,"lastNew":"…","silent":false,"ports":[…]}.
type Coverage struct {
	// Workload is "namespace/workload".
	Workload string `json:"workload"`
	// From and To bound the window the coverage is of. For a window
	// asked as "everything" (0), From is the workload's first observation.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to"`
	// WindowSeconds is the window asked for (0: everything observed).
	WindowSeconds float64 `json:"windowSeconds"`
	// ObservedSeconds is how long, within [From, To], at least one
	// endpoint of the workload had an observer (the union of its
	// observation spans): time without a running node is not counted.
	ObservedSeconds float64 `json:"observedSeconds"`
	// FirstObserved is when the first observation of the workload that
	// the store holds began (zero: never observed).
	FirstObserved time.Time `json:"firstObserved,omitzero"`
	// Endpoints counts the workload's endpoints observed in the window.
	Endpoints int `json:"endpoints"`
	// Flows counts the connections to or from the workload in the window
	// (its edges' flows), Failed those of them that never succeeded.
	Flows  uint64 `json:"flows"`
	Failed uint64 `json:"failed,omitempty"`
	// Peers counts the distinct peers it talked with, either direction.
	Peers int `json:"peers"`
	// LastNew is when the newest of its edges (a peer, protocol and port
	// not seen before) was first seen; zero without edges.
	LastNew time.Time `json:"lastNew,omitzero"`
	// Silent is true when the workload had no successful connection in
	// the window: a proposal for it allows nothing it might do.
	Silent bool `json:"silent"`
	// Ports are the workload's server ports seen in the window.
	Ports []PortCoverage `json:"ports,omitempty"`
}

// PortCoverage is what was seen of one server port of a workload.
type PortCoverage struct {
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port,omitempty"`
	// Flows and Failed count the connections to the port; Peers the
	// distinct clients.
	Flows  uint64 `json:"flows"`
	Failed uint64 `json:"failed,omitempty"`
	Peers  int    `json:"peers"`
	// FirstSeen is when the port was first seen used; LastNew when its
	// newest client was first seen.
	FirstSeen time.Time `json:"firstSeen"`
	LastNew   time.Time `json:"lastNew"`
}

// Observed returns ObservedSeconds as a duration.
func (c Coverage) Observed() time.Duration {
	return time.Duration(c.ObservedSeconds * float64(time.Second))
}

// Window returns WindowSeconds as a duration.
func (c Coverage) Window() time.Duration {
	return time.Duration(c.WindowSeconds * float64(time.Second))
}

// Summary says the coverage in one line for people, e.g. "observed 35s of
// the 24h window asked (since 05:12:00), 12 flows (1 failed), 3 peers,
// last new peer or port 20s before the window's end" or "observed 2m,
// silent: no connection in the window".
func (c Coverage) Summary() string {
	s := "observed " + ShortDuration(c.Observed())
	if c.WindowSeconds > 0 {
		s += " of the " + ShortDuration(c.Window()) + " window asked"
	}
	if c.Silent && c.Flows == 0 {
		return s + ", silent: no connection in the window"
	}
	s += fmt.Sprintf(", %d flows", c.Flows)
	if c.Failed > 0 {
		s += fmt.Sprintf(" (%d failed)", c.Failed)
	}
	s += fmt.Sprintf(", %d peers", c.Peers)
	if !c.LastNew.IsZero() {
		s += ", last new peer or port " + ShortDuration(c.To.Sub(c.LastNew)) + " before the window's end"
	}
	if c.Silent {
		s += ", silent: no successful connection in the window"
	}
	return s
}

// ShortDuration renders d rounded for people: "35s", "4m10s", "2h5m",
// "3d4h".
func ShortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Hour {
		d = d.Round(time.Second)
	} else {
		d = d.Round(time.Minute)
	}
	switch {
	case d < time.Minute:
		return d.String()
	case d < time.Hour:
		return strings.TrimSuffix(d.String(), "m0s") + suffixIf(d%time.Minute == 0, "m")
	case d < 48*time.Hour:
		s := strings.TrimSuffix(d.String(), "0s")
		return strings.TrimSuffix(s, "h0m") + suffixIf(strings.HasSuffix(s, "h0m"), "h")
	}
	d = d.Round(time.Hour)
	days, hours := d/(24*time.Hour), (d%(24*time.Hour))/time.Hour
	if hours == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, hours)
}

func suffixIf(ok bool, s string) string {
	if ok {
		return s
	}
	return ""
}
