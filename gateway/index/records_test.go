package index

import (
	"crypto"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// recordTx signs a data.record of device id on stream.
func recordTx(tb testing.TB, id string, key crypto.Signer, seq uint64, stream string) []byte {
	return sign(tb, key, id, ledger.Body{Kind: ledger.KindRecord, Record: &ledger.Record{
		DeviceID: id, Stream: stream, Seq: seq, Time: 1_600_000_000_000 + int64(seq),
		ContentType: "application/json", Payload: fmt.Appendf(nil, `{"v":%d}`, seq)}})
}

// recordChain is a chain of records from three devices on two streams,
// with block times that step back twice, and the records it holds.
type recordChain struct {
	c    *chain
	keys map[string]crypto.Signer
	seqs map[string]uint64
	all  []RecordInfo // every record, in commit order
}

func newRecordChain(t *testing.T) *recordChain {
	rc := &recordChain{c: newChain(t), keys: map[string]crypto.Signer{}, seqs: map[string]uint64{}}
	var enrolls [][]byte
	for _, id := range []string{"a", "b", "c"} {
		rc.keys[id] = newEd25519(t)
		enrolls = append(enrolls, rc.c.enroll(id, rc.keys[id]))
	}
	rc.c.next(enrolls...)
	return rc
}

// block appends a block at time ms with a record of each (device, stream).
func (rc *recordChain) block(t testing.TB, ms int64, recs ...[2]string) *ledger.Block {
	var txs [][]byte
	for _, r := range recs {
		rc.seqs[r[0]]++
		txs = append(txs, recordTx(t, r[0], rc.keys[r[0]], rc.seqs[r[0]], r[1]))
	}
	b := rc.c.next(txs...)
	b.Header.Time = ms
	for i, env := range txs {
		tx, err := ledger.DecodeTx(env, 0)
		if err != nil {
			t.Fatal(err)
		}
		r := tx.Body.Record
		rc.all = append(rc.all, RecordInfo{ID: fmt.Sprintf("%x", tx.ID), Height: b.Header.Height, Index: uint64(i), BlockTime: ms,
			Device: r.DeviceID, Stream: r.Stream, Seq: r.Seq, DeviceTime: r.Time, ContentType: r.ContentType})
	}
	return b
}

// want is the naive answer to q: every record, filtered and ordered, all pages.
func (rc *recordChain) want(q RecordQuery) []RecordInfo {
	out := []RecordInfo{}
	for _, r := range rc.all {
		if (q.Device == "" || r.Device == q.Device) && (q.Stream == "" || r.Stream == q.Stream) &&
			(q.From == 0 || r.BlockTime >= q.From) && (q.To == 0 || r.BlockTime < q.To) {
			out = append(out, r)
		}
	}
	if q.Desc {
		slices.Reverse(out)
	}
	return out
}

// pages follows q's pages to the end.
func pages(t *testing.T, x *Index, q RecordQuery) []RecordInfo {
	t.Helper()
	out := []RecordInfo{}
	for range 1000 {
		rs, err := x.QueryRecords(q)
		if err != nil {
			t.Fatalf("QueryRecords(%+v): %v", q, err)
		}
		out = append(out, rs...)
		if len(rs) < capLimit(q.Limit) {
			return out
		}
		q.After = rs[len(rs)-1].Position()
	}
	t.Fatalf("QueryRecords(%+v): no end after 1000 pages", q)
	return nil
}

func TestQueryRecords(t *testing.T) {
	rc := newRecordChain(t)
	const t0 = 1_700_000_000_000
	a, b, c := "a", "b", "c"
	temp, hum := "temp", "hum"
	rc.block(t, t0+1000, [2]string{a, temp}, [2]string{b, temp}, [2]string{a, hum})
	rc.block(t, t0+2000, [2]string{c, hum})
	rc.block(t, t0+3000, [2]string{a, temp}, [2]string{a, temp}, [2]string{b, hum}, [2]string{c, temp})
	rc.block(t, t0+1500, [2]string{a, hum}, [2]string{b, temp}) // the proposer's clock stepped back
	rc.block(t, t0+4000, [2]string{b, temp})
	rc.block(t, t0+4000, [2]string{a, temp}, [2]string{c, hum})
	rc.block(t, t0+2500, [2]string{a, temp}) // back again
	rc.block(t, t0+5000, [2]string{c, temp}, [2]string{a, hum}, [2]string{b, temp})
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	apply(t, x, rc.c.blocks...)

	times := []int64{0, t0, t0 + 1500, t0 + 2000, t0 + 2600, t0 + 4000, t0 + 9000}
	n := 0
	for _, dev := range []string{"", a, b, "nobody"} {
		for _, stream := range []string{"", temp, hum} {
			for _, from := range times {
				for _, to := range times {
					for _, desc := range []bool{false, true} {
						for _, limit := range []int{1, 3, 0} {
							q := RecordQuery{Device: dev, Stream: stream, From: from, To: to, Desc: desc, Limit: limit}
							got, want := pages(t, x, q), rc.want(q)
							if !reflect.DeepEqual(got, want) {
								t.Fatalf("QueryRecords(%+v), all pages:\n got %v\nwant %v", q, got, want)
							}
							n += len(got)
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no query matched a record")
	}
}

func TestQueryRecordsUnknownPosition(t *testing.T) {
	rc := newRecordChain(t)
	rc.block(t, 1_700_000_000_000, [2]string{"a", "temp"})
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	apply(t, x, rc.c.blocks...)
	for _, p := range []Position{{Height: 3}, {Height: 2, Index: 1}} {
		if _, err := x.QueryRecords(RecordQuery{After: p}); !errors.Is(err, ErrNotFound) {
			t.Errorf("QueryRecords after %+v: %v; want ErrNotFound", p, err)
		}
	}
	if rs, err := x.QueryRecords(RecordQuery{After: Position{Height: 2}}); err != nil || len(rs) != 0 {
		t.Errorf("QueryRecords after the last record = %v, %v; want none", rs, err)
	}
}

// TestQueryRecordsWhileCommitting pages through the records, both ways,
// while blocks commit: the cursor must neither skip nor repeat a record.
func TestQueryRecordsWhileCommitting(t *testing.T) {
	rc := newRecordChain(t)
	const t0 = 1_700_000_000_000
	for i := range 20 {
		rc.block(t, t0+int64(i)*1000, [2]string{"a", "temp"}, [2]string{"b", "temp"}, [2]string{"a", "hum"})
	}
	before := len(rc.all)
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	apply(t, x, rc.c.blocks...)
	// The blocks to commit while paging are signed beforehand.
	var more []*ledger.Block
	for i := range 40 {
		more = append(more, rc.block(t, t0+int64(100+i)*1000, [2]string{"a", "temp"}, [2]string{"c", "temp"}))
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		for _, b := range more {
			if err := x.ApplyBlock(b); err != nil {
				t.Errorf("apply block %d: %v", b.Header.Height, err)
				return
			}
		}
	})
	asc := pages(t, x, RecordQuery{Device: "a", Limit: 2})
	desc := pages(t, x, RecordQuery{Desc: true, Limit: 2})
	wg.Wait()

	// Ascending: a prefix of a's records at least as long as what was
	// committed before; pages end at whatever had committed then.
	wantA := rc.want(RecordQuery{Device: "a"})
	if len(asc) < len(rc.want(RecordQuery{Device: "a", To: t0 + 100*1000})) || !reflect.DeepEqual(asc, wantA[:len(asc)]) {
		t.Errorf("ascending pages while committing: got %d records, not a prefix of a's %d", len(asc), len(wantA))
	}
	// Descending: from the newest record at the first page down to the
	// first record, without a gap.
	if len(desc) < before {
		t.Fatalf("descending pages: %d records, want at least %d", len(desc), before)
	}
	top := slices.IndexFunc(rc.all, func(r RecordInfo) bool { return r.ID == desc[0].ID })
	want := slices.Clone(rc.all[:top+1])
	slices.Reverse(want)
	if !reflect.DeepEqual(desc, want) {
		t.Errorf("descending pages while committing: got %d records, want the %d up to the first page's newest", len(desc), len(want))
	}
}

// TestRecordQueryPlans checks that the record queries of a device, of a
// device's stream and of a time range go through indexes: no full scan
// of txs or blocks, and no sort.
func TestRecordQueryPlans(t *testing.T) {
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	const t0 = 1_700_000_000_000
	cases := []struct {
		q    RecordQuery
		want []string
	}{
		{RecordQuery{Device: "a"}, []string{"txs_device_records"}},
		{RecordQuery{Device: "a", Desc: true, From: t0}, []string{"txs_device_records"}},
		{RecordQuery{Device: "a", Stream: "temp"}, []string{"txs_stream_records"}},
		{RecordQuery{Device: "a", Stream: "temp", Desc: true, To: t0}, []string{"txs_stream_records"}},
		{RecordQuery{From: t0, To: t0 + 1000}, []string{"INTEGER PRIMARY KEY"}},
		{RecordQuery{From: t0, Desc: true}, []string{"INTEGER PRIMARY KEY"}},
	}
	for _, c := range cases {
		query, args := recordSQL(c.q, 1, 100)
		got := plan(t, x.db, query, args...)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("plan of %+v: %s\nwant it to use %s", c.q, got, w)
			}
		}
		if strings.Contains(got, "SCAN") || strings.Contains(got, "TEMP B-TREE") {
			t.Errorf("plan of %+v: %s\nwant no scan and no sort", c.q, got)
		}
	}
	// The lookups that turn a time range into a range of txs.
	for q, want := range map[string]string{
		sqlFirstFrom:     "blocks_tmax",
		sqlLastBefore:    "blocks_tmax",
		sqlSteppedBefore: "blocks_backstep",
	} {
		got := plan(t, x.db, q, 5)
		if !strings.Contains(got, want) || strings.Contains(got, "SCAN blocks") || strings.Contains(got, "TEMP B-TREE") {
			t.Errorf("plan of %s: %s\nwant it to use %s without a scan or a sort", q, got, want)
		}
	}
}

func plan(t *testing.T, db *sql.DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.Query(`EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var steps []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		steps = append(steps, detail)
	}
	return strings.Join(steps, "; ")
}

// TestUpgradeFromVersion4 opens an index of schema version 4, as the
// gateway before record queries wrote it: it keeps its rows, gains the
// new indexes, and answers record queries with its blocks' times filled in.
func TestUpgradeFromVersion4(t *testing.T) {
	rc := newRecordChain(t)
	const t0 = 1_700_000_000_000
	rc.block(t, t0+1000, [2]string{"a", "temp"}, [2]string{"b", "hum"})
	rc.block(t, t0+3000, [2]string{"a", "temp"})
	rc.block(t, t0+2000, [2]string{"a", "hum"}) // stepped back
	rc.block(t, t0+4000, [2]string{"b", "temp"})
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	apply(t, x, rc.c.blocks...)
	x.Close()

	// Make it what version 4 was.
	rewrite(t, path, `DROP TABLE tx_ids`, `DROP TABLE id_generations`, `CREATE INDEX txs_id_prefix ON txs (id_prefix)`,
		`DROP INDEX blocks_tmax`, `DROP INDEX blocks_backstep`, `DROP INDEX txs_device_records`,
		`DROP INDEX txs_stream_records`, `ALTER TABLE blocks DROP COLUMN tmax`,
		`CREATE INDEX txs_records ON txs (device, dev_seq) WHERE kind = `+kindRecord, `PRAGMA user_version = 4`)

	y := open(t, path)
	if h, err := y.Height(); err != nil || h != uint64(len(rc.c.blocks)) {
		t.Fatalf("Height() after the upgrade = %d, %v; want %d: the rows must stay", h, err, len(rc.c.blocks))
	}
	var tmax []int64
	rows, err := y.db.Query(`SELECT tmax FROM blocks ORDER BY height`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		tmax = append(tmax, v)
	}
	rows.Close()
	first := rc.c.blocks[0].Header.Time
	if want := []int64{first, t0 + 1000, t0 + 3000, t0 + 3000, t0 + 4000}; !reflect.DeepEqual(tmax, want) {
		t.Errorf("tmax after the upgrade = %v, want %v", tmax, want)
	}
	for _, q := range []RecordQuery{{Device: "a"}, {Device: "a", Stream: "hum"}, {From: t0 + 1500, To: t0 + 3500}, {To: t0 + 2500, Desc: true}} {
		if got, want := pages(t, y, q), rc.want(q); !reflect.DeepEqual(got, want) {
			t.Errorf("QueryRecords(%+v) after the upgrade = %v, want %v", q, got, want)
		}
	}
	// Blocks applied after the upgrade continue the running maximum.
	b := rc.block(t, t0+3500, [2]string{"c", "temp"})
	apply(t, y, b)
	if got, want := pages(t, y, RecordQuery{From: t0 + 3500}), rc.want(RecordQuery{From: t0 + 3500}); !reflect.DeepEqual(got, want) {
		t.Errorf("QueryRecords after a new block = %v, want %v", got, want)
	}
}
