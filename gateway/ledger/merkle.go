package ledger

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// hasher is the RFC 9162 (RFC 6962) SHA-256 tree hasher:
// leaf = H(0x00 || data), node = H(0x01 || left || right).
var hasher = rfc6962.New(crypto.SHA256)

// LeafHash is the RFC 9162 section 2.1.1 hash of one leaf.
func LeafHash(data []byte) []byte { return hasher.HashLeaf(data) }

// Tree is an RFC 9162 Merkle tree over a block's envelopes. It keeps the
// hashes of every perfect subtree so that each inclusion proof is cheap.
type Tree struct {
	// levels[l][i] is the hash of the perfect subtree of 2^l leaves that
	// starts at leaf i*2^l. levels[0] are the leaf hashes.
	levels [][][]byte
	root   []byte
}

// NewTree builds the tree over leaves, in order.
func NewTree(leaves [][]byte) *Tree {
	t := &Tree{}
	level := make([][]byte, len(leaves))
	for i, l := range leaves {
		level[i] = hasher.HashLeaf(l)
	}
	t.levels = append(t.levels, level)
	for len(level) > 1 {
		next := make([][]byte, len(level)/2)
		for i := range next {
			next[i] = hasher.HashChildren(level[2*i], level[2*i+1])
		}
		t.levels = append(t.levels, next)
		level = next
	}
	rf := compact.RangeFactory{Hash: hasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, h := range t.levels[0] {
		if err := r.Append(h, nil); err != nil {
			panic("ledger: invariant: compact range append: " + err.Error())
		}
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		panic("ledger: invariant: compact range root: " + err.Error())
	}
	if root == nil {
		root = hasher.EmptyRoot()
	}
	t.root = root
	return t
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return uint64(len(t.levels[0])) }

// Root is the tree head (RFC 9162 section 2.1.1).
func (t *Tree) Root() []byte { return t.root }

// Proof is the inclusion proof of leaf i (RFC 9162 section 2.1.3.1).
func (t *Tree) Proof(i uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(i, t.Size())
	if err != nil {
		return nil, fmt.Errorf("ledger: inclusion proof: %w", err)
	}
	hashes := make([][]byte, len(nodes.IDs))
	for j, id := range nodes.IDs {
		hashes[j] = t.levels[id.Level][id.Index]
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}

// ErrProof reports an inclusion proof that does not lead to the root.
var ErrProof = errors.New("ledger: inclusion proof does not verify")

// VerifyInclusion checks that leaf is at index in the tree of size leaves
// with the given root (RFC 9162 section 2.1.3.2).
func VerifyInclusion(leaf []byte, index, size uint64, path [][]byte, root []byte) error {
	if err := proof.VerifyInclusion(hasher, index, size, hasher.HashLeaf(leaf), path, root); err != nil {
		return fmt.Errorf("%w: %v", ErrProof, err)
	}
	return nil
}
