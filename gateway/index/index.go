package index

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors returned by the index. They are wrapped with detail; test with errors.Is.
var (
	ErrNotFound = errors.New("index: not found")
	ErrHeight   = errors.New("index: block out of order")
	ErrAhead    = errors.New("index: index is ahead of the block log")
	// ErrFull reports a write that the file system refused for lack of
	// space (SQLITE_FULL).
	ErrFull = errors.New("index: disk full")
)

// full marks err with ErrFull if SQLite says the disk is full.
func full(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	return err
}

// Device statuses.
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
)

// schemaVersion is kept in PRAGMA user_version. Open upgrades a file of
// baseVersion or later with the steps of upgrades, and drops and recreates
// the tables of any other version. A schema change appends a step to
// upgrades (and so bumps schemaVersion).
var schemaVersion = baseVersion + len(upgrades)

// baseVersion is the version the statements of schema create.
const baseVersion = 4

// kindRecord is the kind of a device's data as an SQL literal; the records
// index covers only these txs.
const kindRecord = "'" + string(ledger.KindRecord) + "'"

var schema = []string{
	`CREATE TABLE blocks (
		height    INTEGER PRIMARY KEY,
		hash      BLOB NOT NULL,
		prev      BLOB NOT NULL,
		tx_root   BLOB NOT NULL,
		num_txs   INTEGER NOT NULL,
		time      INTEGER NOT NULL,
		view      INTEGER NOT NULL,
		proposer  TEXT NOT NULL,
		first_seq INTEGER NOT NULL -- txs.seq of the block's first tx
	)`,
	// seq, the global ordinal of a tx, is the rowid: inserts append.
	// id_prefix is the first 8 bytes of id, big-endian: an index on it is a
	// quarter the size of one on the id itself and stays cached longer.
	`CREATE TABLE txs (
		seq          INTEGER PRIMARY KEY,
		id_prefix    INTEGER NOT NULL,
		id           BLOB NOT NULL,
		height       INTEGER NOT NULL,
		idx          INTEGER NOT NULL,
		kind         TEXT NOT NULL,
		author       TEXT NOT NULL,
		device       TEXT NOT NULL,
		stream       TEXT NOT NULL,
		dev_seq      INTEGER NOT NULL,
		device_time  INTEGER NOT NULL,
		content_type TEXT NOT NULL,
		size         INTEGER NOT NULL
	)`,
	`CREATE INDEX txs_id_prefix ON txs (id_prefix)`,
	// A device's records in dev_seq order, which is commit order because
	// the state only accepts increasing sequence numbers.
	`CREATE INDEX txs_records ON txs (device, dev_seq) WHERE kind = ` + kindRecord,
	`CREATE TABLE devices (
		id              TEXT PRIMARY KEY,
		status          TEXT NOT NULL,
		alg             TEXT NOT NULL,
		public_key      BLOB NOT NULL,
		fingerprint     TEXT NOT NULL,
		enrolled_height INTEGER NOT NULL,
		revoked_height  INTEGER NOT NULL,
		revoke_reason   TEXT NOT NULL,
		last_seq        INTEGER NOT NULL,
		last_seen       INTEGER NOT NULL,
		records         INTEGER NOT NULL,
		model           TEXT NOT NULL,
		groups          TEXT NOT NULL, -- comma-separated, sorted
		enc_key         BLOB NOT NULL,
		enroll_tx       BLOB NOT NULL, -- ids of the txs that prove the device's keys
		keys_tx         BLOB NOT NULL, -- the enroll or the last rekey
		revoke_tx       BLOB NOT NULL,
		cfg_version     INTEGER NOT NULL, -- what the device last reported applying
		cfg_sha256      BLOB NOT NULL,
		cfg_height      INTEGER NOT NULL, -- block of that report; 0 if none
		fw_version      INTEGER NOT NULL, -- the firmware it last reported installing
		fw_height       INTEGER NOT NULL  -- block of that report; 0 if none
	) WITHOUT ROWID`,
	`CREATE INDEX devices_model ON devices (model)`, // the devices a release is for
	`CREATE TABLE device_groups (
		grp    TEXT NOT NULL,
		device TEXT NOT NULL,
		PRIMARY KEY (grp, device)
	) WITHOUT ROWID`,
	// Every config.set, by target (a device id or group:NAME) and version.
	`CREATE TABLE configs (
		target       TEXT NOT NULL,
		version      INTEGER NOT NULL,
		height       INTEGER NOT NULL,
		idx          INTEGER NOT NULL,
		tx_id        BLOB NOT NULL,
		author       TEXT NOT NULL,
		sha256       BLOB NOT NULL,
		size         INTEGER NOT NULL,
		content_type TEXT NOT NULL,
		blob         BLOB NOT NULL,
		uri          TEXT NOT NULL,
		time         INTEGER NOT NULL,
		PRIMARY KEY (target, version)
	) WITHOUT ROWID`,
	`CREATE INDEX configs_blob ON configs (blob)`,
	`CREATE TABLE vendors (
		id         TEXT PRIMARY KEY,
		public_key BLOB NOT NULL,
		models     TEXT NOT NULL, -- comma-separated, sorted
		height     INTEGER NOT NULL
	) WITHOUT ROWID`,
	`CREATE TABLE reviewers (
		id         TEXT PRIMARY KEY,
		public_key BLOB NOT NULL,
		height     INTEGER NOT NULL
	) WITHOUT ROWID`,
	// Every firmware tx but the devices' reports: kind, release, the
	// group it is for (approve, revoke) or of (policy), the author.
	`CREATE TABLE firmware (
		kind    TEXT NOT NULL,
		model   TEXT NOT NULL,
		version INTEGER NOT NULL,
		grp     TEXT NOT NULL,
		author  TEXT NOT NULL,
		good    INTEGER NOT NULL, -- votes: 1 good, 0 bad
		detail  TEXT NOT NULL,    -- reasons
		height  INTEGER NOT NULL,
		idx     INTEGER NOT NULL,
		tx_id   BLOB NOT NULL,
		time    INTEGER NOT NULL,
		PRIMARY KEY (height, idx)
	) WITHOUT ROWID`,
	`CREATE INDEX firmware_release ON firmware (model, version)`,
	`CREATE INDEX firmware_group ON firmware (grp, kind)`,
	`CREATE TABLE releases (
		model       TEXT NOT NULL,
		version     INTEGER NOT NULL,
		vendor      TEXT NOT NULL,
		sha256      BLOB NOT NULL,
		size        INTEGER NOT NULL,
		expires     INTEGER NOT NULL,
		min_version INTEGER NOT NULL,
		height      INTEGER NOT NULL,
		tx_id       BLOB NOT NULL,
		time        INTEGER NOT NULL,
		PRIMARY KEY (model, version)
	) WITHOUT ROWID`,
	`CREATE INDEX releases_image ON releases (sha256)`,
	`CREATE TABLE firmware_reports (
		device  TEXT NOT NULL,
		height  INTEGER NOT NULL,
		idx     INTEGER NOT NULL,
		model   TEXT NOT NULL,
		version INTEGER NOT NULL,
		ok      INTEGER NOT NULL,
		detail  TEXT NOT NULL,
		time    INTEGER NOT NULL,
		PRIMARY KEY (device, height, idx)
	) WITHOUT ROWID`,
	`CREATE INDEX firmware_reports_release ON firmware_reports (model, version)`,
	`CREATE TABLE config_reports (
		device  TEXT NOT NULL,
		height  INTEGER NOT NULL,
		idx     INTEGER NOT NULL,
		version INTEGER NOT NULL,
		sha256  BLOB NOT NULL,
		time    INTEGER NOT NULL,
		PRIMARY KEY (device, height, idx)
	) WITHOUT ROWID`,
}

