package index

import (
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
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
	ID             string   `json:"id"`
	Status         string   `json:"status"` // StatusActive or StatusRevoked
	Alg            string   `json:"alg"`    // ES256 or EdDSA
	PublicKey      []byte   `json:"public_key"`
	Fingerprint    string   `json:"fingerprint"` // hex SHA-256 of PublicKey
	EnrolledHeight uint64   `json:"enrolled_height"`
	RevokedHeight  uint64   `json:"revoked_height"` // 0 if not revoked
	RevokeReason   string   `json:"revoke_reason"`
	LastSeq        uint64   `json:"last_seq"`
	LastSeen       int64    `json:"last_seen"` // block time of the last record, Unix ms; 0 if none
	Records        uint64   `json:"records"`
	Model          string   `json:"model"`
	Groups         []string `json:"groups"`
	EncKey         []byte   `json:"enc_key"` // X25519 SubjectPublicKeyInfo; empty if none
	// The txs that prove the device's keys: its enrollment, the tx that
	// set its current keys (the enrollment or the last re-key), and its
	// revocation (empty if none).
	EnrollTx []byte `json:"-"`
	KeysTx   []byte `json:"-"`
	RevokeTx []byte `json:"-"`
	// The configuration the device last reported applying.
	CfgVersion uint64 `json:"cfg_version"`
	CfgSHA256  []byte `json:"-"`
	CfgHeight  uint64 `json:"cfg_height"` // block of that report; 0 if none
	// The firmware version the device last reported installing.
	FwVersion uint64 `json:"fw_version"`
	FwHeight  uint64 `json:"fw_height"` // block of that report; 0 if none
}

