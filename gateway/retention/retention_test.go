package retention

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

const chainID = "test-chain"

// fixture is a real block log and index holding blocks of records (1 KiB
// payloads) of one device, after a first block that enrolls it; block h
// has time t0 + h minutes.
type fixture struct {
	dir  string
	log  *ledger.Log
	idx  *index.Index
	ids  map[uint64][][32]byte // record tx ids by height
	t0   time.Time
	prev [32]byte
	key  ed25519.PrivateKey
	seq  uint64
}

func newFixture(t *testing.T, segBytes int64) *fixture {
	dir := t.TempDir()
	l, err := ledger.OpenLog(filepath.Join(dir, "blocks"), ledger.LogOptions{SegmentBytes: segBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	x, err := index.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, admin, _ := ed25519.GenerateKey(rand.Reader)
	f := &fixture{dir: dir, log: l, idx: x, ids: map[uint64][][32]byte{}, t0: time.UnixMilli(1_700_000_000_000), key: key,
		prev: sha256.Sum256([]byte("genesis"))}
	der, err := ledger.MarshalPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	enroll, err := ledger.SignTx(admin, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: chainID,
		Enroll: &ledger.Enroll{DeviceID: "dev-1", PublicKey: der}})
	if err != nil {
		t.Fatal(err)
	}
	f.add(t, [][]byte{enroll})
	return f
}

// add appends and indexes a block of txs.
func (f *fixture) add(t *testing.T, txs [][]byte) {
	h := f.log.Len() + 1
	b := &ledger.Block{Header: ledger.Header{ChainID: chainID, Height: h, Prev: f.prev[:], TxRoot: ledger.NewTree(txs).Root(),
		NumTxs: uint64(len(txs)), Time: f.t0.Add(time.Duration(h) * time.Minute).UnixMilli(), Proposer: "node-1"},
		Txs: txs, Cert: ledger.Cert{Sigs: []ledger.Sig{{Node: "node-1", Sig: []byte{1}}}}}
	enc, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.log.Append(enc); err != nil {
		t.Fatal(err)
	}
	if err := f.idx.ApplyBlock(b); err != nil {
		t.Fatal(err)
	}
	f.prev = b.Header.Hash()
}

// records appends n blocks of 4 records each.
func (f *fixture) records(t *testing.T, n int) {
	for range n {
		var txs [][]byte
		for range 4 {
			f.seq++
			env, err := ledger.SignTx(f.key, "dev-1", &ledger.Body{Kind: ledger.KindRecord, ChainID: chainID,
				Record: &ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: f.seq, Time: 1, Payload: bytes.Repeat([]byte{'x'}, 1024)}})
			if err != nil {
				t.Fatal(err)
			}
			txs = append(txs, env)
			f.ids[f.log.Len()+1] = append(f.ids[f.log.Len()+1], ledger.TxID(env))
		}
		f.add(t, txs)
	}
}

