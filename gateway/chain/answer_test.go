package chain

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// lockIndex holds the write lock of the index file at path from a
// connection of its own (as another process could), so the chain's index
// stage cannot apply a block until release is called. The index's writer
// waits for the lock (its busy timeout is 10 s) instead of failing.
// height reads the indexed height through the locking connection.
func lockIndex(t *testing.T, path string) (height func() uint64, release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=10000&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	height = func() uint64 {
		var h int64
		if err := conn.QueryRowContext(context.Background(), `SELECT coalesce(max(height), 0) FROM blocks`).Scan(&h); err != nil {
			t.Fatal(err)
		}
		return uint64(h)
	}
	var done atomic.Bool
	release = func() {
		if done.Swap(true) {
			return
		}
		if _, err := conn.ExecContext(context.Background(), `ROLLBACK`); err != nil {
			t.Error(err)
		}
		conn.Close()
	}
	t.Cleanup(release)
	return height, release
}

// TestAnswerBeforeIndex: submitters get their receipts once the block is
// in the log, while the index cannot apply it (its file is locked). Then
// Receipt answers at once, from the blocks kept in memory, and a read of
// the index made meanwhile waits for the block and sees it: the receipt,
// the tx, the device's records.
func TestAnswerBeforeIndex(t *testing.T) {
	h := newHarness(t, BatchConfig{MaxTxs: 4, MaxBytes: 1 << 20, MaxDelay: time.Millisecond, MaxPending: 100})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	if _, err := h.idx.Height(); err != nil { // waits for the enrollment's block
		t.Fatal(err)
	}
	indexed, release := lockIndex(t, filepath.Join(h.dir, "index.db"))

	const n = 10
	ids := make([][32]byte, n)
	for i := range n {
		env := record(t, key, h.g.ChainID, "dev", uint64(i+1), nil)
		ids[i] = decode(t, env).ID
		if _, err := h.chain.Submit(context.Background(), env); err != nil {
			t.Fatalf("record %d: %v", i+1, err)
		}
	}
	// Every record was answered, and the index has none of them.
	if got := indexed(); got != 1 || h.log.Len() < 2 {
		t.Fatalf("index at height %d, log at %d: want the index at the enrollment's block 1, the log above", got, h.log.Len())
	}
	if _, err := h.idx.TxIndexed(ids[n-1]); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("the last record is in the index already: %v", err)
	}

	// A read of the index begun now waits for the blocks in the log.
	var released atomic.Bool
	type result struct {
		tx    *index.TxInfo
		dev   *index.Device
		err   error
		early bool // returned before the index could apply the blocks
	}
	got := make(chan result, 1)
	go func() {
		tx, err := h.idx.Tx(ids[n-1])
		var dev *index.Device
		if err == nil {
			dev, err = h.idx.Device("dev")
		}
		got <- result{tx: tx, dev: dev, err: err, early: !released.Load()}
	}()

	// Receipts are served from memory meanwhile, without the index.
	for i, id := range ids {
		rc, err := h.chain.Receipt(id)
		if err != nil {
			t.Fatalf("receipt of record %d before the index has it: %v", i+1, err)
		}
		if err := ledger.VerifyReceipt(h.g, rc); err != nil {
			t.Fatalf("receipt of record %d: %v", i+1, err)
		}
	}
	released.Store(true)
	release()

	r := <-got
	if r.err != nil {
		t.Fatalf("read of the index: %v", r.err)
	}
	if r.early {
		t.Fatal("a read of the index returned before the index could apply the answered blocks")
	}
	if r.tx.Height < 2 || r.tx.Height > h.log.Len() {
		t.Fatalf("tx at height %d, log at %d", r.tx.Height, h.log.Len())
	}
	if r.dev.Records != n || r.dev.LastSeq != n {
		t.Fatalf("device: %d records, last seq %d; want %d", r.dev.Records, r.dev.LastSeq, n)
	}
	recs, err := h.idx.Records("dev", 0, 100)
	if err != nil || len(recs) != n {
		t.Fatalf("records: %d, %v; want %d", len(recs), err, n)
	}
	// Once indexed, receipts come from the index, unchanged.
	for i, id := range ids {
		if rc, err := h.chain.Receipt(id); err != nil || ledger.VerifyReceipt(h.g, rc) != nil {
			t.Fatalf("receipt of record %d from the index: %v", i+1, err)
		}
	}
}

