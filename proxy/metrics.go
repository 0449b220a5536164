package proxy

import "github.com/prometheus/client_golang/prometheus"

// metrics are the proxy's Prometheus series, registered on the Registerer
// given in Config (none when it is nil).
type metrics struct {
	syncDuration *prometheus.HistogramVec
	syncs        *prometheus.CounterVec
	syncFailures *prometheus.CounterVec
	rules        *prometheus.GaugeVec
	restoreBytes *prometheus.HistogramVec
	canaryLost   *prometheus.CounterVec
	conntrackDel *prometheus.CounterVec
	programming  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ironlb_proxy_sync_duration_seconds",
			Help:    "Time to compute and apply one sync of one IP family, by kind (full or partial).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"family", "kind"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_proxy_syncs_total",
			Help: "Successful syncs by IP family and kind (full or partial).",
		}, []string{"family", "kind"}),
		syncFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_proxy_sync_failures_total",
			Help: "Failed syncs by IP family; a failure makes the next sync a full one.",
		}, []string{"family"}),
		rules: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ironlb_proxy_rules",
			Help: "Rules ironlb holds in its own chains, by IP family and table.",
		}, []string{"family", "table"}),
		restoreBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ironlb_proxy_restore_bytes",
			Help:    "Size of the iptables-restore input of one sync, by IP family and kind.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 12),
		}, []string{"family", "kind"}),
		canaryLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_proxy_canary_lost_total",
			Help: "Times a canary or jump rule was found missing (an external flush), by IP family; each triggers a full sync.",
		}, []string{"family"}),
		conntrackDel: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_proxy_conntrack_deleted_total",
			Help: "Stale UDP conntrack entries deleted, by IP family.",
		}, []string{"family"}),
		programming: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ironlb_proxy_programming_latency_seconds",
			Help:    "Time from the oldest unsynced change being seen to its rules being applied.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.syncDuration, m.syncs, m.syncFailures, m.rules, m.restoreBytes, m.canaryLost, m.conntrackDel, m.programming} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
