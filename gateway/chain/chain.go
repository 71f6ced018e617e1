package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// ErrClosed is returned to submitters whose tx was not committed before
// the chain stopped. Such a tx was never acknowledged; it may still be in
// a block if it was appended before the stop.
var ErrClosed = errors.New("chain: stopped before the tx committed")

// ErrNotFound reports a tx or block that is not in the ledger.
var ErrNotFound = errors.New("chain: not found")

// ErrStorageFull is wrapped by the error Run returns when the file system
// refused a write of the commit path (block log, index, the orderer's
// state) for lack of space. The chain then commits nothing more: see
// Halted.
var ErrStorageFull = errors.New("chain: storage full")

// storageFull reports whether err is a file system out of space.
func storageFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, index.ErrFull)
}

// refusedStorageFull is the answer to every submitter once the disk filled.
var refusedStorageFull = &ledger.RefusedError{Reason: ledger.ReasonStorageFull,
	Detail: "chain: this gateway's disk is full and it stopped committing; the tx may have committed before: send the same bytes again later"}

// Chain is a node's commit pipeline.
type Chain struct {
	g      *ledger.Genesis
	st     *state.State
	log    *ledger.Log
	idx    *index.Index
	ord    Orderer
	logger *slog.Logger
	m      *metrics

	lmu       sync.Mutex
	listeners []func(*ledger.Block, []*ledger.Tx) // see OnCommit

	// unindexed are the blocks in the log and the state that the index
	// has not applied yet, in height order: Receipt answers from them.
	// The commit path appends (persist), the index stage takes from the
	// front once it applied them (indexLoop).
	umu          sync.Mutex
	unindexed    []*unindexedBlock
	unindexedTxs int
	kick         chan struct{} // cap 1: unindexed grew
	room         chan struct{} // cap 1: unindexed shrank
	linger       time.Duration // indexLinger; tests set their own

	// commitTimeout bounds how long a Ticket waits (see Deps).
	commitTimeout time.Duration
	maxPending    int

	mu      sync.Mutex
	waiters map[[32]byte]*waiter
	closed  bool
	halted  error // set when the disk filled: why, for operators (see Halted)
	// notes are the Notify calls waiting, in the order they were made
	// (about the order of their deadlines); expiry fires the first
	// unfired one's at its deadline. Notes already fired are dropped
	// from the front as new ones come, so notes holds about the txs in
	// flight.
	notes  []*note
	expiry *time.Timer
}

// unindexedBlock is a block in the log and the state, not yet indexed.
type unindexedBlock struct {
	b    *ledger.Block
	tree *ledger.Tree
	txs  []*ledger.Tx
}

// Bounds of the index stage. A batch is what one SQL transaction
// indexes; the commit path waits while more than maxUnindexedBlocks
// blocks or maxUnindexedTxs txs wait for the index (their txs are held in
// memory until then).
//
// A batch lingers (indexLinger) only while it has fewer than
// maxBatchBlocks blocks and lingerTxs txs: a read that waits for it
// ends the linger, and then waits for the transaction, which lingerTxs
// keeps to about what it was with a linger of 50 ms at full load (~700
// txs, ~10 ms). The transaction's share of a record's cost is small past
// a few hundred records: ~1.3 ms a transaction against ~14 us a record
// (profiles at 1,000 msgs/s with 50 and 770 records a transaction).
const (
	maxBatchBlocks     = 64
	maxBatchTxs        = 4096
	lingerTxs          = 1024
	maxUnindexedBlocks = 256
	maxUnindexedTxs    = 16384
)

// indexLinger is how long the index stage lets blocks queue up before it
// indexes a batch smaller than its bounds (maxBatchBlocks, lingerTxs):
// each transaction costs the index its BEGIN and COMMIT, the
// pages it dirties written to the WAL (a page two of its records share is
// written once), a wake-up and its syscalls, so the more records share
// one, the less each costs. At 1,000 msgs/s (blocks of about 12 txs
// every 12 ms) a linger of 50 ms put about 50 records in a transaction;
// a second puts a full batch (64 blocks, ~770 records) in one.
// Nobody waits for it: devices were answered already, a read of the
// index that has to wait for a block ends the linger (index.Waiting),
// and so does a batch that reaches its bounds. What it keeps in memory
// is bounded by the batch's bounds, and a crash loses none of it (the
// blocks are in the log; the next start indexes them).
const indexLinger = time.Second

