package ledger

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// hasher is the RFC 9162 (RFC 6962) SHA-256 tree hasher:
// leaf = H(0x00 || data), node = H(0x01 || left || right).
var hasher = rfc6962.New(crypto.SHA256)

// LeafHash is the RFC 9162 section 2.1.1 hash of one leaf.
func LeafHash(data []byte) []byte { return hasher.HashLeaf(data) }

// Tree is an RFC 9162 Merkle tree over a block's envelopes. It keeps the
// hash of every node, so an inclusion proof is a list of stored hashes.
//
// The nodes are built level by level: level 0 holds the leaf hashes and
// each level above pairs the nodes of the one below, left to right; a
// level's last node, when it has no partner, is carried up unchanged.
// That is MTH of RFC 9162 section 2.1.1: the left subtree of every split
// is perfect, so pairs never cross a split, and the node carried up is
// the right subtree's root (TestMerkleRootMatchesSpec). All the hashes of
// a tree live in one array.
type Tree struct {
	// levels[l][i] is the hash of node i of level l: 32 bytes of one
	// array that holds every hash of the tree.
	levels [][][]byte
	root   []byte
}

// NewTree builds the tree over leaves, in order.
func NewTree(leaves [][]byte) *Tree {
	return newTree(leaves, nil)
}

// NewTreeFromHashes builds the tree whose leaf hashes (RFC 9162
// H(0x00 || leaf), 32 bytes each) are hashes, in order: the tree of a
// pruned block, whose dropped leaves left only their hashes.
func NewTreeFromHashes(hashes [][]byte) *Tree {
	return newTree(nil, hashes)
}

// newTree builds the tree over leaves, or if leaves is nil over the leaf
// hashes hashed.
func newTree(leaves, hashed [][]byte) *Tree {
	n := len(leaves)
	if leaves == nil {
		n = len(hashed)
	}
	if n == 0 {
		return &Tree{levels: [][][]byte{nil}, root: hasher.EmptyRoot()}
	}
	nodes, depth := 0, 0
	for m := n; ; m = (m + 1) / 2 {
		nodes += m
		depth++
		if m == 1 {
			break
		}
	}
	buf := make([]byte, 0, nodes*sha256.Size)
	hashes := make([][]byte, 0, nodes)
	t := &Tree{levels: make([][][]byte, 0, depth)}
	d := sha256.New()
	for _, h := range hashed {
		buf = append(buf, h...)
		hashes = append(hashes, buf[len(buf)-sha256.Size:len(buf):len(buf)])
	}
	for _, l := range leaves {
		d.Reset()
		d.Write([]byte{rfc6962.RFC6962LeafHashPrefix})
		d.Write(l)
		buf = d.Sum(buf)
		hashes = append(hashes, buf[len(buf)-sha256.Size:len(buf):len(buf)])
	}
	level := hashes
	t.levels = append(t.levels, level)
	var in [1 + 2*sha256.Size]byte
	in[0] = rfc6962.RFC6962NodeHashPrefix
	for len(level) > 1 {
		from := len(hashes)
		for i := 0; i+1 < len(level); i += 2 {
			copy(in[1:], level[i])
			copy(in[1+sha256.Size:], level[i+1])
			h := sha256.Sum256(in[:])
			buf = append(buf, h[:]...)
			hashes = append(hashes, buf[len(buf)-sha256.Size:len(buf):len(buf)])
		}
		if len(level)%2 == 1 {
			hashes = append(hashes, level[len(level)-1])
		}
		level = hashes[from:]
		t.levels = append(t.levels, level)
	}
	t.root = level[0]
	return t
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return uint64(len(t.levels[0])) }

// Root is the tree head (RFC 9162 section 2.1.1), the tree's own bytes:
// callers must not modify it.
func (t *Tree) Root() []byte { return t.root }

// Proof is the inclusion proof of leaf i (RFC 9162 section 2.1.3.1): the
// siblings of the leaf and its ancestors, bottom up, skipping the levels
// where an ancestor is carried up alone. The hashes are the tree's own:
// callers must not modify them.
func (t *Tree) Proof(i uint64) ([][]byte, error) {
	if i >= t.Size() {
		return nil, fmt.Errorf("ledger: inclusion proof: index %d out of range for size %d", i, t.Size())
	}
	p := make([][]byte, 0, len(t.levels)-1)
	for _, level := range t.levels[:len(t.levels)-1] {
		if s := i ^ 1; s < uint64(len(level)) {
			p = append(p, level[s])
		}
		i /= 2
	}
	return p, nil
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
