package index

import (
	"database/sql"
	"errors"
	"fmt"
)

// LimitWAL bounds the WAL file to about n bytes (a retention budget's
// share): a checkpoint once the WAL holds n/2 bytes of pages, and the file
// cut back to n/2 after it. The WAL may pass n/2 by what one transaction
// writes before the checkpoint runs. The defaults (walCheckpointPages,
// walSizeLimit) are for an index without a budget.
func (x *Index) LimitWAL(n int64) error {
	pages := max(n/2/4096, 64)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return errors.New("index: closed")
	}
	for _, p := range []string{fmt.Sprintf(`PRAGMA wal_autocheckpoint = %d`, pages), fmt.Sprintf(`PRAGMA journal_size_limit = %d`, n/2)} {
		if _, err := x.w.Exec(p); err != nil {
			return fmt.Errorf("index: limit wal: %w", err)
		}
	}
	return nil
}

// PrunedHeight is the height up to which PruneRecords deleted the rows of
// data.record txs (0: none).
func (x *Index) PrunedHeight() (uint64, error) {
	var h uint64
	if err := x.db.QueryRow(`SELECT pruned_height FROM retention`).Scan(u64{&h}); err != nil {
		return 0, fmt.Errorf("index: pruned height: %w", err)
	}
	return h, nil
}

// PruneRecords deletes the rows of the data.record txs of the blocks up to
// height to (a retention policy pruned their envelopes from the block
// log) and then records to as the pruned height. It works in SQL
// transactions of at most batch txs rows looked at (default 2000), so
// neither the writer lock the commit path's index stage needs nor the WAL
// grows with the range; SQLite reuses the freed pages. It is idempotent:
// after a crash it starts again from the stored pruned height. It returns
// the number of rows deleted. Blocks, device rows (with their counts of
// records) and every other tx's row stay.
func (x *Index) PruneRecords(to uint64, batch int) (int64, error) {
	if batch <= 0 {
		batch = 2000
	}
	from, err := x.PrunedHeight()
	if err != nil {
		return 0, err
	}
	if to <= from {
		return 0, nil
	}
	// The txs of blocks from+1..to are seq lo..hi.
	lo, err := x.firstSeq(from + 1)
	if err != nil {
		return 0, err
	}
	hi, err := x.firstSeq(to + 1)
	if err != nil {
		return 0, err
	}
	var deleted int64
	for start := lo; start < hi; start += uint64(batch) {
		end := min(start+uint64(batch), hi)
		n, err := x.pruneBatch(start, end, 0)
		if err != nil {
			return deleted, err
		}
		deleted += n
	}
	if _, err := x.pruneBatch(0, 0, to); err != nil {
		return deleted, err
	}
	return deleted, nil
}

// firstSeq is the seq of block h's first tx, or one past the last tx if
// block h is not indexed (it is the block after the top).
func (x *Index) firstSeq(h uint64) (uint64, error) {
	var first uint64
	err := x.db.QueryRow(`SELECT first_seq FROM blocks WHERE height = ?`, int64(h)).Scan(u64{&first})
	if errors.Is(err, sql.ErrNoRows) {
		var top, n uint64
		err = x.db.QueryRow(`SELECT height, first_seq + num_txs FROM blocks ORDER BY height DESC LIMIT 1`).Scan(u64{&top}, u64{&n})
		if err == nil && h != top+1 {
			return 0, fmt.Errorf("index: prune: block %d is not indexed (top %d)", h, top)
		}
		first = n
	}
	if err != nil {
		return 0, fmt.Errorf("index: prune: block %d: %w", h, notFound(err))
	}
	return first, nil
}

// pruneBatch deletes the record rows of seq [start, end) in one SQL
// transaction, or if end is 0 sets the pruned height to height.
func (x *Index) pruneBatch(start, end, height uint64) (int64, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return 0, errors.New("index: closed")
	}
	w := x.w
	if err := w.begin(); err != nil {
		return 0, fmt.Errorf("index: prune: %w", full(err))
	}
	var n int64
	var forget []prefixSeq // the open generation's records deleted
	if end == 0 {
		if _, err := w.Exec(`UPDATE retention SET pruned_height = ?`, int64(height)); err != nil {
			w.rollback()
			return 0, fmt.Errorf("index: prune: %w", full(err))
		}
	} else {
		// The ids of the records to delete: in tx_ids up to the last
		// full generation, in memory after it.
		open := x.open.sealedTo() + 1
		if start < open {
			if _, err := w.Exec(sqlPruneIDs, w.generation, int64(start), int64(min(end, open))); err != nil {
				w.rollback()
				return 0, fmt.Errorf("index: prune ids: %w", full(err))
			}
		}
		if open < end {
			var err error
			if forget, err = w.prefixSeqs(`seq >= ? AND seq < ? AND kind = `+kindRecord, int64(max(start, open)), int64(end)); err != nil {
				w.rollback()
				return 0, fmt.Errorf("index: prune ids: %w", full(err))
			}
		}
		res, err := w.Exec(`DELETE FROM txs WHERE seq >= ? AND seq < ? AND kind = `+kindRecord, int64(start), int64(end))
		if err != nil {
			w.rollback()
			return 0, fmt.Errorf("index: prune: %w", full(err))
		}
		n, _ = res.RowsAffected()
	}
	if err := w.commit(); err != nil {
		w.rollback()
		return 0, fmt.Errorf("index: prune: %w", full(err))
	}
	x.open.forget(forget)
	return n, nil
}

// sqlPruneIDs deletes the tx_ids rows of the record rows of seq [?2, ?3)
// for generations of ?1 txs, before the rows themselves: one probe each.
const sqlPruneIDs = `DELETE FROM tx_ids WHERE (gen, id_prefix, seq) IN
	(SELECT (seq - 1) / ?1, id_prefix, seq FROM txs WHERE seq >= ?2 AND seq < ?3 AND kind = ` + kindRecord + `)`
