package index

import (
	"path/filepath"
	"testing"
	"time"
)

// TestReadersKeepWriterCache checks that lookups on the reader
// connections do not take the writer's page cache (readerCache,
// readerIdle). Once 200 k records are indexed, the process must read back
// no more than 2,000 bytes a record (the WAL checkpoints read ~1.4 KB, the
// lookups of the second phase ~0.3 KB) in two phases:
//
//   - idle: 5,000 lookups, more pages than a reader's cache holds; once
//     the pool has closed the idle readers, 250 batches of 1,000 records
//     (with the readers kept open: 10.9 KB a record);
//   - busy: 200 batches with 100 lookups every 10 (with 2 MiB readers:
//     9.1 KB a record).
//
// It counts the bytes the process reads (rchar), so it does not run in
// parallel with other tests.
func TestReadersKeepWriterCache(t *testing.T) {
	if testing.Short() {
		t.Skip("indexes 650 k records")
	}
	defer func(d time.Duration) { readerIdle = d }(readerIdle)
	readerIdle = 100 * time.Millisecond
	x := open(t, filepath.Join(t.TempDir(), "index.db"))
	s := newSynthChain(t, x, 100)
	const batch = 1000
	for range 200 {
		s.applyBatch(t, x, batch, 1)
	}
	lookups := func(n int) {
		for i := range n {
			seq := 1 + uint64(i)*7919%s.n
			if i%2 == 1 {
				seq += 1 << 62 // no such tx
			}
			if _, err := x.Tx(synthID(seq)); i%2 == 0 && err != nil {
				t.Fatalf("lookup of tx %d: %v", seq, err)
			}
		}
	}
	phase := func(name string, batches, lookupsEvery, n int) {
		r0 := read(t)
		for i := range batches {
			if lookupsEvery > 0 && i%lookupsEvery == 0 {
				lookups(n)
			}
			s.applyBatch(t, x, batch, 1)
		}
		perRecord := float64(read(t)-r0) / float64(batches*batch)
		t.Logf("%s: indexing %d records read %.0f bytes a record", name, batches*batch, perRecord)
		if perRecord > 2000 {
			t.Errorf("%s: the writer read %.0f bytes a record, want at most 2000: the readers took its page cache", name, perRecord)
		}
	}
	lookups(5000)
	// database/sql's cleaner closes idle connections once a second at most.
	for deadline := time.Now().Add(5 * time.Second); x.db.Stats().Idle > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	phase("idle", 250, 0, 0)
	phase("busy", 200, 10, 100)
}
