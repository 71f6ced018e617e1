package index

import (
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
)

// MaxLimit caps the length of every list the index returns.
const MaxLimit = 1000

// BlockInfo is an indexed block header. Hashes are hex.
type BlockInfo struct {
	Height   uint64 `json:"height"`
	Hash     string `json:"hash"`
	Prev     string `json:"prev"`
	TxRoot   string `json:"tx_root"`
	NumTxs   uint64 `json:"num_txs"`
	Time     int64  `json:"time"` // proposer's clock, Unix milliseconds
	View     uint64 `json:"view"`
	Proposer string `json:"proposer"`
}

// TxInfo is an indexed tx. Stream, DeviceTime and ContentType are set for
// data.record txs; Seq for data.record and device.rekey txs.
type TxInfo struct {
	ID          string `json:"id"` // hex SHA-256 of the envelope
	Height      uint64 `json:"height"`
	Index       uint64 `json:"index"` // position in the block
	Kind        string `json:"kind"`
	Author      string `json:"author"`
	Device      string `json:"device"` // the device the tx is about
	Stream      string `json:"stream"`
	Seq         uint64 `json:"seq"`
	DeviceTime  int64  `json:"device_time"` // device clock, Unix milliseconds
	ContentType string `json:"content_type"`
	Size        int    `json:"size"` // envelope bytes
}

// Device is an enrolled device as of the indexed height.
type Device struct {
	ID             string `json:"id"`
	Status         string `json:"status"` // StatusActive or StatusRevoked
	Alg            string `json:"alg"`    // ES256 or EdDSA
	PublicKey      []byte `json:"public_key"`
	Fingerprint    string `json:"fingerprint"` // hex SHA-256 of PublicKey
	EnrolledHeight uint64 `json:"enrolled_height"`
	RevokedHeight  uint64 `json:"revoked_height"` // 0 if not revoked
	RevokeReason   string `json:"revoke_reason"`
	LastSeq        uint64 `json:"last_seq"`
	LastSeen       int64  `json:"last_seen"` // block time of the last record, Unix ms; 0 if none
	Records        uint64 `json:"records"`
}

// Counts are the sizes of the index.
type Counts struct {
	Blocks  uint64 `json:"blocks"`
	Txs     uint64 `json:"txs"`
	Devices uint64 `json:"devices"`
	Revoked uint64 `json:"revoked"`
}

// u64 scans an SQLite integer into a uint64 bit for bit, the inverse of
// the int64(v) conversion the writes use.
type u64 struct{ p *uint64 }

func (u u64) Scan(src any) error {
	v, ok := src.(int64)
	if !ok {
		return fmt.Errorf("index: scan %T into uint64", src)
	}
	*u.p = uint64(v)
	return nil
}

// capLimit maps a requested list length to 1..MaxLimit; 0 or less is MaxLimit.
func capLimit(limit int) int {
	if limit <= 0 || limit > MaxLimit {
		return MaxLimit
	}
	return limit
}

// bound maps an exclusive upper bound where 0 means none to an SQL argument.
func bound(before uint64) int64 {
	if before == 0 || before > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(before)
}

// rowScanner is what *sql.Row and *sql.Rows share.
type rowScanner interface {
	Scan(dest ...any) error
}

const blockCols = `height, hash, prev, tx_root, num_txs, time, view, proposer`

func scanBlock(r rowScanner) (BlockInfo, error) {
	var b BlockInfo
	var hash, prev, root []byte
	err := r.Scan(u64{&b.Height}, &hash, &prev, &root, u64{&b.NumTxs}, &b.Time, u64{&b.View}, &b.Proposer)
	b.Hash, b.Prev, b.TxRoot = hex.EncodeToString(hash), hex.EncodeToString(prev), hex.EncodeToString(root)
	return b, err
}

const txCols = `id, height, idx, kind, author, device, stream, dev_seq, device_time, content_type, size`

func scanTx(r rowScanner) (TxInfo, error) {
	var t TxInfo
	var id []byte
	err := r.Scan(&id, u64{&t.Height}, u64{&t.Index}, &t.Kind, &t.Author, &t.Device, &t.Stream,
		u64{&t.Seq}, &t.DeviceTime, &t.ContentType, &t.Size)
	t.ID = hex.EncodeToString(id)
	return t, err
}

const deviceCols = `id, status, alg, public_key, fingerprint, enrolled_height, revoked_height, revoke_reason, last_seq, last_seen, records`

