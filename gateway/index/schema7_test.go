package index

import (
	"database/sql"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"testing"
)

// recordsBefore is Records as schema 6 answered it, through the index on
// (device, dev_seq): the reference the answers through (device, seq) must
// equal.
func recordsBefore(t *testing.T, db *sql.DB, device string, beforeSeq uint64, limit int) []TxInfo {
	t.Helper()
	ts, err := list(db, scanTx, `SELECT `+txCols+` FROM txs
		WHERE kind = `+kindRecord+` AND device = ? AND dev_seq < ?
		ORDER BY dev_seq DESC, seq DESC LIMIT ?`,
		device, bound(beforeSeq), capLimit(limit))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// gappedChain applies blocks of records of three devices whose sequence
// numbers step by 3, 5 and 7 (so there are numbers no record has), and
// returns the largest sequence number.
func gappedChain(t *testing.T, x *Index) uint64 {
	s := newSynthChain(t, x, 3)
	var top uint64
	for range 9 {
		b, txs := s.block(testPerBlock)
		for _, tx := range txs {
			r := tx.Body.Record
			r.Seq *= 3 + 2*uint64(r.DeviceID[len(r.DeviceID)-1]-'0')
			top = max(top, r.Seq)
		}
		if err := x.ApplyDecoded(b, txs); err != nil {
			t.Fatal(err)
		}
	}
	return top
}

// TestRecordsBeforeSeq checks Records against the query by sequence
// number for every bound around every record of every device, and limits
// that end a page inside, at and past a device's records.
func TestRecordsBeforeSeq(t *testing.T) {
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	top := gappedChain(t, x)
	checked := 0
	for _, device := range []string{"dev-00000", "dev-00001", "dev-00002", "no-such-device"} {
		for _, before := range []uint64{0, 1, 2, 3, 4, 5, 20, 21, 22, top - 1, top, top + 1, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
			for _, limit := range []int{0, 1, 2, 7, 1000} {
				got, err := x.Records(device, before, limit)
				if err != nil {
					t.Fatal(err)
				}
				want := recordsBefore(t, x.db, device, before, limit)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Records(%s, %d, %d) = %v\nwant %v", device, before, limit, seqsOf(got), seqsOf(want))
				}
				if len(want) > 0 {
					checked++
				}
			}
		}
		// Every bound from 0 past the top, one record a page.
		for before := range top + 2 {
			got, err := x.Records(device, before, 1)
			if err != nil {
				t.Fatal(err)
			}
			if want := recordsBefore(t, x.db, device, before, 1); !reflect.DeepEqual(got, want) {
				t.Errorf("Records(%s, %d, 1) = %v, want %v", device, before, seqsOf(got), seqsOf(want))
			}
		}
	}
	if checked < 100 {
		t.Errorf("only %d answers held records", checked)
	}
}

func seqsOf(ts []TxInfo) []string {
	var s []string
	for _, t := range ts {
		s = append(s, fmt.Sprintf("%d@%d", t.Seq, t.Height))
	}
	return s
}

// TestUpgradeDropsRecordsIndex opens a file of schema 6, with the index on
// (device, dev_seq): the upgrade drops it and the answers stay.
func TestUpgradeDropsRecordsIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	top := gappedChain(t, x)
	x.Close()

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE INDEX txs_records ON txs (device, dev_seq) WHERE kind = ` + kindRecord,
		`DROP TABLE tx_ids`, fmt.Sprintf(`CREATE INDEX txs_id_gen ON txs ((seq - 1) / %d, id_prefix)`, generationTxs),
		`PRAGMA user_version = 6`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	want := map[uint64][]TxInfo{}
	for before := range top + 2 {
		want[before] = recordsBefore(t, db, "dev-00001", before, 3)
	}
	db.Close()

	y := open(t, path)
	var n int
	if err := y.db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'txs_records'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("txs_records after the upgrade: %d, %v", n, err)
	}
	var v int
	if err := y.db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != schemaVersion {
		t.Fatalf("user_version after the upgrade = %d, %v; want %d", v, err, schemaVersion)
	}
	for before := range top + 2 {
		got, err := y.Records("dev-00001", before, 3)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want[before]) {
			t.Errorf("Records(dev-00001, %d, 3) after the upgrade = %v, want %v", before, seqsOf(got), seqsOf(want[before]))
		}
	}
	if len(want[top+1]) != 3 {
		t.Errorf("the reference holds %d records, want 3", len(want[top+1]))
	}
}

// TestWriterKeepsTop applies blocks whose times step back twice in a row,
// in one session and across a reopen and a failed block: the writer keeps
// the top block in memory, and what it keeps must be what the tables say.
func TestWriterKeepsTop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	s := newSynthChain(t, x, 2)
	const t0 = 1_700_000_000_000
	var times []int64
	step := func(x *Index, at int64, n int) {
		t.Helper()
		b, txs := s.block(n)
		b.Header.Time = at
		if err := x.ApplyDecoded(b, txs); err != nil {
			t.Fatal(err)
		}
		times = append(times, at)
	}
	for i, at := range []int64{t0 + 5000, t0 + 1000, t0 + 3000, t0 + 2000, t0 + 6000} {
		step(x, at, 1+i%3)
	}
	// A block that fails after its txs were inserted changes nothing.
	if _, err := x.db.Exec(`CREATE TRIGGER fail BEFORE UPDATE ON devices BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	b, txs := s.block(2)
	if err := x.ApplyDecoded(b, txs); err == nil {
		t.Fatal("ApplyDecoded with a failing device write succeeded")
	}
	if _, err := x.db.Exec(`DROP TRIGGER fail`); err != nil {
		t.Fatal(err)
	}
	s.c.blocks = s.c.blocks[:len(s.c.blocks)-1]
	s.n -= 2
	step(x, t0+4000, 3)
	x.Close()
	y := open(t, path)
	step(y, t0+3500, 2)
	step(y, t0+7000, 1)

	var tmax []int64
	var firsts, nums []uint64
	rows, err := y.db.Query(`SELECT tmax, first_seq, num_txs FROM blocks WHERE height > 1 ORDER BY height`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int64
		var f, n uint64
		if err := rows.Scan(&v, &f, &n); err != nil {
			t.Fatal(err)
		}
		tmax, firsts, nums = append(tmax, v), append(firsts, f), append(nums, n)
	}
	rows.Close()
	want := []int64{}
	m := int64(0)
	for _, at := range times {
		m = max(m, at)
		want = append(want, m)
	}
	if !reflect.DeepEqual(tmax, want) {
		t.Errorf("tmax = %v, want %v", tmax, want)
	}
	// Block 1 holds the enrollments: seqs continue from it without a gap.
	next := uint64(3)
	for i := range firsts {
		if firsts[i] != next {
			t.Errorf("block %d first_seq = %d, want %d", i+2, firsts[i], next)
		}
		next = firsts[i] + nums[i]
	}
	if c, err := y.Counts(); err != nil || c.Txs != next-1 {
		t.Errorf("Counts = %+v, %v; want %d txs", c, err, next-1)
	}
}
