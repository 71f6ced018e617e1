package ledger

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"testing"
)

// snapshotChain makes a genesis of four nodes and a certified block
// holding a node.snapshot tx of each node: node-a to node-c attest
// (16, hash), node-d attests another hash. It returns the genesis, the
// hash, and the receipts of the four txs.
func snapshotChain(t testing.TB) (*Genesis, []byte, []Receipt) {
	t.Helper()
	g := &Genesis{ChainID: testChain, Params: Params{MaxTxBytes: DefaultMaxTxBytes},
		Admins: []Admin{{ID: "admin", PublicKey: pubDER(t, fixedEd25519())}}}
	var keys []*ecdsa.PrivateKey
	for i := 0; i < 4; i++ {
		k := newP256(t)
		keys = append(keys, k)
		g.Nodes = append(g.Nodes, Node{ID: "node-" + string(rune('a'+i)), PublicKey: pubDER(t, k)})
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	hash := sha256.Sum256([]byte("the state at 16"))
	other := sha256.Sum256([]byte("another state"))
	var txs [][]byte
	for i, n := range g.Nodes {
		h := hash[:]
		if i == 3 {
			h = other[:]
		}
		env, err := SignTx(keys[i], n.ID, &Body{Kind: KindSnapshot, ChainID: testChain, NodeSnapshot: &NodeSnapshot{Node: n.ID, Height: 16, Hash: h}})
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, env)
	}
	gh := g.Hash()
	b := &Block{Header: Header{ChainID: testChain, Height: 17, Prev: gh[:], TxRoot: NewTree(txs).Root(), NumTxs: uint64(len(txs)), Time: 1, Proposer: "node-a"}, Txs: txs}
	for i := 0; i < g.Quorum(); i++ {
		s, err := SignVote(keys[i], g.Nodes[i].ID, &b.Header, 0)
		if err != nil {
			t.Fatal(err)
		}
		b.Cert.Sigs = append(b.Cert.Sigs, s)
	}
	tree := NewTree(txs)
	var rs []Receipt
	for i := range txs {
		r, err := NewReceipt(b, tree, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, *r)
	}
	return g, hash[:], rs
}

func TestSnapshotProof(t *testing.T) {
	g, hash, rs := snapshotChain(t)
	other := sha256.Sum256([]byte("another state"))
	tampered := rs[1]
	tampered.Tx = bytes.Clone(tampered.Tx)
	tampered.Tx[len(tampered.Tx)-1] ^= 1
	badCert := rs[1]
	badCert.Cert = Cert{}
	cases := []struct {
		name string
		p    SnapshotProof
		ok   bool
	}{
		{"quorum", SnapshotProof{Height: 16, Hash: hash, Receipts: rs[:3]}, true},
		{"quorum in another order", SnapshotProof{Height: 16, Hash: hash, Receipts: []Receipt{rs[2], rs[0], rs[1]}}, true},
		{"two nodes", SnapshotProof{Height: 16, Hash: hash, Receipts: rs[:2]}, false},
		{"a node twice", SnapshotProof{Height: 16, Hash: hash, Receipts: []Receipt{rs[0], rs[1], rs[1]}}, false},
		{"a node attesting another hash", SnapshotProof{Height: 16, Hash: hash, Receipts: rs}, false},
		{"forged hash", SnapshotProof{Height: 16, Hash: other[:], Receipts: rs[:3]}, false},
		{"another height", SnapshotProof{Height: 15, Hash: hash, Receipts: rs[:3]}, false},
		{"tx changed", SnapshotProof{Height: 16, Hash: hash, Receipts: []Receipt{rs[0], tampered, rs[2]}}, false},
		{"no certificate", SnapshotProof{Height: 16, Hash: hash, Receipts: []Receipt{rs[0], badCert, rs[2]}}, false},
		{"short hash", SnapshotProof{Height: 16, Hash: hash[:31], Receipts: rs[:3]}, false},
		{"height 0", SnapshotProof{Height: 0, Hash: hash, Receipts: rs[:3]}, false},
		{"too many receipts", SnapshotProof{Height: 16, Hash: hash, Receipts: append(append([]Receipt{}, rs...), rs[0])}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc, err := c.p.Encode()
			if err != nil {
				t.Fatal(err)
			}
			p, err := DecodeSnapshotProof(enc)
			if err != nil {
				t.Fatal(err)
			}
			err = VerifySnapshotProof(g, p)
			if c.ok != (err == nil) {
				t.Fatalf("VerifySnapshotProof = %v, want ok %v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrSnapshotProof) {
				t.Fatalf("%v does not wrap ErrSnapshotProof", err)
			}
		})
	}
	// Another chain's genesis: its nodes certified nothing.
	og, _, _ := snapshotChain(t)
	if err := VerifySnapshotProof(og, &SnapshotProof{Height: 16, Hash: hash, Receipts: rs[:3]}); err == nil {
		t.Fatal("verified against another genesis")
	}
}

// FuzzDecodeSnapshotProof: a proof comes from a peer. Decoding and
// verifying never panic, and nothing but a real quorum verifies.
func FuzzDecodeSnapshotProof(f *testing.F) {
	g, hash, rs := snapshotChain(f)
	for _, p := range []SnapshotProof{{Height: 16, Hash: hash, Receipts: rs[:3]}, {Height: 16, Hash: hash, Receipts: rs}, {Height: 1, Hash: hash}} {
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
		p, err := DecodeSnapshotProof(data)
		if err != nil {
			return
		}
		if VerifySnapshotProof(g, p) == nil && (p.Height != 16 || !bytes.Equal(p.Hash, hash)) {
			t.Fatalf("verified a proof of height %d hash %x", p.Height, p.Hash)
		}
	})
}