// waiter is one or more Submits of the same tx.
type waiter struct {
	done    chan struct{}
	since   time.Time // when the tx was first proposed
	receipt *ledger.Receipt
	err     error
	notes   []*note // Notify calls to make when done is closed
}

// note is one Ticket.Notify call: f, called once, at the tx's outcome or
// at deadline (the Propose's commit timeout), whichever comes first.
type note struct {
	f        func()
	deadline time.Time
	fired    bool // guarded by Chain.mu
}

// Deps are what a Chain is built from. Log and Index must be open and the
// state caught up with the log (see Replay); the index may lag behind the
// log only by blocks not yet committed through this Chain.
type Deps struct {
	State    *state.State
	Log      *ledger.Log
	Index    *index.Index
	Orderer  Orderer
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: no metrics exported
	// CommitTimeout bounds how long a submitter waits for its tx to
	// commit: past it, Wait returns a refusal with reason "unavailable"
	// (ledger.ReasonUnavailable) and the tx stays queued, so that
	// the same bytes sent again attach to it, or get its receipt once it
	// committed. 0: DefaultCommitTimeout.
	CommitTimeout time.Duration
	// MaxPending bounds the txs waiting to commit: a new tx beyond it is
	// refused with ErrOverloaded. Without a quorum, txs answered
	// "unavailable" still wait; this keeps devices that send new records
	// instead of resending from filling the memory. 0: no bound.
	MaxPending int
}

// DefaultCommitTimeout is the commit timeout of a new node.
const DefaultCommitTimeout = 5 * time.Second

// New returns a chain; it does no I/O.
func New(d Deps) *Chain {
	c := &Chain{
		g: d.State.Genesis(), st: d.State, log: d.Log, idx: d.Index, ord: d.Orderer,
		logger: d.Logger, m: newMetrics(d.Registry), waiters: map[[32]byte]*waiter{},
		kick: make(chan struct{}, 1), room: make(chan struct{}, 1),
		commitTimeout: d.CommitTimeout, maxPending: d.MaxPending, linger: indexLinger,
	}
	if c.commitTimeout <= 0 {
		c.commitTimeout = DefaultCommitTimeout
	}
	h, _ := d.State.Tip()
	c.m.height.Set(float64(h))
	return c
}

// OnCommit registers a commit listener: l is called with every block
// committed from then on, with its decoded txs, after the block's
// submitters were answered, one block at a time in height order (the
// MQTT front end disconnects revoked devices here, the dashboard shows
// the block). Listeners are called in the order they were registered;
// register them before Run to hear of every block Run commits. l runs
// on the commit path: it must be quick, and hand slow work to a
// goroutine of its own.
//
// l is called once the block is in the log and the state, possibly
// before the index has it: a read of the index (by l or by anything
// it starts) waits until the index has the block (index.Index.Expect),
// and so holds up the commit path for as long as the index lags.
func (c *Chain) OnCommit(l func(b *ledger.Block, txs []*ledger.Tx)) {
	c.lmu.Lock()
	defer c.lmu.Unlock()
	c.listeners = append(slices.Clip(c.listeners), l)
}

// Genesis returns the chain's genesis.
func (c *Chain) Genesis() *ledger.Genesis { return c.g }

// State returns the committed state.
func (c *Chain) State() *state.State { return c.st }

