package observer

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanoseg/nanoseg/model"
)

// Metrics are the observer's Prometheus counters. Names and labels:
//
//	nanoseg_observer_flows_total{source="conntrack|verdict-log"}      flow records emitted
//	nanoseg_observer_events_lost_total{source="conntrack|verdict-log|dns"} socket overflows (ENOBUFS, each losing ≥1 event)
//	nanoseg_observer_decode_errors_total{decoder="conntrack|verdict-log|dns"} malformed input skipped
//	nanoseg_observer_resyncs_total                                     conntrack dumps after an overflow
//	nanoseg_observer_dns_answers_total                                 address answers learnt
//	nanoseg_observer_direction_corrected_total{protocol="TCP|UDP|SCTP",source="conntrack|verdict-log"} records turned around to run from their opener:
//	    conntrack entries picked up in mid-flight (one per connection), logged reply-shaped packets (one per packet)
//	nanoseg_observer_direction_unknown_total{protocol="TCP|UDP|SCTP",source="conntrack|verdict-log"}   records whose opener could not be established, kept out of edges
type Metrics struct {
	Flows              *prometheus.CounterVec
	EventsLost         *prometheus.CounterVec
	DecodeErrors       *prometheus.CounterVec
	Resyncs            prometheus.Counter
	DNSAnswers         prometheus.Counter
	DirectionCorrected *prometheus.CounterVec
	DirectionUnknown   *prometheus.CounterVec

	flowsCT, flowsLog prometheus.Counter // cached children of Flows
}

// flows returns the child of Flows for src without a label lookup.
func (m *Metrics) flows(src model.FlowSource) prometheus.Counter {
	if src == model.SourceConntrack {
		return m.flowsCT
	}
	return m.flowsLog
}

// NewMetrics creates the observer's counters and registers them on reg
// (nil: not registered). It fails if reg already holds them.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Flows: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "observer",
			Name: "flows_total", Help: "model.Flow records emitted, by source."}, []string{"source"}),
		EventsLost: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "observer",
			Name: "events_lost_total", Help: "Netlink or packet socket overflows (ENOBUFS); each lost at least one event."}, []string{"source"}),
		DecodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "observer",
			Name: "decode_errors_total", Help: "Malformed messages or packets skipped, by decoder."}, []string{"decoder"}),
		Resyncs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "observer",
			Name: "resyncs_total", Help: "Conntrack table dumps after an event socket overflow."}),
		DNSAnswers: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "observer",
			Name: "dns_answers_total", Help: "Address answers learnt from DNS responses."}),
		DirectionCorrected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "observer",
			Name: "direction_corrected_total", Help: "Records turned around to run from the connection's opener: conntrack entries begun in mid-flight with the reply as original direction (one per connection), logged packets shaped like a reply (one per packet)."}, []string{"protocol", "source"}),
		DirectionUnknown: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "observer",
			Name: "direction_unknown_total", Help: "Records whose connection's opener could not be established (conntrack entries begun in mid-flight, logged reply-shaped packets); they are marked directionUnknown and kept out of edges."}, []string{"protocol", "source"}),
	}
	// Pre-create the label values so that zeros are exported.
	m.flowsCT = m.Flows.WithLabelValues(string(model.SourceConntrack))
	m.flowsLog = m.Flows.WithLabelValues(string(model.SourceVerdictLog))
	for _, s := range []string{"conntrack", "verdict-log", "dns"} {
		m.EventsLost.WithLabelValues(s)
		m.DecodeErrors.WithLabelValues(s)
	}
	for _, p := range []model.Protocol{model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP} {
		for _, src := range []model.FlowSource{model.SourceConntrack, model.SourceVerdictLog} {
			m.DirectionCorrected.WithLabelValues(string(p), string(src))
			m.DirectionUnknown.WithLabelValues(string(p), string(src))
		}
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Flows, m.EventsLost, m.DecodeErrors, m.Resyncs, m.DNSAnswers, m.DirectionCorrected, m.DirectionUnknown} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register observer metrics: %w", err)
			}
		}
	}
	return m, nil
}