func scanDevice(r rowScanner) (*Device, error) {
	var d Device
	err := r.Scan(&d.ID, &d.Status, &d.Alg, &d.PublicKey, &d.Fingerprint, u64{&d.EnrolledHeight},
		u64{&d.RevokedHeight}, &d.RevokeReason, u64{&d.LastSeq}, &d.LastSeen, u64{&d.Records})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// list runs a query and scans every row with scan. It never returns a nil
// slice, so an empty list encodes as [] in JSON.
func list[T any](db *sql.DB, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.Query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// notFound turns sql.ErrNoRows into ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// Block returns the block at height, or ErrNotFound.
func (x *Index) Block(height uint64) (*BlockInfo, error) {
	b, err := scanBlock(x.db.QueryRow(`SELECT `+blockCols+` FROM blocks WHERE height = ?`, int64(height)))
	if err != nil {
		return nil, fmt.Errorf("index: block %d: %w", height, notFound(err))
	}
	return &b, nil
}

// Blocks returns up to limit blocks below height before (0: from the top),
// newest first.
func (x *Index) Blocks(before uint64, limit int) ([]BlockInfo, error) {
	bs, err := list(x.db, scanBlock, `SELECT `+blockCols+` FROM blocks WHERE height < ? ORDER BY height DESC LIMIT ?`,
		bound(before), capLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("index: blocks before %d: %w", before, err)
	}
	return bs, nil
}

// Tx returns the tx with the given id, or ErrNotFound.
func (x *Index) Tx(id [32]byte) (*TxInfo, error) {
	t, err := scanTx(x.db.QueryRow(`SELECT `+txCols+` FROM txs WHERE id_prefix = ? AND id = ?`, idPrefix(id), id[:]))
	if err != nil {
		return nil, fmt.Errorf("index: tx %x: %w", id, notFound(err))
	}
	return &t, nil
}

// TxsInBlock returns the txs of the block at height in block order, or
// ErrNotFound if that block is not indexed.
func (x *Index) TxsInBlock(height uint64) ([]TxInfo, error) {
	var first, n uint64
	err := x.db.QueryRow(`SELECT first_seq, num_txs FROM blocks WHERE height = ?`, int64(height)).Scan(u64{&first}, u64{&n})
	if err != nil {
		return nil, fmt.Errorf("index: txs of block %d: %w", height, notFound(err))
	}
	ts, err := list(x.db, scanTx, `SELECT `+txCols+` FROM txs WHERE seq >= ? AND seq < ? ORDER BY seq`,
		int64(first), int64(first+n))
	if err != nil {
		return nil, fmt.Errorf("index: txs of block %d: %w", height, err)
	}
	return ts, nil
}

// Device returns the device with the given id, or ErrNotFound.
func (x *Index) Device(id string) (*Device, error) {
	d, err := scanDevice(x.db.QueryRow(`SELECT `+deviceCols+` FROM devices WHERE id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("index: device %q: %w", id, notFound(err))
	}
	return d, nil
}

// Devices returns up to limit devices with ids after after, in id order.
func (x *Index) Devices(after string, limit int) ([]Device, error) {
	scan := func(r rowScanner) (Device, error) {
		d, err := scanDevice(r)
		if err != nil {
			return Device{}, err
		}
		return *d, nil
	}
	ds, err := list(x.db, scan, `SELECT `+deviceCols+` FROM devices WHERE id > ? ORDER BY id LIMIT ?`, after, capLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("index: devices after %q: %w", after, err)
	}
	return ds, nil
}

// Records returns up to limit data.record txs of device with a sequence
// number below beforeSeq (0: from the newest), newest first.
func (x *Index) Records(device string, beforeSeq uint64, limit int) ([]TxInfo, error) {
	ts, err := list(x.db, scanTx, `SELECT `+txCols+` FROM txs
		WHERE kind = `+kindRecord+` AND device = ? AND dev_seq < ?
		ORDER BY dev_seq DESC, seq DESC LIMIT ?`,
		device, bound(beforeSeq), capLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("index: records of %q: %w", device, err)
	}
	return ts, nil
}

// Counts returns the numbers of blocks, txs, devices and revoked devices.
func (x *Index) Counts() (Counts, error) {
	var c Counts
	// Heights and seqs start at 1 without gaps, so the maxima are counts.
	err := x.db.QueryRow(`SELECT
		(SELECT coalesce(max(height), 0) FROM blocks),
		(SELECT coalesce(max(seq), 0) FROM txs),
		(SELECT count(*) FROM devices),
		(SELECT count(*) FROM devices WHERE status = '`+StatusRevoked+`')`,
	).Scan(u64{&c.Blocks}, u64{&c.Txs}, u64{&c.Devices}, u64{&c.Revoked})
	if err != nil {
		return Counts{}, fmt.Errorf("index: counts: %w", err)
	}
	return c, nil
}
