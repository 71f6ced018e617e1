package mqtt

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the front end's Prometheus series.
type metrics struct {
	connected prometheus.Gauge
	publishes *prometheus.CounterVec
	accepted  prometheus.Counter // publishes{result="accepted"}: looked up once, not at every commit
	requests  *prometheus.CounterVec
	latency   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ledgergate_mqtt_connected_devices", Help: "Devices with an open MQTT connection."}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgergate_mqtt_publishes_total",
			Help: `Device publishes by result: "accepted" (committed) or the reason of the refusal.`,
		}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledgergate_mqtt_requests_total",
			Help: `Device requests (verify, blob, keys) by result: "answered" or the reason of the refusal.`,
		}, []string{"request", "result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ledgergate_mqtt_puback_latency_seconds",
			Help:    "Time from a QoS 1 PUBLISH of a record or report to its PUBACK.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
	}
	m.accepted = m.publishes.WithLabelValues(resultAccepted)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connected, m.publishes, m.requests, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mqtt: register metrics: %w", err)
		}
	}
	return m, nil
}

// Results of publishes_total and requests_total besides refusal reasons.
const (
	resultAccepted = "accepted" // a committed record or report
	resultAnswered = "answered" // a request answered
)

// minLevel passes on only records at min or above: mochi logs every
// misbehaving client at warn level, which a device could use to flood
// the gateway's log.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler            { return minLevel{m.h.WithAttrs(a), m.min} }
func (m minLevel) WithGroup(name string) slog.Handler              { return minLevel{m.h.WithGroup(name), m.min} }
