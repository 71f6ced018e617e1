package chain

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// harness is a single-node chain on real files in a temporary directory.
type harness struct {
	chain  *Chain
	g      *ledger.Genesis
	admin  crypto.Signer
	log    *ledger.Log
	idx    *index.Index
	dir    string // where the log and the index are
	cancel context.CancelFunc
	done   chan error
}

func newHarness(tb testing.TB, batch BatchConfig) *harness {
	tb.Helper()
	return newHarnessWith(tb, func(st *state.State, node crypto.Signer) Orderer { return NewSolo(batch, st, node, "node-1") }, 0)
}

// newHarnessWith is newHarness with the orderer mk makes and a commit
// timeout (0: the default).
func newHarnessWith(tb testing.TB, mk func(*state.State, crypto.Signer) Orderer, commitTimeout time.Duration) *harness {
	tb.Helper()
	return newHarnessTuned(tb, mk, commitTimeout, nil)
}

// newHarnessTuned is newHarnessWith with tune, if not nil, called on the
// chain before it runs.
func newHarnessTuned(tb testing.TB, mk func(*state.State, crypto.Signer) Orderer, commitTimeout time.Duration, tune func(*Chain)) *harness {
	tb.Helper()
	node, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	admin, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nodePub, _ := ledger.MarshalPublicKey(node)
	adminPub, _ := ledger.MarshalPublicKey(admin)
	g := &ledger.Genesis{ChainID: "bench", Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
		Nodes: []ledger.Node{{ID: "node-1", PublicKey: nodePub}}, Admins: []ledger.Admin{{ID: "admin", PublicKey: adminPub}}}
	st, err := state.New(g)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	blog, err := ledger.OpenLog(filepath.Join(dir, "blocks"), ledger.LogOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	idx, err := index.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		tb.Fatal(err)
	}
	h := &harness{g: g, admin: admin, log: blog, idx: idx, dir: dir, done: make(chan error, 1)}
	h.chain = New(Deps{State: st, Log: blog, Index: idx, Orderer: mk(st, node), CommitTimeout: commitTimeout,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if tune != nil {
		tune(h.chain)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.chain.Run(ctx) }()
	tb.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	h.cancel = nil
	h.idx.Close()
	h.log.Close()
}

func (h *harness) enroll(tb testing.TB, id string, key crypto.Signer) {
	tb.Helper()
	pub, _ := ledger.MarshalPublicKey(key)
	env, err := ledger.SignTx(h.admin, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: h.g.ChainID,
		Enroll: &ledger.Enroll{DeviceID: id, PublicKey: pub}})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := h.chain.Submit(context.Background(), env); err != nil {
		tb.Fatal(err)
	}
}

func record(tb testing.TB, key crypto.Signer, chainID, id string, seq uint64, payload []byte) []byte {
	env, err := ledger.SignTx(key, id, &ledger.Body{Kind: ledger.KindRecord, ChainID: chainID,
		Record: &ledger.Record{DeviceID: id, Stream: "s", Seq: seq, Time: 1, Payload: payload}})
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

// proposeRecords proposes records 1..n of device id, signed with key, one
// after another without waiting, and returns their tickets in order.
func (h *harness) proposeRecords(tb testing.TB, key crypto.Signer, id string, n int) []*Ticket {
	tb.Helper()
	tickets := make([]*Ticket, n)
	for i := range tickets {
		tk, err := h.chain.Propose(context.Background(), decode(tb, record(tb, key, h.g.ChainID, id, uint64(i+1), nil)))
		if err != nil {
			tb.Fatalf("propose record %d of %s: %v", i+1, id, err)
		}
		tickets[i] = tk
	}
	return tickets
}

// decode is env decoded, as a front end hands it to Propose.
func decode(tb testing.TB, env []byte) *ledger.Tx {
	tb.Helper()
	tx, err := ledger.DecodeTx(env, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return tx
}

func TestSubmitConcurrentAndDuplicates(t *testing.T) {
	h := newHarness(t, BatchConfig{MaxTxs: 50, MaxBytes: 1 << 20, MaxDelay: time.Millisecond, MaxPending: 1000})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)

	// The same tx from three submitters: one commit, three equal receipts.
	env := record(t, key, h.g.ChainID, "dev", 1, []byte("a"))
	// Two different txs with one seq: exactly one commits.
	rivalA := record(t, key, h.g.ChainID, "dev", 2, []byte("a"))
	rivalB := record(t, key, h.g.ChainID, "dev", 2, []byte("b"))
	results := make([]error, 5)
	receipts := make([]*ledger.Receipt, 5)
	submitAll := func(from int, envs ...[]byte) {
		var wg sync.WaitGroup
		for i, e := range envs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				receipts[from+i], results[from+i] = h.chain.Submit(context.Background(), e)
			}()
		}
		wg.Wait()
	}
	submitAll(0, env, env, env)
	submitAll(3, rivalA, rivalB)
	for i := 0; i < 3; i++ {
		if results[i] != nil || receipts[i].Header.Height != receipts[0].Header.Height {
			t.Fatalf("duplicate submit %d: %v", i, results[i])
		}
		if err := ledger.VerifyReceipt(h.g, receipts[i]); err != nil {
			t.Fatal(err)
		}
	}
	won := 0
	for _, err := range results[3:] {
		switch {
		case err == nil:
			won++
		case ledger.ReasonOf(err) != ledger.ReasonReplay:
			t.Fatalf("rival: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d rivals with one seq committed", won)
	}
	c, err := h.idx.Counts()
	if err != nil || c.Txs != 3 {
		t.Fatalf("counts %+v %v: want enroll + 2 records", c, err)
	}
	// Resubmitting a committed tx returns its receipt again.
	if r, err := h.chain.Submit(context.Background(), env); err != nil || r.Header.Height != receipts[0].Header.Height {
		t.Fatalf("resubmit: %v", err)
	}
}

func TestBlocksRespectBatchLimits(t *testing.T) {
	h := newHarness(t, BatchConfig{MaxTxs: 7, MaxBytes: 64 << 10, MaxDelay: 20 * time.Millisecond, MaxPending: 1000})
	const devices, each = 10, 8
	var wg sync.WaitGroup
	for d := 0; d < devices; d++ {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		id := string(rune('a' + d))
		h.enroll(t, id, key)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := uint64(1); s <= each; s++ {
				if _, err := h.chain.Submit(context.Background(), record(t, key, h.g.ChainID, id, s, make([]byte, 2000))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for hgt := uint64(1); hgt <= h.log.Len(); hgt++ {
		b, err := h.chain.Block(hgt)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, tx := range b.Txs {
			size += len(tx)
		}
		if len(b.Txs) > 7 || size > 64<<10 {
			t.Fatalf("block %d: %d txs, %d bytes", hgt, len(b.Txs), size)
		}
	}
	sum, err := Verify(h.g, h.log, nil)
	if err != nil || sum.Txs != devices*(each+1) {
		t.Fatalf("verify: %+v %v", sum, err)
	}
}

func TestOverloadedAndClosed(t *testing.T) {
	h := newHarness(t, BatchConfig{MaxTxs: 1, MaxBytes: 64 << 10, MaxDelay: 0, MaxPending: 1})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	h.close()

	// With the orderer stopped, a one-slot queue takes one tx and refuses
	// the next. A chain that stopped answers ErrClosed.
	solo := NewSolo(BatchConfig{MaxTxs: 1, MaxBytes: 64 << 10, MaxPending: 1}, h.chain.State(), h.admin, "node-1")
	for i, want := range []error{nil, ErrOverloaded} {
		c, err := h.chain.State().Check(record(t, key, h.g.ChainID, "dev", uint64(i+1), nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := solo.Propose(c); !errors.Is(err, want) {
			t.Fatalf("propose %d: got %v, want %v", i, err, want)
		}
	}
	if _, err := h.chain.Submit(context.Background(), record(t, key, h.g.ChainID, "dev", 1000, nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// TestDiskFailureStops: when the log refuses an append, the tx is not
// acknowledged and Run returns the error, so the daemon stops.
func TestDiskFailureStops(t *testing.T) {
	h := newHarness(t, BatchConfig{MaxTxs: 10, MaxBytes: 64 << 10, MaxDelay: time.Millisecond, MaxPending: 100})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	h.log.Close() // every later Append fails
	r, err := h.chain.Submit(context.Background(), record(t, key, h.g.ChainID, "dev", 1, nil))
	if err == nil || r != nil {
		t.Fatalf("submit on a failed disk: receipt %v, err %v", r, err)
	}
	if runErr := <-h.done; runErr == nil || !strings.Contains(runErr.Error(), "append block 2") {
		t.Fatalf("Run returned %v, want the append error", runErr)
	}
	h.done <- nil // for Cleanup
}

// TestIndexFailureStopsIdleOrderer: when the index refuses a block and no
// further block comes (the orderer is idle), Run still stops at once with
// the index's error, and later submitters are refused: they do not wait
// out the commit timeout for a commit that cannot come. The tx answered
// before the index failed is in the log, and its receipt is still served
// (from memory; the next start indexes it).
func TestIndexFailureStopsIdleOrderer(t *testing.T) {
	batch := BatchConfig{MaxTxs: 10, MaxBytes: 64 << 10, MaxDelay: time.Millisecond, MaxPending: 100}
	h := newHarnessWith(t, func(st *state.State, node crypto.Signer) Orderer { return NewSolo(batch, st, node, "node-1") }, time.Minute)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	if _, err := h.idx.Height(); err != nil { // waits for the enrollment's block
		t.Fatal(err)
	}
	h.idx.Close() // every later apply fails
	start := time.Now()
	env := record(t, key, h.g.ChainID, "dev", 1, nil)
	r, err := h.chain.Submit(context.Background(), env)
	if err != nil || r == nil || r.Header.Height != 2 {
		t.Fatalf("submit with a failed index: receipt %v, err %v; want the receipt of block 2 (it is in the log)", r, err)
	}
	runErr := <-h.done
	h.done <- nil // for Cleanup
	if runErr == nil || !strings.Contains(runErr.Error(), "index block 2") {
		t.Fatalf("Run returned %v, want the index error", runErr)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("stopped after %s", d)
	}
	if h.log.Len() != 2 {
		t.Fatalf("log has %d blocks, want 2", h.log.Len())
	}
	id := decode(t, env).ID
	if rc, err := h.chain.Receipt(id); err != nil || rc.Header.Height != 2 {
		t.Fatalf("receipt after the index failed: %v, %v", rc, err)
	}
	if _, err := h.chain.Submit(context.Background(), record(t, key, h.g.ChainID, "dev", 2, nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit after the index failed: %v, want ErrClosed", err)
	}
}

// TestProposeKeepsOrder: one device with many records in flight. Proposed
// one after another without waiting, they commit in that order, so none
// is refused as a replay of a later one.
func TestProposeKeepsOrder(t *testing.T) {
	h := newHarness(t, BatchConfig{MaxTxs: 16, MaxBytes: 1 << 20, MaxDelay: time.Millisecond, MaxPending: 1000})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	const n = 300
	tickets := h.proposeRecords(t, key, "dev", n)
	var last uint64
	for i, tk := range tickets {
		r, err := tk.Wait(context.Background())
		if err != nil {
			t.Fatalf("seq %d: %v", i+1, err)
		}
		if r.Header.Height < last {
			t.Fatalf("seq %d committed in block %d, before seq %d's block %d", i+1, r.Header.Height, i, last)
		}
		last = r.Header.Height
	}
}

func TestOverloadedHasReason(t *testing.T) {
	if ledger.ReasonOf(ErrOverloaded) != ledger.ReasonOverloaded {
		t.Fatal("ErrOverloaded does not carry the reason front ends map to 0x97")
	}
}

// gatedOrderer is Solo whose blocks wait to be committed while held: a
// cluster without a quorum, then with one again.
type gatedOrderer struct {
	*Solo
	held atomic.Bool
	open chan struct{}
}

// newGatedHarness is a harness whose Solo orderer commits only while
// its gate lets it, with the given commit timeout.
func newGatedHarness(t *testing.T, timeout time.Duration) (*harness, *gatedOrderer) {
	gate := &gatedOrderer{open: make(chan struct{})}
	h := newHarnessWith(t, func(st *state.State, node crypto.Signer) Orderer {
		gate.Solo = NewSolo(BatchConfig{MaxTxs: 10, MaxBytes: 1 << 20, MaxDelay: time.Millisecond, MaxPending: 100}, st, node, "node-1")
		return gate
	}, timeout)
	return h, gate
}

func (g *gatedOrderer) Run(ctx context.Context, commit func(*Round) error) error {
	return g.Solo.Run(ctx, func(r *Round) error {
		if g.held.Load() {
			select {
			case <-g.open:
			case <-ctx.Done():
				return nil
			}
		}
		return commit(r)
	})
}

// TestCommitTimeout: without a quorum a submitter gets "unavailable"
// within the commit timeout and the tx stays queued; Stalled says so.
// The same bytes sent again attach to the queued tx, and once it commits
// every copy gets the one receipt; the tx is in the ledger once.
func TestCommitTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	h, gate := newGatedHarness(t, timeout)
	c := h.chain
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	gate.held.Store(true)

	envs := [][]byte{record(t, key, h.g.ChainID, "dev", 1, nil), record(t, key, h.g.ChainID, "dev", 2, nil)}
	var tickets []*Ticket
	for _, env := range envs {
		tk, err := c.Propose(context.Background(), decode(t, env))
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	start := time.Now()
	for i, tk := range tickets {
		_, err := tk.Wait(context.Background())
		var re *ledger.RefusedError
		if !errors.As(err, &re) || re.Reason != ledger.ReasonUnavailable {
			t.Fatalf("seq %d without a quorum: %v, want refused unavailable", i+1, err)
		}
	}
	if el := time.Since(start); el > timeout+time.Second {
		t.Errorf("unavailable after %s, commit timeout %s", el, timeout)
	}
	if err := c.Stalled(); !errors.Is(err, ErrStalled) {
		t.Errorf("Stalled without a quorum: %v", err)
	}
	// What waits is bounded: a new tx beyond MaxPending is refused, a
	// resend of a waiting one is not.
	c.maxPending = len(envs)
	if _, err := c.Propose(context.Background(), decode(t, record(t, key, h.g.ChainID, "dev", 3, nil))); !errors.Is(err, ErrOverloaded) {
		t.Errorf("a new tx beyond MaxPending: %v, want overloaded", err)
	}

	// The same bytes again: attached to the queued txs, not refused as
	// replays; they commit once the quorum is back, in order.
	for i, env := range envs {
		tk, err := c.Propose(context.Background(), decode(t, env))
		if err != nil {
			t.Fatalf("resend seq %d: %v", i+1, err)
		}
		tickets[i] = tk
	}
	close(gate.open)
	var receipts []*ledger.Receipt
	for i, tk := range tickets {
		rc, err := tk.Wait(context.Background())
		if err != nil {
			t.Fatalf("resent seq %d after the quorum came back: %v", i+1, err)
		}
		receipts = append(receipts, rc)
	}
	if err := c.Stalled(); err != nil {
		t.Errorf("Stalled after the commits: %v", err)
	}
	// Once more after the commit: the original receipt.
	for i, env := range envs {
		rc, err := c.Submit(context.Background(), env)
		if err != nil {
			t.Fatalf("resend of committed seq %d: %v", i+1, err)
		}
		if rc.Header.Height != receipts[i].Header.Height || rc.Index != receipts[i].Index {
			t.Errorf("seq %d: receipt at %d/%d, first %d/%d", i+1, rc.Header.Height, rc.Index, receipts[i].Header.Height, receipts[i].Index)
		}
	}
	sum, err := Verify(h.g, h.log, nil)
	if err != nil || sum.Txs != 3 {
		t.Fatalf("verify: %+v %v (want the enroll and the two records, once each)", sum, err)
	}
}

// replayingOrderer is Solo whose every committed tx is refused as a
// replay right after its block: what a backup hears when the same tx,
// sent to another gateway too or sent again, reaches the primary after
// it committed.
type replayingOrderer struct{ *Solo }

func (o replayingOrderer) Run(ctx context.Context, commit func(*Round) error) error {
	return o.Solo.Run(ctx, func(r *Round) error {
		if err := commit(r); err != nil {
			return err
		}
		for _, t := range r.Txs {
			rj := Rejected{ID: t.Tx.ID, Err: ledger.Refuse(ledger.ReasonReplay, "tx %x is in a block", t.Tx.ID[:4])}
			if err := commit(&Round{Rejected: []Rejected{rj}}); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestReplayOfCommittedGetsReceipt: a replay refusal of a tx that is in
// a block answers its submitters with the receipt, even when the refusal
// comes before this gateway indexed the block.
func TestReplayOfCommittedGetsReceipt(t *testing.T) {
	h := newHarnessWith(t, func(st *state.State, node crypto.Signer) Orderer {
		return replayingOrderer{NewSolo(BatchConfig{MaxTxs: 10, MaxBytes: 1 << 20, MaxDelay: time.Millisecond, MaxPending: 100}, st, node, "node-1")}
	}, 0)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	for seq := uint64(1); seq <= 20; seq++ {
		if _, err := h.chain.Submit(context.Background(), record(t, key, h.g.ChainID, "dev", seq, nil)); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
	}
}

// TestNotify: Ticket.Notify calls back once, when Wait would no longer
// block: at the commit timeout without a quorum (Wait then answers
// unavailable at once), at the commit (the receipt), at once for a tx
// already committed, and when the chain stops.
func TestNotify(t *testing.T) {
	const timeout = 200 * time.Millisecond
	h, gate := newGatedHarness(t, timeout)
	c := h.chain
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.enroll(t, "dev", key)
	gate.held.Store(true)

	var calls atomic.Int32
	// notified registers a Notify on tk and returns a channel closed by
	// its call.
	notified := func(tk *Ticket) chan struct{} {
		ch := make(chan struct{})
		tk.Notify(func() {
			calls.Add(1)
			close(ch) // a second call would panic
		})
		return ch
	}
	await := func(what string, ch chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no notification", what)
		}
	}
	done, cancel := context.WithCancel(context.Background())
	cancel() // a Wait after the notification must not need to wait

	envs := [][]byte{record(t, key, h.g.ChainID, "dev", 1, nil), record(t, key, h.g.ChainID, "dev", 2, nil)}
	var chans []chan struct{}
	var first []*Ticket
	for _, env := range envs {
		tk, err := c.Propose(context.Background(), decode(t, env))
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, tk)
		chans = append(chans, notified(tk))
	}
	for i, ch := range chans {
		await(fmt.Sprintf("seq %d without a quorum", i+1), ch)
		if _, err := first[i].Wait(done); ledger.ReasonOf(err) != ledger.ReasonUnavailable {
			t.Fatalf("seq %d: Wait after the timeout's notification: %v, want refused unavailable", i+1, err)
		}
	}

	// The same bytes again, then the quorum comes back: notified at the
	// commit, and Wait has the receipt.
	var tickets []*Ticket
	chans = chans[:0]
	for _, env := range envs {
		tk, err := c.Propose(context.Background(), decode(t, env))
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
		chans = append(chans, notified(tk))
	}
	close(gate.open)
	for i, ch := range chans {
		await(fmt.Sprintf("seq %d committed", i+1), ch)
		if _, err := tickets[i].Wait(done); err != nil {
			t.Fatalf("seq %d: Wait after the notification: %v", i+1, err)
		}
	}

	// A tx committed already: notified before Notify returns.
	tk, err := c.Propose(context.Background(), decode(t, envs[0]))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-notified(tk):
	default:
		t.Fatal("a committed tx: not notified at once")
	}

	// The chain stops with a tx waiting: notified, and Wait says closed.
	gate.held.Store(true)
	gate.open = make(chan struct{})
	tk, err = c.Propose(context.Background(), decode(t, record(t, key, h.g.ChainID, "dev", 3, nil)))
	if err != nil {
		t.Fatal(err)
	}
	last := notified(tk)
	h.close()
	await("the chain stopped", last)
	if _, err := tk.Wait(done); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after the chain stopped: %v, want ErrClosed", err)
	}
	if n := calls.Load(); n != 6 {
		t.Errorf("%d notifications, want 6 (one per Notify)", n)
	}
}
