package snapshot

import (
	"context"
	"encoding/hex"
	"log/slog"
	"sync"

	"github.com/ledgergate/ledgergate/gateway/state"
)

// Policy says after which blocks a snapshot is due: every EveryBlocks
// blocks (at heights that are multiples of it) and after the block at
// which the count of committed txs passes a multiple of EveryTxs. A
// zero field never triggers. Gateways with the same policy snapshot at
// the same heights.
type Policy struct {
	EveryBlocks uint64
	EveryTxs    uint64
}

// Due reports whether a snapshot is due after the block at height, which
// took the count of committed txs from before to after.
func (p Policy) Due(height, before, after uint64) bool {
	return p.EveryBlocks > 0 && height%p.EveryBlocks == 0 ||
		p.EveryTxs > 0 && before/p.EveryTxs != after/p.EveryTxs
}

// DueSince reports whether a snapshot point was passed between a state
// at (h0, txs0) and one at (h1, txs1): a start that replayed that range
// writes a snapshot of where it stands.
func (p Policy) DueSince(h0, txs0, h1, txs1 uint64) bool {
	return p.EveryBlocks > 0 && h0/p.EveryBlocks != h1/p.EveryBlocks ||
		p.EveryTxs > 0 && txs0/p.EveryTxs != txs1/p.EveryTxs
}

// Writer encodes and writes the snapshots handed to it on its own
// goroutine (Run). If snapshots come faster than they are written, the
// ones waiting are replaced by the newest: a write never holds up the
// commit path.
type Writer struct {
	store  *Store
	logger *slog.Logger
	// Written, if not nil, is called on Run's goroutine after each
	// snapshot is durable, with its height and hash, and whether it was
	// offered as due by the Policy (the heights every gateway with the
	// same policy snapshots at, which they attest to certify).
	Written func(height uint64, hash [32]byte, due bool)

	mu      sync.Mutex
	pending *state.Snapshot
	due     bool
	kick    chan struct{}
}

// NewWriter returns a Writer into store.
func NewWriter(store *Store, logger *slog.Logger) *Writer {
	return &Writer{store: store, logger: logger, kick: make(chan struct{}, 1)}
}

// Offer hands sn to the writer without waiting; a snapshot offered
// before and not yet taken is dropped for it. due says whether sn is at a
// height the Policy made due (see Written).
func (w *Writer) Offer(sn *state.Snapshot, due bool) {
	w.mu.Lock()
	w.pending, w.due = sn, due
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run writes offered snapshots until ctx ends; a snapshot offered and
// not yet taken then is dropped. A failed write is logged: the next
// snapshot tries again, and the start replays more blocks meanwhile.
func (w *Writer) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		w.mu.Lock()
		sn, due := w.pending, w.due
		w.pending = nil
		w.mu.Unlock()
		if sn == nil {
			continue
		}
		w.write(sn, due)
	}
}

// write encodes and stores sn.
func (w *Writer) write(sn *state.Snapshot, due bool) {
	enc, err := sn.Encode()
	if err != nil {
		w.logger.Error("encode snapshot", "height", sn.Height, "err", err)
		return
	}
	if err := w.store.Write(sn.Height, enc); err != nil {
		w.logger.Warn("write snapshot failed; the next one tries again", "height", sn.Height, "err", err)
		return
	}
	sum := state.SnapshotHash(enc)
	w.logger.Info("snapshot written", "height", sn.Height, "txs", sn.Txs, "bytes", len(enc), "hash", hex.EncodeToString(sum[:]))
	if w.Written != nil {
		w.Written(sn.Height, sum, due)
	}
}
