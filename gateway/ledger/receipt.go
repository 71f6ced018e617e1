package ledger

import (
	"errors"
	"fmt"
)

// Receipt proves that a tx was committed: the tx, the header of its
// block, the block's commit certificate, and the RFC 9162 inclusion proof
// of the tx under the header's TxRoot. It is the thin-client (SPV) proof:
// VerifyReceipt needs only the genesis.
type Receipt struct {
	Tx     []byte   `cbor:"1,keyasint"`
	Header Header   `cbor:"2,keyasint"`
	Cert   Cert     `cbor:"3,keyasint"`
	Index  uint64   `cbor:"4,keyasint"`
	Proof  [][]byte `cbor:"5,keyasint"`
}

// ErrReceipt reports a receipt that does not verify.
var ErrReceipt = errors.New("ledger: invalid receipt")

// NewReceipt makes the receipt of tx i of block b, whose tree is t.
func NewReceipt(b *Block, t *Tree, i uint64) (*Receipt, error) {
	if i >= uint64(len(b.Txs)) {
		return nil, fmt.Errorf("%w: index %d of %d txs", ErrReceipt, i, len(b.Txs))
	}
	if s := b.stub(i); s != nil {
		return nil, fmt.Errorf("%w: tx %x at height %d index %d: the gateway keeps its leaf hash, not the tx a receipt carries", ErrPruned, s.ID[:8], b.Header.Height, i)
	}
	p, err := t.Proof(i)
	if err != nil {
		return nil, err
	}
	return &Receipt{Tx: b.Txs[i], Header: b.Header, Cert: b.Cert, Index: i, Proof: p}, nil
}

// Encode returns the receipt's deterministic encoding.
func (r *Receipt) Encode() ([]byte, error) {
	b, err := marshal(r)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode receipt: %w", err)
	}
	return b, nil
}

// DecodeReceipt parses a receipt. It does not verify it.
func DecodeReceipt(data []byte) (*Receipt, error) {
	var r Receipt
	if err := unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReceipt, err)
	}
	return &r, nil
}

// VerifyReceipt checks, with nothing but the genesis, that r's tx is in a
// block that a quorum of the chain's nodes committed.
// After a member change, use Members.VerifyReceipt.
func VerifyReceipt(g *Genesis, r *Receipt) error {
	e, err := newEpoch(1, g.Nodes, 0, [32]byte{})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReceipt, err)
	}
	return verifyReceipt(g, r, e)
}

// verifyReceipt checks r with its certificate checked against the set e.
func verifyReceipt(g *Genesis, r *Receipt, e *Epoch) error {
	if r.Header.ChainID != g.ChainID {
		return fmt.Errorf("%w: chain %q, genesis is %q", ErrReceipt, r.Header.ChainID, g.ChainID)
	}
	tx, err := DecodeTx(r.Tx, g.Params.MaxTxBytes)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReceipt, err)
	}
	if tx.Body.ChainID != g.ChainID {
		return fmt.Errorf("%w: tx is for chain %q", ErrReceipt, tx.Body.ChainID)
	}
	if r.Index >= r.Header.NumTxs {
		return fmt.Errorf("%w: index %d of %d txs", ErrReceipt, r.Index, r.Header.NumTxs)
	}
	if err := VerifyInclusion(r.Tx, r.Index, r.Header.NumTxs, r.Proof, r.Header.TxRoot); err != nil {
		return fmt.Errorf("%w: %w", ErrReceipt, err)
	}
	if err := e.VerifyCert(g.ChainID, &r.Header, &r.Cert); err != nil {
		return fmt.Errorf("%w: %w", ErrReceipt, err)
	}
	return nil
}