// Run orders and commits until ctx ends or the disk fails.
//
// A disk that is full is not a crash: Run returns an error wrapping
// ErrStorageFull, every waiting and later Submit is refused with reason
// storage_full, and reads (Block, Receipt) keep working. Nothing is
// retried: after a failed write or fsync the state of the log's tail is
// unknown, and only a new start (OpenLog) checks it.
//
// Commits are pipelined in two stages. The orderer's goroutine appends
// block N to the log (fsynced), applies it to the state (so that block
// N+1 can be built on it), answers its submitters and calls the commit
// listeners; a second goroutine indexes the blocks behind it, several in
// one SQL transaction (it lets them queue up for indexLinger, or until a
// read waits for them). For each tx the order is: on disk, in the state,
// answered; indexed after. Between the answer and the index, Receipt
// answers from the blocks kept in memory, and every other read of the
// index waits for the blocks in the log when the read began (see the
// package doc). The commit path waits while too many blocks wait for the
// index (maxUnindexedBlocks, maxUnindexedTxs).
//
// A failure of the index stops the orderer at once, even an idle one,
// and Run returns it; no block is committed after it. The blocks answered
// and not indexed are in the log: Receipt keeps answering for them, other
// index reads stop waiting for them (index.Index.Abandon), and the next
// start indexes them (the daemon's CatchUpIndex). When ctx ends, Run
// indexes every block it appended before it returns.
func (c *Chain) Run(ctx context.Context) error {
	ordCtx, stopOrd := context.WithCancel(ctx)
	defer stopOrd()
	stop := make(chan struct{}) // the orderer returned: index what is left and end
	idxDone := make(chan struct{})
	var idxErr error
	go func() {
		defer close(idxDone)
		if idxErr = c.indexLoop(stop); idxErr != nil {
			c.idx.Abandon()
			stopOrd()
		}
	}()
	err := c.ord.Run(ordCtx, func(r *Round) error {
		select {
		case <-idxDone: // the index failed: commit nothing more
			return idxErr
		default:
		}
		txs, err := c.persist(r)
		if err != nil {
			return err
		}
		c.answer(r, txs)
		return c.waitIndex(idxDone, &idxErr)
	})
	close(stop)
	<-idxDone
	if err == nil {
		err = idxErr
	}
	if err != nil && storageFull(err) {
		c.halt(err)
		return fmt.Errorf("%w: %w", ErrStorageFull, err)
	}
	c.close()
	return err
}

// waitIndex waits while the index lags too far behind the log, and
// returns the index's error if it failed meanwhile.
func (c *Chain) waitIndex(idxDone <-chan struct{}, idxErr *error) error {
	for {
		c.umu.Lock()
		over := len(c.unindexed) > maxUnindexedBlocks || c.unindexedTxs > maxUnindexedTxs
		c.umu.Unlock()
		if !over {
			return nil
		}
		select {
		case <-c.room:
		case <-idxDone:
			return *idxErr
		}
	}
}

// indexLoop indexes the blocks the commit path appends, in batches, until
// stop is closed and every block is indexed, or the index fails.
//
// It wakes about twice a batch: when the first block of a batch comes
// (persist kicks it then, and when the blocks queued reach a batch's
// bounds, not at every block), and when the linger ends.
func (c *Chain) indexLoop(stop <-chan struct{}) error {
	stopping := false
	linger := time.NewTimer(c.linger)
	linger.Stop()
	for {
		batch := c.nextBatch()
		if len(batch) == 0 {
			if stopping {
				return nil
			}
			select {
			case <-c.kick:
			case <-stop:
				stopping = true // the orderer appends no more: drain
			}
			continue
		}
		if !stopping && !c.full() {
			linger.Reset(c.linger)
		wait:
			for {
				select {
				case <-linger.C:
					break wait
				case <-c.idx.Waiting():
				case <-c.kick:
					if !c.full() {
						continue
					}
				case <-stop:
					stopping = true
				}
				linger.Stop()
				break
			}
			batch = c.nextBatch()
		}
		if err := c.idx.ApplyBatch(batch); err != nil {
			lo, hi := batch[0].Block.Header.Height, batch[len(batch)-1].Block.Header.Height
			if lo == hi {
				return fmt.Errorf("chain: index block %d: %w", lo, err)
			}
			return fmt.Errorf("chain: index blocks %d-%d: %w", lo, hi, err)
		}
		c.umu.Lock()
		for i, u := range c.unindexed[:len(batch)] {
			c.unindexedTxs -= len(u.txs)
			c.unindexed[i] = nil
		}
		c.unindexed = c.unindexed[len(batch):]
		lag := len(c.unindexed)
		c.umu.Unlock()
		c.m.indexLag.Set(float64(lag))
		select {
		case c.room <- struct{}{}:
		default:
		}
	}
}

