package node

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// nodeMetrics are the node's own gauges.
type nodeMetrics struct {
	// refused counts the endpoints of the inventory another node manages.
	refused prometheus.Gauge
}

func newNodeMetrics(reg prometheus.Registerer) (nodeMetrics, error) {
	m := nodeMetrics{
		refused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node", Name: "endpoints_refused",
			Help: "Endpoints of the inventory this agent does not manage because another agent owns their network namespace."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.refused} {
			if err := reg.Register(c); err != nil {
				return m, fmt.Errorf("register node metrics: %w", err)
			}
		}
	}
	return m, nil
}
