package l2

import (
	"fmt"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// Address families as metric label values.
const (
	familyIPv4 = "ipv4"
	familyIPv6 = "ipv6"
)

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return familyIPv4
	}
	return familyIPv6
}

// metrics are the announcer's Prometheus collectors, all labelled by address
// family. With a nil registerer they still count (tests read them) but are
// exported nowhere.
type metrics struct {
	requests   *prometheus.CounterVec
	answers    *prometheus.CounterVec
	gratuitous *prometheus.CounterVec
	conflicts  *prometheus.CounterVec
	owned      *prometheus.GaugeVec
	unplaced   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	family := []string{"family"}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, family)
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, family)
	}
	m := &metrics{
		requests: counter("ironlb_l2_requests_total",
			"ARP requests (ipv4) and Neighbor Solicitations (ipv6) received on links that answer for a VIP, for any address."),
		answers: counter("ironlb_l2_answers_total",
			"ARP replies and Neighbor Advertisements sent in answer to a request for an owned VIP."),
		gratuitous: counter("ironlb_l2_gratuitous_total",
			"Gratuitous announcements sent (ARP request and reply frames, unsolicited Neighbor Advertisements) on takeover, refresh or re-announcement."),
		conflicts: counter("ironlb_l2_conflicts_total",
			"Frames in which another MAC claimed a VIP this node owns (split brain or a misconfigured host)."),
		owned: gauge("ironlb_l2_vips_owned",
			"VIPs this node owns (as last set by the speaker)."),
		unplaced: gauge("ironlb_l2_vips_unplaced",
			"Owned VIPs that no interface can answer for (named interfaces missing, down or bridge/bond members, or no interface on the VIP's subnet)."),
	}
	for _, f := range []string{familyIPv4, familyIPv6} {
		m.requests.WithLabelValues(f)
		m.answers.WithLabelValues(f)
		m.gratuitous.WithLabelValues(f)
		m.conflicts.WithLabelValues(f)
		m.owned.WithLabelValues(f)
		m.unplaced.WithLabelValues(f)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.answers, m.gratuitous, m.conflicts, m.owned, m.unplaced} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("l2: register metrics: %w", err)
		}
	}
	return m, nil
}

// setOwned sets the owned and unplaced gauges from the current placements.
func (m *metrics) setOwned(placements map[netip.Addr]placement) {
	counts := map[string][2]float64{familyIPv4: {}, familyIPv6: {}}
	for vip, p := range placements {
		c := counts[familyOf(vip)]
		c[0]++
		if len(p.links) == 0 {
			c[1]++
		}
		counts[familyOf(vip)] = c
	}
	for f, c := range counts {
		m.owned.WithLabelValues(f).Set(c[0])
		m.unplaced.WithLabelValues(f).Set(c[1])
	}
}