// full reports whether the blocks waiting for the index are enough for a
// batch (maxBatchBlocks blocks or lingerTxs txs): the index stage applies
// them without lingering. (The bounds are below those at which the
// commit path waits for the index, so the commit path never waits for a
// linger.)
func (c *Chain) full() bool {
	c.umu.Lock()
	defer c.umu.Unlock()
	return c.fullLocked()
}

// fullLocked is full with c.umu held.
func (c *Chain) fullLocked() bool {
	return len(c.unindexed) >= maxBatchBlocks || c.unindexedTxs >= lingerTxs
}

// nextBatch returns the blocks the next index transaction applies: the
// oldest unindexed blocks, at most maxBatchBlocks of them and at most
// maxBatchTxs txs unless the first block alone is larger. They stay in
// c.unindexed until they are indexed.
func (c *Chain) nextBatch() []index.Decoded {
	c.umu.Lock()
	defer c.umu.Unlock()
	var batch []index.Decoded
	n := 0
	for _, u := range c.unindexed {
		if len(batch) == maxBatchBlocks || (len(batch) > 0 && n+len(u.txs) > maxBatchTxs) {
			break
		}
		batch = append(batch, index.Decoded{Block: u.b, Txs: u.txs})
		n += len(u.txs)
	}
	return batch
}

// halt stops taking txs because the disk is full, and answers every
// waiting Submit with storage_full.
func (c *Chain) halt(cause error) {
	c.mu.Lock()
	c.closed = true
	c.halted = &ledger.RefusedError{Reason: ledger.ReasonStorageFull, Detail: fmt.Sprintf(
		"storage full: %v. This gateway stopped committing; its API and dashboard still answer. "+
			"Free space on the file system of its data directory, then restart it (committing does not resume on its own: a start checks the block log's tail)", cause)}
	var fire []*note
	for id, w := range c.waiters {
		w.err = refusedStorageFull
		close(w.done)
		delete(c.waiters, id)
		fire = takeNotes(w, fire)
	}
	c.m.pending.Set(0)
	c.mu.Unlock()
	notify(fire)
}

// Halted returns, once the disk filled and Run stopped for it, a
// *ledger.RefusedError with reason storage_full that says what happened
// and what to do; nil before.
func (c *Chain) Halted() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.halted
}

// close fails every waiting Submit.
func (c *Chain) close() {
	c.mu.Lock()
	c.closed = true
	var fire []*note
	for id, w := range c.waiters {
		w.err = ErrClosed
		close(w.done)
		delete(c.waiters, id)
		fire = takeNotes(w, fire)
	}
	c.m.pending.Set(0)
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.mu.Unlock()
	notify(fire)
}

// Submit checks env, has it ordered, and returns its receipt once its
// block is durable. A tx already committed gets its existing receipt, so
// retrying a submit is safe. Rejections are *state.RejectError; a tx not
// committed within the commit timeout is refused as "unavailable" (see
// Ticket.Wait).
func (c *Chain) Submit(ctx context.Context, env []byte) (*ledger.Receipt, error) {
	tx, err := c.Decode(env)
	if err != nil {
		return nil, err
	}
	return c.SubmitTx(ctx, tx)
}

// Decode decodes env, of at most the chain's max_tx_bytes, for Propose
// or SubmitTx; a tx that does not decode is refused (malformed,
// too_large) and counted as a rejection.
func (c *Chain) Decode(env []byte) (*ledger.Tx, error) {
	tx, err := c.st.Decode(env)
	if err != nil {
		c.m.rejects.WithLabelValues(string(ledger.ReasonOf(err))).Inc()
		return nil, err
	}
	return tx, nil
}

