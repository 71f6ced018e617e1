package ledger

import (
	"bytes"
	"errors"
	"fmt"
)

// SnapshotProof proves, to anyone holding the genesis, that a state
// snapshot is certified: a quorum of distinct genesis nodes attested its
// height and hash with node.snapshot txs, and each attestation is in a
// committed block (its receipt: header, commit certificate, inclusion
// proof). A gateway that joins from a snapshot it fetched from a peer
// checks the snapshot's bytes against Hash and this proof against its
// genesis, and trusts nothing else the peer says.
type SnapshotProof struct {
	Height   uint64    `cbor:"1,keyasint"`
	Hash     []byte    `cbor:"2,keyasint"`
	Receipts []Receipt `cbor:"3,keyasint"`
}

// MaxSnapshotProofBytes bounds an encoded SnapshotProof a decoder takes:
// a receipt is a few KiB (its tx, a header, a certificate of up to n
// signatures, a proof of up to 64 hashes), and a proof holds at most one
// for each genesis node.
const MaxSnapshotProofBytes = 4 << 20

// ErrSnapshotProof reports a SnapshotProof that does not prove its
// snapshot certified.
var ErrSnapshotProof = errors.New("ledger: invalid snapshot proof")

// Encode returns the proof's deterministic encoding.
func (p *SnapshotProof) Encode() ([]byte, error) {
	b, err := marshal(p)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode snapshot proof: %w", err)
	}
	return b, nil
}

// DecodeSnapshotProof parses a proof (outside bytes: a peer's). It does
// not verify it.
func DecodeSnapshotProof(data []byte) (*SnapshotProof, error) {
	if len(data) > MaxSnapshotProofBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrSnapshotProof, len(data), MaxSnapshotProofBytes)
	}
	var p SnapshotProof
	if err := unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotProof, err)
	}
	return &p, nil
}

// VerifySnapshotProof checks, with nothing but the genesis, that the
// snapshot (p.Height, p.Hash) is certified: p holds receipts of
// node.snapshot txs of at least g.Quorum() distinct genesis nodes, each
// signed by its node's key, each attesting exactly this height and hash,
// and each receipt verifies (VerifyReceipt).
//
// After a member change, use Members.VerifySnapshotProof.
func VerifySnapshotProof(g *Genesis, p *SnapshotProof) error {
	m, err := NewMembers(g)
	if err != nil {
		return err
	}
	return m.VerifySnapshotProof(p)
}

// VerifySnapshotProof checks that the snapshot (p.Height, p.Hash) is
// certified: p holds receipts of node.snapshot txs of at least a quorum
// of distinct members in force at p.Height, each signed by its node's
// key, each attesting exactly this height and hash, and each receipt
// verifies with the members in force at its block.
func (m *Members) VerifySnapshotProof(p *SnapshotProof) error {
	g, set := m.g, m.At(p.Height)
	if p.Height == 0 || len(p.Hash) != 32 {
		return fmt.Errorf("%w: height %d, hash of %d bytes", ErrSnapshotProof, p.Height, len(p.Hash))
	}
	if len(p.Receipts) > set.N() {
		return fmt.Errorf("%w: %d receipts, the chain has %d nodes at height %d", ErrSnapshotProof, len(p.Receipts), set.N(), p.Height)
	}
	seen := map[string]bool{}
	for i := range p.Receipts {
		r := &p.Receipts[i]
		if err := m.VerifyReceipt(r); err != nil {
			return fmt.Errorf("%w: receipt %d: %w", ErrSnapshotProof, i, err)
		}
		tx, err := DecodeTx(r.Tx, g.Params.MaxTxBytes)
		if err != nil {
			return fmt.Errorf("%w: receipt %d: %w", ErrSnapshotProof, i, err)
		}
		ns := tx.Body.NodeSnapshot
		if tx.Body.Kind != KindSnapshot || ns == nil {
			return fmt.Errorf("%w: receipt %d is of a %s tx", ErrSnapshotProof, i, tx.Body.Kind)
		}
		if ns.Node != tx.Author {
			return fmt.Errorf("%w: receipt %d: node.snapshot by %s names node %s", ErrSnapshotProof, i, tx.Author, ns.Node)
		}
		if ns.Height != p.Height || !bytes.Equal(ns.Hash, p.Hash) {
			return fmt.Errorf("%w: receipt %d: node %s attests height %d hash %x, not height %d hash %x",
				ErrSnapshotProof, i, ns.Node, ns.Height, ns.Hash, p.Height, p.Hash)
		}
		if seen[ns.Node] {
			return fmt.Errorf("%w: node %s attests twice", ErrSnapshotProof, ns.Node)
		}
		pk, ok := set.Key(ns.Node)
		if !ok {
			return fmt.Errorf("%w: %q is not a member at height %d", ErrSnapshotProof, ns.Node, p.Height)
		}
		if err := tx.Verify(pk); err != nil {
			return fmt.Errorf("%w: receipt %d: %w", ErrSnapshotProof, i, err)
		}
		seen[ns.Node] = true
	}
	if q := set.Quorum(); len(seen) < q {
		return fmt.Errorf("%w: %d nodes attest height %d hash %x, a quorum is %d", ErrSnapshotProof, len(seen), p.Height, p.Hash, q)
	}
	return nil
}
