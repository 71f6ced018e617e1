package ledger

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"testing"
)

// testChainOf makes a genesis with n nodes and a certified block of ntx txs.
func testChainOf(t testing.TB, nodes, ntx int) (*Genesis, []*ecdsa.PrivateKey, *Block) {
	t.Helper()
	g := &Genesis{ChainID: testChain, Params: Params{MaxTxBytes: DefaultMaxTxBytes},
		Admins: []Admin{{ID: "admin", PublicKey: pubDER(t, fixedEd25519())}}}
	var keys []*ecdsa.PrivateKey
	for i := 0; i < nodes; i++ {
		k := newP256(t)
		keys = append(keys, k)
		g.Nodes = append(g.Nodes, Node{ID: "node-" + string(rune('a'+i)), PublicKey: pubDER(t, k)})
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	b := testBlock(t, ntx)
	b.Header.Prev = nil
	gh := g.Hash()
	b.Header.Prev = gh[:]
	b.Cert = Cert{View: 2}
	for i := 0; i < g.Quorum(); i++ {
		s, err := SignVote(keys[i], g.Nodes[i].ID, &b.Header, 2)
		if err != nil {
			t.Fatal(err)
		}
		b.Cert.Sigs = append(b.Cert.Sigs, s)
	}
	return g, keys, b
}

func TestReceiptVerifies(t *testing.T) {
	g, _, b := testChainOf(t, 4, 5)
	tree := NewTree(b.Txs)
	for i := range b.Txs {
		r, err := NewReceipt(b, tree, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeReceipt(enc)
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := got.Encode(); !bytes.Equal(again, enc) {
			t.Fatal("receipt does not round-trip")
		}
		if err := VerifyReceipt(g, got); err != nil {
			t.Fatalf("tx %d: %v", i, err)
		}
	}
}

func TestReceiptTamper(t *testing.T) {
	g, keys, b := testChainOf(t, 4, 5)
	tree := NewTree(b.Txs)
	fresh := func() *Receipt {
		r, err := NewReceipt(b, tree, 2)
		if err != nil {
			t.Fatal(err)
		}
		enc, _ := r.Encode() // a deep copy: cases must not share the block's slices
		if r, err = DecodeReceipt(enc); err != nil {
			t.Fatal(err)
		}
		return r
	}
	other, _, _ := testChainOf(t, 1, 1)
	cases := map[string]func(r *Receipt) *Genesis{
		"other tx":         func(r *Receipt) *Genesis { r.Tx = b.Txs[1]; return g },
		"index":            func(r *Receipt) *Genesis { r.Index = 3; return g },
		"index past size":  func(r *Receipt) *Genesis { r.Index = 9; return g },
		"height":           func(r *Receipt) *Genesis { r.Header.Height++; return g },
		"time":             func(r *Receipt) *Genesis { r.Header.Time++; return g },
		"num txs":          func(r *Receipt) *Genesis { r.Header.NumTxs = 4; return g },
		"proof step":       func(r *Receipt) *Genesis { r.Proof[0] = bytes.Repeat([]byte{1}, 32); return g },
		"cert view":        func(r *Receipt) *Genesis { r.Cert.View++; return g },
		"too few sigs":     func(r *Receipt) *Genesis { r.Cert.Sigs = r.Cert.Sigs[:2]; return g },
		"duplicate signer": func(r *Receipt) *Genesis { r.Cert.Sigs[2] = r.Cert.Sigs[0]; return g },
		"unknown signer":   func(r *Receipt) *Genesis { r.Cert.Sigs[0].Node = "node-z"; return g },
		"bad signature":    func(r *Receipt) *Genesis { r.Cert.Sigs[1].Sig = r.Cert.Sigs[0].Sig; return g },
		"other genesis":    func(r *Receipt) *Genesis { return other },
		"signed by a non-quorum key": func(r *Receipt) *Genesis {
			s, _ := SignVote(newP256(t), "node-d", &r.Header, r.Cert.View)
			r.Cert.Sigs[2] = s
			return g
		},
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			r := fresh()
			if err := VerifyReceipt(mut(r), r); !errors.Is(err, ErrReceipt) {
				t.Fatalf("got %v, want ErrReceipt", err)
			}
		})
	}
	// The fourth node's signature alone completes a quorum too.
	r := fresh()
	s, _ := SignVote(keys[3], g.Nodes[3].ID, &r.Header, r.Cert.View)
	r.Cert.Sigs[0] = s
	if err := VerifyReceipt(g, r); err != nil {
		t.Fatalf("another quorum: %v", err)
	}
}

func TestReceiptGolden(t *testing.T) {
	b := testBlock(t, 3)
	r, err := NewReceipt(b, NewTree(b.Txs), 1)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "receipt.golden", enc)
	if _, err := DecodeReceipt(append(enc, 0xff)); !errors.Is(err, ErrReceipt) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestQuorum(t *testing.T) {
	// Against the naive rule: the smallest q with 2q > n + f, f = floor((n-1)/3).
	for n := 1; n <= 40; n++ {
		f := (n - 1) / 3
		q := 1
		for 2*q <= n+f {
			q++
		}
		g := &Genesis{Nodes: make([]Node, n)}
		if got := g.Quorum(); got != q {
			t.Errorf("n=%d: quorum %d, want %d", n, got, q)
		}
		if n == 3*f+1 && g.Quorum() != 2*f+1 {
			t.Errorf("n=%d: quorum %d, want 2f+1=%d", n, g.Quorum(), 2*f+1)
		}
	}
}

func TestGenesisValidateReportsAll(t *testing.T) {
	_, err := ParseGenesis([]byte(`{"chain_id":"bad id!","nodes":[],"admins":[],"params":{"max_tx_bytes":1}}`))
	if err == nil {
		t.Fatal("bad genesis accepted")
	}
	for _, want := range []string{"chain_id", "no nodes", "no admins", "max_tx_bytes"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := ParseGenesis([]byte(`{"chain_id":"x","surprise":1}`)); err == nil {
		t.Fatal("unknown field accepted")
	}
}
