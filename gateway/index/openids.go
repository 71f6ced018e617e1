package index

import (
	"cmp"
	"slices"
	"sync"
)

// openIDs holds the tx-id lookup of the open generation: the txs after
// the last full generation, which tx_ids does not have yet (upgrade 10 to
// 11). It maps an id's prefix (idPrefix) to the seqs of the txs with it;
// the lookup then checks the whole id on the tx's row. The writer adds a
// batch's txs once their SQL transaction has committed, and drops the
// txs of a generation once it is full and in tx_ids: a reader finds a tx
// in one or the other, never in neither. It holds only txs that have a
// row: pruning takes out the records it deletes (forget).
type openIDs struct {
	mu    sync.RWMutex
	after uint64            // the last seq of the last full generation (a multiple of the generation size)
	first map[int64]int64   // prefix → the seq of the first tx with it
	more  map[int64][]int64 // prefix → the seqs of the later txs with it (rare: 64-bit prefixes)
}

// prefixSeq is a tx's id prefix and seq.
type prefixSeq struct{ p, seq int64 }

// reset makes o hold txs, the txs after seq after, in seq order.
func (o *openIDs) reset(after uint64, txs []prefixSeq) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.after, o.first, o.more = after, make(map[int64]int64, len(txs)), nil
	for _, t := range txs {
		o.add(t)
	}
}

// sealedTo is the last seq of the last full generation.
func (o *openIDs) sealedTo() uint64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.after
}

// full returns the txs up to seq to, those o holds and those of txs, in
// (prefix, seq) order, which is tx_ids' key within a generation: what a
// generation that became full writes there. (A batch fills at most one
// generation of 2^17 txs; if it filled several, the rows would still be
// right, only not written in key order.)
func (o *openIDs) full(to uint64, txs []prefixSeq) []prefixSeq {
	o.mu.RLock()
	out := append(o.all(), txs...)
	o.mu.RUnlock()
	out = slices.DeleteFunc(out, func(t prefixSeq) bool { return uint64(t.seq) > to })
	slices.SortFunc(out, func(a, b prefixSeq) int {
		return cmp.Or(cmp.Compare(a.p, b.p), cmp.Compare(a.seq, b.seq))
	})
	return out
}

// commit drops the txs up to seq after, which full generations have taken
// to tx_ids, and adds txs, which follow those o holds.
func (o *openIDs) commit(after uint64, txs []prefixSeq) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if after > o.after {
		// A fresh map: a Go map does not shrink when its keys are deleted.
		keep := o.all()
		slices.SortFunc(keep, func(a, b prefixSeq) int { return cmp.Compare(a.seq, b.seq) })
		o.after, o.first, o.more = after, make(map[int64]int64), nil
		for _, t := range keep {
			o.add(t)
		}
	}
	for _, t := range txs {
		o.add(t)
	}
}

// all lists the txs o holds, in no order; o.mu is held.
func (o *openIDs) all() []prefixSeq {
	out := make([]prefixSeq, 0, len(o.first))
	for p, seq := range o.first {
		out = append(out, prefixSeq{p, seq})
	}
	for p, seqs := range o.more {
		for _, seq := range seqs {
			out = append(out, prefixSeq{p, seq})
		}
	}
	return out
}

// forget takes out txs, whose rows were deleted.
func (o *openIDs) forget(txs []prefixSeq) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range txs {
		more := o.more[t.p]
		switch {
		case o.first[t.p] != t.seq:
			more = slices.DeleteFunc(more, func(s int64) bool { return s == t.seq })
		case len(more) > 0:
			o.first[t.p], more = more[0], more[1:]
		default:
			delete(o.first, t.p)
		}
		if len(more) == 0 {
			delete(o.more, t.p)
		} else {
			o.more[t.p] = more
		}
	}
}

// add records t unless a full generation has it; o.mu is held.
func (o *openIDs) add(t prefixSeq) {
	if uint64(t.seq) <= o.after {
		return
	}
	if _, ok := o.first[t.p]; !ok {
		o.first[t.p] = t.seq
		return
	}
	if o.more == nil {
		o.more = make(map[int64][]int64)
	}
	o.more[t.p] = append(o.more[t.p], t.seq)
}

// seqs returns the seqs of the open generation's txs with id prefix p,
// newest first.
func (o *openIDs) seqs(p int64) []int64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	first, ok := o.first[p]
	if !ok {
		return nil
	}
	s := append([]int64{first}, o.more[p]...)
	slices.Reverse(s)
	return s
}
