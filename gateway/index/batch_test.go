package index

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// decoded is c's blocks from..to (heights, inclusive) with their txs decoded.
func decoded(t *testing.T, c *chain, from, to int) []Decoded {
	t.Helper()
	var ds []Decoded
	for _, b := range c.blocks[from-1 : to] {
		txs, err := decodeTxs(b.Txs)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, Decoded{Block: b, Txs: txs})
	}
	return ds
}

// TestApplyBatchAnswersEqual: blocks indexed several to a transaction
// (ApplyBatch, as the chain does when blocks queue up) give every answer
// that blocks indexed one by one give.
func TestApplyBatchAnswersEqual(t *testing.T) {
	c := mixedChain(t)
	dir := t.TempDir()
	x := open(t, filepath.Join(dir, "rebuilt.db"))
	if err := Rebuild(context.Background(), x, uint64(len(c.blocks)), c.read, nil); err != nil {
		t.Fatal(err)
	}
	want := takeAnswers(t, x, c)
	n := len(c.blocks)
	for _, cut := range [][]int{{n}, {2, n}, {1, 3, 4, n}} {
		y := open(t, filepath.Join(dir, "batched.db"))
		applyCut(t, y, c, cut)
		if got := takeAnswers(t, y, c); !reflect.DeepEqual(got, want) {
			t.Errorf("batches ending at %v:\n got %+v\nwant %+v", cut, got, want)
		}
		if err := y.Reset(); err != nil {
			t.Fatal(err)
		}
		y.Close()
	}
}

// TestApplyBatchAllOrNothing: a batch with a block out of order is
// refused whole: none of its blocks is indexed, and the next batch
// continues from where the index was.
func TestApplyBatchAllOrNothing(t *testing.T) {
	c := mixedChain(t)
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	ds := decoded(t, c, 1, 4)
	bad := []Decoded{ds[0], ds[1], ds[3]} // 3 is missing
	if err := x.ApplyBatch(bad); !errors.Is(err, ErrHeight) {
		t.Fatalf("a batch with a gap: %v, want ErrHeight", err)
	}
	if h, err := x.Height(); err != nil || h != 0 {
		t.Fatalf("height %d, %v after a refused batch; want 0", h, err)
	}
	if err := x.ApplyBatch(ds); err != nil {
		t.Fatal(err)
	}
	if h, err := x.Height(); err != nil || h != 4 {
		t.Fatalf("height %d, %v; want 4", h, err)
	}
}

// TestExpectMakesReadsWait: after Expect(h) a read waits until block h is
// applied, and sees it; Abandon releases the waits.
func TestExpectMakesReadsWait(t *testing.T) {
	c := mixedChain(t)
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	ds := decoded(t, c, 1, 3)
	if err := x.ApplyBatch(ds[:1]); err != nil {
		t.Fatal(err)
	}
	x.Expect(3)
	if x.Lag() != 2 {
		t.Fatalf("lag %d, want 2", x.Lag())
	}
	last := ds[2].Txs[len(ds[2].Txs)-1].ID
	if _, err := x.TxIndexed(last); !errors.Is(err, ErrNotFound) {
		t.Fatalf("TxIndexed before the block is applied: %v", err)
	}
	type result struct {
		tx  *TxInfo
		err error
	}
	got := make(chan result, 1)
	go func() {
		tx, err := x.Tx(last)
		got <- result{tx, err}
	}()
	// The waiting read says so (Waiting), and says it again after a
	// batch that does not reach its block: a writer that took the first
	// signal must not linger over the rest.
	waited := func(when string) {
		t.Helper()
		select {
		case <-x.Waiting():
		case <-time.After(30 * time.Second):
			t.Fatalf("no read waiting signalled %s", when)
		}
	}
	waited("when the read began")
	if err := x.ApplyBatch(ds[1:2]); err != nil {
		t.Fatal(err)
	}
	waited("after block 2, short of block 3")
	select {
	case r := <-got:
		t.Fatalf("a read returned before the expected block 3 was applied: %+v", r)
	default:
	}
	if err := x.ApplyBatch(ds[2:]); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || r.tx.Height != 3 {
		t.Fatalf("read after block 3 was applied: %+v", r)
	}

	// Blocks expected and never applied: Abandon ends the wait, and reads
	// answer from what is indexed.
	x.Expect(10)
	done := make(chan error, 1)
	go func() {
		_, err := x.Height()
		done <- err
	}()
	x.Abandon()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h, err := x.Height(); err != nil || h != 3 {
		t.Fatalf("height %d, %v after Abandon; want 3", h, err)
	}
}

