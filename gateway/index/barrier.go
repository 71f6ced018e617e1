package index

import (
	"database/sql"
	"sync"
)

// barrier makes reads wait for the blocks the writer's caller announced
// (Expect) and has not applied yet: read-your-writes for whoever was told
// of a commit before the index had it. It is the one place every read of
// the index passes (Index.read).
type barrier struct {
	mu        sync.Mutex
	applied   sync.Cond     // broadcast when indexed rises or the barrier is abandoned
	expected  uint64        // the highest height announced by Expect
	indexed   uint64        // the highest height applied since Open
	abandoned bool          // Abandon was called: no read waits any more
	waiting   chan struct{} // cap 1: a read began to wait (Waiting)
}

// Expect announces that the blocks up to height are committed (in the
// block log) and will be applied in order: from then on every read waits
// until the index has applied them (or Abandon is called), so that a read
// made after a commit was acknowledged sees it. A height not above one
// announced before changes nothing.
//
// The caller must apply the announced blocks, or call Abandon: a read
// waits for them without a deadline. A read made on the goroutine that
// applies them would wait for itself.
func (x *Index) Expect(height uint64) {
	b := &x.bar
	b.mu.Lock()
	b.expected = max(b.expected, height)
	b.mu.Unlock()
}

// Abandon ends the waits for announced blocks: the caller will not apply
// them (its writes failed, or it stopped). Reads waiting return, and later
// reads do not wait: they answer from what is indexed. The blocks stay in
// the block log, and the next start's Rebuild indexes them.
func (x *Index) Abandon() {
	b := &x.bar
	b.mu.Lock()
	b.abandoned = true
	b.applied.Broadcast()
	b.mu.Unlock()
}

// Lag returns how many announced blocks are not yet applied.
func (x *Index) Lag() uint64 {
	b := &x.bar
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.indexed >= b.expected {
		return 0
	}
	return b.expected - b.indexed
}

// Waiting returns a channel that receives when a read begins to wait for
// announced blocks, and again after each batch applied short of what a
// read waits for (one value for any number of reads): a writer that lets
// blocks queue up to apply them together applies them at once then.
func (x *Index) Waiting() <-chan struct{} { return x.bar.waiting }

// read is the read pool, once the blocks announced before the call are
// applied.
func (x *Index) read() *sql.DB {
	b := &x.bar
	b.mu.Lock()
	want := b.expected
	for b.indexed < want && !b.abandoned {
		// Said again after each batch applied short of want: a writer
		// that took the first signal may linger over the rest.
		b.signalWaiting()
		b.applied.Wait()
	}
	b.mu.Unlock()
	return x.db
}

// signalWaiting tells the writer (Waiting) that a read waits.
func (b *barrier) signalWaiting() {
	select {
	case b.waiting <- struct{}{}:
	default:
	}
}

// advance records that the blocks up to height are applied.
func (b *barrier) advance(height uint64) {
	b.mu.Lock()
	b.indexed = height
	b.applied.Broadcast()
	b.mu.Unlock()
}
