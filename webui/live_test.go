package webui

import (
	"math"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func TestQuantile(t *testing.T) {
	// Bounds 1, 2, 4 ms and +Inf; cumulative counts.
	b := func(c1, c2, c4, all uint64) []bucket {
		return []bucket{{0.001, c1}, {0.002, c2}, {0.004, c4}, {math.Inf(1), all}}
	}
	for _, tt := range []struct {
		name      string
		prev, cur []bucket
		q, want   float64
	}{
		{"nothing observed", b(5, 5, 5, 5), b(5, 5, 5, 5), 0.5, -1},
		{"all in the first bucket", b(0, 0, 0, 0), b(10, 10, 10, 10), 0.5, 0.5},
		{"median in the second bucket", b(0, 0, 0, 0), b(2, 8, 10, 10), 0.5, 1.5},
		{"only the new observations count", b(100, 100, 100, 100), b(102, 108, 110, 110), 0.5, 1.5},
		{"p99 in the third bucket", b(0, 0, 0, 0), b(50, 90, 100, 100), 0.99, 3.8},
		{"above the last bound: the last bound", b(0, 0, 0, 0), b(0, 0, 0, 10), 0.5, 4},
		{"histograms of different shape", b(0, 0, 0, 0)[:2], b(1, 1, 1, 1), 0.5, -1},
	} {
		if got := quantile(tt.prev, tt.cur, tt.q); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: quantile = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDeviceRates(t *testing.T) {
	c := &clock{now: time.Date(2026, 11, 21, 12, 0, 30, 0, time.UTC)}
	l := newLive(nil, c.Now)
	block := func(authors ...string) {
		var txs []*ledger.Tx
		for _, a := range authors {
			txs = append(txs, &ledger.Tx{Author: a, Body: ledger.Body{Kind: ledger.KindRecord}})
		}
		txs = append(txs, &ledger.Tx{Author: "admin", Body: ledger.Body{Kind: ledger.KindEnroll}}) // not a record
		l.committed(&ledger.Block{Header: ledger.Header{Height: 1}}, txs)
	}
	block("a", "a", "b")
	c.add(time.Minute)
	block("a", "a", "a")
	if got := l.rate("a"); got != 1 { // 5 records over the 5-minute window
		t.Errorf("rate(a) = %v, want 1", got)
	}
	if got := l.rate("admin"); got != 0 {
		t.Errorf("rate(admin) = %v, want 0: only records count", got)
	}
	c.add(4 * time.Minute) // the first minute leaves the window
	if got := l.rate("a"); got != 0.6 {
		t.Errorf("rate(a) 5 minutes later = %v, want 0.6", got)
	}
	if got := l.rate("b"); got != 0 {
		t.Errorf("rate(b) = %v, want 0", got)
	}
	c.add(time.Hour)
	if got := l.rate("a"); got != 0 || len(l.rates) != 0 {
		t.Errorf("an hour later: rate(a) = %v, %d devices tracked; want 0 and none", got, len(l.rates))
	}
	if s := l.snapshot(); len(s.Blocks) != 2 || s.Blocks[0].Kinds != "3 data.record, 1 device.enroll" || s.Blocks[0].Txs != 4 {
		t.Errorf("blocks %+v", s.Blocks)
	}
}
