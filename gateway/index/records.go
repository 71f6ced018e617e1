package index

import (
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Position is where a tx is in the chain: its block and its index there.
// It never changes once the block is committed, so it is a stable cursor.
type Position struct {
	Height uint64
	Index  uint64
}

// RecordQuery selects committed data.record txs. Every filter is optional.
type RecordQuery struct {
	Device string // "" matches every device
	Stream string // "" matches every stream
	// From and To bound the block time (Unix ms, the certified time of the
	// block, not the device's clock): From inclusive, To exclusive. 0 is
	// no bound.
	From, To int64
	// After continues a listing: the records after this position (before
	// it when Desc). The zero Position starts at the oldest (newest).
	After Position
	Desc  bool // newest first
	Limit int  // 1..MaxLimit; 0 or less is MaxLimit
}

// RecordInfo is an indexed data.record tx. The payload is not in the
// index: it is in the block log, at Height and Index.
type RecordInfo struct {
	ID          string // hex SHA-256 of the envelope
	Height      uint64
	Index       uint64
	BlockTime   int64 // Unix ms
	Device      string
	Stream      string
	Seq         uint64
	DeviceTime  int64 // device clock, Unix ms
	ContentType string
}

// Position returns where the record is.
func (r *RecordInfo) Position() Position { return Position{r.Height, r.Index} }

// QueryRecords returns up to q.Limit records that match q, in commit order
// (or newest first with q.Desc). A full page means there may be more:
// query again with After set to the last record's position. A q.After
// that names no indexed tx is ErrNotFound.
//
// Cost (TestRecordQueryPlans): a device goes through the index on
// (device, seq), a device and a stream through (device, stream, seq), a
// time range through the index on the blocks' running maximum time, which
// bounds the range of txs to read; a stream without a device reads the
// records in commit order until the page is full.
func (x *Index) QueryRecords(q RecordQuery) ([]RecordInfo, error) {
	lo, hi, err := x.seqRange(q)
	if err != nil {
		return nil, fmt.Errorf("index: query records: %w", err)
	}
	if lo >= hi {
		return []RecordInfo{}, nil
	}
	query, args := recordSQL(q, lo, hi)
	rs, err := list(x.read(), scanRecord, query, args...)
	if err != nil {
		return nil, fmt.Errorf("index: query records: %w", err)
	}
	return rs, nil
}

// recordSQL is the query of q over the txs with seq in [lo, hi). The CROSS
// JOIN keeps txs the outer loop: the blocks table is only looked up by
// height for each row.
func recordSQL(q RecordQuery, lo, hi int64) (string, []any) {
	var b strings.Builder
	b.WriteString(`SELECT t.id, t.height, t.idx, b.time, t.device, t.stream, t.dev_seq, t.device_time, t.content_type FROM txs t`)
	if q.Device != "" && q.Stream != "" {
		// Without statistics the planner takes the shorter index on
		// (device, seq) and filters the stream.
		b.WriteString(` INDEXED BY txs_stream_records`)
	}
	b.WriteString(` CROSS JOIN blocks b ON b.height = t.height
		WHERE t.kind = ` + kindRecord + ` AND t.seq >= ? AND t.seq < ?`)
	args := []any{lo, hi}
	if q.Device != "" {
		b.WriteString(` AND t.device = ?`)
		args = append(args, q.Device)
	}
	if q.Stream != "" {
		b.WriteString(` AND t.stream = ?`)
		args = append(args, q.Stream)
	}
	// The seq range holds every block in the time range, and a few
	// outside it when block times stepped back: the exact test is here.
	if q.From != 0 {
		b.WriteString(` AND b.time >= ?`)
		args = append(args, q.From)
	}
	if q.To != 0 {
		b.WriteString(` AND b.time < ?`)
		args = append(args, q.To)
	}
	if q.Desc {
		b.WriteString(` ORDER BY t.seq DESC LIMIT ?`)
	} else {
		b.WriteString(` ORDER BY t.seq LIMIT ?`)
	}
	return b.String(), append(args, capLimit(q.Limit))
}

func scanRecord(r rowScanner) (RecordInfo, error) {
	var v RecordInfo
	var id []byte
	err := r.Scan(&id, u64{&v.Height}, u64{&v.Index}, &v.BlockTime, &v.Device, &v.Stream, u64{&v.Seq}, &v.DeviceTime, &v.ContentType)
	v.ID = hex.EncodeToString(id)
	return v, err
}

// The lookups that map a time range to blocks (TestRecordQueryPlans).
const (
	sqlFirstFrom  = `SELECT first_seq FROM blocks WHERE tmax >= ? ORDER BY tmax, height LIMIT 1`
	sqlLastBefore = `SELECT height FROM blocks WHERE tmax < ? ORDER BY tmax DESC, height DESC LIMIT 1`
	// The max is taken over the few stepped-back blocks: +height keeps the
	// planner from walking all blocks down from the top instead.
	sqlSteppedBefore = `SELECT coalesce(max(+height), 0) FROM blocks INDEXED BY blocks_backstep WHERE time < tmax AND time < ?`
)

// seqRange maps q's cursor and time range to the txs (by seq, their
// global ordinal) that can match: [lo, hi). lo >= hi if none can.
func (x *Index) seqRange(q RecordQuery) (lo, hi int64, err error) {
	lo, hi = 1, math.MaxInt64
	if q.After != (Position{}) {
		var first, n int64
		err := x.read().QueryRow(`SELECT first_seq, num_txs FROM blocks WHERE height = ?`, int64(q.After.Height)).Scan(&first, &n)
		if err == nil && q.After.Index >= uint64(n) {
			err = sql.ErrNoRows
		}
		if err != nil {
			return 0, 0, fmt.Errorf("position %d.%d: %w", q.After.Height, q.After.Index, notFound(err))
		}
		if at := first + int64(q.After.Index); q.Desc {
			hi = at
		} else {
			lo = at + 1
		}
	}
	if q.From != 0 {
		// The first block whose running maximum time reaches From is the
		// first block at or after From: no earlier block's time does.
		var first int64
		err := x.read().QueryRow(sqlFirstFrom, q.From).Scan(&first)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("from %d: %w", q.From, err)
		}
		lo = max(lo, first)
	}
	if q.To != 0 {
		// The last block before To: the last one whose running maximum is
		// below To, or a later one whose time stepped back below To.
		var last, stepped uint64
		err := x.read().QueryRow(sqlLastBefore, q.To).Scan(u64{&last})
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, 0, fmt.Errorf("to %d: %w", q.To, err)
		}
		err = x.read().QueryRow(sqlSteppedBefore, q.To).Scan(u64{&stepped})
		if err != nil {
			return 0, 0, fmt.Errorf("to %d: %w", q.To, err)
		}
		h := max(last, stepped)
		if h == 0 {
			return 0, 0, nil
		}
		var first, n int64
		if err := x.read().QueryRow(`SELECT first_seq, num_txs FROM blocks WHERE height = ?`, int64(h)).Scan(&first, &n); err != nil {
			return 0, 0, fmt.Errorf("to %d: block %d: %w", q.To, h, err)
		}
		hi = min(hi, first+n)
	}
	return lo, hi, nil
}
