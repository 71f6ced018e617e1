package ledger

import (
	"bytes"
	"errors"
	"fmt"
)

// Pruned blocks.
//
// A retention policy may drop the envelopes of old data.record txs from
// the gateway's disk. The block that held them stays, in pruned form:
//
//	Block = {1: Header, 2: [* bstr], 3: Cert, ? 4: [+ Stub]}
//	Stub  = {1: index uint, 2: leaf bstr .size 32, 3: id bstr .size 32,
//	         4: device tstr, 5: seq uint}
//
// Key 4 is present only in a pruned block: a full block's encoding is
// unchanged, and a decoder that does not know key 4 refuses a pruned
// block as an unknown field. For each stub, Txs[index] is the empty byte
// string (no envelope is empty); every other entry of Txs is the envelope
// it always was. Stubs are in strictly increasing index order. A stub
// keeps what the chain still needs of the tx:
//
//   - leaf, the RFC 9162 leaf hash H(0x00 || envelope): with the other
//     leaves it gives the same tree, so the header's TxRoot, every
//     inclusion proof and every receipt a device holds still check;
//   - id, the tx id (SHA-256 of the envelope), so the tx can still be
//     named;
//   - device and seq, what the deterministic state keeps of a record (the
//     device's last sequence number): a replay after pruning refuses an
//     old seq as it did before.
//
// The header and the certificate are never changed, so the block hash and
// the certificate still verify. What is lost is the record's envelope:
// its payload, stream, device time, content type and signature.

// Stub stands in a pruned block for a data.record tx whose envelope was
// dropped.
type Stub struct {
	Index  uint64 `cbor:"1,keyasint"`
	Leaf   []byte `cbor:"2,keyasint"` // RFC 9162 leaf hash of the envelope
	ID     []byte `cbor:"3,keyasint"` // tx id: SHA-256 of the envelope
	Device string `cbor:"4,keyasint"`
	Seq    uint64 `cbor:"5,keyasint"`
}

// ErrPruned reports a tx whose envelope a retention policy dropped.
var ErrPruned = errors.New("ledger: pruned by retention")

// IsPruned reports whether b is in pruned form.
func (b *Block) IsPruned() bool { return len(b.Pruned) > 0 }

// stub returns the stub of tx i, or nil if tx i is whole.
func (b *Block) stub(i uint64) *Stub {
	for k := range b.Pruned {
		if b.Pruned[k].Index == i {
			return &b.Pruned[k]
		}
	}
	return nil
}

// checkStubs checks the shape of a pruned block's stubs.
func (b *Block) checkStubs() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: height %d: pruned: %s", ErrBadBlock, b.Header.Height, fmt.Sprintf(format, a...))
	}
	next := uint64(0)
	for k, s := range b.Pruned {
		switch {
		case s.Index < next:
			return bad("stub %d: index %d not after %d", k, s.Index, next)
		case s.Index >= uint64(len(b.Txs)):
			return bad("stub %d: index %d of %d txs", k, s.Index, len(b.Txs))
		case len(b.Txs[s.Index]) != 0:
			return bad("stub %d: tx %d is not empty", k, s.Index)
		case len(s.Leaf) != 32 || len(s.ID) != 32:
			return bad("stub %d: leaf or id not 32 bytes", k)
		case !ValidID(s.Device):
			return bad("stub %d: device id %q", k, s.Device)
		case s.Seq == 0:
			return bad("stub %d: seq 0", k)
		}
		next = s.Index + 1
	}
	k := 0
	for i, tx := range b.Txs {
		if k < len(b.Pruned) && b.Pruned[k].Index == uint64(i) {
			k++
			continue
		}
		if len(tx) == 0 {
			return bad("tx %d is empty and has no stub", i)
		}
	}
	return nil
}

// LeafHashes returns the RFC 9162 leaf hash of every tx of b, in order:
// a stub's stored hash for a pruned tx.
func (b *Block) LeafHashes() [][]byte {
	out := make([][]byte, len(b.Txs))
	k := 0
	for i, tx := range b.Txs {
		if k < len(b.Pruned) && b.Pruned[k].Index == uint64(i) {
			out[i] = b.Pruned[k].Leaf
			k++
			continue
		}
		out[i] = LeafHash(tx)
	}
	return out
}

