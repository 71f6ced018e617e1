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
// in one or the other, never in neither.
type openIDs struct {
	mu    sync.RWMutex
	after uint64            // the last seq of the last full generation (a multiple of the generation size)
	first map[int64]int64   // prefix → the seq of the first tx with it
	more  map[int64][]int64 // prefix → the seqs of the later txs with it (rare: 64-bit prefixes)
}

// reset makes o hold txs, the txs after seq after, in seq order.
func (o *openIDs) reset(after uint64, txs []prefixSeq) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.after, o.first, o.more = after, make(map[int64]int64, len(txs)), nil
	for _, t := range txs {
		o.add(t)
	}
}

// prefixSeq is a tx's id prefix and seq.
type prefixSeq struct{ p, seq int64 }

// commit drops the txs up to seq after, which full generations have taken
// to tx_ids, and adds txs, which follow those o holds.
func (o *openIDs) commit(after uint64, txs []prefixSeq) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if after > o.after {
		// A fresh map: a Go map does not shrink when its keys are deleted.
		var keep []prefixSeq
		for p, seq := range o.first {
			keep = append(keep, prefixSeq{p, seq})
		}
		for p, seqs := range o.more {
			for _, seq := range seqs {
				keep = append(keep, prefixSeq{p, seq})
			}
		}
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
	s := append(slices.Clone(o.more[p]), first)
	slices.Reverse(s)
	return s
}
