package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// sink is where a connector delivers.
type sink interface {
	// send delivers msgs in their order and returns how many of them, from
	// the first, the sink acknowledged: all of them, or fewer and why not.
	// The others may have arrived too; they are sent again. Each round
	// trip is bounded by Config.Timeout, not the whole batch: a sink far
	// away still makes progress.
	send(ctx context.Context, msgs []*Message) (int, error)
	close()
}

// deliveryError says how to retry a failed delivery.
type deliveryError struct {
	err error
	// retryAfter is the wait the sink asked for (HTTP Retry-After); 0: none.
	retryAfter time.Duration
	// rejected is a refusal that retrying soon will not change (HTTP 4xx
	// other than 408 and 429, an MQTT PUBACK reason code): it needs an
	// operator, so it is logged loudly and retried slowly.
	rejected bool
}

func (e *deliveryError) Error() string { return e.err.Error() }
func (e *deliveryError) Unwrap() error { return e.err }

// Retry delays.
const (
	minBackoff      = 100 * time.Millisecond
	maxBackoff      = 30 * time.Second
	rejectedBackoff = time.Minute
	maxRetryAfter   = time.Hour
	// pollInterval bounds the wait for a commit notification that was
	// missed (blocks that came by state transfer).
	pollInterval = 2 * time.Second
	// cursorInterval is the most often a connector writes its cursor.
	cursorInterval = time.Second
	// maxScanBlocks bounds the blocks read for one batch, so that a
	// filter that passes few records still moves the cursor on.
	maxScanBlocks = 1000
	// maxBatchBytes bounds the encoded records of one batch (a webhook
	// POST body is about 1.4 times this).
	maxBatchBytes = 4 << 20
)

// connector delivers one [[egress]]'s records.
type connector struct {
	cfg       Config
	exporting bool
	path      string // cursor file
	blocks    Blocks
	index     Index
	sink      sink
	logger    *slog.Logger
	wake      chan struct{}

	groups     map[string][]string // device -> groups; fixed at enrollment, so cached
	last       *ledger.Block       // the block read last, read again by the next batch
	warnedBase bool                // logged that the cursor was at or below the log's base

	mu        sync.Mutex // guards what status reads
	cur       Cursor
	delivered uint64
	lastOK    time.Time
	lastErr   string
	lastErrAt time.Time
	failing   bool
}

// run delivers until ctx ends.
//
// The cursor moves in memory once the sink acknowledged a batch, and is
// written at most once per cursorInterval, and when run ends: one fsync
// per block on the data directory's disk would compete with the commit
// path's. A crash sends again what was acknowledged since the last write
// (at least once).
func (c *connector) run(ctx context.Context) {
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	saved, lastSave := cur, time.Now()
	save := func() error {
		if err := saveCursor(c.path, cur); err != nil {
			return err
		}
		saved, lastSave = cur, time.Now()
		return nil
	}
	defer func() {
		if cur != saved {
			if err := save(); err != nil {
				c.logger.Error("egress cursor not saved at stop: the records since the last save will be sent again", "err", err)
			}
		}
	}()
	failures := 0 // consecutive failed attempts
	fail := func(err error) {
		failures++
		c.failed(err, failures)
		c.pause(ctx, backoff(failures, err))
	}
	for ctx.Err() == nil {
		if cur != saved && time.Since(lastSave) >= cursorInterval {
			if err := save(); err != nil {
				fail(err)
				continue
			}
		}
		msgs, next, err := c.collect(cur)
		if err != nil {
			fail(err)
			continue
		}
		if next == cur {
			wait := pollInterval
			if cur != saved {
				wait = min(wait, cursorInterval-time.Since(lastSave))
			}
			c.idle(ctx, wait)
			continue
		}
		if len(msgs) > 0 {
			n, err := c.sink.send(ctx, msgs)
			if err != nil {
				// What the sink acknowledged before the failure is not sent
				// again.
				if n > 0 {
					cur = c.acknowledged(msgs[:n], msgs[n-1].at)
				}
				if ctx.Err() != nil {
					return
				}
				fail(err)
				continue
			}
		}
		// The sink acknowledged: only now may the cursor move.
		if failures > 0 {
			c.logger.Info("egress delivering again", "after_failures", failures)
			failures = 0
		}
		cur = c.acknowledged(msgs, next)
	}
}

// acknowledged records that the sink acknowledged msgs, and returns cur,
// the cursor after them.
func (c *connector) acknowledged(msgs []*Message, cur Cursor) Cursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = cur
	if len(msgs) > 0 {
		c.delivered += uint64(len(msgs))
		c.lastOK = time.Now()
		c.failing = false
	}
	return cur
}

// idle waits for a commit, d, or ctx's end.
func (c *connector) idle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.wake:
	case <-t.C:
	case <-ctx.Done():
	}
}

// pause waits d or until ctx ends.
func (c *connector) pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// failed records a failed attempt. Attempts 1, 2, 4, 8... are logged, so
// a sink down for a day does not fill the log; a rejection always is, as
// an error: an operator must act on it.
func (c *connector) failed(err error, n int) {
	c.mu.Lock()
	c.lastErr, c.lastErrAt, c.failing = err.Error(), time.Now(), true
	c.mu.Unlock()
	var de *deliveryError
	switch {
	case errors.As(err, &de) && de.rejected:
		c.logger.Error("egress sink rejected the records; retrying slowly: fix the sink or its settings (nothing is skipped)",
			"attempt", n, "err", err)
	case n&(n-1) == 0:
		c.logger.Warn("egress delivery failed; retrying with backoff", "attempt", n, "err", err)
	}
}

