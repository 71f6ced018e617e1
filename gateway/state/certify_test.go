package state

import (
	"crypto"
	"crypto/sha256"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fourNodes is a fixture whose genesis has four nodes (quorum 3).
func fourNodes(t *testing.T) (*fixture, []crypto.Signer) {
	f := &fixture{t: t, admin: newP256(t)}
	var keys []crypto.Signer
	g := &ledger.Genesis{ChainID: chainID, Params: ledger.Params{MaxTxBytes: 4096},
		Admins: []ledger.Admin{{ID: "admin", PublicKey: der(t, f.admin)}}}
	for i := 0; i < 4; i++ {
		k := newP256(t)
		keys = append(keys, k)
		g.Nodes = append(g.Nodes, ledger.Node{ID: "node-" + string(rune('1'+i)), PublicKey: der(t, k)})
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := New(g)
	if err != nil {
		t.Fatal(err)
	}
	f.st, f.node = st, keys[0]
	return f, keys
}

func attestBody(node string, height uint64, hash [32]byte) ledger.Body {
	return ledger.Body{Kind: ledger.KindSnapshot, NodeSnapshot: &ledger.NodeSnapshot{Node: node, Height: height, Hash: hash[:]}}
}

// TestCertify: a snapshot is certified once a quorum of distinct nodes
// attested the same height and hash; an attestation is by its own node,
// above that node's last; a newer certified snapshot replaces an older.
func TestCertify(t *testing.T) {
	f, keys := fourNodes(t)
	h1 := sha256.Sum256([]byte("state 1"))
	h2 := sha256.Sum256([]byte("state 2"))
	other := sha256.Sum256([]byte("a lie"))
	node := func(i int) string { return "node-" + string(rune('1'+i)) }
	att := func(i int, height uint64, hash [32]byte) []byte {
		return f.sign(keys[i], node(i), attestBody(node(i), height, hash))
	}
	f.commit(f.sign(f.admin, "admin", configBody("group:g", 1)))

	// Who may attest.
	_, err := f.st.Check(f.sign(keys[0], node(0), attestBody(node(1), 1, h1)))
	wantReason(t, err, ledger.ReasonForbidden)
	_, err = f.st.Check(f.sign(f.admin, "admin", attestBody("admin", 1, h1)))
	wantReason(t, err, ledger.ReasonUnknownAuthor)
	_, err = f.st.Check(f.sign(keys[1], node(0), attestBody(node(0), 1, h1)))
	wantReason(t, err, ledger.ReasonBadSignature)

	f.commit(att(0, 1, h1), att(3, 1, other))
	if _, ok := f.st.Certified(); ok {
		t.Fatal("certified with one attestation")
	}
	f.commit(att(1, 1, h1))
	if _, ok := f.st.Certified(); ok {
		t.Fatal("certified with two attestations of a quorum of three")
	}
	// Once per node and height: the height is its sequence number.
	b := f.st.NewBatch()
	wantReason(t, f.addOne(b, att(0, 1, h1)), ledger.ReasonReplay)
	if err := f.addOne(b, att(2, 1, h1)); err != nil {
		t.Fatal(err)
	}
	wantReason(t, f.addOne(b, att(2, 1, h1)), ledger.ReasonReplay)
	f.commit(att(2, 1, h1))
	c, ok := f.st.Certified()
	if !ok || c.Height != 1 || c.Hash != h1 || len(c.By) != 3 || c.By[0].Node != node(0) || c.By[2].Node != node(2) {
		t.Fatalf("certified %+v %v", c, ok)
	}
	if c.By[0].Block != 2 || c.By[0].Index != 0 || c.By[2].Block != 4 {
		t.Fatalf("attestations located at %+v", c.By)
	}
	if got := f.st.LastAttested(node(3)); got != 1 {
		t.Fatalf("LastAttested(node-4) = %d", got)
	}
	// A newer one replaces it, even when the nodes attested it in
	// another order; the lying node is left out.
	f.commit(att(2, 3, h2), att(3, 3, other))
	f.commit(att(0, 3, h2))
	f.commit(att(1, 3, h2))
	c, ok = f.st.Certified()
	if !ok || c.Height != 3 || c.Hash != h2 || len(c.By) != 3 {
		t.Fatalf("certified %+v %v", c, ok)
	}
	// Restored from a snapshot, the state says the same and goes on.
	r, err := Restore(f.st.Genesis(), encodeState(t, f.st))
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := r.Certified()
	if rc.Height != 3 || rc.Hash != h2 || len(rc.By) != 3 || r.LastAttested(node(3)) != 3 {
		t.Fatalf("restored certified %+v", rc)
	}
	// Only four kept per node.
	for h := uint64(4); h < 10; h++ {
		f.commit(att(3, h, other))
	}
	if n := len(f.st.attests[node(3)]); n != maxAttests {
		t.Fatalf("%d attestations kept of node-4", n)
	}
}
