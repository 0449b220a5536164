package speaker

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the speaker's own series; the l2, bgp and membership packages
// register theirs on the same Registerer.
type metrics struct {
	moves        *prometheus.CounterVec
	vipsAdvert   prometheus.Gauge
	conflicts    *prometheus.CounterVec
	statusWrites *prometheus.CounterVec
	events       *prometheus.CounterVec
	bgpApplies   *prometheus.CounterVec
	// eventsSkipped counts per-address BGP Events beyond the budget.
	eventsSkipped *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_ownership_moves_total",
			Help: "Layer-2 ownership changes of this node: addresses acquired (this node starts answering) and released.",
		}, []string{"change"}),
		vipsAdvert: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ironlb_speaker_bgp_addresses",
			Help: "Addresses this node advertises by BGP (before aggregation).",
		}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_l2_conflicts_handled_total",
			Help: "Reports of another MAC claiming an address this node answers for, by what the speaker did: reannounced (this node is the elected owner) or yielded (it is not, or is leaving).",
		}, []string{"action"}),
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_status_writes_total",
			Help: "API writes of ServiceAnnouncement and BGPSession objects, by resource, operation and result.",
		}, []string{"resource", "op", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_inputs_total",
			Help: "Inputs processed by the speaker's event loop, by kind (service, node, pool, bgppeer, secret, member, placement, conflict).",
		}, []string{"kind"}),
		bgpApplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_bgp_applies_total",
			Help: "BGP desired-state applications, by result.",
		}, []string{"result"}),
		eventsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironlb_speaker_address_events_skipped_total",
			Help: "Per-address BGP Events (Advertising, Withdrawn) not recorded because a burst exceeded the speaker's Event budget (--address-event-qps), by reason.",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.moves, m.vipsAdvert, m.conflicts, m.statusWrites, m.events, m.bgpApplies, m.eventsSkipped} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}

func (m *metrics) statusWrite(resource, op string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.statusWrites.WithLabelValues(resource, op, result).Inc()
}
