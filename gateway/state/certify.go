package state

import (
	"bytes"
	"slices"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// maxAttests is how many of a node's newest node.snapshot attestations
// the state keeps: nodes attest the same heights at different moments,
// and a quorum of them for one height forms while the fastest may have
// attested the next ones already.
const maxAttests = 4

// Attestation is a committed node.snapshot: Node attested that its state
// after block Height has snapshot hash Hash. The tx is tx Index of block
// Block, which is where a proof finds its receipt.
type Attestation struct {
	Node   string
	Height uint64
	Hash   [32]byte
	Block  uint64
	Index  uint64
}

// Certified is a certified snapshot: (Height, Hash) attested by the
// distinct nodes of By, at least a quorum of the members in force at
// Height, sorted by node.
type Certified struct {
	Height uint64
	Hash   [32]byte
	By     []Attestation
}

// LastAttested returns the height of node's newest committed
// node.snapshot (0: none). A new one must be above it.
func (s *State) LastAttested(node string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if as := s.attests[node]; len(as) > 0 {
		return as[len(as)-1].Height
	}
	return 0
}

// Certified returns the newest certified snapshot; ok is false if none
// is.
func (s *State) Certified() (c Certified, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.certified.Height == 0 {
		return Certified{}, false
	}
	c = s.certified
	c.By = slices.Clone(c.By)
	return c, true
}

// CertifiedHeight is the height of the newest certified snapshot (0:
// none).
func (s *State) CertifiedHeight() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.certified.Height
}

// attestLocked applies a committed node.snapshot, tx i of block height:
// it is kept among its node's newest, and certifies its snapshot once a
// quorum of nodes' kept attestations agree on it (and it is newer than
// the one certified before).
func (s *State) attestLocked(ns *ledger.NodeSnapshot, height, i uint64) {
	a := Attestation{Node: ns.Node, Height: ns.Height, Block: height, Index: i}
	copy(a.Hash[:], ns.Hash)
	as := append(s.attests[ns.Node], a)
	if len(as) > maxAttests {
		as = slices.Clone(as[len(as)-maxAttests:])
	}
	s.attests[ns.Node] = as
	if a.Height <= s.certified.Height {
		return
	}
	set := s.members.At(a.Height)
	var by []Attestation
	for node, list := range s.attests {
		if _, member := set.Key(node); !member {
			continue
		}
		for _, o := range list {
			if o.Height == a.Height && o.Hash == a.Hash {
				by = append(by, o)
				break
			}
		}
	}
	if len(by) < set.Quorum() {
		return
	}
	slices.SortFunc(by, func(x, y Attestation) int { return strings.Compare(x.Node, y.Node) })
	s.certified = Certified{Height: a.Height, Hash: a.Hash, By: by}
}

// ProofOf builds the proof that c is certified from the blocks that hold
// its attestations; block reads a committed block.
func ProofOf(c Certified, block func(height uint64) (*ledger.Block, error)) (*ledger.SnapshotProof, error) {
	p := &ledger.SnapshotProof{Height: c.Height, Hash: bytes.Clone(c.Hash[:])}
	for _, a := range c.By {
		b, err := block(a.Block)
		if err != nil {
			return nil, err
		}
		r, err := ledger.NewReceipt(b, ledger.NewTree(b.Txs), a.Index)
		if err != nil {
			return nil, err
		}
		p.Receipts = append(p.Receipts, *r)
	}
	return p, nil
}
