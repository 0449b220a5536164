package server

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus series, all prefixed ironlb_ingress_. A nil
// *Metrics is valid and records nothing.
type Metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	reloads   prometheus.Counter
	retries   prometheus.Counter
	ejections prometheus.Counter

	// The series of each (ingress, service, code) once looked up: a request then
	// costs a read-locked map lookup, where WithLabelValues hashes and checks the
	// label values and formats the code.
	mu     sync.RWMutex
	series map[seriesKey]*requestSeries
}

type seriesKey struct {
	ingress, service string
	code             int
}

type requestSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// NewMetrics registers the proxy's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		series: map[seriesKey]*requestSeries{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ironlb", Subsystem: "ingress", Name: "requests_total",
			Help: "Requests answered, by Ingress (namespace/name, empty for the built-in 404), Service (namespace/name) and status code (499: the client went away).",
		}, []string{"ingress", "service", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ironlb", Subsystem: "ingress", Name: "request_duration_seconds",
			Help:    "Time from receiving a request's headers to the end of its response, by Ingress and Service.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"ingress", "service"}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ironlb", Subsystem: "ingress", Name: "reloads_total",
			Help: "Routing tables swapped in (every route, endpoint or certificate change is one).",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ironlb", Subsystem: "ingress", Name: "upstream_retries_total",
			Help: "Requests sent again to another endpoint after a connection failure.",
		}),
		ejections: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ironlb", Subsystem: "ingress", Name: "endpoint_ejections_total",
			Help: "Endpoints taken out of balancing after consecutive connection failures (passive health).",
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.reloads, m.retries, m.ejections)
	return m
}

func (m *Metrics) request(ingress, service string, code int, d time.Duration) {
	if m == nil {
		return
	}
	k := seriesKey{ingress, service, code}
	m.mu.RLock()
	se := m.series[k]
	m.mu.RUnlock()
	if se == nil {
		se = &requestSeries{m.requests.WithLabelValues(ingress, service, strconv.Itoa(code)), m.latency.WithLabelValues(ingress, service)}
		m.mu.Lock()
		m.series[k] = se
		m.mu.Unlock()
	}
	se.requests.Inc()
	se.latency.Observe(d.Seconds())
}

func (m *Metrics) reload() {
	if m != nil {
		m.reloads.Inc()
	}
}

func (m *Metrics) retry() {
	if m != nil {
		m.retries.Inc()
	}
}

func (m *Metrics) ejection() {
	if m != nil {
		m.ejections.Inc()
	}
}