// SubmitTx is Submit for a tx already decoded.
func (c *Chain) SubmitTx(ctx context.Context, tx *ledger.Tx) (*ledger.Receipt, error) {
	t, err := c.Propose(ctx, tx)
	if err != nil {
		return nil, err
	}
	return t.Wait(ctx)
}

// Ticket is a proposed tx's claim on its receipt.
type Ticket struct {
	c     *Chain
	w     *waiter
	start time.Time
	done  *ledger.Receipt // set when the tx was already committed
}

// Wait returns the receipt once the tx's block is durable, or why not.
// If the tx has not committed within the chain's commit timeout of the
// Propose, Wait returns a *ledger.RefusedError with reason
// ledger.ReasonUnavailable: this gateway cannot commit now (no quorum,
// a view change, catching up). The tx is not dropped: it stays queued
// for ordering and may still commit; proposing the same bytes again
// returns a Ticket on it, or its receipt once committed.
func (t *Ticket) Wait(ctx context.Context) (*ledger.Receipt, error) {
	if t.done != nil {
		return t.done, nil
	}
	return t.c.wait(ctx, t.w, t.start)
}

// Notify calls f once, when Wait would no longer block: the tx committed
// or was refused, the chain stopped, or the commit timeout of the
// Propose passed. f may run at once on the caller's goroutine, or later
// on one of the chain's, where a slow f holds up commits: it must be
// quick and must not block (hand the answer to a goroutine of its own).
// A front end that answers many txs uses it instead of a goroutine
// blocked in Wait for each.
func (t *Ticket) Notify(f func()) {
	if t.done != nil {
		f()
		return
	}
	c := t.c
	c.mu.Lock()
	select {
	case <-t.w.done:
		c.mu.Unlock()
		f()
		return
	default:
	}
	n := &note{f: f, deadline: t.start.Add(c.commitTimeout)}
	t.w.notes = append(t.w.notes, n)
	// Drop the fired notes at the front: the queue stays about as long
	// as the txs in flight.
	i := 0
	for i < len(c.notes) && c.notes[i].fired {
		c.notes[i] = nil
		i++
	}
	c.notes = append(c.notes[i:], n)
	if len(c.notes) == 1 || i > 0 {
		c.armExpiry()
	}
	c.mu.Unlock()
}

// armExpiry sets the expiry timer to the deadline of the first note;
// c.mu is held.
func (c *Chain) armExpiry() {
	if len(c.notes) == 0 {
		return
	}
	d := time.Until(c.notes[0].deadline)
	if c.expiry == nil {
		c.expiry = time.AfterFunc(d, c.expire)
		return
	}
	c.expiry.Reset(d)
}

// expire fires the notes whose deadline passed, from the front of the
// queue, and sets the timer for the next one. A note behind one with a
// later deadline (its Propose waited longer for a core) fires late by
// that difference, never early.
func (c *Chain) expire() {
	c.mu.Lock()
	now := time.Now()
	var fire []*note
	i := 0
	for ; i < len(c.notes); i++ {
		n := c.notes[i]
		if !n.fired {
			if n.deadline.After(now) {
				break
			}
			n.fired = true
			fire = append(fire, n)
		}
		c.notes[i] = nil
	}
	c.notes = c.notes[i:]
	if !c.closed {
		c.armExpiry()
	}
	c.mu.Unlock()
	notify(fire)
}

// takeNotes appends w's unfired notes to fire and marks them fired;
// c.mu is held.
func takeNotes(w *waiter, fire []*note) []*note {
	for _, n := range w.notes {
		if !n.fired {
			n.fired = true
			fire = append(fire, n)
		}
	}
	w.notes = nil
	return fire
}

// notify calls the notes' functions; c.mu is not held.
func notify(fire []*note) {
	for _, n := range fire {
		n.f()
	}
}

