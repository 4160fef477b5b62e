package node

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// nodeMetrics are the node's own gauges.
type nodeMetrics struct {
	// refused counts the endpoints of the inventory another node manages.
	refused prometheus.Gauge
	// adopted counts the tables kept as found because the store does not
	// know them, by mode.
	adopted *prometheus.GaugeVec
}

func newNodeMetrics(reg prometheus.Registerer) (nodeMetrics, error) {
	m := nodeMetrics{
		refused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node", Name: "endpoints_refused",
			Help: "Endpoints of the inventory this agent does not manage because another agent owns their network namespace."}),
		adopted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node", Name: "endpoints_adopted",
			Help: "Endpoints whose audit or enforce table the agent found unknown to its store and keeps as found until an operator promotes their workload, by mode."}, []string{"mode"}),
	}
	m.adopted.WithLabelValues("audit")
	m.adopted.WithLabelValues("enforce")
	if reg != nil {
		for _, c := range []prometheus.Collector{m.refused, m.adopted} {
			if err := reg.Register(c); err != nil {
				return m, fmt.Errorf("register node metrics: %w", err)
			}
		}
	}
	return m, nil
}
