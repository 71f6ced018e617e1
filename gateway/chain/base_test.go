package chain

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// heartbeatChain returns a one-node genesis and n blocks of one heartbeat
// each, encoded, with the hash of each (hashes[h] for block h, hashes[0]
// the genesis hash).
func heartbeatChain(t *testing.T, n int) (*ledger.Genesis, [][]byte, [][32]byte) {
	t.Helper()
	node, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, err := ledger.MarshalPublicKey(node)
	if err != nil {
		t.Fatal(err)
	}
	g := &ledger.Genesis{ChainID: "base", Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
		Nodes: []ledger.Node{{ID: "node-1", PublicKey: pub}}}
	hashes := [][32]byte{g.Hash()}
	var recs [][]byte
	for i := range n {
		at := int64(1000 * (i + 1))
		env, err := ledger.SignTx(node, "node-1", &ledger.Body{Kind: ledger.KindHeartbeat, ChainID: g.ChainID,
			Heartbeat: &ledger.Heartbeat{Node: "node-1", Time: at}})
		if err != nil {
			t.Fatal(err)
		}
		envs := [][]byte{env}
		prev := hashes[i]
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
		recs = append(recs, rec)
		hashes = append(hashes, b.Header.Hash())
	}
	return g, recs, hashes
}

// baseLog writes a log that starts after block base (SetBase) and holds
// the rest of recs.
func baseLog(t *testing.T, recs [][]byte, base uint64, hash [32]byte) *ledger.Log {
	t.Helper()
	blog, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blog.Close() })
	if base > 0 {
		if err := blog.SetBase(base, hash); err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range recs[base:] {
		if err := blog.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	return blog
}

// TestVerifyAndReplayFromBase: a log that starts from a snapshot at block
// 3 verifies and replays from the state at 3, and says its checks started
// there; without that state, or with a state at another block, it is
// refused with a clear error, and a changed block after the base still
// fails.
func TestVerifyAndReplayFromBase(t *testing.T) {
	g, recs, hashes := heartbeatChain(t, 6)
	stateAt := func(h uint64) *state.State {
		st, err := state.New(g)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Replay(baseLog(t, recs[:h], 0, [32]byte{}), st, nil); err != nil {
			t.Fatal(err)
		}
		return st
	}
	blog := baseLog(t, recs, 3, hashes[3])

	sum, err := VerifyFrom(g, blog, stateAt(3), nil)
	if err != nil {
		t.Fatalf("VerifyFrom: %v", err)
	}
	if sum.Base != 3 || sum.Blocks != 3 || sum.Tip != hashes[6] {
		t.Errorf("summary %+v: want base 3, 3 blocks, tip of block 6", sum)
	}
	if _, err := Verify(g, blog, nil); err == nil || !strings.Contains(err.Error(), "joined from a snapshot") {
		t.Errorf("Verify without the base state = %v", err)
	}
	if _, err := VerifyFrom(g, blog, stateAt(2), nil); err == nil || !strings.Contains(err.Error(), "base") {
		t.Errorf("VerifyFrom a state at 2 = %v", err)
	}
	// A base hash that is not block 3's: block 4 does not link to it.
	if _, err := VerifyFrom(g, baseLog(t, recs, 3, hashes[2]), stateAt(3), nil); err == nil {
		t.Error("VerifyFrom a log whose base hash is wrong passed")
	}

	st := stateAt(3)
	n, err := Replay(blog, st, nil)
	if err != nil || n != 3 {
		t.Fatalf("Replay from the base = %d, %v; want 3 blocks", n, err)
	}
	if h, tip := st.Tip(); h != 6 || tip != hashes[6] {
		t.Errorf("after Replay the state is at %d", h)
	}
	if _, err := Replay(blog, stateAt(2), nil); err == nil || !strings.Contains(err.Error(), "below the log's base") {
		t.Errorf("Replay from a state below the base = %v", err)
	}
	if _, err := blog.ReadHeight(3); !errors.Is(err, ledger.ErrBelowBase) {
		t.Errorf("ReadHeight(3) = %v", err)
	}
}
