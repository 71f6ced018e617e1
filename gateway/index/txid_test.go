package index

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// openGen opens an index whose tx-id generations hold gen txs.
func openGen(tb testing.TB, path string, gen int64) *Index {
	x, err := openSized(path, gen, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { x.Close() })
	return x
}

// checkLookups looks up the id of every tx in x, as TxsInBlock lists
// them, and ids of no tx.
func checkLookups(t *testing.T, x *Index, s *synthChain) {
	t.Helper()
	top, err := x.Height()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for h := uint64(1); h <= top; h++ {
		txs, err := x.TxsInBlock(h)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range txs {
			id, err := ledger.ParseHash(want.ID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := x.Tx(id)
			if err != nil {
				t.Fatalf("Tx of tx %d.%d: %v", want.Height, want.Index, err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("Tx of tx %d.%d:\n got %+v\nwant %+v", want.Height, want.Index, *got, want)
			}
			n++
		}
	}
	if uint64(n) != s.n+uint64(len(s.devices)) {
		t.Fatalf("looked up %d txs, the chain has %d", n, s.n+uint64(len(s.devices)))
	}
	for _, i := range []uint64{0, s.n + 1, 1 << 62} {
		if got, err := x.Tx(synthID(i)); !errors.Is(err, ErrNotFound) {
			t.Errorf("Tx of no tx (%d) = %+v, %v; want ErrNotFound", i, got, err)
		}
	}
}

const testPerBlock = 7

// TestTxLookupAcrossGenerations looks up every tx of an index whose
// tx-id generations hold 10 txs, so that txs sit in the first generation,
// the newest (partly full, then just begun), and those between, with
// blocks that straddle a generation's end.
func TestTxLookupAcrossGenerations(t *testing.T) {
	const devices, gen = 3, 10
	path := filepath.Join(t.TempDir(), "index.db")
	x := openGen(t, path, gen)
	if got, err := x.Tx(synthID(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Tx in an empty index = %+v, %v; want ErrNotFound", got, err)
	}
	s := newSynthChain(t, x, devices)
	// The enroll block holds txs 1-3; each block of 7 records then
	// starts in one generation and may end in the next.
	for range 9 {
		s.apply(t, x, testPerBlock)
	}
	// 66 txs: generation 6 (txs 61-70) is partly full.
	checkLookups(t, x, s)
	checkIDTable(t, x)
	// 71 txs: generation 7 holds one.
	s.apply(t, x, 5)
	checkLookups(t, x, s)
	checkIDTable(t, x)

	// The file keeps its generation size: opened with another, lookups
	// still find every tx through the index.
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	y := openGen(t, path, 1000)
	if y.w.generation != gen {
		t.Errorf("generation after reopen = %d, want %d", y.w.generation, gen)
	}
	checkLookups(t, y, s)
}

// TestUpgradeFromIDPrefixIndex opens a file of schema version 5, whose
// tx-id index is on id_prefix alone: Open upgrades it in place, the rows
// stay, the full generations' ids go to tx_ids and lookups find every tx.
func TestUpgradeFromIDPrefixIndex(t *testing.T) {
	const devices = 3
	path := filepath.Join(t.TempDir(), "index.db")
	x := open(t, path)
	s := newSynthChain(t, x, devices)
	for range 5 {
		s.apply(t, x, testPerBlock)
	}
	x.Close()

	// Make the file what version 5 made.
	rewrite(t, path, `DROP TABLE tx_ids`, `DROP TABLE id_generations`,
		`CREATE INDEX txs_id_prefix ON txs (id_prefix)`,
		`CREATE INDEX txs_records ON txs (device, dev_seq) WHERE kind = `+kindRecord, `PRAGMA user_version = 5`)

	y := openGen(t, path, 4)
	if h, err := y.Height(); err != nil || h != 6 {
		t.Fatalf("Height after upgrade = %d, %v; want 6", h, err)
	}
	if y.w.generation != 4 {
		t.Errorf("generation = %d, want 4", y.w.generation)
	}
	checkIDTable(t, y)
	checkLookups(t, y, s)
	s.apply(t, y, testPerBlock)
	checkLookups(t, y, s)
	checkIDTable(t, y)
}

// TestUpgradeToIDTable opens a file of schema version 10, whose tx-id
// index is txs_id_gen over every tx: Open moves the full generations'
// ids to tx_ids, loads the open one's, and lookups find every tx.
func TestUpgradeToIDTable(t *testing.T) {
	const devices, gen = 3, 10
	path := filepath.Join(t.TempDir(), "index.db")
	var upgrades [][2]int
	upgrading := func(from, to int) { upgrades = append(upgrades, [2]int{from, to}) }
	x, err := openSized(path, gen, Options{Upgrading: upgrading})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	if upgrades != nil {
		t.Errorf("Upgrading called %v for a new file", upgrades)
	}
	s := newSynthChain(t, x, devices)
	for range 9 {
		s.apply(t, x, testPerBlock)
	}
	x.Close()

	rewrite(t, path, `DROP TABLE tx_ids`, fmt.Sprintf(`CREATE INDEX txs_id_gen ON txs ((seq - 1) / %d, id_prefix)`, gen),
		`PRAGMA user_version = 10`)

	y, err := openSized(path, gen, Options{Upgrading: upgrading})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { y.Close() })
	if want := [][2]int{{10, schemaVersion}}; !reflect.DeepEqual(upgrades, want) {
		t.Errorf("Upgrading calls %v, want %v", upgrades, want)
	}
	y.Close()
	upgrades = nil
	y, err = openSized(path, gen, Options{Upgrading: upgrading})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { y.Close() })
	if upgrades != nil {
		t.Errorf("Upgrading called %v on a file of the current schema", upgrades)
	}
	checkIDTable(t, y)
	var n int
	if err := y.db.QueryRow(`SELECT count(*) FROM tx_ids`).Scan(&n); err != nil || n != 60 {
		t.Fatalf("tx_ids after the upgrade: %d rows, %v; want the 60 txs of 6 full generations", n, err)
	}
	checkLookups(t, y, s)
	s.apply(t, y, testPerBlock)
	checkLookups(t, y, s)
	checkIDTable(t, y)
}

// checkIDTable checks that tx_ids holds exactly the txs of the full
// generations that have a row, and that no index on txs is keyed by id.
func checkIDTable(t *testing.T, x *Index) {
	t.Helper()
	var stray, missing, idx int
	if err := x.db.QueryRow(`SELECT count(*) FROM tx_ids LEFT JOIN txs USING (seq)
		WHERE txs.seq IS NULL OR txs.id_prefix != tx_ids.id_prefix OR tx_ids.gen != (tx_ids.seq - 1) / ?`, x.w.generation).Scan(&stray); err != nil {
		t.Fatal(err)
	}
	x.open.mu.RLock()
	after := x.open.after
	x.open.mu.RUnlock()
	if err := x.db.QueryRow(`SELECT count(*) FROM txs WHERE seq <= ? AND seq NOT IN (SELECT seq FROM tx_ids)`, int64(after)).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if err := x.db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND sql LIKE '%id_prefix%'`).Scan(&idx); err != nil {
		t.Fatal(err)
	}
	if stray != 0 || missing != 0 || idx != 0 {
		t.Errorf("tx_ids: %d rows of no such tx, %d txs of full generations missing (up to seq %d); %d indexes on id_prefix", stray, missing, after, idx)
	}
}