// TestApplyBatchDeviceRows: a batch writes each device row once, for all
// its blocks; the rows are those that blocks indexed one by one give.
// Devices that only send records in the batch are counted across its
// blocks (last seen at the last block with one of their records), also
// when a later block of the batch reads the row (a re-key, a revocation).
func TestApplyBatchDeviceRows(t *testing.T) {
	c := newChain(t)
	keyA, keyA2, keyB, keyC := newP256(t), newEd25519(t), newEd25519(t), newEd25519(t)
	c.next(c.enroll("dev-a", keyA), c.enroll("dev-b", keyB), c.enroll("dev-c", keyC))
	// 2-3: records only; dev-c's only in block 2.
	c.next(recordTx(t, "dev-a", keyA, 1, "temp"), recordTx(t, "dev-b", keyB, 1, "temp"), recordTx(t, "dev-c", keyC, 1, "temp"))
	c.next(recordTx(t, "dev-a", keyA, 2, "hum"), recordTx(t, "dev-b", keyB, 2, "temp"), recordTx(t, "dev-a", keyA, 3, "temp"))
	// 4: dev-a re-keys after records of two blocks; dev-b is revoked.
	c.next(rekey(t, "dev-a", keyA, keyA2, 4), recordTx(t, "dev-b", keyB, 3, "hum"), c.revoke("dev-b", "lost"))
	// 5: records after the re-key; none of dev-b or dev-c.
	c.next(recordTx(t, "dev-a", keyA2, 5, "temp"), recordTx(t, "dev-a", keyA2, 6, "temp"))
	c.next()
	n := len(c.blocks)
	rows := func(x *Index) []Device {
		t.Helper()
		var ds []Device
		for _, id := range []string{"dev-a", "dev-b", "dev-c"} {
			d, err := x.Device(id)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, *d)
		}
		return ds
	}
	dir := t.TempDir()
	x := open(t, filepath.Join(dir, "one-by-one.db"))
	for h := 1; h <= n; h++ {
		if err := x.ApplyBatch(decoded(t, c, h, h)); err != nil {
			t.Fatal(err)
		}
	}
	want := rows(x)
	if want[0].Records != 5 || want[0].LastSeq != 6 || want[1].Records != 3 || want[2].Records != 1 ||
		want[2].LastSeen != c.blocks[1].Header.Time || want[1].LastSeen != c.blocks[3].Header.Time {
		t.Fatalf("one by one: %+v", want)
	}
	for _, cut := range [][]int{{n}, {1, 3, n}, {1, 4, n}, {2, 5, n}} {
		y := open(t, filepath.Join(dir, "batched.db"))
		applyCut(t, y, c, cut)
		if got := rows(y); !reflect.DeepEqual(got, want) {
			t.Errorf("batches ending at %v:\n got %+v\nwant %+v", cut, got, want)
		}
		if err := y.Reset(); err != nil {
			t.Fatal(err)
		}
		y.Close()
	}
}

// applyCut applies c's blocks to x in batches, each ending at a height of
// cut (the last is the chain's length).
func applyCut(t *testing.T, x *Index, c *chain, cut []int) {
	t.Helper()
	from := 1
	for _, to := range cut {
		if err := x.ApplyBatch(decoded(t, c, from, to)); err != nil {
			t.Fatalf("batches ending at %v: %v", cut, err)
		}
		from = to + 1
	}
}
