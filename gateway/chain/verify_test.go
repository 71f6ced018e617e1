package chain

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestVerifyOldHeartbeats: a chain written before heartbeat times had to
// rise may hold one that does not (its node's clock stepped back); Verify
// says so as a warning, and the chain stays valid.
func TestVerifyOldHeartbeats(t *testing.T) {
	node, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, err := ledger.MarshalPublicKey(node)
	if err != nil {
		t.Fatal(err)
	}
	g := &ledger.Genesis{ChainID: "old", Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
		Nodes: []ledger.Node{{ID: "node-1", PublicKey: pub}}}
	blog, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	prev := g.Hash()
	// Blocks as an older gateway wrote them: heartbeats at 2000, then 1000.
	for i, at := range []int64{2000, 1000} {
		env, err := ledger.SignTx(node, "node-1", &ledger.Body{Kind: ledger.KindHeartbeat, ChainID: g.ChainID,
			Heartbeat: &ledger.Heartbeat{Node: "node-1", Time: at}})
		if err != nil {
			t.Fatal(err)
		}
		envs := [][]byte{env}
		b := &ledger.Block{Header: ledger.Header{ChainID: g.ChainID, Height: uint64(i + 1), Prev: prev[:],
			TxRoot: ledger.NewTree(envs).Root(), NumTxs: 1, Time: at, Proposer: "node-1"}, Txs: envs}
		sig, err := ledger.SignVote(node, "node-1", &b.Header, 0)
		if err != nil {
			t.Fatal(err)
		}
		b.Cert = ledger.Cert{Sigs: []ledger.Sig{sig}}
		rec, err := b.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if err := blog.Append(rec); err != nil {
			t.Fatal(err)
		}
		prev = b.Header.Hash()
	}
	sum, err := Verify(g, blog, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if sum.Blocks != 2 || len(sum.Warnings) != 1 || !strings.Contains(sum.Warnings[0], "block 2 tx 0") {
		t.Errorf("summary %+v: want 2 blocks and one warning, about block 2", sum)
	}
}