// Counts are the sizes of the index.
type Counts struct {
	Blocks uint64 `json:"blocks"` // the height of the top block (the base if none above it)
	// Base is the height the index starts after: 0, or the base of a
	// gateway that joined from a snapshot, which has no rows for the
	// blocks up to it. Txs then counts the txs after it.
	Base    uint64 `json:"base_height,omitempty"`
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

const deviceCols = `id, status, alg, public_key, fingerprint, enrolled_height, revoked_height, revoke_reason, last_seq, last_seen, records,
	model, groups, enc_key, enroll_tx, keys_tx, revoke_tx, cfg_version, cfg_sha256, cfg_height, fw_version, fw_height`

func scanDevice(r rowScanner) (*Device, error) {
	var d Device
	var groups string
	err := r.Scan(&d.ID, &d.Status, &d.Alg, &d.PublicKey, &d.Fingerprint, u64{&d.EnrolledHeight},
		u64{&d.RevokedHeight}, &d.RevokeReason, u64{&d.LastSeq}, &d.LastSeen, u64{&d.Records},
		&d.Model, &groups, &d.EncKey, &d.EnrollTx, &d.KeysTx, &d.RevokeTx, u64{&d.CfgVersion}, &d.CfgSHA256, u64{&d.CfgHeight},
		u64{&d.FwVersion}, u64{&d.FwHeight})
	if err != nil {
		return nil, err
	}
	for _, b := range []*[]byte{&d.EncKey, &d.EnrollTx, &d.KeysTx, &d.RevokeTx, &d.CfgSHA256} {
		*b = nonNil(*b)
	}
	d.Groups = []string{}
	if groups != "" {
		d.Groups = strings.Split(groups, ",")
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
	b, err := scanBlock(x.read().QueryRow(`SELECT `+blockCols+` FROM blocks WHERE height = ?`, int64(height)))
	if err != nil {
		return nil, fmt.Errorf("index: block %d: %w", height, notFound(err))
	}
	return &b, nil
}

// Blocks returns up to limit blocks below height before (0: from the top),
// newest first.
func (x *Index) Blocks(before uint64, limit int) ([]BlockInfo, error) {
	bs, err := list(x.read(), scanBlock, `SELECT `+blockCols+` FROM blocks WHERE height < ? ORDER BY height DESC LIMIT ?`,
		bound(before), capLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("index: blocks before %d: %w", before, err)
	}
	return bs, nil
}

// Tx returns the tx with the given id, or ErrNotFound.
//
// Cost: a tx of the open generation (the last txs, fewer than
// generationTxs) is found in memory and read by its seq; an older one
// costs one probe of tx_ids per full generation, newest first, until it
// is found, and an id of no tx probes every generation.
func (x *Index) Tx(id [32]byte) (*TxInfo, error) {
	return x.tx(x.read(), id)
}

// TxIndexed is Tx without waiting for the expected blocks (see Expect):
// it answers from the blocks indexed now. It is for a caller that keeps
// the expected blocks itself and looks there first (the chain's blocks
// that are in the log and not yet indexed).
func (x *Index) TxIndexed(id [32]byte) (*TxInfo, error) {
	return x.tx(x.db, id)
}

func (x *Index) tx(db *sql.DB, id [32]byte) (*TxInfo, error) {
	p := idPrefix(id)
	for _, seq := range x.open.seqs(p) {
		t, err := scanTx(db.QueryRow(sqlTxAt, seq, id[:]))
		if err == nil {
			return &t, nil
		}
		if !errors.Is(err, sql.ErrNoRows) { // no row: pruned, or another id with the prefix
			return nil, fmt.Errorf("index: tx %x: %w", id, err)
		}
	}
	t, err := scanTx(db.QueryRow(sqlTxSealed, p, id[:]))
	if err != nil {
		return nil, fmt.Errorf("index: tx %x: %w", id, notFound(err))
	}
	return &t, nil
}

// sqlTxAt reads the tx at a seq if it has the id.
const sqlTxAt = `SELECT ` + txCols + ` FROM txs WHERE seq = ? AND id = ?`

// sqlTxSealed looks an id up in the full generations, with the
// parameters id_prefix and id. The recursive part counts the generations
// down from the newest; the CROSS JOINs keep it the outer loop, so each
// generation is one probe of tx_ids (gen, id_prefix). The state never
// commits a tx twice; if it did, Tx would return the one in the newest
// generation.
const sqlTxSealed = `WITH RECURSIVE gens(n) AS (
		SELECT max(gen) FROM tx_ids
		UNION ALL SELECT n - 1 FROM gens WHERE n > 0)
	SELECT ` + txCols + ` FROM gens CROSS JOIN tx_ids ON tx_ids.gen = gens.n AND tx_ids.id_prefix = ?
		CROSS JOIN txs ON txs.seq = tx_ids.seq
	WHERE txs.id = ? LIMIT 1`

// TxsInBlock returns the txs of the block at height in block order, or
// ErrNotFound if that block is not indexed.
func (x *Index) TxsInBlock(height uint64) ([]TxInfo, error) {
	var first, n uint64
	err := x.read().QueryRow(`SELECT first_seq, num_txs FROM blocks WHERE height = ?`, int64(height)).Scan(u64{&first}, u64{&n})
	if err != nil {
		return nil, fmt.Errorf("index: txs of block %d: %w", height, notFound(err))
	}
	ts, err := list(x.read(), scanTx, `SELECT `+txCols+` FROM txs WHERE seq >= ? AND seq < ? ORDER BY seq`,
		int64(first), int64(first+n))
	if err != nil {
		return nil, fmt.Errorf("index: txs of block %d: %w", height, err)
	}
	return ts, nil
}

// Device returns the device with the given id, or ErrNotFound.
func (x *Index) Device(id string) (*Device, error) {
	d, err := scanDevice(x.read().QueryRow(`SELECT `+deviceCols+` FROM devices WHERE id = ?`, id))
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
	ds, err := list(x.read(), scan, `SELECT `+deviceCols+` FROM devices WHERE id > ? ORDER BY id LIMIT ?`, after, capLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("index: devices after %q: %w", after, err)
	}
	return ds, nil
}

// SearchDevices returns up to limit devices whose id or model contains q
// (case-insensitive; "" matches all), in id order after after.
func (x *Index) SearchDevices(q, after string, limit int) ([]Device, error) {
	if q == "" {
		return x.Devices(after, limit)
	}
	like := "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(q) + "%"
	ds, err := list(x.read(), func(r rowScanner) (Device, error) {
		d, err := scanDevice(r)
		if err != nil {
			return Device{}, err
		}
		return *d, nil
	}, `SELECT `+deviceCols+` FROM devices WHERE (id LIKE ?1 ESCAPE '\' OR model LIKE ?1 ESCAPE '\') AND id > ?2 ORDER BY id LIMIT ?3`,
		like, after, capLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("index: search devices %q: %w", q, err)
	}
	return ds, nil
}

// Records returns up to limit data.record txs of device with a sequence
// number below beforeSeq (0: from the newest), newest first.
//
// Cost (TestQueryPlans): the device's records are read through the index
// on (device, seq) alone. A device's sequence numbers increase with seq,
// its commit order (the state accepts only a sequence number above the
// device's last), so the records below beforeSeq are those committed
// before the first one at or above it. sqlRecords finds that one with a
// binary search over seq inside the statement, one probe of the index a
// step (about 24 at 10M txs), when the device's newest record is at or
// above beforeSeq.
func (x *Index) Records(device string, beforeSeq uint64, limit int) ([]TxInfo, error) {
	ts, err := list(x.read(), scanTx, sqlRecords, device, bound(beforeSeq), capLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("index: records of %q: %w", device, err)
	}
	return ts, nil
}

// sqlRecords is the query of Records, with parameters device, the bound on
// the sequence number and the limit. first bisects the seqs: the device's
// last record at or before hi is at or above the bound, every one at or
// before lo is below it, and up says whether the last one at or before
// the middle is (so each step probes the index once); the smallest hi it
// reaches is the seq of the device's first record at or above the bound.
// It has no row if the device's newest record is below the bound.
var sqlRecords = `WITH RECURSIVE first(lo, hi, up) AS (
		SELECT 0, top, ` + devSeqAt("top / 2") + ` >= ?2 FROM (SELECT seq AS top, dev_seq AS top_dev FROM txs
			WHERE kind = ` + kindRecord + ` AND device = ?1 ORDER BY seq DESC LIMIT 1) WHERE top_dev >= ?2
		UNION ALL
		SELECT iif(up, lo, (lo + hi) / 2), iif(up, (lo + hi) / 2, hi),
			` + devSeqAt("iif(up, (lo + (lo + hi) / 2) / 2, ((lo + hi) / 2 + hi) / 2)") + ` >= ?2
		FROM first WHERE hi - lo > 1)
	SELECT ` + txCols + ` FROM txs
	WHERE kind = ` + kindRecord + ` AND device = ?1 AND seq < coalesce((SELECT min(hi) FROM first), 9223372036854775807)
	ORDER BY seq DESC LIMIT ?3`

// devSeqAt is the sequence number of the device ?1's last record at or
// before seq, -1 if none.
func devSeqAt(seq string) string {
	return `(SELECT coalesce(max(dev_seq), -1) FROM (SELECT dev_seq FROM txs
		WHERE kind = ` + kindRecord + ` AND device = ?1 AND seq <= ` + seq + ` ORDER BY seq DESC LIMIT 1))`
}

// Counts returns the numbers of blocks, txs, devices and revoked devices.
func (x *Index) Counts() (Counts, error) {
	var c Counts
	// Heights (from the base) and seqs start at 1 without gaps, so the
	// maxima are counts (the top block's last seq: a pruned record has
	// no row).
	err := x.read().QueryRow(`SELECT
		(`+sqlHeight+`),
		(SELECT coalesce((SELECT height FROM log_base), 0)),
		(SELECT coalesce((SELECT first_seq + num_txs - 1 FROM blocks ORDER BY height DESC LIMIT 1), 0)),
		(SELECT count(*) FROM devices),
		(SELECT count(*) FROM devices WHERE status = '`+StatusRevoked+`')`,
	).Scan(u64{&c.Blocks}, u64{&c.Base}, u64{&c.Txs}, u64{&c.Devices}, u64{&c.Revoked})
	if err != nil {
		return Counts{}, fmt.Errorf("index: counts: %w", err)
	}
	return c, nil
}

// ConfigInfo is an indexed config.set.
type ConfigInfo struct {
	Target      string `json:"target"` // a device id, or group:NAME
	Version     uint64 `json:"version"`
	Height      uint64 `json:"height"`
	Index       uint64 `json:"index"` // position in the block
	TxID        string `json:"tx_id"`
	Author      string `json:"author"`
	SHA256      string `json:"sha256"` // of the configuration, hex
	Size        uint64 `json:"size"`
	ContentType string `json:"content_type"`
	Blob        string `json:"blob"` // address of the sealed blob: its SHA-256, hex
	URI         string `json:"uri"`
	Time        int64  `json:"time"` // block time, Unix ms
}

// ConfigReport is a device's indexed config.report.
type ConfigReport struct {
	Height  uint64 `json:"height"`
	Version uint64 `json:"version"`
	SHA256  string `json:"sha256"`
	Time    int64  `json:"time"` // block time, Unix ms
}

const configCols = `target, version, height, idx, tx_id, author, sha256, size, content_type, blob, uri, time`

func scanConfig(r rowScanner) (ConfigInfo, error) {
	var c ConfigInfo
	var id, sum, blob []byte
	err := r.Scan(&c.Target, u64{&c.Version}, u64{&c.Height}, u64{&c.Index}, &id, &c.Author, &sum, u64{&c.Size},
		&c.ContentType, &blob, &c.URI, &c.Time)
	c.TxID, c.SHA256, c.Blob = hex.EncodeToString(id), hex.EncodeToString(sum), hex.EncodeToString(blob)
	return c, err
}

// TargetConfigs returns every config.set of a target (a device id or
// group:NAME), oldest first.
func (x *Index) TargetConfigs(target string) ([]ConfigInfo, error) {
	cs, err := list(x.read(), scanConfig, `SELECT `+configCols+` FROM configs WHERE target = ? ORDER BY version LIMIT ?`, target, MaxLimit)
	if err != nil {
		return nil, fmt.Errorf("index: configs of %q: %w", target, err)
	}
	return cs, nil
}

// targetsOf are the config.set targets that apply to d: the device, then its groups.
func targetsOf(d *Device) []any {
	ts := []any{d.ID}
	for _, g := range d.Groups {
		ts = append(ts, "group:"+g)
	}
	return ts
}

// ConfigHistory returns every config.set that applied to device, its own
// and its groups', in commit order (at most MaxLimit, the newest).
func (x *Index) ConfigHistory(device string) ([]ConfigInfo, error) {
	d, err := x.Device(device)
	if err != nil {
		return nil, err
	}
	ts := targetsOf(d)
	cs, err := list(x.read(), scanConfig, `SELECT * FROM (SELECT `+configCols+` FROM configs
		WHERE target IN (?`+strings.Repeat(", ?", len(ts)-1)+`) ORDER BY height DESC, idx DESC LIMIT ?) ORDER BY height, idx`,
		append(ts, MaxLimit)...)
	if err != nil {
		return nil, fmt.Errorf("index: config history of %q: %w", device, err)
	}
	return cs, nil
}

// CurrentConfig returns the config.set that is device's configuration:
// the newest version for the device itself if there is one, else the most
// recently committed one among its groups'. ErrNotFound if none.
func (x *Index) CurrentConfig(device string) (*ConfigInfo, error) {
	d, err := x.Device(device)
	if err != nil {
		return nil, err
	}
	return x.currentConfig(d, nil)
}

// currentConfig is CurrentConfig for a device read already; latest, if
// not nil, holds the newest config.set of each target.
func (x *Index) currentConfig(d *Device, latest map[string]ConfigInfo) (*ConfigInfo, error) {
	if latest != nil {
		var best *ConfigInfo
		for i, t := range targetsOf(d) {
			c, ok := latest[t.(string)]
			switch {
			case !ok:
			case i == 0:
				return &c, nil
			case best == nil || c.Height > best.Height || c.Height == best.Height && c.Index > best.Index:
				best = &c
			}
		}
		if best == nil {
			return nil, fmt.Errorf("index: config of %q: %w", d.ID, ErrNotFound)
		}
		return best, nil
	}
	c, err := scanConfig(x.read().QueryRow(`SELECT `+configCols+` FROM configs WHERE target = ? ORDER BY version DESC LIMIT 1`, d.ID))
	if err == nil {
		return &c, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("index: config of %q: %w", d.ID, err)
	}
	ts := targetsOf(d)[1:]
	if len(ts) == 0 {
		return nil, fmt.Errorf("index: config of %q: %w", d.ID, ErrNotFound)
	}
	c, err = scanConfig(x.read().QueryRow(`SELECT `+configCols+` FROM configs WHERE target IN (?`+strings.Repeat(", ?", len(ts)-1)+`)
		ORDER BY height DESC, idx DESC LIMIT 1`, ts...))
	if err != nil {
		return nil, fmt.Errorf("index: config of %q: %w", d.ID, notFound(err))
	}
	return &c, nil
}

// ConfigsByBlob returns the config.sets that name the blob with the given
// address.
func (x *Index) ConfigsByBlob(blob [32]byte) ([]ConfigInfo, error) {
	cs, err := list(x.read(), scanConfig, `SELECT `+configCols+` FROM configs WHERE blob = ? LIMIT ?`, blob[:], MaxLimit)
	if err != nil {
		return nil, fmt.Errorf("index: configs of blob %x: %w", blob, err)
	}
	return cs, nil
}

// ConfigReports returns device's config.reports, oldest first (at most
// MaxLimit, the newest).
func (x *Index) ConfigReports(device string) ([]ConfigReport, error) {
	scan := func(r rowScanner) (ConfigReport, error) {
		var c ConfigReport
		var sum []byte
		err := r.Scan(u64{&c.Height}, u64{&c.Version}, &sum, &c.Time)
		c.SHA256 = hex.EncodeToString(sum)
		return c, err
	}
	rs, err := list(x.read(), scan, `SELECT * FROM (SELECT height, version, sha256, time FROM config_reports
		WHERE device = ? ORDER BY height DESC, idx DESC LIMIT ?) ORDER BY height`, device, MaxLimit)
	if err != nil {
		return nil, fmt.Errorf("index: config reports of %q: %w", device, err)
	}
	return rs, nil
}

// GroupMembers returns the ids of the devices enrolled in group, in id
// order, revoked ones included.
func (x *Index) GroupMembers(group string) ([]string, error) {
	scan := func(r rowScanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	}
	ids, err := list(x.read(), scan, `SELECT device FROM device_groups WHERE grp = ? ORDER BY device`, group)
	if err != nil {
		return nil, fmt.Errorf("index: members of group %q: %w", group, err)
	}
	return ids, nil
}

// Drift is a device whose last reported configuration is not its current
// one.
type Drift struct {
	Device   string     `json:"device"`
	Current  ConfigInfo `json:"current"`
	Reported uint64     `json:"reported_version"` // 0: never reported
	SHA256   string     `json:"reported_sha256"`  // hex; "" if never reported
	Since    uint64     `json:"reported_height"`  // block of the report; 0 if never
}

// Drifting returns every active device that has a configuration and did
// not report applying it (version and hash), in id order.
func (x *Index) Drifting() ([]Drift, error) {
	latest := map[string]ConfigInfo{}
	cs, err := list(x.read(), scanConfig, `SELECT `+configCols+` FROM configs c
		WHERE version = (SELECT max(version) FROM configs WHERE target = c.target)`)
	if err != nil {
		return nil, fmt.Errorf("index: drift: %w", err)
	}
	for _, c := range cs {
		latest[c.Target] = c
	}
	out := []Drift{}
	after := ""
	for {
		ds, err := x.Devices(after, MaxLimit)
		if err != nil {
			return nil, err
		}
		for i := range ds {
			d := &ds[i]
			if d.Status != StatusActive {
				continue
			}
			cur, err := x.currentConfig(d, latest)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			reported := hex.EncodeToString(d.CfgSHA256)
			if d.CfgHeight > 0 && d.CfgVersion == cur.Version && reported == cur.SHA256 {
				continue
			}
			dr := Drift{Device: d.ID, Current: *cur, Reported: d.CfgVersion, Since: d.CfgHeight}
			if d.CfgHeight > 0 {
				dr.SHA256 = reported
			}
			out = append(out, dr)
		}
		if len(ds) < MaxLimit {
			return out, nil
		}
		after = ds[len(ds)-1].ID
	}
}
