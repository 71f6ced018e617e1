package chain

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the chain's Prometheus series.
type metrics struct {
	height    prometheus.Gauge
	blocks    prometheus.Counter
	txs       prometheus.Counter
	latency   prometheus.Histogram
	rejects   *prometheus.CounterVec
	pending   prometheus.Gauge
	blockSize prometheus.Histogram
	indexLag  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		height: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_height", Help: "Height of the last committed block."}),
		blocks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgergate_blocks_committed_total", Help: "Blocks committed since start."}),
		txs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgergate_txs_committed_total", Help: "Txs committed since start."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ledgergate_commit_latency_seconds",
			Help:    "Time from submit to receipt, for txs submitted to this node.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgergate_rejects_total", Help: "Txs rejected, by reason."}, []string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_pending_txs", Help: "Submitted txs waiting for their block."}),
		blockSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ledgergate_block_txs", Help: "Txs per committed block.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		indexLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_index_lag_blocks", Help: "Committed blocks (in the block log, devices answered) not yet in the SQLite index."}),
	}
	if reg != nil {
		reg.MustRegister(m.height, m.blocks, m.txs, m.latency, m.rejects, m.pending, m.blockSize, m.indexLag)
	}
	return m
}