// Tree returns b's Merkle tree, from the envelopes or, in a pruned block,
// from the stubs' leaf hashes where envelopes were dropped.
func (b *Block) Tree() *Tree {
	if !b.IsPruned() {
		return NewTree(b.Txs)
	}
	return NewTreeFromHashes(b.LeafHashes())
}

// DecodeTxs decodes b's txs. A pruned tx comes back as a Tx with its id,
// Pruned set, no envelope, and a data.record body holding only the
// device and seq: enough for the state to apply, not to verify.
func (b *Block) DecodeTxs(maxBytes int) ([]*Tx, error) {
	txs := make([]*Tx, len(b.Txs))
	k := 0
	for i, env := range b.Txs {
		if k < len(b.Pruned) && b.Pruned[k].Index == uint64(i) {
			txs[i] = b.Pruned[k].tx(b.Header.ChainID)
			k++
			continue
		}
		tx, err := DecodeTx(env, maxBytes)
		if err != nil {
			return nil, fmt.Errorf("ledger: block %d tx %d: %w", b.Header.Height, i, err)
		}
		txs[i] = tx
	}
	return txs, nil
}

// tx is the stand-in Tx of a stub.
func (s *Stub) tx(chainID string) *Tx {
	t := &Tx{Author: s.Device, Pruned: true,
		Body: Body{Kind: KindRecord, ChainID: chainID, Record: &Record{DeviceID: s.Device, Seq: s.Seq}}}
	copy(t.ID[:], s.ID)
	return t
}

// Prune returns b in pruned form: every data.record tx whose index keep
// does not accept is replaced by a stub (keep nil: every one). txs are
// b's txs decoded (b.DecodeTxs). The header and certificate are shared
// with b. It returns b itself if nothing is pruned.
func Prune(b *Block, txs []*Tx, keep func(i int, tx *Tx) bool) (*Block, error) {
	if len(txs) != len(b.Txs) {
		return nil, fmt.Errorf("ledger: prune block %d: %d decoded txs for %d", b.Header.Height, len(txs), len(b.Txs))
	}
	out := &Block{Header: b.Header, Cert: b.Cert, Txs: make([][]byte, len(b.Txs))}
	old := 0
	changed := false
	for i, tx := range txs {
		if old < len(b.Pruned) && b.Pruned[old].Index == uint64(i) {
			out.Pruned = append(out.Pruned, b.Pruned[old])
			out.Txs[i] = []byte{}
			old++
			continue
		}
		if tx.Body.Kind != KindRecord || tx.Body.Record == nil || (keep != nil && keep(i, tx)) {
			out.Txs[i] = b.Txs[i]
			continue
		}
		if !bytes.Equal(tx.Envelope, b.Txs[i]) {
			return nil, fmt.Errorf("ledger: prune block %d: tx %d does not match its envelope", b.Header.Height, i)
		}
		id := tx.ID
		out.Pruned = append(out.Pruned, Stub{Index: uint64(i), Leaf: LeafHash(b.Txs[i]), ID: id[:],
			Device: tx.Body.Record.DeviceID, Seq: tx.Body.Record.Seq})
		out.Txs[i] = []byte{}
		changed = true
	}
	if !changed {
		return b, nil
	}
	return out, nil
}

// PruneRecord returns the log record data (an encoded block, full or
// pruned) with every data.record tx pruned, and how many txs it pruned
// now; it returns data itself when there is nothing left to prune. It is
// what a retention policy does to each block of a sealed segment.
func PruneRecord(data []byte) ([]byte, int, error) {
	b, err := DecodeBlock(data)
	if err != nil {
		return nil, 0, err
	}
	txs, err := b.DecodeTxs(0)
	if err != nil {
		return nil, 0, err
	}
	pb, err := Prune(b, txs, nil)
	if err != nil {
		return nil, 0, err
	}
	if pb == b {
		return data, 0, nil
	}
	out, err := pb.Encode()
	if err != nil {
		return nil, 0, err
	}
	return out, len(pb.Pruned) - len(b.Pruned), nil
}