// backoff is the wait before attempt n+1: exponential with jitter (half
// fixed, half random, so that gateways restarted together spread out),
// or what the sink asked for.
func backoff(n int, err error) time.Duration {
	var de *deliveryError
	if errors.As(err, &de) && de.retryAfter > 0 {
		return min(de.retryAfter, maxRetryAfter)
	}
	d := maxBackoff
	if n < 20 {
		d = min(minBackoff<<(n-1), maxBackoff)
	}
	if errors.As(err, &de) && de.rejected {
		d = max(d, rejectedBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

// collect reads the committed blocks after cur and returns the messages
// of the records in them that pass the filters, at most a batch, and the
// cursor after the last tx it looked at.
func (c *connector) collect(cur Cursor) ([]*Message, Cursor, error) {
	tip, err := c.index.Height()
	if err != nil {
		return nil, cur, err
	}
	var msgs []*Message
	size := 0
	next := cur
	h, i := cur.Block, cur.Index+1
	if h == 0 {
		h, i = 1, 0
	}
	if base, _ := c.blocks.Base(); h <= base {
		// The gateway joined from a snapshot: the blocks up to its base
		// are not in its log, and this connector cannot send them.
		if !c.warnedBase {
			c.warnedBase = true
			c.logger.Warn("egress connector starts after the block log's base: the blocks up to it are not on this gateway (it joined from a snapshot)",
				"cursor_block", cur.Block, "base", base)
		}
		h, i = base+1, 0
	}
	for scanned := 0; h <= tip && scanned < maxScanBlocks; scanned++ {
		b, err := c.block(h)
		if err != nil {
			return nil, cur, err
		}
		var tree *ledger.Tree // made for the first record of the block
		for ; i < uint64(len(b.Txs)); i++ {
			if len(msgs) >= c.batch() || size >= maxBatchBytes {
				return msgs, next, nil
			}
			if len(b.Txs[i]) == 0 && b.IsPruned() {
				// Retention dropped the record before this connector
				// delivered it: there is nothing left to send.
				next = Cursor{Block: h, Index: i, Handled: next.Handled + 1}
				continue
			}
			tx, err := ledger.DecodeTx(b.Txs[i], 0)
			if err != nil {
				return nil, cur, fmt.Errorf("egress: block %d tx %d: %w", h, i, err)
			}
			ok, err := c.match(tx)
			if err != nil {
				return nil, cur, err
			}
			if ok {
				if tree == nil {
					tree = b.Tree()
				}
				m, err := newMessage(b, tree, i, tx)
				if err != nil {
					return nil, cur, fmt.Errorf("egress: block %d tx %d: %w", h, i, err)
				}
				msgs = append(msgs, m)
				size += len(m.Envelope) + len(m.Receipt)
			}
			next = Cursor{Block: h, Index: i, Handled: next.Handled + 1}
			if ok {
				msgs[len(msgs)-1].at = next
			}
		}
		h, i = h+1, 0
	}
	return msgs, next, nil
}

// batch is the most records collect returns: Config.Batch, and for the
// MQTT and NATS sinks Config.Batch rounded up to a multiple of the window.
// A batch is sent in ceil(batch/window) round trips, the last one
// emptying the window: a multiple wastes no part of one.
func (c *connector) batch() int {
	if c.cfg.Kind == KindWebhook {
		return c.cfg.Batch
	}
	w := c.cfg.Window
	return (c.cfg.Batch + w - 1) / w * w
}

// block reads block h from the log.
func (c *connector) block(h uint64) (*ledger.Block, error) {
	if c.last != nil && c.last.Header.Height == h {
		return c.last, nil
	}
	data, err := c.blocks.ReadHeight(h)
	if err != nil {
		return nil, fmt.Errorf("egress: read block %d: %w", h, err)
	}
	b, err := ledger.DecodeBlock(data)
	if err != nil {
		return nil, fmt.Errorf("egress: block %d: %w", h, err)
	}
	c.last = b
	return b, nil
}

// match says whether tx is a record the filters pass.
func (c *connector) match(tx *ledger.Tx) (bool, error) {
	r := tx.Body.Record
	if tx.Body.Kind != ledger.KindRecord || r == nil {
		return false, nil
	}
	if len(c.cfg.Devices) > 0 && !slices.Contains(c.cfg.Devices, r.DeviceID) {
		return false, nil
	}
	if len(c.cfg.Streams) > 0 && !slices.Contains(c.cfg.Streams, r.Stream) {
		return false, nil
	}
	if len(c.cfg.Groups) == 0 {
		return true, nil
	}
	groups, ok := c.groups[r.DeviceID]
	if !ok {
		d, err := c.index.Device(r.DeviceID)
		if base, _ := c.blocks.Base(); base > 0 && errors.Is(err, index.ErrNotFound) {
			return false, fmt.Errorf("egress: groups of %s: the device was enrolled before block %d, which this gateway joined from a snapshot at, and its index does not know its groups: export group-filtered records from a gateway whose log starts at block 1: %w", r.DeviceID, base, err)
		}
		if err != nil {
			return false, fmt.Errorf("egress: groups of %s: %w", r.DeviceID, err)
		}
		groups = d.Groups
		c.groups[r.DeviceID] = groups
	}
	for _, g := range groups {
		if slices.Contains(c.cfg.Groups, g) {
			return true, nil
		}
	}
	return false, nil
}

func (c *connector) status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{Name: c.cfg.Name, Kind: c.cfg.Kind, Exporting: c.exporting, Cursor: c.cur, Delivered: c.delivered,
		LastError: c.lastErr, Failing: c.failing}
	if !c.lastOK.IsZero() {
		t := c.lastOK.UTC()
		s.LastDelivered = &t
	}
	if !c.lastErrAt.IsZero() {
		t := c.lastErrAt.UTC()
		s.LastErrorAt = &t
	}
	return s
}
