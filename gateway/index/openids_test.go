package index

import (
	"reflect"
	"testing"
)

// TestOpenIDsSharedPrefix: txs whose ids share a prefix (64 bits: not
// met by chance, but a device could grind for it) are all found, newest
// first, through forget, a seal and the txs it keeps.
func TestOpenIDsSharedPrefix(t *testing.T) {
	var o openIDs
	o.reset(0, []prefixSeq{{7, 1}, {8, 2}, {7, 3}, {7, 5}})
	o.commit(0, []prefixSeq{{9, 6}, {7, 12}})
	if got, want := o.seqs(7), []int64{12, 5, 3, 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("seqs(7) = %v, want %v", got, want)
	}
	if got, want := o.full(10, []prefixSeq{{1, 9}}), []prefixSeq{{1, 9}, {7, 1}, {7, 3}, {7, 5}, {8, 2}, {9, 6}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("full(10) = %v, want %v", got, want)
	}
	o.forget([]prefixSeq{{7, 1}, {7, 5}}) // the first, and one of the others
	if got, want := o.seqs(7), []int64{12, 3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("seqs(7) after forget = %v, want %v", got, want)
	}
	o.forget([]prefixSeq{{8, 2}})
	if got := o.seqs(8); got != nil {
		t.Fatalf("seqs(8) after forget = %v, want none", got)
	}
	// A seal up to 10 keeps only 12; a tx added at or below 10 is not kept.
	o.commit(10, []prefixSeq{{7, 10}, {7, 13}})
	if got, want := o.seqs(7), []int64{13, 12}; !reflect.DeepEqual(got, want) {
		t.Fatalf("seqs(7) after the seal = %v, want %v", got, want)
	}
	if got := o.seqs(9); got != nil {
		t.Fatalf("seqs(9) after the seal = %v, want none", got)
	}
	if o.sealedTo() != 10 {
		t.Fatalf("sealedTo = %d, want 10", o.sealedTo())
	}
}