// upgrades[i] brings a file from version baseVersion+i to the next. A new
// file goes through them too, so every step runs in every test.
var upgrades = [][]string{
	// 4 to 5: record queries (queries.go QueryRecords).
	{
		// tmax is the running maximum of block times up to the block. It
		// never decreases with the height, so the index on it finds the
		// first block at or after a time by binary search, although block
		// times (each its proposer's clock) may step back.
		`ALTER TABLE blocks ADD COLUMN tmax INTEGER NOT NULL DEFAULT 0`,
		`UPDATE blocks SET tmax = m.t FROM
			(SELECT height AS h, max(time) OVER (ORDER BY height ROWS UNBOUNDED PRECEDING) AS t FROM blocks) AS m
			WHERE blocks.height = m.h`,
		`CREATE INDEX blocks_tmax ON blocks (tmax)`,
		// The blocks whose time stepped back below an earlier block's: the
		// few a time range must look at besides what tmax finds.
		`CREATE INDEX blocks_backstep ON blocks (time) WHERE time < tmax`,
		// A device's records, and a device's records of one stream, in
		// commit order (seq).
		`CREATE INDEX txs_device_records ON txs (device, seq) WHERE kind = ` + kindRecord,
		`CREATE INDEX txs_stream_records ON txs (device, stream, seq) WHERE kind = ` + kindRecord,
	},
	// 5 to 6: the tx-id lookup by generations (Tx). The index on id_prefix
	// alone took one random insert per tx into a B-tree as large as the
	// whole chain: the pages a block dirtied, and the cache misses, grew
	// with it. Keyed by (generation, id_prefix) a tx goes into the part of
	// the B-tree of its generation, the last generationTxs txs: the pages
	// of older generations are never written again.
	{
		`DROP INDEX txs_id_prefix`,
		`CREATE TABLE id_generations (txs INTEGER NOT NULL)`,
		`INSERT INTO id_generations (txs) VALUES (` + generationParam + `)`,
		`CREATE INDEX txs_id_gen ON txs ((seq - 1) / ` + generationParam + `, id_prefix)`,
	},
	// 6 to 7: one index on a device's records instead of two. A device's
	// sequence numbers increase with seq (the state accepts only one above
	// the device's last), so the index on (device, seq) serves Records
	// too: a block no longer dirties a page of txs_records per device.
	{
		`DROP INDEX txs_records`,
	},
	// 7 to 8: retention (prune.go). pruned_height is the height up to
	// which the rows of data.record txs were deleted.
	{
		`CREATE TABLE IF NOT EXISTS retention (pruned_height INTEGER NOT NULL)`,
		`INSERT INTO retention (pruned_height) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM retention)`,
	},
	// 8 to 9: the base of a gateway that joined from a snapshot (SetBase):
	// its block log, and so its index, starts after this height.
	{
		`CREATE TABLE IF NOT EXISTS log_base (height INTEGER NOT NULL)`,
		`INSERT INTO log_base (height) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM log_base)`,
	},
	// 9 to 10: zero-touch enrollment (fleet.go): what a device.claim
	// enrolls, from its batch or its enrollment token.
	{
		`CREATE TABLE IF NOT EXISTS fleet_devices (device TEXT PRIMARY KEY, batch TEXT NOT NULL, public_key BLOB NOT NULL, model TEXT NOT NULL, groups TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS enroll_tokens (hash BLOB PRIMARY KEY, model TEXT NOT NULL, groups TEXT NOT NULL)`,
	},
	// 10 to 11: the open generation's ids in memory (openIDs). Each tx
	// inserted a key at random into its generation's part of txs_id_gen:
	// about one index page dirtied, so ~4 KB of WAL written, a tx, the
	// largest part of the index's cost. The ids of the open generation
	// (the newest, not yet full) are now kept in memory, and a full
	// generation's are written to tx_ids once, in key order (seal).
	{
		`CREATE TABLE tx_ids (
			gen       INTEGER NOT NULL, -- (seq - 1) / the generation size
			id_prefix INTEGER NOT NULL,
			seq       INTEGER NOT NULL,
			PRIMARY KEY (gen, id_prefix, seq)
		) WITHOUT ROWID`,
		`INSERT INTO tx_ids (gen, id_prefix, seq)
			SELECT (seq - 1) / g.txs, id_prefix, seq FROM txs, id_generations AS g
			WHERE seq <= (SELECT coalesce((SELECT first_seq + num_txs - 1 FROM blocks ORDER BY height DESC LIMIT 1), 0)) / g.txs * g.txs
			ORDER BY 1, 2, 3`,
		`DROP INDEX txs_id_gen`,
	},
}

