package provider

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the controller's Prometheus series: ironlb_allocator_* for pools and
// allocations, ironlb_controller_* for the Service controller.
// A nil *Metrics is valid and records nothing.
type Metrics struct {
	total    *prometheus.GaugeVec
	inUse    *prometheus.GaugeVec
	events   *prometheus.CounterVec
	refusals *prometheus.CounterVec
	syncs    *prometheus.CounterVec
	syncTime prometheus.Histogram
	writes   prometheus.Counter
}

// NewMetrics registers the allocator series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		total: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ironlb", Subsystem: "allocator", Name: "addresses_total",
			Help: "Addresses in an IPPool, per family (saturates at 2^63-1 for large IPv6 pools).",
		}, []string{"pool", "family"}),
		inUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ironlb", Subsystem: "allocator", Name: "addresses_in_use",
			Help: "Addresses of an IPPool held by Services, per family.",
		}, []string{"pool", "family"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ironlb", Subsystem: "allocator", Name: "operations_total",
			Help: "Allocations and releases performed.",
		}, []string{"op"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ironlb", Subsystem: "allocator", Name: "refusals_total",
			Help: "Allocation requests refused, by reason.",
		}, []string{"reason"}),
	}
	m.syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "ironlb", Subsystem: "controller", Name: "syncs_total",
		Help: "Service syncs by result: published, unchanged, refused, cleaned, deleted, ignored, error.",
	}, []string{"result"})
	m.syncTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "ironlb", Subsystem: "controller", Name: "sync_duration_seconds",
		Help:    "Time of one Service sync, API write included.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
	})
	m.writes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "ironlb", Subsystem: "controller", Name: "service_writes_total",
		Help: "PATCH requests sent for Services (status, finalizer and attribution in one).",
	})
	reg.MustRegister(m.total, m.inUse, m.events, m.refusals, m.syncs, m.syncTime, m.writes)
	return m
}

func (m *Metrics) allocated() {
	if m != nil {
		m.events.WithLabelValues("allocate").Inc()
	}
}

func (m *Metrics) released() {
	if m != nil {
		m.events.WithLabelValues("release").Inc()
	}
}

func (m *Metrics) refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) synced(result string, took time.Duration) {
	if m != nil {
		m.syncs.WithLabelValues(result).Inc()
		m.syncTime.Observe(took.Seconds())
	}
}

func (m *Metrics) wrote() {
	if m != nil {
		m.writes.Inc()
	}
}

func (m *Metrics) setPool(pool string, totalV4, usedV4, totalV6, usedV6 int64) {
	if m == nil {
		return
	}
	m.total.WithLabelValues(pool, "ipv4").Set(float64(totalV4))
	m.total.WithLabelValues(pool, "ipv6").Set(float64(totalV6))
	m.inUse.WithLabelValues(pool, "ipv4").Set(float64(usedV4))
	m.inUse.WithLabelValues(pool, "ipv6").Set(float64(usedV6))
}

func (m *Metrics) forgetPool(pool string) {
	if m == nil {
		return
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		m.total.DeleteLabelValues(pool, fam)
		m.inUse.DeleteLabelValues(pool, fam)
	}
}
