package index

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

var (
	growthSizes = flag.String("index.growth", "100000,1000000",
		"comma-separated numbers of records indexed before BenchmarkApplyGrowth times its blocks")
	growthDevices = flag.Int("index.devices", 100, "devices whose records BenchmarkApplyGrowth's blocks hold")
	growthGen     = flag.Int64("index.generation", generationTxs,
		"txs per generation of the tx-id index in BenchmarkApplyGrowth's index")
	growthDrop = flag.String("index.drop", "",
		"comma-separated indexes BenchmarkApplyGrowth drops before it fills, to measure what each costs")
	growthBlock   = flag.Int("index.block", 1000, "records in each of BenchmarkApplyGrowth's transactions")
	growthBlocks  = flag.Int("index.blocks", 1, "blocks the records of each of BenchmarkApplyGrowth's transactions are in")
	smallTxs      = flag.Int("index.small", 3, "records in each of BenchmarkApplySmallBlocks's blocks")
	growthPragmas = flag.String("index.pragmas", "",
		"semicolon-separated statements BenchmarkApplyGrowth runs on the writer after opening, to compare settings")
)

// synthChain makes blocks of decoded data.record txs without signing them:
// ApplyDecoded checks no signature, so the index's own cost can be
// measured at millions of records in minutes.
type synthChain struct {
	c       *chain
	devices []string
	seq     []uint64
	n       uint64 // txs made, for distinct ids
	env     []byte // every tx's envelope: only its size is indexed
}

func newSynthChain(tb testing.TB, x *Index, devices int) *synthChain {
	s := &synthChain{c: newChain(tb), env: make([]byte, 180)}
	var enrolls [][]byte
	for i := range devices {
		id := fmt.Sprintf("dev-%05d", i)
		s.devices = append(s.devices, id)
		enrolls = append(enrolls, s.c.enroll(id, newEd25519(tb)))
	}
	s.seq = make([]uint64, devices)
	apply(tb, x, s.c.next(enrolls...))
	return s
}

// block returns the next block of n records, round robin over the devices,
// and its decoded txs.
func (s *synthChain) block(n int) (*ledger.Block, []*ledger.Tx) {
	txs := make([]*ledger.Tx, n)
	for i := range txs {
		d := int(s.n % uint64(len(s.devices)))
		s.n++
		s.seq[d]++
		txs[i] = &ledger.Tx{ID: synthID(s.n), Envelope: s.env, Alg: ledger.EdDSA, Author: s.devices[d],
			Body: ledger.Body{Kind: ledger.KindRecord, ChainID: chainID, Record: &ledger.Record{
				DeviceID: s.devices[d], Stream: "temp", Seq: s.seq[d], Time: 1_700_000_000_000 + int64(s.n), ContentType: "application/json"}}}
	}
	h := uint64(len(s.c.blocks)) + 1
	b := &ledger.Block{Header: ledger.Header{ChainID: chainID, Height: h, Prev: make([]byte, 32), TxRoot: make([]byte, 32),
		NumTxs: uint64(n), Time: 1_700_000_000_000 + int64(h)*1000, Proposer: "node-1"}, Txs: make([][]byte, n)}
	// Keep only the header: the chain's reader is not used, and millions
	// of blocks would not fit.
	s.c.blocks = append(s.c.blocks, &ledger.Block{Header: b.Header})
	return b, txs
}

// synthID is the id of the nth tx of a synthChain.
func synthID(n uint64) [32]byte {
	var ctr [8]byte
	binary.BigEndian.PutUint64(ctr[:], n)
	return sha256.Sum256(ctr[:])
}

func (s *synthChain) apply(tb testing.TB, x *Index, n int) {
	b, txs := s.block(n)
	if err := x.ApplyDecoded(b, txs); err != nil {
		tb.Fatal(err)
	}
}

