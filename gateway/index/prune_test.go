package index

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// prunedChain is a chain of two devices' records: block 1 enrolls them,
// blocks 2 to 7 hold two records each and block 4 a revocation too.
func prunedChain(t *testing.T) (*chain, map[uint64][][32]byte) {
	c := newChain(t)
	k1, k2 := newEd25519(t), newEd25519(t)
	c.next(c.enroll("dev-1", k1), c.enroll("dev-2", k2), c.enroll("dev-3", newEd25519(t)))
	recs := map[uint64][][32]byte{}
	for h := uint64(2); h <= 7; h++ {
		txs := [][]byte{record(t, "dev-1", k1, h), record(t, "dev-2", k2, 10*h)}
		if h == 4 {
			txs = append(txs, c.revoke("dev-3", "lost"))
		}
		c.next(txs...)
		recs[h] = [][32]byte{txID(t, txs[0]), txID(t, txs[1])}
	}
	return c, recs
}

func kinds(t *testing.T, x *Index, h uint64) []string {
	t.Helper()
	ts, err := x.TxsInBlock(h)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tx := range ts {
		out = append(out, tx.Kind)
	}
	return out
}

// TestPruneRecords prunes with the txs in the open tx-id generation, and
// with generations of 2 txs, most of them full (in tx_ids).
func TestPruneRecords(t *testing.T) {
	for _, gen := range []int64{generationTxs, 2} {
		t.Run(fmt.Sprintf("generation=%d", gen), func(t *testing.T) { testPruneRecords(t, gen) })
	}
}

func testPruneRecords(t *testing.T, gen int64) {
	c, recs := prunedChain(t)
	path := filepath.Join(t.TempDir(), "index.db")
	x := openGen(t, path, gen)
	apply(t, x, c.blocks...)
	before1, _ := x.Device("dev-1")

	if h, err := x.PrunedHeight(); err != nil || h != 0 {
		t.Fatalf("PrunedHeight = %d, %v", h, err)
	}
	n, err := x.PruneRecords(4, 2) // batches of two rows: several transactions
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Fatalf("deleted %d rows, want the 6 records of blocks 2-4", n)
	}
	if h, _ := x.PrunedHeight(); h != 4 {
		t.Fatalf("PrunedHeight = %d, want 4", h)
	}
	for h := uint64(1); h <= 7; h++ {
		want := []string{"data.record", "data.record"}
		switch {
		case h == 1:
			want = []string{"device.enroll", "device.enroll", "device.enroll"}
		case h == 4:
			want = []string{"device.revoke"}
		case h <= 4:
			want = nil
		}
		if got := kinds(t, x, h); !reflect.DeepEqual(got, want) {
			t.Fatalf("block %d: txs %v, want %v", h, got, want)
		}
		if _, err := x.Block(h); err != nil {
			t.Fatalf("block %d row: %v", h, err)
		}
		for _, id := range recs[h] {
			_, err := x.Tx(id)
			if pruned := h <= 4; pruned != errors.Is(err, ErrNotFound) {
				t.Fatalf("block %d: Tx of a record = %v", h, err)
			}
		}
	}
	checkIDTable(t, x)
	after1, _ := x.Device("dev-1")
	if !reflect.DeepEqual(before1, after1) {
		t.Fatalf("device row changed: %+v, was %+v", after1, before1)
	}
	if n, err := x.PruneRecords(3, 0); err != nil || n != 0 {
		t.Fatalf("PruneRecords below the pruned height = %d, %v", n, err)
	}
	if _, err := x.PruneRecords(9, 0); err == nil {
		t.Fatal("PruneRecords past the top succeeded")
	}
	// Up to the top; and the pruned height survives a reopen.
	if n, err := x.PruneRecords(7, 0); err != nil || n != 6 {
		t.Fatalf("PruneRecords(7) = %d, %v", n, err)
	}
	checkIDTable(t, x)
	x.Close()
	x = openGen(t, path, gen)
	if h, _ := x.PrunedHeight(); h != 7 {
		t.Fatalf("PrunedHeight after reopen = %d", h)
	}
	// More blocks index on top as before.
	k := newEd25519(t)
	apply(t, x, c.next(c.enroll("dev-4", k)), c.next(record(t, "dev-4", k, 1)))
	if got := kinds(t, x, 9); !reflect.DeepEqual(got, []string{"data.record"}) {
		t.Fatalf("block 9: %v", got)
	}
}

