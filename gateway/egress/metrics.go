package egress

import "github.com/prometheus/client_golang/prometheus"

// collector exports the connectors' state; the lags are computed when
// scraped, from one read of the index's counts.
type collector struct{ m *Manager }

var (
	lagBlocksDesc = prometheus.NewDesc("ledgergate_egress_lag_blocks",
		"Blocks committed after the egress connector's cursor.", []string{"name"}, nil)
	lagRecordsDesc = prometheus.NewDesc("ledgergate_egress_lag_records",
		"Txs committed after the egress connector's cursor (of every kind: an upper bound on the records it has still to deliver).", []string{"name"}, nil)
	deliveredDesc = prometheus.NewDesc("ledgergate_egress_delivered_total",
		"Records the egress connector's sink acknowledged since the gateway started.", []string{"name"}, nil)
	lastDeliveryDesc = prometheus.NewDesc("ledgergate_egress_last_delivery_timestamp_seconds",
		"When the egress connector's sink last acknowledged records (Unix seconds; 0: not since the gateway started).", []string{"name"}, nil)
	failingDesc = prometheus.NewDesc("ledgergate_egress_failing",
		"1 if the egress connector's sink has failed since it last acknowledged, else 0.", []string{"name"}, nil)
	exportingDesc = prometheus.NewDesc("ledgergate_egress_exporting",
		"1 if this gateway runs the egress connector (see its nodes setting), else 0.", []string{"name"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lagBlocksDesc, lagRecordsDesc, deliveredDesc, lastDeliveryDesc, failingDesc, exportingDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.m.Status() {
		ch <- prometheus.MustNewConstMetric(exportingDesc, prometheus.GaugeValue, bool01(s.Exporting), s.Name)
		if !s.Exporting {
			continue
		}
		ch <- prometheus.MustNewConstMetric(lagBlocksDesc, prometheus.GaugeValue, float64(s.LagBlocks), s.Name)
		ch <- prometheus.MustNewConstMetric(lagRecordsDesc, prometheus.GaugeValue, float64(s.LagRecords), s.Name)
		ch <- prometheus.MustNewConstMetric(deliveredDesc, prometheus.CounterValue, float64(s.Delivered), s.Name)
		last := 0.0
		if s.LastDelivered != nil {
			last = float64(s.LastDelivered.UnixMilli()) / 1000
		}
		ch <- prometheus.MustNewConstMetric(lastDeliveryDesc, prometheus.GaugeValue, last, s.Name)
		ch <- prometheus.MustNewConstMetric(failingDesc, prometheus.GaugeValue, bool01(s.Failing), s.Name)
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
