package membership

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cluster's Prometheus metrics. Member states are kept here
// because memberlist does not expose them per member.
type metrics struct {
	mu sync.Mutex
	// gone are members memberlist still remembers as left or dead, with when;
	// memberlist forgets them after GossipToTheDeadTime and so do we.
	gone  map[string]goneMember
	alive map[string]bool
	now   func() time.Time

	membersDesc   *prometheus.Desc
	events        *prometheus.CounterVec
	probeFailures prometheus.Counter
	refutations   prometheus.Counter
	rtt           prometheus.Histogram
	unpublished   prometheus.Gauge
	joins         *prometheus.CounterVec
}

type goneMember struct {
	left bool
	at   time.Time
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		gone:  map[string]goneMember{},
		alive: map[string]bool{},
		now:   time.Now,
		membersDesc: prometheus.NewDesc("ironlb_memberlist_members",
			"Speakers this node knows, by state: alive (suspects included: memberlist does not expose suspicion), left (announced) or dead (detected); left and dead are forgotten after 30s, as memberlist does.",
			[]string{"state"}, nil),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_memberlist_member_events_total",
			Help: "Member changes seen: join, update (metadata), left (announced leave), failed (declared dead).",
		}, []string{"event"}),
		probeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ironlb_memberlist_probe_failures_total",
			Help: "Probes of a peer by this node that got no ack in time, making the peer suspect. Rising while no speaker fails means the timings are too tight for this network or load.",
		}),
		refutations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ironlb_memberlist_refutations_total",
			Help: "Times this node was suspected or declared dead by a peer and refuted it: false suspicions of this node.",
		}),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ironlb_memberlist_probe_rtt_seconds",
			Help:    "Round-trip time of successful direct probes.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1},
		}),
		unpublished: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_memberlist_meta_unpublished_claims",
			Help: "Claimed addresses that did not fit in this node's memberlist metadata (they may move when a better-ranked node joins).",
		}),
		joins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_memberlist_joins_total",
			Help: "Joins attempted with one peer (at start, on SetPeers, and every 10 s for peers that are not members), by result.",
		}, []string{"result"}),
	}
	m.joins.WithLabelValues("ok")
	m.joins.WithLabelValues("failed")
	for _, e := range []string{"join", "update", "left", "failed"} {
		m.events.WithLabelValues(e)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			m.unregister(reg)
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m, m.events, m.probeFailures, m.refutations, m.rtt, m.unpublished, m.joins}
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}

func (m *metrics) memberAlive(name string, joined bool) {
	m.mu.Lock()
	m.alive[name] = true
	delete(m.gone, name)
	m.mu.Unlock()
	if joined {
		m.events.WithLabelValues("join").Inc()
	} else {
		m.events.WithLabelValues("update").Inc()
	}
}

func (m *metrics) memberGone(name string, left bool) {
	m.mu.Lock()
	delete(m.alive, name)
	m.gone[name] = goneMember{left: left, at: m.now()}
	m.mu.Unlock()
	if left {
		m.events.WithLabelValues("left").Inc()
	} else {
		m.events.WithLabelValues("failed").Inc()
	}
}

// Describe implements prometheus.Collector for ironlb_memberlist_members.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.membersDesc }

// Collect implements prometheus.Collector for ironlb_memberlist_members.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	alive, left, dead := len(m.alive), 0, 0
	now := m.now()
	for name, g := range m.gone {
		switch {
		case now.Sub(g.at) > gossipToTheDeadTime:
			delete(m.gone, name)
		case g.left:
			left++
		default:
			dead++
		}
	}
	m.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.membersDesc, prometheus.GaugeValue, float64(alive), "alive")
	ch <- prometheus.MustNewConstMetric(m.membersDesc, prometheus.GaugeValue, float64(left), "left")
	ch <- prometheus.MustNewConstMetric(m.membersDesc, prometheus.GaugeValue, float64(dead), "dead")
}