// TestRebuildFromPrunedBlocks indexes a log whose blocks 2-4 were pruned:
// it holds the rows an index pruned live holds, and the same devices.
func TestRebuildFromPrunedBlocks(t *testing.T) {
	c, _ := prunedChain(t)
	live := open(t, filepath.Join(t.TempDir(), "live.db"))
	apply(t, live, c.blocks...)
	if _, err := live.PruneRecords(4, 0); err != nil {
		t.Fatal(err)
	}
	pruned := make([]*ledger.Block, len(c.blocks))
	for i, b := range c.blocks {
		txs, err := b.DecodeTxs(0)
		if err != nil {
			t.Fatal(err)
		}
		pruned[i] = b
		if b.Header.Height <= 4 {
			if pruned[i], err = ledger.Prune(b, txs, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	re := open(t, filepath.Join(t.TempDir(), "re.db"))
	read := func(h uint64) (*ledger.Block, error) { return pruned[h-1], nil }
	if err := Rebuild(context.Background(), re, uint64(len(pruned)), read, nil); err != nil {
		t.Fatal(err)
	}
	for h := uint64(1); h <= 7; h++ {
		a, _ := live.TxsInBlock(h)
		b, _ := re.TxsInBlock(h)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("block %d: rebuilt %+v, live %+v", h, b, a)
		}
	}
	for _, id := range []string{"dev-1", "dev-2", "dev-3"} {
		a, _ := live.Device(id)
		b, _ := re.Device(id)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("device %s: rebuilt %+v, live %+v", id, b, a)
		}
	}
}

// TestLimitWAL: with a small WAL budget the WAL stays within it while
// blocks are applied and their records pruned behind them.
func TestLimitWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	const limit = 1 << 20
	if err := x.LimitWAL(limit); err != nil {
		t.Fatal(err)
	}
	s := newSynthChain(t, x, 50)
	// One block of 300 records writes well under limit/2 of pages.
	const bound = limit
	var largest int64
	for i := range 120 {
		s.apply(t, x, 300)
		if i%5 == 4 {
			h, err := x.Height()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x.PruneRecords(h-2, 500); err != nil {
				t.Fatal(err)
			}
		}
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, fi.Size())
		if fi.Size() > bound {
			t.Fatalf("after block %d the WAL holds %d bytes, more than %d", i+2, fi.Size(), bound)
		}
	}
	t.Logf("largest WAL: %d bytes", largest)
}

// TestPrunedTopBlock: when the top block's last txs are pruned records
// (a pruned block from a peer), they have no rows, and the seqs of the
// next block still start after them, also after a reopen.
func TestPrunedTopBlock(t *testing.T) {
	c, _ := prunedChain(t)
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	apply(t, x, c.blocks[:6]...)
	b7 := c.blocks[6]
	txs, err := b7.DecodeTxs(0)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := ledger.Prune(b7, txs, nil)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, x, p7)
	x.Close()
	x = open(t, path)
	k := newEd25519(t)
	apply(t, x, c.next(c.enroll("dev-4", k)), c.next(record(t, "dev-4", k, 1)))
	cs, err := x.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if cs.Blocks != 9 || cs.Txs != 3+6*2+1+2 {
		t.Fatalf("counts %+v, want 9 blocks and 18 txs", cs)
	}
	if got := kinds(t, x, 7); got != nil {
		t.Fatalf("block 7: %v, want no rows", got)
	}
	for h, want := range map[uint64][]string{8: {"device.enroll"}, 9: {"data.record"}} {
		if got := kinds(t, x, h); !reflect.DeepEqual(got, want) {
			t.Fatalf("block %d: %v, want %v", h, got, want)
		}
	}
}

// TestPruneThenSeal prunes the records of the open tx-id generation and
// then fills it: tx_ids gets the ids of the txs left and no others, and
// lookups answer as before (a pruned record: ErrNotFound).
func TestPruneThenSeal(t *testing.T) {
	c, recs := prunedChain(t) // txs 1-16; with generations of 10, 11-16 (records) are open
	x := openGen(t, filepath.Join(t.TempDir(), "index.db"), 10)
	apply(t, x, c.blocks...)
	if _, err := x.PruneRecords(7, 0); err != nil {
		t.Fatal(err)
	}
	k := newEd25519(t)
	var added [][32]byte
	enroll := c.enroll("dev-4", k)
	txs := [][]byte{record(t, "dev-4", k, 1), record(t, "dev-4", k, 2), record(t, "dev-4", k, 3), record(t, "dev-4", k, 4)}
	apply(t, x, c.next(enroll), c.next(txs...)) // txs 17-21: the generation of 11-20 is full
	checkIDTable(t, x)
	for _, env := range append(txs, enroll) {
		added = append(added, txID(t, env))
	}
	for _, id := range added {
		if _, err := x.Tx(id); err != nil {
			t.Errorf("Tx of a tx indexed after the prune: %v", err)
		}
	}
	for h, ids := range recs {
		for _, id := range ids {
			if _, err := x.Tx(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Tx of a pruned record of block %d: %v, want ErrNotFound", h, err)
			}
		}
	}
}