// applyBatch applies n records in one transaction (ApplyBatch), as k
// blocks of n/k records, as the chain's index stage does with the blocks
// that queued up.
func (s *synthChain) applyBatch(tb testing.TB, x *Index, n, k int) {
	if k <= 1 {
		s.apply(tb, x, n)
		return
	}
	bs := make([]Decoded, k)
	for i := range bs {
		bs[i].Block, bs[i].Txs = s.block(n/k + min(1, max(0, n%k-i)))
	}
	if err := x.ApplyBatch(bs); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkApplyGrowth grows one index through the sizes of
// -index.growth (records, increasing) and, at each, applies blocks of
// -index.block records (1000) a transaction, in -index.blocks blocks (1),
// from -index.devices devices and reports the cost per record and
// the WAL's size after; then it looks up ids of txs spread over the whole
// index, and ids that are not there, and reports the cost per lookup. The
// cost per record at 10M should stay within 1.5× of the cost at 100k.
// Use a fixed -benchtime (20x: 20 blocks per size), since the timed blocks
// grow the index too.
func BenchmarkApplyGrowth(b *testing.B) {
	perBlock := *growthBlock
	path := filepath.Join(b.TempDir(), "index.db")
	x, err := openSized(path, *growthGen, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	if *growthDrop != "" {
		for _, name := range strings.Split(*growthDrop, ",") {
			if _, err := x.w.Exec(`DROP INDEX ` + name); err != nil {
				b.Fatal(err)
			}
		}
		// The statements prepared with the index are prepared again.
		if err := x.w.close(); err != nil {
			b.Fatal(err)
		}
		c, err := x.db.Conn(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		x.w = &writer{c: c}
		for _, p := range writerPragmas {
			if _, err := x.w.Exec(p); err != nil {
				b.Fatal(err)
			}
		}
		if err := x.w.prepare(); err != nil {
			b.Fatal(err)
		}
	}
	if *growthPragmas != "" {
		for _, p := range strings.Split(*growthPragmas, ";") {
			if _, err := x.w.Exec(p); err != nil {
				b.Fatal(err)
			}
		}
	}
	s := newSynthChain(b, x, *growthDevices)
	for _, f := range strings.Split(*growthSizes, ",") {
		size, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			b.Fatalf("-index.growth: %v", err)
		}
		// The index is filled here, outside b.Run: the testing package
		// calls the function below more than once (b.N = 1 first).
		for s.n+uint64(perBlock) <= size {
			s.applyBatch(b, x, perBlock, *growthBlocks)
		}
		b.Run(fmt.Sprintf("records=%d", size), func(b *testing.B) {
			cpu0, w0, r0 := cpuTime(b), written(b), read(b)
			for range b.N {
				s.applyBatch(b, x, perBlock, *growthBlocks)
			}
			b.StopTimer()
			b.ReportMetric(float64(read(b)-r0)/float64(b.N*perBlock), "rbytes/record")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perBlock), "ns/record")
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N*perBlock), "cpu-ns/record")
			b.ReportMetric(float64(written(b)-w0)/float64(b.N*perBlock), "wbytes/record")
			if fi, err := os.Stat(path + "-wal"); err == nil {
				b.ReportMetric(float64(fi.Size())/(1<<20), "MiB-wal")
			}
		})
		b.Run(fmt.Sprintf("lookup/records=%d", size), func(b *testing.B) {
			// Half the ids are of txs at random places in the index, half
			// of no tx; perOp lookups per op.
			const perOp = 1000
			rng := rand.New(rand.NewPCG(size, 1))
			cpu0 := cpuTime(b)
			for range b.N {
				for i := range perOp {
					n := 1 + rng.Uint64N(s.n)
					if i%2 == 1 {
						n += 1 << 62
					}
					_, err := x.Tx(synthID(n))
					if i%2 == 0 && err != nil || i%2 == 1 && !errors.Is(err, ErrNotFound) {
						b.Fatalf("lookup of tx %d: %v", n, err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N*perOp), "cpu-ns/lookup")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perOp), "ns/lookup")
		})
	}
}

// BenchmarkApplySmallBlocks applies blocks of -index.small records (3; a
// gateway at 1,000 msgs/s makes blocks of about 10), as a gateway at a low
// rate makes them: the fixed cost per block dominates.
func BenchmarkApplySmallBlocks(b *testing.B) {
	n := *smallTxs
	x := open(b, filepath.Join(b.TempDir(), "index.db"))
	s := newSynthChain(b, x, 100)
	for range 1000 {
		s.apply(b, x, n)
	}
	b.ResetTimer()
	cpu0, w0 := cpuTime(b), written(b)
	for range b.N {
		s.apply(b, x, n)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/block")
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N*n), "cpu-ns/record")
	b.ReportMetric(float64(written(b)-w0)/float64(b.N), "wbytes/block")
}

// cpuTime is the CPU time the process has used, user and system, in ns:
// on a shared machine it varies less than the wall clock.
func cpuTime(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// written is the number of bytes the process has written (wchar in
// /proc/self/io): the WAL and the checkpoints' copies of the pages the
// blocks dirtied. Unlike CPU time it does not depend on the machine's load.
func written(tb testing.TB) int64 { return procIO(tb, "wchar") }

// read is the number of bytes the process has read with read system calls
// (rchar in /proc/self/io): pages SQLite read back from the database and
// the WAL. Pages read through a memory mapping are not counted.
func read(tb testing.TB) int64 { return procIO(tb, "rchar") }

func procIO(tb testing.TB, field string) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+": "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatalf("no %s in /proc/self/io", field)
	return 0
}
