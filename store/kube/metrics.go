package kube

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// watcherMetrics are the PolicyWatcher's metrics (see Register).
type watcherMetrics struct {
	policies    *prometheus.GaugeVec
	rejected    *prometheus.GaugeVec
	rejections  *prometheus.CounterVec
	watchErrors *prometheus.CounterVec
}

func newWatcherMetrics() *watcherMetrics {
	const ns, sub = "nanoseg", "policy_watcher"
	return &watcherMetrics{
		policies: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "policies",
			Help: "Policies in force from the API server, by kind (NetworkPolicy, NanoSegment, ClusterNetworkPolicy)."}, []string{"kind"}),
		rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "rejected",
			Help: "Objects whose latest version failed validation and is not applied, by kind; in_force=previous when an earlier valid version stays in force, none when no version is."},
			[]string{"kind", "in_force"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rejections_total",
			Help: "Object versions that failed validation and were not applied, by kind."}, []string{"kind"}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "watch_errors_total",
			Help: "Failed lists and watches of the API server, by resource; the informers retry and the policies in force stay as they are."},
			[]string{"resource"}),
	}
}

func (m *watcherMetrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.policies, m.rejected, m.rejections, m.watchErrors} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}
