package ledger

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/proof"
)

// naiveRoot is RFC 9162 section 2.1.1 MTH, written as the spec reads.
func naiveRoot(d [][]byte) []byte {
	switch len(d) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		h := sha256.Sum256(append([]byte{0}, d[0]...))
		return h[:]
	}
	k := 1
	for k*2 < len(d) {
		k *= 2
	}
	h := sha256.Sum256(append(append([]byte{1}, naiveRoot(d[:k])...), naiveRoot(d[k:])...))
	return h[:]
}

func leaves(n int) [][]byte {
	l := make([][]byte, n)
	for i := range l {
		l[i] = []byte(fmt.Sprintf("leaf %d", i))
	}
	return l
}

func TestMerkleRootMatchesSpec(t *testing.T) {
	for n := 0; n <= 100; n++ {
		if got, want := NewTree(leaves(n)).Root(), naiveRoot(leaves(n)); !bytes.Equal(got, want) {
			t.Fatalf("n=%d: root %x, want %x", n, got, want)
		}
	}
}

func TestMerkleProofs(t *testing.T) {
	for n := 1; n <= 100; n++ {
		ls := leaves(n)
		tree := NewTree(ls)
		root := tree.Root()
		size := uint64(n)
		for i := uint64(0); i < size; i++ {
			p, err := tree.Proof(i)
			if err != nil {
				t.Fatalf("n=%d i=%d: %v", n, i, err)
			}
			if err := VerifyInclusion(ls[i], i, size, p, root); err != nil {
				t.Fatalf("n=%d i=%d: %v", n, i, err)
			}
			mustFail := func(what string, leaf []byte, idx uint64, path [][]byte, r []byte) {
				t.Helper()
				if err := VerifyInclusion(leaf, idx, size, path, r); !errors.Is(err, ErrProof) {
					t.Fatalf("n=%d i=%d %s: got %v, want ErrProof", n, i, what, err)
				}
			}
			mustFail("changed leaf", append([]byte("x"), ls[i]...), i, p, root)
			if n > 1 {
				mustFail("other index", ls[i], (i+1)%size, p, root)
				for s := range p {
					q := clone(p)
					q[s][0] ^= 1
					mustFail(fmt.Sprintf("changed step %d", s), ls[i], i, q, root)
				}
				mustFail("missing step", ls[i], i, p[:len(p)-1], root)
			}
			r := append([]byte{}, root...)
			r[31] ^= 1
			mustFail("changed root", ls[i], i, p, r)
		}
	}
}

// TestMerkleProofsAsLibrary checks the stored-level proofs against the
// proofs transparency-dev/merkle computes for the same tree, hash by hash,
// and that an index past the end is refused.
func TestMerkleProofsAsLibrary(t *testing.T) {
	for n := 1; n <= 140; n++ {
		ls := leaves(n)
		tree := NewTree(ls)
		hashes := make([][]byte, n)
		for i, l := range ls {
			hashes[i] = hasher.HashLeaf(l)
		}
		for i := uint64(0); i < uint64(n); i++ {
			nodes, err := proof.Inclusion(i, uint64(n))
			if err != nil {
				t.Fatal(err)
			}
			subtree := make([][]byte, len(nodes.IDs))
			for j, id := range nodes.IDs {
				lo, hi := id.Coverage()
				subtree[j] = naiveRoot(ls[lo:min(hi, uint64(n))])
			}
			want, err := nodes.Rehash(subtree, hasher.HashChildren)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tree.Proof(i)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("n=%d i=%d: %d hashes, want %d", n, i, len(got), len(want))
			}
			for j := range got {
				if !bytes.Equal(got[j], want[j]) {
					t.Fatalf("n=%d i=%d: hash %d is %x, want %x", n, i, j, got[j], want[j])
				}
			}
		}
		if _, err := tree.Proof(uint64(n)); err == nil {
			t.Fatalf("n=%d: proof of leaf %d: no error", n, n)
		}
	}
	if _, err := NewTree(nil).Proof(0); err == nil {
		t.Fatal("empty tree: proof of leaf 0: no error")
	}
}

func clone(p [][]byte) [][]byte {
	q := make([][]byte, len(p))
	for i := range p {
		q[i] = append([]byte{}, p[i]...)
	}
	return q
}

func BenchmarkTree1000(b *testing.B) {
	ls := make([][]byte, 1000)
	for i := range ls {
		ls[i] = bytes.Repeat([]byte{byte(i)}, 200)
	}
	for b.Loop() {
		t := NewTree(ls)
		for i := uint64(0); i < 1000; i++ {
			if _, err := t.Proof(i); err != nil {
				b.Fatal(err)
			}
		}
	}
}
