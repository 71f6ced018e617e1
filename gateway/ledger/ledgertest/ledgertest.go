// Package ledgertest builds certified chains in memory for tests: a
// genesis of named nodes and one admin, blocks signed by the nodes a test
// names (so a test can sign with the wrong set), and the txs of a member
// change and of snapshot attestations.
package ledgertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Admin is the id of the chain's one admin.
const Admin = "admin"

// Chain is a chain being built: its genesis, the keys of every node it
// knows (members or not), and its blocks.
type Chain struct {
	G      *ledger.Genesis
	Keys   map[string]crypto.Signer // node id -> key; the admin's under Admin
	Blocks []*ledger.Block          // Blocks[h-1] is block h
	Recs   [][]byte                 // their encodings
}

// New returns a chain whose genesis names the nodes of ids, with one
// admin and no block.
func New(t testing.TB, chainID string, ids ...string) *Chain {
	t.Helper()
	c := &Chain{Keys: map[string]crypto.Signer{}}
	c.G = &ledger.Genesis{ChainID: chainID, Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
		Nodes: c.Nodes(t, ids...), Admins: []ledger.Admin{{ID: Admin, PublicKey: c.pub(t, Admin)}}}
	return c
}

// key returns id's key, made on first use.
func (c *Chain) key(t testing.TB, id string) crypto.Signer {
	t.Helper()
	if k, ok := c.Keys[id]; ok {
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.Keys[id] = k
	return k
}

func (c *Chain) pub(t testing.TB, id string) []byte {
	t.Helper()
	pub, err := ledger.MarshalPublicKey(c.key(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// Nodes returns the nodes of ids with their keys (made on first use).
func (c *Chain) Nodes(t testing.TB, ids ...string) []ledger.Node {
	t.Helper()
	nodes := make([]ledger.Node, len(ids))
	for i, id := range ids {
		nodes[i] = ledger.Node{ID: id, PublicKey: c.pub(t, id)}
	}
	return nodes
}

// Sign returns the envelope of body signed by id's key.
func (c *Chain) Sign(t testing.TB, id string, body *ledger.Body) []byte {
	t.Helper()
	body.ChainID = c.G.ChainID
	env, err := ledger.SignTx(c.key(t, id), id, body)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Reconfig returns a cluster.reconfig to the set ids, signed by the
// admin.
func (c *Chain) Reconfig(t testing.TB, ids ...string) []byte {
	t.Helper()
	return c.Sign(t, Admin, &ledger.Body{Kind: ledger.KindReconfig, ClusterReconfig: &ledger.ClusterReconfig{Nodes: c.Nodes(t, ids...)}})
}

// Attest returns node's node.snapshot of (height, hash).
func (c *Chain) Attest(t testing.TB, node string, height uint64, hash [32]byte) []byte {
	t.Helper()
	return c.Sign(t, node, &ledger.Body{Kind: ledger.KindSnapshot,
		NodeSnapshot: &ledger.NodeSnapshot{Node: node, Height: height, Hash: hash[:]}})
}

// Height is the height of the last block.
func (c *Chain) Height() uint64 { return uint64(len(c.Blocks)) }

// Hash is the hash of the block at h (the genesis hash at 0).
func (c *Chain) Hash(h uint64) [32]byte {
	if h == 0 {
		return c.G.Hash()
	}
	return c.Blocks[h-1].Header.Hash()
}

// Add appends a block of txs whose certificate signers sign (view 0) and
// returns it.
func (c *Chain) Add(t testing.TB, signers []string, txs ...[]byte) *ledger.Block {
	t.Helper()
	h := c.Height() + 1
	prev := c.Hash(h - 1)
	b := &ledger.Block{Header: ledger.Header{ChainID: c.G.ChainID, Height: h, Prev: prev[:],
		TxRoot: ledger.NewTree(txs).Root(), NumTxs: uint64(len(txs)), Time: int64(1000 * h), Proposer: signers[0]}, Txs: txs}
	for _, id := range signers {
		sig, err := ledger.SignVote(c.key(t, id), id, &b.Header, 0)
		if err != nil {
			t.Fatal(err)
		}
		b.Cert.Sigs = append(b.Cert.Sigs, sig)
	}
	rec, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	c.Blocks = append(c.Blocks, b)
	c.Recs = append(c.Recs, rec)
	return b
}

// Receipt returns the receipt of tx i of block h.
func (c *Chain) Receipt(t testing.TB, h uint64, i uint64) ledger.Receipt {
	t.Helper()
	b := c.Blocks[h-1]
	r, err := ledger.NewReceipt(b, ledger.NewTree(b.Txs), i)
	if err != nil {
		t.Fatal(err)
	}
	return *r
}

// Fork returns a chain with c's genesis and keys and its blocks up to h:
// blocks added to it are another history of c.
func (c *Chain) Fork(h uint64) *Chain {
	keys := make(map[string]crypto.Signer, len(c.Keys))
	for id, k := range c.Keys {
		keys[id] = k
	}
	return &Chain{G: c.G, Keys: keys, Blocks: append([]*ledger.Block(nil), c.Blocks[:h]...), Recs: append([][]byte(nil), c.Recs[:h]...)}
}
