package chain

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// BenchmarkCommit measures durable commits on one node in-process: records
// signed by many devices are submitted concurrently, each submitter
// waiting for its receipt (block appended, fsynced, indexed). It reports
// records/s and submit-to-receipt latency. Signing happens outside the timer.
func BenchmarkCommit(b *testing.B) {
	for _, alg := range []ledger.Alg{ledger.ES256, ledger.EdDSA} {
		for _, batch := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", alg, batch), func(b *testing.B) {
				benchCommit(b, alg, batch)
			})
		}
	}
}

func benchCommit(b *testing.B, alg ledger.Alg, batch int) {
	workers := max(2*batch, 64)
	total := 40_000
	if batch == 1 {
		total = 2_000
	}
	perWorker := total / workers
	h := newHarness(b, BatchConfig{MaxTxs: batch, MaxBytes: 16 << 20, MaxDelay: 2 * time.Millisecond, MaxPending: 100_000})
	keys := make([]crypto.Signer, workers)
	for i := range keys {
		k, err := device.GenerateKey(alg)
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k
		h.enroll(b, "dev-"+strconv.Itoa(i), k)
	}
	payload := make([]byte, 64)
	var seq uint64
	var lat []time.Duration
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		envs := make([][][]byte, workers)
		for w := range envs {
			for r := 0; r < perWorker; r++ {
				envs[w] = append(envs[w], record(b, keys[w], h.g.ChainID, "dev-"+strconv.Itoa(w), seq+uint64(r)+1, payload))
			}
		}
		seq += uint64(perWorker)
		b.StartTimer()
		start := time.Now()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := make([]time.Duration, 0, perWorker)
				for _, env := range envs[w] {
					t0 := time.Now()
					if _, err := h.chain.Submit(context.Background(), env); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		elapsed += time.Since(start)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "records/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}