// generationTxs is the number of txs in a generation of the tx-id index
// (upgrades 5 to 6 and 10 to 11). A lookup by id probes each full
// generation, newest first: the more txs in one, the fewer probes, and
// the more memory the open generation's ids take (openIDs, a few MiB at
// 2^17) and the more rows the batch that fills a generation writes to
// tx_ids. A lookup at 10M txs makes at most 77 probes.
// BenchmarkApplyGrowth -index.generation compares sizes.
const generationTxs = 1 << 17

// generationParam stands for the generation size in the statements of
// upgrades; migrate puts the size in. (An index on an expression is used
// only by a query with the same expression, so the size is a literal, not
// a bound parameter.)
const generationParam = "{generation}"

// Index is the SQLite index of the block log. It is safe for concurrent
// use; writes are serialized on one connection.
type Index struct {
	db *sql.DB // the pool readers use
	w  *writer // the one connection that writes

	open openIDs // the ids of the txs after the last full generation

	mu     sync.Mutex // serializes writes and Close
	closed bool

	bar barrier // reads wait here for the blocks announced by Expect
}

// readers is the size of the read pool.
const readers = 4

// readerCache is each reader connection's page cache, in KiB (SQLite's
// default is 2 MiB), and readerIdle how long a reader connection may
// stay idle in the pool before it is closed (a var: a test shortens it).
//
// modernc's SQLite is built with SQLITE_ENABLE_MEMORY_MANAGEMENT, so the
// page caches of all the connections form one group, limited by the sum
// of their sizes, and a connection whose cache is full takes the group's
// least recently used page, whoever's it is. A reader that reads more
// than its cache holds thus takes the writer's pages and keeps them until
// its next query (which empties its cache once the writer has committed)
// or until it closes. The writer, below its own size, then allocates new
// pages, the group goes over its limit, and SQLite frees every page the
// writer releases: each insert read its B-tree paths again, 9-30 KB a
// record instead of ~1.4 KB and 15-30 % more CPU, for hundreds of batches
// after a burst of lookups, and in bursts while lookups went on
// (TestReadersKeepWriterCache). 8 MiB readers hold what an API query
// reads without taking from the writer, and a reader that took more is
// closed once idle, which gives the pages back.
const readerCache = 8 << 10

var readerIdle = 2 * time.Second

// writerPragmas tune the writing connection. A 64 MiB cache keeps the
// pages inserts go to in memory (up to schema 10 the tx-id index was keyed
// at random within a generation, up to one page dirtied a tx), and checkpointing every walCheckpointPages
// pages (about 10 MiB of WAL) instead of every 1000 copies a page that
// many blocks touch into the database once instead of once per block.
// A checkpoint does not shrink the WAL file, which would stay as large as
// the most it ever held: journal_size_limit cuts it back to walSizeLimit
// once a checkpoint has copied all of it (TestWALBounded).
//
// With BenchmarkApplyGrowth's blocks (1000 records of 100 devices, 100k
// records indexed) checkpointing every 1000 pages cost about 12% more CPU
// per record than every 10000, and every 2500 about 5% more; 10000 let
// the WAL grow to 40 MiB beside a block log of 1 MiB.
//
// Since schema 7 the 64 MiB cache does not miss up to 10M records (the
// bytes read per record follow the pages the checkpoints copy): a 256 MiB
// cache (to 10M) or a 1 GiB mmap_size (to 3M) read and wrote the same. A mapping is not used: a
// read error on a mapped page faults, and a fault caught with
// debug.SetPanicOnFault leaves the connection's mutex held.
var writerPragmas = []string{
	`PRAGMA cache_size = -65536`,
	fmt.Sprintf(`PRAGMA wal_autocheckpoint = %d`, walCheckpointPages),
	fmt.Sprintf(`PRAGMA journal_size_limit = %d`, walSizeLimit),
}

const (
	walCheckpointPages = 2500
	walSizeLimit       = 10 << 20
)

// Open opens the index at path, creating the file and the schema if they
// are missing. A file of an older schema (version 4 or later) is upgraded
// in place; one of any other version has its tables dropped and recreated
// empty, and the caller rebuilds from the log.
func Open(path string) (*Index, error) {
	return OpenWith(path, Options{})
}

// Options are what OpenWith takes besides the path.
type Options struct {
	// Upgrading, if not nil, is called before the file's schema is
	// upgraded in place, with the file's version and the one it is
	// brought to. An upgrade may rewrite an index over every tx (to
	// version 11: ~1.2 s a million txs on the 2-core machine of
	// docs/benchmarks.md), and OpenWith returns once it is done.
	Upgrading func(from, to int)
}

// OpenWith is Open with o.
func OpenWith(path string, o Options) (*Index, error) {
	return openSized(path, generationTxs, o)
}

// openSized is OpenWith with the size of the tx-id index's generations, if
// it makes the file; a file keeps the size it was made with.
func openSized(path string, generation int64, o Options) (*Index, error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("index: open %q: path must be a file name without '?'", path)
	}
	// Every connection gets these settings. _txlock=immediate takes the
	// write lock at BEGIN, so a writer never fails upgrading a read lock.
	dsn := path + "?_busy_timeout=10000&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate" +
		fmt.Sprintf("&_pragma=cache_size(%d)", -readerCache) // the writer sets its own (writerPragmas)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1 + readers)
	db.SetMaxIdleConns(1 + readers)
	db.SetConnMaxIdleTime(readerIdle) // the writer's connection is never idle in the pool
	x := &Index{db: db}
	x.bar.applied.L = &x.bar.mu
	x.bar.waiting = make(chan struct{}, 1)
	if err := x.init(generation, o); err != nil {
		x.Close()
		return nil, fmt.Errorf("index: open %s: %w", path, err)
	}
	return x, nil
}