// Propose checks tx (decoded once, by the front end, with its id) and
// queues it for ordering, and returns without waiting for the commit.
// Txs proposed one after another by one caller are ordered in that order,
// so a device's records keep their sequence even with many in flight.
// The tx travels on as it is: nothing after decodes or hashes its
// envelope again.
func (c *Chain) Propose(ctx context.Context, tx *ledger.Tx) (*Ticket, error) {
	start := time.Now()
	id := tx.ID
	if w := c.waiter(id); w != nil {
		return &Ticket{c: c, w: w, start: start}, nil
	}
	// The signature is checked here, on the submitter's goroutine, so
	// every core verifies as messages arrive. Bounding the checks to one
	// a core (as before 2026-12-07) parked and woke a submitter for each
	// message past the bound, and the blocks came out a third the size:
	// 12-16 µs more CPU a message at full load (docs/benchmarks.md, "The
	// commit path, eighth round").
	checked, err := c.st.CheckTx(tx)
	if err != nil {
		if r := ledger.ReasonOf(err); r == ledger.ReasonReplay || r == ledger.ReasonExists || r == ledger.ReasonRevoked {
			// The same tx may be committed already. Its waiter lives until
			// its block is in the log, kept in memory until the index has
			// it (Receipt), so one of the two lookups finds it.
			if w := c.waiter(id); w != nil {
				return &Ticket{c: c, w: w, start: start}, nil
			}
			if rc, rerr := c.Receipt(id); rerr == nil {
				return &Ticket{done: rc}, nil
			}
		}
		c.m.rejects.WithLabelValues(string(ledger.ReasonOf(err))).Inc()
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		halted := c.halted != nil
		c.mu.Unlock()
		if halted {
			c.m.rejects.WithLabelValues(string(ledger.ReasonStorageFull)).Inc()
			return nil, refusedStorageFull
		}
		return nil, ErrClosed
	}
	w, dup := c.waiters[id]
	if !dup && c.maxPending > 0 && len(c.waiters) >= c.maxPending {
		c.mu.Unlock()
		c.m.rejects.WithLabelValues("overloaded").Inc()
		return nil, ErrOverloaded
	}
	if !dup {
		w = &waiter{done: make(chan struct{}), since: start}
		c.waiters[id] = w
		c.m.pending.Inc()
	}
	c.mu.Unlock()
	if !dup {
		if err := c.ord.Propose(checked); err != nil {
			c.finish(id, nil, err)
			return nil, err
		}
	}
	return &Ticket{c: c, w: w, start: start}, nil
}

// waiter returns the waiter of an in-flight tx, or nil.
func (c *Chain) waiter(id [32]byte) *waiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiters[id]
}

// wait waits for w's answer, ctx's end or the commit timeout. An answer
// already there, or a timeout already passed (a Wait after Notify), is
// returned without a timer.
func (c *Chain) wait(ctx context.Context, w *waiter, start time.Time) (*ledger.Receipt, error) {
	select {
	case <-w.done:
		return c.answered(w, start)
	default:
	}
	left := c.commitTimeout - time.Since(start)
	if left <= 0 {
		return nil, c.unavailable()
	}
	timer := time.NewTimer(left)
	defer timer.Stop()
	select {
	case <-w.done:
		return c.answered(w, start)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return nil, c.unavailable()
	}
}

// answered is w's answer to a Wait of a Propose at start.
func (c *Chain) answered(w *waiter, start time.Time) (*ledger.Receipt, error) {
	if w.err == nil {
		c.m.latency.Observe(time.Since(start).Seconds())
	}
	return w.receipt, w.err
}

// unavailable is the answer of a Wait past the commit timeout.
func (c *Chain) unavailable() error {
	c.m.rejects.WithLabelValues(string(ledger.ReasonUnavailable)).Inc()
	return &ledger.RefusedError{Reason: ledger.ReasonUnavailable,
		Detail: fmt.Sprintf("chain: not committed within %s; the gateway cannot commit now (no quorum, a view change or catching up); the tx stays queued: send the same bytes again", c.commitTimeout)}
}

// ErrStalled reports, through Stalled, that a tx has waited longer than
// the commit timeout: this gateway cannot commit now.
var ErrStalled = errors.New("chain: cannot commit")