// TestIndexLingerEnds: the index stage lingers (here for an hour) while
// a batch is smaller than its bounds, and nobody waits for that: a full
// batch (maxBatchBlocks blocks, or lingerTxs txs in fewer blocks) is
// indexed at once, and a read of the index ends the linger of a small
// one. Against a linger that only ran out, the test would wait an hour at
// each step.
func TestIndexLingerEnds(t *testing.T) {
	t.Run("txs", testIndexLingerTxs)
	batch := BatchConfig{MaxTxs: 1, MaxBytes: 1 << 20, MaxDelay: time.Millisecond, MaxPending: 100}
	h := newHarnessTuned(t, func(st *state.State, node crypto.Signer) Orderer { return NewSolo(batch, st, node, "node-1") }, 0,
		func(c *Chain) { c.linger = time.Hour })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	if _, err := h.idx.Height(); err != nil { // a read: ends the linger of the enrollment's block
		t.Fatal(err)
	}

	// A full batch: one record a block.
	seq := uint64(0)
	submit := func() {
		t.Helper()
		seq++
		if _, err := h.chain.Submit(context.Background(), record(t, key, h.g.ChainID, "dev", seq, nil)); err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
	}
	for range maxBatchBlocks {
		submit()
	}
	deadline := time.Now().Add(30 * time.Second)
	for h.idx.Lag() > 0 { // Lag is no read: it does not end a linger
		if time.Now().After(deadline) {
			t.Fatalf("a full batch of %d blocks is not indexed: %d blocks wait", maxBatchBlocks, h.idx.Lag())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A small batch lingers until a read waits for it.
	submit()
	if lag := h.idx.Lag(); lag != 1 {
		t.Fatalf("the index lags %d blocks behind, want 1 (the last block lingers)", lag)
	}
	read := make(chan error, 1)
	go func() {
		dev, err := h.idx.Device("dev")
		if err == nil && dev.Records != seq {
			err = fmt.Errorf("device has %d records, want %d", dev.Records, seq)
		}
		read <- err
	}()
	select {
	case err := <-read:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a read of the index waited for the linger")
	}
}

// testIndexLingerTxs: lingerTxs txs in fewer than maxBatchBlocks blocks
// end the linger.
func testIndexLingerTxs(t *testing.T) {
	batch := BatchConfig{MaxTxs: maxBatchTxs, MaxBytes: 4 << 20, MaxDelay: 20 * time.Millisecond, MaxPending: 2 * lingerTxs}
	h := newHarnessTuned(t, func(st *state.State, node crypto.Signer) Orderer { return NewSolo(batch, st, node, "node-1") }, 0,
		func(c *Chain) { c.linger = time.Hour })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	if _, err := h.idx.Height(); err != nil {
		t.Fatal(err)
	}
	tickets := h.proposeRecords(t, key, "dev", lingerTxs)
	for i, tk := range tickets {
		if _, err := tk.Wait(context.Background()); err != nil {
			t.Fatalf("record %d: %v", i+1, err)
		}
	}
	if blocks := h.log.Len() - 1; blocks >= maxBatchBlocks {
		t.Fatalf("%d txs in %d blocks: the test needs fewer than %d", lingerTxs, blocks, maxBatchBlocks)
	}
	deadline := time.Now().Add(30 * time.Second)
	for h.idx.Lag() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a batch of %d txs is not indexed: %d blocks wait", lingerTxs, h.idx.Lag())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