// init takes the writing connection, tunes it, brings the schema up and
// prepares the writer's statements.
func (x *Index) init(generation int64, o Options) error {
	ctx := context.Background()
	c, err := x.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	x.w = &writer{c: c}
	for _, p := range writerPragmas {
		if _, err := c.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("pragma: %w", err)
		}
	}
	if err := migrate(ctx, c, generation, o.Upgrading); err != nil {
		return err
	}
	if err := c.QueryRowContext(ctx, `SELECT txs FROM id_generations`).Scan(&x.w.generation); err != nil {
		return fmt.Errorf("generation size: %w", err)
	}
	if x.w.generation <= 0 {
		return fmt.Errorf("generation size %d", x.w.generation)
	}
	if err := x.w.prepare(); err != nil {
		return err
	}
	return x.loadOpen()
}

// loadOpen fills x.open from the txs after the last full generation.
func (x *Index) loadOpen() error {
	if err := x.w.loadTop(); err != nil {
		return err
	}
	after := x.w.sealed(x.w.top.lastSeq)
	txs, err := x.w.prefixSeqs(`seq > ? ORDER BY seq`, int64(after))
	if err != nil {
		return fmt.Errorf("open generation: %w", err)
	}
	x.open.reset(after, txs)
	return nil
}

// prefixSeqs lists the id prefix and seq of the rows of txs that match
// where, an SQL condition with the parameters args.
func (w *writer) prefixSeqs(where string, args ...any) ([]prefixSeq, error) {
	rows, err := w.c.QueryContext(context.Background(), `SELECT id_prefix, seq FROM txs WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []prefixSeq
	for rows.Next() {
		var t prefixSeq
		if err := rows.Scan(&t.p, &t.seq); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// migrate brings the schema to schemaVersion: it upgrades a file of
// baseVersion or later in place (keeping its rows), and recreates the
// tables of any other version empty. generation is the size of the tx-id
// index's generations if the upgrade to version 6 runs. upgrading, if
// not nil, is called before an upgrade in place (Options.Upgrading).
func migrate(ctx context.Context, w *sql.Conn, generation int64, upgrading func(from, to int)) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if version == schemaVersion {
		return nil
	}
	if version < baseVersion || version > schemaVersion {
		if err := recreate(tx); err != nil {
			return err
		}
		version = baseVersion
	} else if upgrading != nil {
		upgrading(version, schemaVersion)
	}
	for v := version; v < schemaVersion; v++ {
		for _, stmt := range upgrades[v-baseVersion] {
			stmt = strings.ReplaceAll(stmt, generationParam, strconv.FormatInt(generation, 10))
			if _, err := tx.Exec(stmt); err != nil {
				return fmt.Errorf("upgrade schema from version %d: %w", v, err)
			}
		}
	}
	if _, err := tx.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, schemaVersion)); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit schema: %w", err)
	}
	return nil
}

// recreate drops every table and creates those of baseVersion.
func recreate(tx *sql.Tx) error {
	rows, err := tx.Query(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	var old []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("list tables: %w", err)
		}
		old = append(old, name)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	for _, name := range old {
		if _, err := tx.Exec(`DROP TABLE "` + strings.ReplaceAll(name, `"`, `""`) + `"`); err != nil {
			return fmt.Errorf("drop table %s: %w", name, err)
		}
	}
	for _, stmt := range schema {
		if _, err := tx.Exec(stmt); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	return nil
}

// Close closes the database. It is idempotent.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return nil
	}
	x.closed = true
	x.Abandon()
	var errW error
	if x.w != nil {
		errW = x.w.close()
	}
	if err := errors.Join(errW, x.db.Close()); err != nil {
		return fmt.Errorf("index: close: %w", err)
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRow(query string, args ...any) *sql.Row
}

// Height is the height of the highest indexed block, 0 if none; the base
// (SetBase) if it has no block above it.
func (x *Index) Height() (uint64, error) {
	h, err := height(x.read())
	if err != nil {
		return 0, fmt.Errorf("index: height: %w", err)
	}
	return h, nil
}

const sqlHeight = `SELECT max(coalesce((SELECT max(height) FROM blocks), 0), coalesce((SELECT height FROM log_base), 0))`

// Base is the height the index starts after: 0, or the base of the block
// log of a gateway that joined from a snapshot. The index has no rows for
// the blocks up to it.
func (x *Index) Base() (uint64, error) {
	var h uint64
	if err := x.read().QueryRow(`SELECT coalesce((SELECT height FROM log_base), 0)`).Scan(u64{&h}); err != nil {
		return 0, fmt.Errorf("index: base: %w", err)
	}
	return h, nil
}

// SetBase makes an index that holds no block start after height: the
// next block applied is height+1. It is how the index of a gateway that
// joined from a snapshot follows its block log (ledger.Log.SetBase).
func (x *Index) SetBase(height uint64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return errors.New("index: closed")
	}
	x.w.top = nil
	tx, err := x.w.c.BeginTx(context.Background(), nil)
	if err != nil {
		return fmt.Errorf("index: set base: %w", err)
	}
	defer tx.Rollback()
	var n uint64
	if err := tx.QueryRow(`SELECT count(*) FROM blocks`).Scan(u64{&n}); err != nil {
		return fmt.Errorf("index: set base: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("index: set base %d: the index holds %d blocks", height, n)
	}
	if _, err := tx.Exec(`UPDATE log_base SET height = ?`, int64(height)); err != nil {
		return fmt.Errorf("index: set base: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: set base: %w", err)
	}
	return nil
}

func height(q querier) (uint64, error) {
	var h uint64
	err := q.QueryRow(sqlHeight).Scan(u64{&h})
	return h, err
}