// Stalled returns an error wrapping ErrStalled if a tx has waited for
// its commit longer than the commit timeout, nil if not. It reads every
// waiting tx: call it when asked (readiness), not per tx.
func (c *Chain) Stalled() error {
	c.mu.Lock()
	var oldest time.Time
	n := 0
	for _, w := range c.waiters {
		if oldest.IsZero() || w.since.Before(oldest) {
			oldest = w.since
		}
		n++
	}
	c.mu.Unlock()
	if n == 0 {
		return nil
	}
	if age := time.Since(oldest); age > c.commitTimeout {
		return fmt.Errorf("%w: the oldest of %d txs waiting to commit has waited %s, over the commit timeout of %s",
			ErrStalled, n, age.Round(time.Millisecond), c.commitTimeout)
	}
	return nil
}

// finish answers the Submits waiting for id.
func (c *Chain) finish(id [32]byte, r *ledger.Receipt, err error) {
	c.mu.Lock()
	w, ok := c.waiters[id]
	if !ok {
		c.mu.Unlock()
		return
	}
	delete(c.waiters, id)
	c.m.pending.Dec()
	w.receipt, w.err = r, err
	close(w.done)
	fire := takeNotes(w, nil)
	c.mu.Unlock()
	notify(fire)
}

// persist answers the round's rejections, then appends its block to the
// log, keeps it for the index stage and applies it to the state. It
// returns the block's decoded txs (nil without a block). Its errors are
// fatal: the disk refused a write.
func (c *Chain) persist(r *Round) ([]*ledger.Tx, error) {
	for _, rj := range r.Rejected {
		if !rj.maybeCommitted() {
			c.m.rejects.WithLabelValues(string(ledger.ReasonOf(rj.Err))).Inc()
			c.finish(rj.ID, nil, rj.Err)
		}
	}
	b := r.Block
	if b == nil {
		return nil, nil
	}
	enc, err := b.Encode()
	if err != nil {
		return nil, err
	}
	if err := c.log.Append(enc); err != nil {
		return nil, fmt.Errorf("chain: append block %d: %w", b.Header.Height, err)
	}
	txs := make([]*ledger.Tx, len(r.Txs))
	for i, t := range r.Txs {
		txs[i] = t.Tx
	}
	// Kept before the state applies it: a Propose that the state refuses
	// as a replay of one of these txs finds its receipt (Receipt).
	c.idx.Expect(b.Header.Height)
	c.umu.Lock()
	c.unindexed = append(c.unindexed, &unindexedBlock{b: b, tree: r.Tree, txs: txs})
	c.unindexedTxs += len(txs)
	lag := len(c.unindexed)
	// The index stage waits for the first block of a batch and for a
	// full batch; the blocks in between join the batch without waking it.
	kick := lag == 1 || c.fullLocked()
	c.umu.Unlock()
	c.m.indexLag.Set(float64(lag))
	if kick {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return txs, c.st.ApplyBlock(b.Header.Height, b.Header.Hash(), b.Header.Time, txs)
}

// answer answers the submitters of a persisted round and calls the
// commit listeners with its block's txs (persist's).
func (c *Chain) answer(r *Round, txs []*ledger.Tx) {
	// Refusals that may be of a committed tx are answered here, once
	// every block before is in the log and kept for Receipt: a committed
	// tx gets its receipt. The same tx sent to two gateways, or sent
	// again while it committed, is refused as a replay by the primary (it
	// is in a block already) while this gateway's copy of that block
	// still waits to be appended here (issue 19).
	for _, rj := range r.Rejected {
		if !rj.maybeCommitted() {
			continue
		}
		if rc, err := c.Receipt(rj.ID); err == nil {
			c.finish(rj.ID, rc, nil)
			continue
		}
		c.m.rejects.WithLabelValues(string(ledger.ReasonOf(rj.Err))).Inc()
		c.finish(rj.ID, nil, rj.Err)
	}
	b := r.Block
	if b == nil {
		return
	}
	c.m.height.Set(float64(b.Header.Height))
	c.m.blocks.Inc()
	c.m.txs.Add(float64(len(r.Txs)))
	c.m.blockSize.Observe(float64(len(r.Txs)))
	for i, t := range r.Txs {
		rc, err := ledger.NewReceipt(b, r.Tree, uint64(i))
		c.finish(t.Tx.ID, rc, err)
	}
	c.lmu.Lock()
	listeners := c.listeners
	c.lmu.Unlock()
	for _, l := range listeners {
		l(b, txs)
	}
}

// Block reads the block at height from the log.
func (c *Chain) Block(height uint64) (*ledger.Block, error) {
	if height == 0 || height > c.log.Height() {
		return nil, fmt.Errorf("%w: block %d", ErrNotFound, height)
	}
	data, err := c.log.ReadHeight(height)
	if errors.Is(err, ledger.ErrBelowBase) {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("chain: read block %d: %w", height, err)
	}
	return ledger.DecodeBlock(data)
}

// Receipt builds the receipt of a committed tx: from the blocks in the
// log not yet indexed, else from the index. It does not wait for the
// index: a tx answered to its submitter is in one of the two (the index
// stage drops a block from memory only once the index has it).
func (c *Chain) Receipt(id [32]byte) (*ledger.Receipt, error) {
	c.umu.Lock()
	for _, u := range c.unindexed {
		for i, tx := range u.txs {
			if tx.ID == id {
				c.umu.Unlock()
				return ledger.NewReceipt(u.b, u.tree, uint64(i))
			}
		}
	}
	c.umu.Unlock()
	info, err := c.idx.TxIndexed(id)
	if errors.Is(err, index.ErrNotFound) {
		return nil, fmt.Errorf("%w: tx %x", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	b, err := c.Block(info.Height)
	if err != nil {
		return nil, err
	}
	// A pruned record has no receipt here (ledger.ErrPruned): the
	// receipt needs the envelope, which only its device still holds.
	return ledger.NewReceipt(b, b.Tree(), info.Index)
}

// Replay applies the blocks of the log after st's tip to st (every block
// for a new state; the blocks after its height for a state restored from
// a snapshot, whose tip must then be the hash of the log's block at that
// height, or the log's base hash for a snapshot at the base of a log that
// starts from one), checking that each block links to the one before. It
// returns how many blocks it applied. progress, if not nil, is called
// after each block with the height reached and the log's; the caller
// decides what to report.
func Replay(log *ledger.Log, st *state.State, progress func(done, total uint64)) (uint64, error) {
	total := log.Height()
	from, _ := st.Tip()
	if from > total {
		return 0, fmt.Errorf("chain: replay: the state is at block %d, the log has %d", from, total)
	}
	if base, _ := log.Base(); from < base {
		return 0, fmt.Errorf("chain: replay: the state is at block %d, below the log's base %d (the log starts from a snapshot)", from, base)
	}
	for h := from + 1; h <= total; h++ {
		data, err := log.ReadHeight(h)
		if err != nil {
			return h - from - 1, fmt.Errorf("chain: replay block %d: %w", h, err)
		}
		b, err := ledger.DecodeBlock(data)
		if err != nil {
			return h - from - 1, fmt.Errorf("chain: replay block %d: %w", h, err)
		}
		height, tip := st.Tip()
		if b.Header.Height != height+1 || string(b.Header.Prev) != string(tip[:]) || b.Header.ChainID != st.Genesis().ChainID {
			return h - from - 1, fmt.Errorf("chain: replay: block %d does not extend block %d", b.Header.Height, height)
		}
		// A pruned record's stub gives the state what it kept of the
		// record: the device's seq, so replay protection survives.
		txs, err := b.DecodeTxs(0)
		if err != nil {
			return h - from - 1, fmt.Errorf("chain: replay: %w", err)
		}
		if err := st.ApplyBlock(h, b.Header.Hash(), b.Header.Time, txs); err != nil {
			return h - from - 1, err
		}
		if progress != nil {
			progress(h, total)
		}
	}
	return total - from, nil
}
