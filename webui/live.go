package webui

import (
	"context"
	"encoding/hex"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Sampling of the live view.
const (
	sampleEvery   = time.Second
	samplesKept   = 120 // two minutes of chart
	blocksKept    = 20  // newest blocks sent to the pages
	rateWindow    = 5 * time.Minute
	rateBuckets   = 5 // per-minute buckets of device message counts
	maxRateTracks = 100_000
)

// Point is one sample of the charts.
type Point struct {
	Time     int64   `json:"t"`        // Unix ms
	Height   uint64  `json:"height"`   // committed blocks
	TxRate   float64 `json:"tx_rate"`  // txs committed per second since the last sample
	Latency  float64 `json:"p50_ms"`   // median commit latency of the txs submitted here since the last sample; -1 if none
	Latency9 float64 `json:"p99_ms"`   // its 99th percentile; -1 if none
	Pending  float64 `json:"pending"`  // txs waiting for their block
	Devices  float64 `json:"mqtt"`     // devices connected over MQTT
	Refusals float64 `json:"refusals"` // refusals since the last sample, over all front ends
}

// Refusal counts the refusals of one reason since start.
type Refusal struct {
	Reason string `json:"reason"`
	Ledger uint64 `json:"ledger"` // refused by the state (any front end, or the API)
	MQTT   uint64 `json:"mqtt"`   // refused by the MQTT front end (bad envelope, not its topic, ...)
	CoAP   uint64 `json:"coap"`
}

// BlockRow is one committed block as the pages show it.
type BlockRow struct {
	Height   uint64 `json:"height"`
	Hash     string `json:"hash"`
	Time     int64  `json:"time"` // Unix ms
	Txs      int    `json:"txs"`
	Proposer string `json:"proposer"`
	Kinds    string `json:"kinds"` // e.g. "3 data.record, 1 device.enroll"
}

// live samples the gateway's metrics and keeps what the live pages show:
// the charts, the refusals, the newest blocks, and how many messages
// each device sent in the last minutes.
type live struct {
	gather prometheus.Gatherer
	now    func() time.Time

	mu       sync.Mutex
	points   []Point
	refusals []Refusal
	blocks   []BlockRow
	prev     sample
	havePrev bool
	rates    map[string]*[rateBuckets]uint32 // device -> records per minute, ring by minute
	minute   int64                           // the minute rates' bucket 0 ... is relative to
	changed  chan struct{}                   // closed and replaced at every sample
}

// sample is what one gather read.
type sample struct {
	at         time.Time
	height     float64
	txs        float64
	pending    float64
	mqtt       float64
	latency    []bucket // cumulative, from the commit latency histogram
	refusalSum float64
	refusals   map[string]*Refusal
}

type bucket struct {
	le    float64
	count uint64
}

func newLive(g prometheus.Gatherer, now func() time.Time) *live {
	return &live{gather: g, now: now, rates: map[string]*[rateBuckets]uint32{}, changed: make(chan struct{})}
}

// run samples until ctx ends.
func (l *live) run(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		l.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// wait returns a channel closed at the next sample.
func (l *live) wait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *live) sample() {
	s := sample{at: l.now(), refusals: map[string]*Refusal{}}
	var mfs []*dto.MetricFamily
	if l.gather != nil {
		mfs, _ = l.gather.Gather() // a failed collector leaves its series out; the others still count
	}
	refusal := func(reason string) *Refusal {
		r := s.refusals[reason]
		if r == nil {
			r = &Refusal{Reason: reason}
			s.refusals[reason] = r
		}
		return r
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "ledgergate_height":
				s.height = m.GetGauge().GetValue()
			case "ledgergate_txs_committed_total":
				s.txs = m.GetCounter().GetValue()
			case "ledgergate_pending_txs":
				s.pending = m.GetGauge().GetValue()
			case "ledgergate_mqtt_connected_devices":
				s.mqtt = m.GetGauge().GetValue()
			case "ledgergate_commit_latency_seconds":
				for _, b := range m.GetHistogram().GetBucket() {
					s.latency = append(s.latency, bucket{le: b.GetUpperBound(), count: b.GetCumulativeCount()})
				}
				s.latency = append(s.latency, bucket{le: math.Inf(1), count: m.GetHistogram().GetSampleCount()})
			case "ledgergate_rejects_total":
				n := uint64(m.GetCounter().GetValue())
				refusal(label(m, "reason")).Ledger += n
				s.refusalSum += float64(n)
			case "ledgergate_mqtt_publishes_total":
				if r := label(m, "result"); r != "accepted" {
					n := uint64(m.GetCounter().GetValue())
					refusal(r).MQTT += n
					s.refusalSum += float64(n)
				}
			case "ledgergate_coap_requests_total":
				if r := label(m, "result"); !okCoAPResult(r) {
					n := uint64(m.GetCounter().GetValue())
					refusal(r).CoAP += n
					s.refusalSum += float64(n)
				}
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p := Point{Time: s.at.UnixMilli(), Height: uint64(s.height), Pending: s.pending, Devices: s.mqtt, Latency: -1, Latency9: -1}
	if l.havePrev {
		if dt := s.at.Sub(l.prev.at).Seconds(); dt > 0 {
			p.TxRate = math.Max(0, s.txs-l.prev.txs) / dt
		}
		p.Refusals = math.Max(0, s.refusalSum-l.prev.refusalSum)
		p.Latency, p.Latency9 = quantile(l.prev.latency, s.latency, 0.5), quantile(l.prev.latency, s.latency, 0.99)
	}
	l.prev, l.havePrev = s, true
	l.points = append(l.points, p)
	if len(l.points) > samplesKept {
		l.points = append(l.points[:0], l.points[len(l.points)-samplesKept:]...)
	}
	l.refusals = l.refusals[:0]
	for _, r := range s.refusals {
		if r.Ledger+r.MQTT+r.CoAP > 0 {
			l.refusals = append(l.refusals, *r)
		}
	}
	sort.Slice(l.refusals, func(i, j int) bool { return l.refusals[i].Reason < l.refusals[j].Reason })
	close(l.changed)
	l.changed = make(chan struct{})
}

// okCoAPResult reports whether a CoAP request result is not a refusal.
func okCoAPResult(r string) bool {
	switch r {
	case "accepted", "answered", "observing", "continue":
		return true
	}
	return false
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// quantile estimates, in ms, the q-quantile of the observations between
// two readings of a cumulative histogram (linear within a bucket, as
// Prometheus' histogram_quantile does); -1 if there were none.
func quantile(prev, cur []bucket, q float64) float64 {
	if len(cur) == 0 || len(prev) != len(cur) {
		return -1
	}
	total := cur[len(cur)-1].count - prev[len(prev)-1].count
	if total == 0 {
		return -1
	}
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for i := range cur {
		n := cur[i].count - prev[i].count
		if float64(n) >= rank {
			upper := cur[i].le
			if math.IsInf(upper, 1) { // above the last bound: say the last bound
				return lower * 1000
			}
			inBucket := float64(n - below)
			if inBucket == 0 {
				return upper * 1000
			}
			return (lower + (upper-lower)*(rank-float64(below))/inBucket) * 1000
		}
		lower, below = cur[i].le, n
	}
	return lower * 1000
}

// committed records a committed block: its row for the pages, and the
// records of each device for the message rates.
func (l *live) committed(b *ledger.Block, txs []*ledger.Tx) {
	hash := b.Header.Hash()
	kinds := map[string]int{}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rotate()
	for _, tx := range txs {
		kinds[string(tx.Body.Kind)]++
		if tx.Body.Kind != ledger.KindRecord {
			continue
		}
		r := l.rates[tx.Author]
		if r == nil {
			if len(l.rates) >= maxRateTracks {
				continue
			}
			r = new([rateBuckets]uint32)
			l.rates[tx.Author] = r
		}
		r[l.minute%rateBuckets]++
	}
	row := BlockRow{Height: b.Header.Height, Hash: hex.EncodeToString(hash[:]), Time: b.Header.Time,
		Txs: len(txs), Proposer: b.Header.Proposer, Kinds: describeKinds(kinds)}
	l.blocks = append([]BlockRow{row}, l.blocks...)
	if len(l.blocks) > blocksKept {
		l.blocks = l.blocks[:blocksKept]
	}
}

func describeKinds(kinds map[string]int) string {
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(kinds[k]) + " " + k)
	}
	return b.String()
}

// rotate moves the rate buckets to the current minute, clearing those
// that fell out of the window.
func (l *live) rotate() {
	m := l.now().Unix() / 60
	if m == l.minute {
		return
	}
	steps := m - l.minute
	if steps >= rateBuckets || steps < 0 {
		clear(l.rates)
	} else {
		for id, r := range l.rates {
			empty := true
			for s := int64(1); s <= steps; s++ {
				r[(l.minute+s)%rateBuckets] = 0
			}
			for _, n := range r {
				empty = empty && n == 0
			}
			if empty {
				delete(l.rates, id)
			}
		}
	}
	l.minute = m
}

// rate returns the records per minute device sent over the last
// rateWindow (or since start, if shorter).
func (l *live) rate(device string) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rotate()
	r := l.rates[device]
	if r == nil {
		return 0
	}
	var n uint32
	for _, c := range r {
		n += c
	}
	return float64(n) / rateBuckets
}

// snapshot is what the live pages get at every sample.
type snapshot struct {
	Points   []Point    `json:"points"`
	Refusals []Refusal  `json:"refusals"`
	Blocks   []BlockRow `json:"blocks"`
}

func (l *live) snapshot() snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return snapshot{
		Points:   append([]Point(nil), l.points...),
		Refusals: append([]Refusal(nil), l.refusals...),
		Blocks:   append([]BlockRow(nil), l.blocks...),
	}
}
