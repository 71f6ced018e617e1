package ledger

import (
	"bytes"
	"errors"
	"testing"
)

// mixedBlock is a certified block of records of dev-1 and enrollments:
// txs 0, 2, 3 are records, 1 and 4 enrollments.
func mixedBlock(t testing.TB) (*Genesis, *Block) {
	t.Helper()
	g, keys, b := testChainOf(t, 1, 0)
	key := fixedEd25519()
	sign := func(kid string, body *Body) []byte {
		env, err := SignTx(key, kid, body)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	enroll := func(dev string) *Body {
		return &Body{Kind: KindEnroll, ChainID: testChain, Enroll: &Enroll{DeviceID: dev, PublicKey: pubDER(t, key)}}
	}
	b.Txs = [][]byte{sign("dev-1", record("dev-1", 1)), sign("admin", enroll("dev-2")), sign("dev-1", record("dev-1", 2)),
		sign("dev-1", record("dev-1", 5)), sign("admin", enroll("dev-3"))}
	b.Header.NumTxs = uint64(len(b.Txs))
	b.Header.TxRoot = NewTree(b.Txs).Root()
	s, err := SignVote(keys[0], g.Nodes[0].ID, &b.Header, 2)
	if err != nil {
		t.Fatal(err)
	}
	b.Cert = Cert{View: 2, Sigs: []Sig{s}}
	return g, b
}

func TestPruneBlock(t *testing.T) {
	g, full := mixedBlock(t)
	txs, err := full.DecodeTxs(0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prune(full, txs, func(i int, _ *Tx) bool { return i == 2 })
	if err != nil {
		t.Fatal(err)
	}
	if !p.IsPruned() || full.IsPruned() {
		t.Fatal("IsPruned wrong")
	}
	if len(p.Pruned) != 2 || p.Pruned[0].Index != 0 || p.Pruned[1].Index != 3 {
		t.Fatalf("stubs %+v, want txs 0 and 3", p.Pruned)
	}
	for _, i := range []int{1, 2, 4} {
		if !bytes.Equal(p.Txs[i], full.Txs[i]) {
			t.Fatalf("tx %d changed", i)
		}
	}
	enc, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	fullEnc, _ := full.Encode()
	if len(enc) >= len(fullEnc) {
		t.Fatalf("pruned block %d bytes, full %d", len(enc), len(fullEnc))
	}
	got, err := DecodeBlock(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Hash() != full.Header.Hash() {
		t.Fatal("block hash changed")
	}
	if err := g.VerifyCert(&got.Header, &got.Cert); err != nil {
		t.Fatal(err)
	}
	// Every proof is the same as the full block's, so every receipt a
	// device holds still matches what the gateway keeps.
	ft, pt := full.Tree(), got.Tree()
	for i := range full.Txs {
		fp, _ := ft.Proof(uint64(i))
		pp, _ := pt.Proof(uint64(i))
		if len(fp) != len(pp) {
			t.Fatalf("tx %d: proof lengths differ", i)
		}
		for k := range fp {
			if !bytes.Equal(fp[k], pp[k]) {
				t.Fatalf("tx %d: proofs differ", i)
			}
		}
		held, err := NewReceipt(full, ft, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		held.Header, held.Cert = got.Header, got.Cert
		if err := VerifyReceipt(g, held); err != nil {
			t.Fatalf("tx %d: receipt against the pruned block: %v", i, err)
		}
		_, err = NewReceipt(got, pt, uint64(i))
		if pruned := i == 0 || i == 3; pruned != errors.Is(err, ErrPruned) {
			t.Fatalf("tx %d: NewReceipt from the pruned block: %v", i, err)
		}
	}
	stubs, err := got.DecodeTxs(0)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stubs {
		if s.ID != txs[i].ID || s.Body.Kind != txs[i].Body.Kind || s.Body.Subject() != txs[i].Body.Subject() {
			t.Fatalf("tx %d: decoded %+v, want %+v", i, s, txs[i])
		}
		if pruned := i == 0 || i == 3; s.Pruned != pruned {
			t.Fatalf("tx %d: Pruned = %v", i, s.Pruned)
		}
		if s.Pruned {
			if s.Body.Record.Seq != txs[i].Body.Record.Seq {
				t.Fatalf("tx %d: seq %d, want %d", i, s.Body.Record.Seq, txs[i].Body.Record.Seq)
			}
			if err := s.Verify(nil); !errors.Is(err, ErrPruned) {
				t.Fatalf("Verify of a stub = %v", err)
			}
		}
	}
	// Pruning again keeps the stubs and adds the last record's; a third
	// time changes nothing.
	again, err := Prune(got, stubs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Pruned) != 3 || again.Pruned[1].Index != 2 {
		t.Fatalf("stubs after a second prune: %+v", again.Pruned)
	}
	if !bytes.Equal(again.Tree().Root(), full.Header.TxRoot) {
		t.Fatal("root changed")
	}
	txs3, _ := again.DecodeTxs(0)
	if same, _ := Prune(again, txs3, nil); same != again {
		t.Fatal("a prune that drops nothing made a new block")
	}
}

func TestDecodePrunedBlockRefuses(t *testing.T) {
	_, full := mixedBlock(t)
	txs, _ := full.DecodeTxs(0)
	for _, tc := range []struct {
		name string
		edit func(b *Block)
	}{
		{"index out of range", func(b *Block) { b.Pruned[1].Index = 5 }},
		{"indexes out of order", func(b *Block) { b.Pruned[0], b.Pruned[1] = b.Pruned[1], b.Pruned[0] }},
		{"same index twice", func(b *Block) { b.Pruned[1].Index = 0 }},
		{"stub over an envelope", func(b *Block) { b.Txs[0] = full.Txs[0] }},
		{"empty tx without stub", func(b *Block) { b.Txs[1] = []byte{} }},
		{"wrong leaf", func(b *Block) { b.Pruned[0].Leaf = bytes.Repeat([]byte{1}, 32) }},
		{"short leaf", func(b *Block) { b.Pruned[0].Leaf = b.Pruned[0].Leaf[:31] }},
		{"short id", func(b *Block) { b.Pruned[0].ID = nil }},
		{"seq 0", func(b *Block) { b.Pruned[0].Seq = 0 }},
		{"bad device id", func(b *Block) { b.Pruned[0].Device = "a b" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Prune(full, txs, nil)
			if err != nil {
				t.Fatal(err)
			}
			p.Pruned = append([]Stub(nil), p.Pruned...)
			p.Txs = append([][]byte(nil), p.Txs...)
			tc.edit(p)
			enc, err := p.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeBlock(enc); !errors.Is(err, ErrBadBlock) {
				t.Fatalf("DecodeBlock = %v, want ErrBadBlock", err)
			}
		})
	}
}

// FuzzDecodePrunedBlock decodes blocks seeded with pruned forms: what
// decodes re-encodes to its bytes, and its tree, txs and receipts never
// panic.
func FuzzDecodePrunedBlock(f *testing.F) {
	_, full := mixedBlock(f)
	txs, _ := full.DecodeTxs(0)
	for _, keep := range []func(int, *Tx) bool{nil, func(i int, _ *Tx) bool { return i == 2 }} {
		p, err := Prune(full, txs, keep)
		if err != nil {
			f.Fatal(err)
		}
		enc, err := p.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		b, err := DecodeBlock(data)
		if err != nil {
			return
		}
		enc, err := b.Encode()
		if err != nil || !bytes.Equal(enc, data) {
			t.Fatal("decoded block does not re-encode to its bytes")
		}
		tree := b.Tree()
		if !bytes.Equal(tree.Root(), b.Header.TxRoot) {
			t.Fatal("decoded block's tree does not match its root")
		}
		dtxs, err := b.DecodeTxs(0)
		for i := range b.Txs {
			_, _ = NewReceipt(b, tree, uint64(i))
			if err == nil && b.stub(uint64(i)) != nil && !dtxs[i].Pruned {
				t.Fatal("a stub decoded as a whole tx")
			}
		}
		if err == nil {
			_, _ = Prune(b, dtxs, nil)
		}
	})
}
