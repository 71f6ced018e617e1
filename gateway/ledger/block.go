package ledger

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Header is what a block's hash covers.
type Header struct {
	ChainID  string `cbor:"1,keyasint"`
	Height   uint64 `cbor:"2,keyasint"` // the first block is 1
	Prev     []byte `cbor:"3,keyasint"` // hash of block Height-1; for block 1, the genesis hash
	TxRoot   []byte `cbor:"4,keyasint"` // RFC 9162 tree head over Txs
	NumTxs   uint64 `cbor:"5,keyasint"` // the tree size, so proofs bind it
	Time     int64  `cbor:"6,keyasint"` // proposer's clock, Unix milliseconds
	View     uint64 `cbor:"7,keyasint"`
	Proposer string `cbor:"8,keyasint"`
}

// Hash is the block hash: SHA-256 of the header's deterministic encoding.
func (h *Header) Hash() [32]byte {
	b, err := marshal(h)
	if err != nil {
		panic("ledger: invariant: encode header: " + err.Error())
	}
	return sha256.Sum256(b)
}

// Sig is one node's signature in a commit certificate: ECDSA P-256,
// ASN.1 DER, over SHA-256 of VoteBytes.
type Sig struct {
	Node string `cbor:"1,keyasint"`
	Sig  []byte `cbor:"2,keyasint"`
}

// Cert is a commit certificate: signatures of a quorum of distinct
// genesis nodes over (chain id, height, view, block hash).
type Cert struct {
	View uint64 `cbor:"1,keyasint"` // the view in which the block committed
	Sigs []Sig  `cbor:"2,keyasint"`
}

// vote is what a node signs to commit a block. The context string keeps a
// vote from being mistaken for any other signed structure.
type vote struct {
	_         struct{} `cbor:",toarray"`
	Context   string
	ChainID   string
	Height    uint64
	View      uint64
	BlockHash []byte
}

// VoteBytes is the message a node signs to commit block hash at height in view.
func VoteBytes(chainID string, height, view uint64, blockHash [32]byte) []byte {
	b, err := marshal(vote{Context: "ledgergate commit v1", ChainID: chainID, Height: height, View: view, BlockHash: blockHash[:]})
	if err != nil {
		panic("ledger: invariant: encode vote: " + err.Error())
	}
	return b
}

// Block is a header, its txs (envelopes), and its commit certificate.
// A block a retention policy pruned also has stubs (see Stub): the txs
// they stand for are empty in Txs.
type Block struct {
	Header Header   `cbor:"1,keyasint"`
	Txs    [][]byte `cbor:"2,keyasint"`
	Cert   Cert     `cbor:"3,keyasint"`
	Pruned []Stub   `cbor:"4,keyasint,omitempty"`
}

// ErrBadBlock reports a block whose parts do not agree.
var ErrBadBlock = errors.New("ledger: bad block")

// Encode returns the block's deterministic encoding.
func (b *Block) Encode() ([]byte, error) {
	out, err := marshal(b)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode block: %w", err)
	}
	return out, nil
}

// DecodeBlock parses a block, full or pruned, and checks that its header
// matches its txs (a pruned tx by its stub's leaf hash). It does not
// check the certificate or the txs' signatures.
func DecodeBlock(data []byte) (*Block, error) {
	var b Block
	if err := unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBlock, err)
	}
	if err := b.checkStubs(); err != nil {
		return nil, err
	}
	if err := b.CheckRoot(); err != nil {
		return nil, err
	}
	return &b, nil
}

// CheckRoot checks NumTxs and TxRoot against the txs.
func (b *Block) CheckRoot() error {
	if b.Header.NumTxs != uint64(len(b.Txs)) {
		return fmt.Errorf("%w: height %d: header says %d txs, block has %d", ErrBadBlock, b.Header.Height, b.Header.NumTxs, len(b.Txs))
	}
	if root := b.Tree().Root(); !bytes.Equal(root, b.Header.TxRoot) {
		return fmt.Errorf("%w: height %d: tx root mismatch", ErrBadBlock, b.Header.Height)
	}
	return nil
}
