package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// TestMembershipProofFromState: the proof the daemon serves is the
// receipts of the changes the state applied, in order; it verifies with
// the genesis alone and gives the sets the state holds; a receipt
// certified by the new set verifies only with it; a missing receipt is an
// error, not a shorter proof.
func TestMembershipProofFromState(t *testing.T) {
	keys := map[string]*ecdsa.PrivateKey{}
	spki := func(id string) []byte {
		if keys[id] == nil {
			keys[id], _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		b, err := x509.MarshalPKIXPublicKey(keys[id].Public())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	g := &ledger.Genesis{ChainID: "members-test", Time: 1, Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
		Admins: []ledger.Admin{{ID: "admin", PublicKey: spki("admin")}}}
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		g.Nodes = append(g.Nodes, ledger.Node{ID: n, PublicKey: spki(n)})
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := state.New(g)
	if err != nil {
		t.Fatal(err)
	}
	receipts := map[[32]byte]*ledger.Receipt{}
	prev := g.Hash()
	// block commits txs at height, certified by signers, and applies it.
	block := func(height uint64, signers []string, txs ...[]byte) *ledger.Block {
		var decoded []*ledger.Tx
		for _, env := range txs {
			tx, err := ledger.DecodeTx(env, 0)
			if err != nil {
				t.Fatal(err)
			}
			decoded = append(decoded, tx)
		}
		parent := prev // Prev must not alias prev, which changes below
		b := &ledger.Block{Header: ledger.Header{ChainID: g.ChainID, Height: height, Prev: parent[:], TxRoot: ledger.NewTree(txs).Root(),
			NumTxs: uint64(len(txs)), Time: int64(height), Proposer: signers[0]}, Txs: txs}
		for _, n := range signers {
			s, err := ledger.SignVote(keys[n], n, &b.Header, 0)
			if err != nil {
				t.Fatal(err)
			}
			b.Cert.Sigs = append(b.Cert.Sigs, s)
		}
		prev = b.Header.Hash()
		if err := st.Apply(height, prev, decoded); err != nil {
			t.Fatal(err)
		}
		for i, tx := range decoded {
			r, err := ledger.NewReceipt(b, ledger.NewTree(txs), uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			receipts[tx.ID] = r
		}
		return b
	}
	reconfig := func(ids ...string) []byte {
		body := &ledger.Body{Kind: ledger.KindReconfig, ChainID: g.ChainID, ClusterReconfig: &ledger.ClusterReconfig{}}
		for _, id := range ids {
			body.ClusterReconfig.Nodes = append(body.ClusterReconfig.Nodes, ledger.Node{ID: id, PublicKey: spki(id), Addrs: []string{id + ":7000"}})
		}
		env, err := ledger.SignTx(keys["admin"], "admin", body)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	heartbeat := func(node string, at int64) []byte {
		env, err := ledger.SignTx(keys[node], node, &ledger.Body{Kind: ledger.KindHeartbeat, ChainID: g.ChainID, Heartbeat: &ledger.Heartbeat{Node: node, Time: at}})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	var lost bool
	ms := &membership{members: st.Members, prove: func(m *ledger.Members) (ledger.MembershipProof, error) {
		var p ledger.MembershipProof
		for _, e := range m.Changes() {
			r, ok := receipts[e.Tx]
			if !ok || lost {
				return nil, fmt.Errorf("no receipt of %x", e.Tx)
			}
			p = append(p, *r)
		}
		return p, nil
	}}
	check := func(changes int) *ledger.Members {
		t.Helper()
		enc, err := ms.MembershipProof()
		if err != nil {
			t.Fatal(err)
		}
		p, err := ledger.DecodeMembershipProof(enc)
		if err != nil || len(p) != changes {
			t.Fatalf("proof of %d changes (%v), want %d", len(p), err, changes)
		}
		m, err := ledger.VerifyMembership(g, p)
		if err != nil {
			t.Fatal(err)
		}
		want := st.Members().Epochs()
		if len(m.Epochs()) != len(want) {
			t.Fatalf("the proof gives %d sets, the state holds %d", len(m.Epochs()), len(want))
		}
		for i, e := range m.Epochs() {
			if e.Start != want[i].Start || fmt.Sprint(e.IDs()) != fmt.Sprint(want[i].IDs()) {
				t.Fatalf("set %d: %d %v, the state's %d %v", i, e.Start, e.IDs(), want[i].Start, want[i].IDs())
			}
		}
		return m
	}
	check(0)
	block(1, []string{"n1", "n2", "n3"}, reconfig("n2", "n3", "n4", "n5"))
	check(1)
	for h := uint64(2); h < ledger.MembersFrom(1); h++ {
		block(h, []string{"n1", "n2", "n3"}, heartbeat("n1", int64(h)))
	}
	after := block(ledger.MembersFrom(1), []string{"n2", "n3", "n5"}, heartbeat("n5", 1000))
	r, err := ledger.NewReceipt(after, ledger.NewTree(after.Txs), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.VerifyReceipt(g, r); !errors.Is(err, ledger.ErrCert) {
		t.Fatalf("a receipt of the new set with the genesis alone: %v", err)
	}
	block(ledger.MembersFrom(1)+1, []string{"n2", "n3", "n5"}, reconfig("n3", "n4", "n5", "n6", "n7"))
	m := check(2)
	if err := m.VerifyReceipt(r); err != nil {
		t.Fatalf("a receipt of the new set with the proof's sets: %v", err)
	}
	lost = true
	if enc, err := ms.MembershipProof(); err != nil || len(enc) < 100 {
		t.Fatalf("the built proof is kept: %d bytes, %v", len(enc), err)
	}
	ms.n = 0 // as if another change came: it is built again
	if _, err := ms.MembershipProof(); err == nil {
		t.Fatal("a change without its receipt: no error")
	}
}
