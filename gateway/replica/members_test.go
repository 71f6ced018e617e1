package replica

import (
	"crypto/ecdsa"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// block is block `height` on prev holding env, certified by signers.
func block(t *testing.T, height uint64, prev [32]byte, env []byte, signers map[string]*ecdsa.PrivateKey) *ledger.Block {
	t.Helper()
	tree := ledger.NewTree([][]byte{env})
	b := &ledger.Block{Header: ledger.Header{ChainID: "test", Height: height, Prev: prev[:], TxRoot: tree.Root(),
		NumTxs: 1, Time: time.Now().UnixMilli(), Proposer: "node-a"}, Txs: [][]byte{env}}
	for id, k := range signers {
		s, err := ledger.SignVote(k, id, &b.Header, 0)
		if err != nil {
			t.Fatal(err)
		}
		b.Cert.Sigs = append(b.Cert.Sigs, s)
	}
	return b
}

// TestTransferReconfig: state transfer applies a member change (node-d
// replaced by node-e), tells the core of it (Reconfigured before Caught),
// checks every block's certificate with the set in force at its height:
// from MembersFrom(1) = 81 on, node-e's vote counts and node-d's does not.
// The app names the change to the core for a block it executes itself
// (pbft.Reconfigurer).
func TestTransferReconfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		signer string // the third signer of block 81
		ok     bool
	}{{"new member signs", "node-e", true}, {"removed member signs", "node-d", false}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ke := newKey(t)
			keys := map[string]*ecdsa.PrivateKey{"node-a": f.nodes[0], "node-b": f.nodes[1], "node-c": f.nodes[2], "node-d": f.nodes[3], "node-e": ke}
			nodes := slices.Clone(f.g.Nodes[:3])
			nodes = append(nodes, ledger.Node{ID: "node-e", PublicKey: der(t, ke), Addrs: []string{"127.0.0.1:2"}})
			env, err := ledger.SignTx(f.admin, "admin", &ledger.Body{Kind: ledger.KindReconfig, ChainID: "test",
				ClusterReconfig: &ledger.ClusterReconfig{Nodes: nodes}})
			if err != nil {
				t.Fatal(err)
			}
			if ids, ok := f.r.app.Reconfig(1, encode(t, block(t, 1, f.g.Hash(), env, nil))); !ok || !slices.Equal(ids, []string{"node-a", "node-b", "node-c", "node-e"}) {
				t.Fatalf("app.Reconfig = %v, %v", ids, ok)
			}
			from := ledger.MembersFrom(1)
			var blocks [][]byte
			prev := f.g.Hash()
			for h := uint64(1); h <= from; h++ {
				tx := env
				if h > 1 {
					tx = f.enrollBlock(t, h, prev, fmt.Sprintf("dev-%d", h)).Txs[0]
				}
				signers := map[string]*ecdsa.PrivateKey{"node-a": keys["node-a"], "node-b": keys["node-b"], "node-d": keys["node-d"]}
				if h == from {
					signers = map[string]*ecdsa.PrivateKey{"node-a": keys["node-a"], "node-b": keys["node-b"], tc.signer: keys[tc.signer]}
				}
				b := block(t, h, prev, tx, signers)
				blocks = append(blocks, encode(t, b))
				prev = b.Header.Hash()
			}
			if err := f.d.transferred(fetchResult{peer: "node-b", blocks: blocks}); err != nil {
				t.Fatal(err)
			}
			want := from
			if !tc.ok {
				want = from - 1
			}
			if h, _ := f.st.Tip(); h != want {
				t.Fatalf("height %d after the transfer, want %d", h, want)
			}
			eps := f.d.core.Epochs()
			if len(eps) != 2 || eps[1].Start != from || !slices.Equal(eps[1].Nodes, []string{"node-a", "node-b", "node-c", "node-e"}) {
				t.Fatalf("the core's epochs: %+v", eps)
			}
			// node-d's votes verify only as a former member's.
			if _, ok := f.st.Members().Ever("node-d"); !ok {
				t.Error("node-d's key forgotten")
			}
		})
	}
}
