package coap

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the front end's Prometheus series.
type metrics struct {
	requests      *prometheus.CounterVec
	notifications *prometheus.CounterVec
	latency       prometheus.Histogram
	peers         *prometheus.GaugeVec
	peersRefused  prometheus.Counter
	dropped       prometheus.Counter
	duplicates    prometheus.Counter
	handshakes    *prometheus.CounterVec
	transfers     prometheus.Gauge
	transferBytes prometheus.Gauge
	observations  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgergate_coap_requests_total",
			Help: `CoAP requests by resource (data, receipts, core, other) and result: "accepted" (a committed record), "answered", "observing", "continue" (a Block1 block) or the reason of the refusal.`,
		}, []string{"resource", "result"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgergate_coap_notifications_total",
			Help: `Observe notifications of receipts by result: "answered" (the receipt) or "not_found" (the observation expired).`,
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ledgergate_coap_ack_latency_seconds",
			Help:    "Time from a record's POST (its last block) to its commit, when the 2.04 is sent.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		peers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ledgergate_coap_peers", Help: "UDP endpoints and DTLS sessions the server keeps state for."},
			[]string{"transport"}),
		peersRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgergate_coap_peers_refused_total", Help: "New UDP endpoints ignored because MaxPeers busy ones were kept."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgergate_coap_dropped_total", Help: "Messages dropped because their peer had too many waiting."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ledgergate_coap_duplicates_total", Help: "Retransmitted requests answered from the exchange cache."}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgergate_coap_dtls_handshakes_total", Help: `DTLS handshakes by result: "ok", "failed", "unknown_key" or "revoked" (the client certificate's key), "handshake_dropped" (replaced by a newer one at MaxHandshakes or MaxHandshakesPerAddr) or "session_replaced" (a session closed for a device's new one).`},
			[]string{"result"}),
		transfers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_coap_block_transfers", Help: "Block1 transfers being reassembled."}),
		transferBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_coap_block_bytes", Help: "Memory held by Block1 transfers being reassembled."}),
		observations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_coap_observations", Help: "Receipts observed before their commit."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.notifications, m.latency, m.peers, m.peersRefused, m.dropped,
		m.duplicates, m.handshakes, m.transfers, m.transferBytes, m.observations} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("coap: register metrics: %w", err)
		}
	}
	return m, nil
}