func (f *fixture) pruner(t *testing.T, cfg Config, now time.Time) *Pruner {
	cfg.Interval = time.Second
	cfg.Paths = []string{filepath.Join(f.dir, "blocks"), filepath.Join(f.dir, "index.db"), filepath.Join(f.dir, "index.db-wal")}
	p, err := New(cfg, Deps{Log: f.log, Index: f.idx, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkPruned checks that the blocks up to h are pruned and the rest whole,
// in the log and the index, and that every header is unchanged.
func (f *fixture) checkPruned(t *testing.T, h uint64) {
	t.Helper()
	for height := uint64(2); height <= f.log.Len(); height++ {
		data, err := f.log.Read(height - 1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ledger.DecodeBlock(data)
		if err != nil {
			t.Fatal(err)
		}
		info, err := f.idx.Block(height)
		if err != nil {
			t.Fatal(err)
		}
		if hash := b.Header.Hash(); info.Hash != hex.EncodeToString(hash[:]) {
			t.Fatalf("block %d: header changed", height)
		}
		if b.IsPruned() != (height <= h) {
			t.Fatalf("block %d: pruned %v, want pruned up to %d", height, b.IsPruned(), h)
		}
		for _, id := range f.ids[height] {
			_, err := f.idx.Tx(id)
			if errors.Is(err, index.ErrNotFound) != (height <= h) {
				t.Fatalf("block %d: index row of a record: %v", height, err)
			}
		}
	}
	if got, _ := f.idx.PrunedHeight(); got != h {
		t.Fatalf("index pruned height %d, want %d", got, h)
	}
}

func TestPruneByAge(t *testing.T) {
	f := newFixture(t, 32<<10)
	f.records(t, 60) // 61 blocks, block h at t0 + h minutes; about 8 blocks a segment
	segs := f.log.Segments()
	// Keep an hour at t0 + 90m: blocks before t0 + 30m go, whole segments of them.
	p := f.pruner(t, Config{Keep: time.Hour}, f.t0.Add(90*time.Minute))
	if err := p.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	var want uint64
	for _, s := range segs {
		if s.Sealed && s.Last < 30 {
			want = s.Last
		}
	}
	if want == 0 {
		t.Fatal("no segment to prune: fixture too small")
	}
	f.checkPruned(t, want)
	st := p.Status()
	if st.PrunedHeight != want || st.Pruned != 4*(want-1) || !st.Enabled || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
	// A second pass changes nothing.
	if err := p.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.checkPruned(t, want)
}

func TestPruneByBudget(t *testing.T) {
	f := newFixture(t, 32<<10)
	f.records(t, 100)
	p := f.pruner(t, Config{}, time.Now())
	if err := p.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	used := p.Status().UsedBytes
	f.checkPruned(t, 0) // no policy: nothing pruned
	if used == 0 {
		t.Fatal("usage not measured")
	}
	budget := used // 100% used: over highWater
	p = f.pruner(t, Config{MaxBytes: budget}, time.Now())
	if err := p.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := p.Status()
	if st.PrunedHeight == 0 {
		t.Fatalf("nothing pruned: %+v", st)
	}
	f.checkPruned(t, st.PrunedHeight)
	if float64(st.UsedBytes) > lowWater*float64(budget) && st.PrunedHeight < f.log.Segments()[len(f.log.Segments())-2].Last {
		t.Fatalf("stopped at %d bytes of %d with segments left to prune", st.UsedBytes, budget)
	}
	// Pruning keeps replay protection: the state replays the pruned log
	// to the same device seq (chain.Replay uses DecodeTxs).
	var last uint64
	for h := uint64(1); h <= f.log.Len(); h++ {
		data, _ := f.log.Read(h - 1)
		b, err := ledger.DecodeBlock(data)
		if err != nil {
			t.Fatal(err)
		}
		txs, err := b.DecodeTxs(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range txs {
			if r := tx.Body.Record; r != nil {
				if r.Seq != last+1 {
					t.Fatalf("block %d: seq %d after %d", h, r.Seq, last)
				}
				last = r.Seq
			}
		}
	}
	if last != f.seq {
		t.Fatalf("last seq %d, want %d", last, f.seq)
	}
}

// TestHold: age pruning stops at the first segment that reaches the hold
// (an egress connector's cursor); budget pruning does not.
func TestHold(t *testing.T) {
	f := newFixture(t, 32<<10)
	f.records(t, 60)
	segs := f.log.Segments()
	// Every block is old; the hold is segment 3's first block, so only
	// segments 1 and 2 may go by age.
	hold := segs[2].First
	p := f.pruner(t, Config{Keep: time.Hour}, f.t0.Add(10*time.Hour))
	p.d.Hold = func() (uint64, bool) { return hold, true }
	if err := p.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.checkPruned(t, segs[1].Last)
	// The budget wins over the hold.
	used := p.Status().UsedBytes
	b := f.pruner(t, Config{MaxBytes: used}, time.Now())
	b.d.Hold = func() (uint64, bool) { return hold, true }
	if err := b.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.PrunedHeight <= segs[2].Last {
		t.Fatalf("budget pruning stopped at the hold: pruned height %d", st.PrunedHeight)
	}
}
