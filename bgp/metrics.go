package bgp

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironlb/ironlb/bgp/bfd"
)

// collector exports the Manager's Status at scrape time, so the series always
// match GoBGP and disappear with their peer.
type collector struct {
	m                                 *Manager
	sessionUp, prefixes, updates, bfd *prometheus.Desc
}

// scrapeTimeout bounds the GoBGP queries of one scrape.
const scrapeTimeout = 5 * time.Second

func newCollector(m *Manager) *collector {
	peer := []string{"peer"}
	return &collector{
		m:         m,
		sessionUp: prometheus.NewDesc("ironlb_bgp_session_up", "1 if the BGP session with the peer is Established.", peer, nil),
		prefixes:  prometheus.NewDesc("ironlb_bgp_prefixes_advertised", "Prefixes the BGP session with the peer carries.", peer, nil),
		updates:   prometheus.NewDesc("ironlb_bgp_updates_sent_total", "BGP UPDATE messages sent to the peer.", peer, nil),
		bfd:       prometheus.NewDesc("ironlb_bfd_session_up", "1 if the BFD session with the peer is Up (peers with BFD only).", peer, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sessionUp
	ch <- c.prefixes
	ch <- c.updates
	ch <- c.bfd
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st, err := c.m.Status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.sessionUp, err)
		return
	}
	for _, ps := range st {
		peer := ps.Address.String()
		ch <- prometheus.MustNewConstMetric(c.sessionUp, prometheus.GaugeValue, boolValue(ps.State == StateEstablished), peer)
		ch <- prometheus.MustNewConstMetric(c.prefixes, prometheus.GaugeValue, float64(ps.PrefixesAdvertised), peer)
		ch <- prometheus.MustNewConstMetric(c.updates, prometheus.CounterValue, float64(ps.UpdatesSent), peer)
		if ps.BFD != nil {
			ch <- prometheus.MustNewConstMetric(c.bfd, prometheus.GaugeValue, boolValue(*ps.BFD == bfd.StateUp), peer)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
