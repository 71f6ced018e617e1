package index

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// BenchmarkRecordsBefore lists a device's records below a sequence number
// (Records with beforeSeq, as the API pages through them): 100 devices with
// 2,000 records each, pages of 100 at random places.
func BenchmarkRecordsBefore(b *testing.B) {
	x := open(b, filepath.Join(b.TempDir(), "index.db"))
	s := newSynthChain(b, x, 100)
	for range 200 {
		s.apply(b, x, 1000)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for range b.N {
		d := s.devices[rng.IntN(len(s.devices))]
		rs, err := x.Records(d, 1+rng.Uint64N(2000), 100)
		if err != nil || len(rs) == 0 {
			b.Fatal(len(rs), err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