// ApplyBlock indexes the committed block b, whose height must be
// Height()+1 (else ErrHeight), in one SQL transaction. It decodes the txs
// but checks no signature, root or certificate. On error nothing changes.
func (x *Index) ApplyBlock(b *ledger.Block) error {
	h := &b.Header
	if h.NumTxs != uint64(len(b.Txs)) {
		return fmt.Errorf("index: block %d: %w: header says %d txs, block has %d", h.Height, ledger.ErrBadBlock, h.NumTxs, len(b.Txs))
	}
	txs, err := decodeBlockTxs(b)
	if err != nil {
		return fmt.Errorf("index: block %d: %w", h.Height, err)
	}
	return x.ApplyDecoded(b, txs)
}

// ApplyDecoded is ApplyBlock for a caller that already decoded the
// block's txs: txs[i] must be the decoding of b.Txs[i].
func (x *Index) ApplyDecoded(b *ledger.Block, txs []*ledger.Tx) error {
	return x.ApplyBatch([]Decoded{{Block: b, Txs: txs}})
}

// Decoded is a block with its txs decoded: Txs[i] is the decoding of
// Block.Txs[i].
type Decoded struct {
	Block *ledger.Block
	Txs   []*ledger.Tx
}

// ApplyBatch indexes consecutive committed blocks, the first at height
// Height()+1 (else ErrHeight), in one SQL transaction: the pages that
// several blocks change (the tx-id index's, a device's row) are written
// to the WAL once, not once a block. On error nothing changes.
func (x *Index) ApplyBatch(bs []Decoded) error {
	if len(bs) == 0 {
		return nil
	}
	for _, d := range bs {
		h := &d.Block.Header
		if len(d.Txs) != len(d.Block.Txs) || h.NumTxs != uint64(len(d.Txs)) {
			return fmt.Errorf("index: block %d: %w: %d decoded txs for %d txs", h.Height, ledger.ErrBadBlock, len(d.Txs), len(d.Block.Txs))
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.apply(bs); err != nil {
		if errors.Is(err, ErrHeight) {
			return err
		}
		lo, hi := bs[0].Block.Header.Height, bs[len(bs)-1].Block.Header.Height
		if lo == hi {
			return fmt.Errorf("index: apply block %d: %w", lo, full(err))
		}
		return fmt.Errorf("index: apply blocks %d-%d: %w", lo, hi, full(err))
	}
	x.bar.advance(bs[len(bs)-1].Block.Header.Height)
	return nil
}

// decodeBlockTxs decodes b's txs: a pruned block's with its stubs.
func decodeBlockTxs(b *ledger.Block) ([]*ledger.Tx, error) {
	if b.IsPruned() {
		return b.DecodeTxs(0)
	}
	return decodeTxs(b.Txs)
}

// decodeTxs decodes envelopes on all CPUs: decoding costs about half as
// much as inserting.
func decodeTxs(envs [][]byte) ([]*ledger.Tx, error) {
	txs := make([]*ledger.Tx, len(envs))
	errs := make([]error, len(envs))
	const minChunk = 64
	chunk := max(minChunk, (len(envs)+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for lo := 0; lo < len(envs); lo += chunk {
		hi := min(lo+chunk, len(envs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				txs[i], errs[i] = ledger.DecodeTx(envs[i], 0)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("tx %d: %w", i, err)
		}
	}
	return txs, nil
}

// apply writes the blocks in one SQL transaction.
func (x *Index) apply(bs []Decoded) (err error) {
	w := x.w
	if err := w.begin(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.rollback()
		}
	}()
	if err := w.loadTop(); err != nil {
		return err
	}
	top := *w.top
	devs := newDeviceSet(w)
	for _, d := range bs {
		if top, err = w.applyBlock(top, devs, &d.Block.Header, d.Txs); err != nil {
			if len(bs) > 1 && !errors.Is(err, ErrHeight) {
				err = fmt.Errorf("block %d: %w", d.Block.Header.Height, err)
			}
			return err
		}
	}
	if err := devs.write(); err != nil {
		return err
	}
	before, after := w.sealed(w.top.lastSeq), w.sealed(top.lastSeq)
	added := openTxs(w.top.lastSeq, before, bs)
	if after > before {
		if err := w.seal(x.open.full(after, added)); err != nil {
			return fmt.Errorf("seal tx-id generations: %w", err)
		}
	}
	if err := w.commit(); err != nil {
		return err
	}
	x.open.commit(after, added)
	w.top = &top
	return nil
}

// sealRows is how many rows of tx_ids one INSERT of seal writes.
const sealRows = 256

// seal writes the ids of generations that became full to tx_ids, in key
// order: the B-tree's pages are filled one after the other, each written
// once. Sorted in Go and inserted sealRows a statement, a generation costs
// half of what SQLite's sorter took (INSERT … SELECT … ORDER BY).
func (w *writer) seal(ids []prefixSeq) error {
	args := make([]any, 0, 3*sealRows)
	for len(ids) > 0 {
		n := min(len(ids), sealRows)
		args = args[:0]
		for _, t := range ids[:n] {
			args = append(args, (t.seq-1)/w.generation, t.p, t.seq)
		}
		var err error
		if n == sealRows {
			_, err = w.sealIDs.Exec(args...)
		} else {
			_, err = w.Exec(insertIDs(n), args...)
		}
		if err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// insertIDs is an INSERT of rows rows into tx_ids.
func insertIDs(rows int) string {
	return `INSERT INTO tx_ids (gen, id_prefix, seq) VALUES ` + strings.Repeat(`(?, ?, ?), `, rows-1) + `(?, ?, ?)`
}

// openTxs lists the txs of bs, the first of which has seq last+1, that
// come after seq after and have a row (not pruned).
func openTxs(last, after uint64, bs []Decoded) []prefixSeq {
	var txs []prefixSeq
	seq := last
	for _, d := range bs {
		for _, t := range d.Txs {
			seq++
			if seq > after && !t.Pruned {
				txs = append(txs, prefixSeq{idPrefix(t.ID), int64(seq)})
			}
		}
	}
	return txs
}

// applyBlock writes the block with header h and decoded txs on top of
// the block top, inside the writer's transaction, and returns the new top.
// Its effects on device rows are gathered in devs, which the caller
// writes once for the whole batch.
func (w *writer) applyBlock(top topBlock, devs *deviceSet, h *ledger.Header, txs []*ledger.Tx) (topBlock, error) {
	if h.Height != top.height+1 {
		return top, fmt.Errorf("%w: block %d, index at height %d", ErrHeight, h.Height, top.height)
	}
	first := top.lastSeq + 1
	tmax := max(h.Time, top.tmax)

	hash := h.Hash()
	if _, err := w.insBlock.Exec(int64(h.Height), hash[:], nonNil(h.Prev), nonNil(h.TxRoot), int64(h.NumTxs), h.Time, int64(h.View), h.Proposer, int64(first), tmax); err != nil {
		return top, fmt.Errorf("insert block: %w", err)
	}

	for i, t := range txs {
		if t.Pruned {
			// A record a retention policy pruned (a block from a pruned
			// log or a peer's): no row, as PruneRecords leaves none;
			// the device row still counts it.
			if err := devs.apply(h, t); err != nil {
				return top, fmt.Errorf("tx %d: %w", i, err)
			}
			continue
		}
		var stream, contentType string
		var seq uint64
		var deviceTime int64
		if r := t.Body.Record; r != nil {
			stream, seq, deviceTime, contentType = r.Stream, r.Seq, r.Time, r.ContentType
		} else if r := t.Body.Rekey; r != nil {
			seq = r.Seq
		}
		if _, err := w.insTx.Exec(int64(first)+int64(i), idPrefix(t.ID), t.ID[:], int64(h.Height), i,
			string(t.Body.Kind), t.Author, t.Body.Subject(), stream, int64(seq), deviceTime, contentType, len(t.Envelope),
		); err != nil {
			return top, fmt.Errorf("insert tx %d: %w", i, err)
		}
		if err := applyFleet(w, t); err != nil {
			return top, fmt.Errorf("tx %d: %w", i, err)
		}
		if err := devs.apply(h, t); err != nil {
			return top, fmt.Errorf("tx %d: %w", i, err)
		}
		if err := applyConfig(w, h, i, t); err != nil {
			return top, fmt.Errorf("tx %d: %w", i, err)
		}
		if err := applyFirmware(w, h, i, t); err != nil {
			return top, fmt.Errorf("tx %d: %w", i, err)
		}
	}
	return topBlock{height: h.Height, lastSeq: first + uint64(len(txs)) - 1, tmax: tmax}, nil
}

// writer is the one connection that writes, with the statements every
// block runs prepared once. Its transactions are begun and ended with SQL
// statements, not database/sql's Tx: a statement prepared on a connection
// cannot be used in a Tx of that connection without being prepared again,
// and preparing them per block cost more than running them for a block of
// a few txs (BenchmarkApplySmallBlocks).
type writer struct {
	c *sql.Conn

	beginStmt, commitStmt *sql.Stmt
	height, lastSeq, tmax *sql.Stmt
	insBlock, insTx       *sql.Stmt
	getDevice, putDevice  *sql.Stmt
	addRecords, sealIDs   *sql.Stmt
	stmts                 []*sql.Stmt // all of the above, to close

	generation int64 // txs per generation of the tx-id index

	// top is what the next block continues, read from the tables once and
	// then kept by apply: three queries fewer per block. nil until read,
	// and after a rollback or Reset.
	top *topBlock
}

// topBlock is the highest indexed block: its height, the seq of its last
// tx and its running maximum time (0 if there is no block).
type topBlock struct {
	height, lastSeq uint64
	tmax            int64
}

// sealed is the last seq of the last full tx-id generation when last is
// the last tx's: the txs up to it are in tx_ids, those after in openIDs.
func (w *writer) sealed(last uint64) uint64 {
	g := uint64(w.generation)
	return last / g * g
}

// loadTop reads w.top from the tables if it is not known.
func (w *writer) loadTop() error {
	if w.top != nil {
		return nil
	}
	var t topBlock
	if err := w.height.QueryRow().Scan(u64{&t.height}); err != nil {
		return fmt.Errorf("height: %w", err)
	}
	if err := w.lastSeq.QueryRow().Scan(u64{&t.lastSeq}); err != nil {
		return fmt.Errorf("last tx: %w", err)
	}
	if t.height > 0 {
		if err := w.tmax.QueryRow(int64(t.height)).Scan(&t.tmax); err != nil {
			return fmt.Errorf("time of block %d: %w", t.height, err)
		}
	}
	w.top = &t
	return nil
}

func (w *writer) prepare() error {
	for _, p := range []struct {
		s **sql.Stmt
		q string
	}{
		{&w.beginStmt, `BEGIN IMMEDIATE`},
		{&w.commitStmt, `COMMIT`},
		{&w.height, sqlHeight},
		// From the top block, not max(seq) of txs: a pruned record (a
		// block from a pruned log or a peer's) leaves a seq with no row.
		{&w.lastSeq, `SELECT coalesce((SELECT first_seq + num_txs - 1 FROM blocks ORDER BY height DESC LIMIT 1), 0)`},
		{&w.tmax, `SELECT coalesce((SELECT tmax FROM blocks WHERE height = ?), 0)`}, // none at a base
		{&w.insBlock, `INSERT INTO blocks (height, hash, prev, tx_root, num_txs, time, view, proposer, first_seq, tmax)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&w.insTx, `INSERT INTO txs (seq, id_prefix, id, height, idx, kind, author, device, stream, dev_seq, device_time, content_type, size)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&w.getDevice, `SELECT ` + deviceCols + ` FROM devices WHERE id = ?`},
		{&w.putDevice, `REPLACE INTO devices (` + deviceCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		// Seqs are at most MaxInt64 (ledger), so SQL's max is exact.
		{&w.addRecords, `UPDATE devices SET last_seq = max(last_seq, ?), last_seen = ?, records = records + ? WHERE id = ?`},
		{&w.sealIDs, insertIDs(sealRows)},
	} {
		s, err := w.c.PrepareContext(context.Background(), p.q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.q, err)
		}
		*p.s = s
		w.stmts = append(w.stmts, s)
	}
	return nil
}

func (w *writer) close() error {
	var errs []error
	for _, s := range w.stmts {
		errs = append(errs, s.Close())
	}
	return errors.Join(append(errs, w.c.Close())...)
}

// Exec runs a statement that is not prepared (for the rare txs).
func (w *writer) Exec(query string, args ...any) (sql.Result, error) {
	return w.c.ExecContext(context.Background(), query, args...)
}

// begin takes the write lock at once, as _txlock=immediate does for Tx.
func (w *writer) begin() error {
	if _, err := w.beginStmt.Exec(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	return nil
}

func (w *writer) commit() error {
	if _, err := w.commitStmt.Exec(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// rollback ends a failed transaction. Its error is ignored: SQLite may
// have rolled the transaction back already (on SQLITE_FULL, for one), and
// if the connection is broken the next begin reports it. What was kept of
// the top block is read again.
func (w *writer) rollback() {
	w.top = nil
	w.Exec(`ROLLBACK`)
}

// applyConfig indexes a config.set or config.report.
func applyConfig(tx *writer, h *ledger.Header, i int, t *ledger.Tx) error {
	switch b := &t.Body; {
	case b.ConfigSet != nil:
		c := b.ConfigSet
		if _, err := tx.Exec(`INSERT INTO configs (target, version, height, idx, tx_id, author, sha256, size, content_type, blob, uri, time)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.Target, int64(c.Version), int64(h.Height), i, t.ID[:], t.Author, c.SHA256, int64(c.Size), c.ContentType, c.Blob, c.URI, h.Time,
		); err != nil {
			return fmt.Errorf("insert config: %w", err)
		}
	case b.ConfigReport != nil:
		r := b.ConfigReport
		if _, err := tx.Exec(`INSERT INTO config_reports (device, height, idx, version, sha256, time) VALUES (?, ?, ?, ?, ?, ?)`,
			r.DeviceID, int64(h.Height), i, int64(r.Version), r.SHA256, h.Time,
		); err != nil {
			return fmt.Errorf("insert config report: %w", err)
		}
	}
	return nil
}

// idPrefix is the first 8 bytes of a tx id as a big-endian int64.
func idPrefix(id [32]byte) int64 { return int64(binary.BigEndian.Uint64(id[:8])) }

// nonNilStrings keeps an empty list from encoding as JSON null.
func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// nonNil keeps a missing byte string from becoming SQL NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// deviceSet gathers a batch's effects on devices so each device row is
// read and written once per batch (one SQL transaction, of one or more
// blocks), not once per tx or per block. A device that only sends records
// in the batch is not read at all: its records are counted and written
// with one UPDATE. At full load a batch holds several blocks, each with
// records of most devices: one UPDATE a device a block was about 9 % of
// the index's CPU.
type deviceSet struct {
	w       *writer
	rows    map[string]*Device // nil: not in the table
	touched []string           // in the order first touched
	recs    map[string]*recordDelta
	recIDs  []string // the keys of recs in the order first seen
}

// recordDelta is what a batch's records change in a device row.
type recordDelta struct {
	lastSeq  uint64
	n        uint64
	lastSeen int64 // the time of the last block with one of them
}

func newDeviceSet(w *writer) *deviceSet {
	return &deviceSet{w: w, rows: map[string]*Device{}, recs: map[string]*recordDelta{}}
}

// load returns the device's row as of the effects gathered so far, nil if
// there is none.
func (s *deviceSet) load(id string) (*Device, error) {
	if d, ok := s.rows[id]; ok {
		return d, nil
	}
	d, err := scanDevice(s.w.getDevice.QueryRow(id))
	if errors.Is(err, sql.ErrNoRows) {
		d, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", id, err)
	}
	if r := s.recs[id]; r != nil {
		if d != nil {
			d.LastSeq = max(d.LastSeq, r.lastSeq)
			d.LastSeen = r.lastSeen
			d.Records += r.n
		}
		delete(s.recs, id)
	}
	s.rows[id] = d
	s.touched = append(s.touched, id)
	return d, nil
}

// apply gathers tx's effect on its device. A tx about a device that is not
// enrolled changes no device row (the state never commits one).
func (s *deviceSet) apply(h *ledger.Header, tx *ledger.Tx) error {
	id := tx.Body.Subject()
	if rec := tx.Body.Record; rec != nil {
		if _, ok := s.rows[id]; !ok {
			r := s.recs[id]
			if r == nil {
				r = &recordDelta{}
				s.recs[id] = r
				s.recIDs = append(s.recIDs, id)
			}
			r.lastSeq = max(r.lastSeq, rec.Seq)
			r.n++
			r.lastSeen = h.Time
			return nil
		}
	}
	d, err := s.load(id)
	if err != nil {
		return err
	}
	body := &tx.Body
	switch {
	case body.Enroll != nil:
		e := body.Enroll
		d = &Device{ID: id, Status: StatusActive, EnrolledHeight: h.Height, Model: e.Model, Groups: nonNilStrings(e.Groups),
			EncKey: nonNil(e.EncKey), EnrollTx: tx.ID[:], KeysTx: tx.ID[:], RevokeTx: []byte{}, CfgSHA256: []byte{}}
		if err := setKey(d, e.PublicKey); err != nil {
			return err
		}
		s.rows[id] = d
		for _, g := range e.Groups {
			if _, err := s.w.Exec(`INSERT OR IGNORE INTO device_groups (grp, device) VALUES (?, ?)`, g, id); err != nil {
				return fmt.Errorf("device %s group %s: %w", id, g, err)
			}
		}
	case body.DeviceClaim != nil:
		key, model, groups, err := s.w.claimed(body.DeviceClaim)
		if err != nil || key == nil {
			return err
		}
		d = &Device{ID: id, Status: StatusActive, EnrolledHeight: h.Height, Model: model, Groups: nonNilStrings(groups),
			EncKey: []byte{}, EnrollTx: tx.ID[:], KeysTx: tx.ID[:], RevokeTx: []byte{}, CfgSHA256: []byte{}}
		if err := setKey(d, key); err != nil {
			return err
		}
		s.rows[id] = d
		for _, g := range groups {
			if _, err := s.w.Exec(`INSERT OR IGNORE INTO device_groups (grp, device) VALUES (?, ?)`, g, id); err != nil {
				return fmt.Errorf("device %s group %s: %w", id, g, err)
			}
		}
	case d == nil:
	case body.Revoke != nil:
		d.Status = StatusRevoked
		d.RevokedHeight = h.Height
		d.RevokeReason = body.Revoke.Reason
		d.RevokeTx = tx.ID[:]
	case body.Rekey != nil:
		if err := setKey(d, body.Rekey.PublicKey); err != nil {
			return err
		}
		d.LastSeq = body.Rekey.Seq
		d.EncKey = nonNil(body.Rekey.EncKey)
		d.KeysTx = tx.ID[:]
	case body.ConfigReport != nil:
		r := body.ConfigReport
		d.LastSeq = max(d.LastSeq, r.Seq)
		d.CfgVersion, d.CfgSHA256, d.CfgHeight = r.Version, r.SHA256, h.Height
	case body.FirmwareReport != nil:
		r := body.FirmwareReport
		d.LastSeq = max(d.LastSeq, r.Seq)
		if r.OK {
			d.FwVersion, d.FwHeight = r.Version, h.Height
		}
	case body.Record != nil:
		d.LastSeq = max(d.LastSeq, body.Record.Seq)
		d.LastSeen = h.Time
		d.Records++
	}
	return nil
}

func setKey(d *Device, der []byte) error {
	pk, err := ledger.ParsePublicKey(der)
	if err != nil {
		return fmt.Errorf("device %s key: %w", d.ID, err)
	}
	fp := pk.Fingerprint()
	d.Alg = string(pk.Alg)
	d.PublicKey = der
	d.Fingerprint = hex.EncodeToString(fp[:])
	return nil
}

// write stores every device row the batch changed.
func (s *deviceSet) write() error {
	for _, id := range s.touched {
		d := s.rows[id]
		if d == nil {
			continue
		}
		if _, err := s.w.putDevice.Exec(d.ID, d.Status, d.Alg, d.PublicKey, d.Fingerprint, int64(d.EnrolledHeight),
			int64(d.RevokedHeight), d.RevokeReason, int64(d.LastSeq), d.LastSeen, int64(d.Records),
			d.Model, strings.Join(d.Groups, ","), nonNil(d.EncKey), nonNil(d.EnrollTx), nonNil(d.KeysTx), nonNil(d.RevokeTx),
			int64(d.CfgVersion), nonNil(d.CfgSHA256), int64(d.CfgHeight), int64(d.FwVersion), int64(d.FwHeight),
		); err != nil {
			return fmt.Errorf("write device %s: %w", id, err)
		}
	}
	for _, id := range s.recIDs {
		r := s.recs[id]
		if r == nil { // loaded later in the block: written above
			continue
		}
		if _, err := s.w.addRecords.Exec(int64(r.lastSeq), r.lastSeen, int64(r.n), id); err != nil {
			return fmt.Errorf("write device %s: %w", id, err)
		}
	}
	return nil
}

// Reset deletes every row, leaving an empty index at height 0 for a rebuild.
func (x *Index) Reset() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.w.top = nil
	tx, err := x.w.c.BeginTx(context.Background(), nil)
	if err != nil {
		return fmt.Errorf("index: reset: %w", err)
	}
	defer tx.Rollback()
	for _, table := range []string{"txs", "tx_ids", "blocks", "devices", "device_groups", "configs", "config_reports",
		"vendors", "reviewers", "firmware", "releases", "firmware_reports"} {
		if _, err := tx.Exec(`DELETE FROM ` + table); err != nil {
			return fmt.Errorf("index: reset %s: %w", table, err)
		}
	}
	if _, err := tx.Exec(`UPDATE retention SET pruned_height = 0`); err != nil {
		return fmt.Errorf("index: reset retention: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("index: reset commit: %w", err)
	}
	x.open.reset(0, nil)
	return nil
}

// Rebuild applies at most rebuildBlocks blocks and, unless one block is
// larger, rebuildTxs txs in one SQL transaction.
const (
	rebuildBlocks = 64
	rebuildTxs    = 4096
)

// Rebuild brings x up to the block log's height: it applies blocks
// x.Height()+1 through height in order, reading each with read(h), several
// in one SQL transaction (rebuildBlocks, rebuildTxs). After each
// transaction it calls progress (if not nil) with the number of blocks
// applied and to apply; the caller decides what to report. If x is above
// height it returns an error wrapping ErrAhead: the caller then calls
// Reset and Rebuild again. It stops early when ctx is done; what was
// applied stays.
func Rebuild(ctx context.Context, x *Index, height uint64, read func(h uint64) (*ledger.Block, error), progress func(done, total uint64)) error {
	have, err := x.Height()
	if err != nil {
		return err
	}
	if have > height {
		return fmt.Errorf("%w: index at height %d, log at %d", ErrAhead, have, height)
	}
	total := height - have
	for h := have + 1; h <= height; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("index: rebuild at height %d: %w", h, err)
		}
		// Several blocks a transaction, as the chain indexes when blocks
		// queue up.
		var batch []Decoded
		for n := 0; h <= height && len(batch) < rebuildBlocks && n < rebuildTxs; {
			b, err := read(h)
			if err != nil {
				return fmt.Errorf("index: read block %d: %w", h, err)
			}
			if b == nil || b.Header.Height != h {
				return fmt.Errorf("index: read block %d: got another block", h)
			}
			txs, err := decodeBlockTxs(b)
			if err != nil {
				return fmt.Errorf("index: block %d: %w", h, err)
			}
			batch = append(batch, Decoded{Block: b, Txs: txs})
			n += len(txs)
			h++
		}
		if err := x.ApplyBatch(batch); err != nil {
			return err
		}
		if progress != nil {
			progress(h-1-have, total)
		}
	}
	return nil
}
