package replica

import (
	"bytes"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestTransferPrunedBlock: a block a peer's retention pruned is applied
// by state transfer after the same checks as a full one (link,
// certificate, and the Merkle root over the stubs' leaf hashes), with the
// stubs giving the state the device's seq; a stub whose leaf hash does
// not match the root is refused.
func TestTransferPrunedBlock(t *testing.T) {
	build := func(t *testing.T, f *fixture) (b1, pruned *ledger.Block) {
		dev := newKey(t)
		enroll, err := ledger.SignTx(f.admin, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: "test",
			Enroll: &ledger.Enroll{DeviceID: "dev-1", PublicKey: der(t, dev)}})
		if err != nil {
			t.Fatal(err)
		}
		var recs [][]byte
		for seq := uint64(1); seq <= 3; seq++ {
			env, err := ledger.SignTx(dev, "dev-1", &ledger.Body{Kind: ledger.KindRecord, ChainID: "test",
				Record: &ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: seq, Payload: []byte("x")}})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, env)
		}
		certified := func(h uint64, prev [32]byte, txs [][]byte) *ledger.Block {
			b := &ledger.Block{Header: ledger.Header{ChainID: "test", Height: h, Prev: prev[:], TxRoot: ledger.NewTree(txs).Root(),
				NumTxs: uint64(len(txs)), Time: time.Now().UnixMilli(), Proposer: "node-a"}, Txs: txs}
			for i := range 3 {
				s, err := ledger.SignVote(f.nodes[i], f.g.Nodes[i].ID, &b.Header, 0)
				if err != nil {
					t.Fatal(err)
				}
				b.Cert.Sigs = append(b.Cert.Sigs, s)
			}
			return b
		}
		b1 = certified(1, f.g.Hash(), [][]byte{enroll})
		b2 := certified(2, b1.Header.Hash(), recs)
		txs, err := b2.DecodeTxs(0)
		if err != nil {
			t.Fatal(err)
		}
		if pruned, err = ledger.Prune(b2, txs, func(i int, _ *ledger.Tx) bool { return i == 1 }); err != nil {
			t.Fatal(err)
		}
		return b1, pruned
	}
	t.Run("applied", func(t *testing.T) {
		f := newFixture(t)
		b1, pruned := build(t, f)
		if err := f.d.transferred(fetchResult{peer: "node-b", blocks: [][]byte{encode(t, b1), encode(t, pruned)}}); err != nil {
			t.Fatal(err)
		}
		if h, _ := f.st.Tip(); h != 2 {
			t.Fatalf("height %d, want 2", h)
		}
		if d, ok := f.st.Device("dev-1"); !ok || d.LastSeq != 3 {
			t.Fatalf("dev-1: %+v, want last seq 3", d)
		}
		r := f.rounds[len(f.rounds)-1]
		if !r.Block.IsPruned() || !bytes.Equal(r.Tree.Root(), pruned.Header.TxRoot) || len(r.Txs) != 3 || !r.Txs[0].Tx.Pruned || r.Txs[1].Tx.Pruned {
			t.Fatalf("committed round: pruned %v, %d txs", r.Block.IsPruned(), len(r.Txs))
		}
	})
	t.Run("forged stub", func(t *testing.T) {
		f := newFixture(t)
		b1, pruned := build(t, f)
		pruned.Pruned[0].Leaf = bytes.Repeat([]byte{7}, 32)
		if err := f.d.transferred(fetchResult{peer: "node-b", blocks: [][]byte{encode(t, b1), encode(t, pruned)}}); err != nil {
			t.Fatal(err)
		}
		if h, _ := f.st.Tip(); h != 1 {
			t.Fatalf("height %d, want 1: the forged block applied", h)
		}
	})
}
