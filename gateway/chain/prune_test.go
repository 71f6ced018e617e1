package chain

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// prunedLog writes a certified chain (an enrollment, then blocks 2-9 of
// three records of dev-1 each) to a log of small segments and prunes
// every sealed segment as retention does. It returns the genesis, the log
// and the number of records pruned.
func prunedLog(t *testing.T) (*ledger.Genesis, *ledger.Log, uint64) {
	node, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, admin, _ := ed25519.GenerateKey(rand.Reader)
	_, dev, _ := ed25519.GenerateKey(rand.Reader)
	nodePub, _ := ledger.MarshalPublicKey(node)
	adminPub, _ := ledger.MarshalPublicKey(admin)
	devPub, _ := ledger.MarshalPublicKey(dev)
	g := &ledger.Genesis{ChainID: "pruned", Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
		Nodes: []ledger.Node{{ID: "node-1", PublicKey: nodePub}}, Admins: []ledger.Admin{{ID: "admin", PublicKey: adminPub}}}
	blog, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blog.Close() })
	prev := g.Hash()
	sign := func(key crypto.Signer, kid string, body *ledger.Body) []byte {
		body.ChainID = g.ChainID
		env, err := ledger.SignTx(key, kid, body)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	seq := uint64(0)
	for h := uint64(1); h <= 9; h++ {
		var envs [][]byte
		if h == 1 {
			envs = append(envs, sign(admin, "admin", &ledger.Body{Kind: ledger.KindEnroll, Enroll: &ledger.Enroll{DeviceID: "dev-1", PublicKey: devPub}}))
		} else {
			for range 3 {
				seq++
				envs = append(envs, sign(dev, "dev-1", &ledger.Body{Kind: ledger.KindRecord,
					Record: &ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: seq, Payload: make([]byte, 500)}}))
			}
		}
		b := &ledger.Block{Header: ledger.Header{ChainID: g.ChainID, Height: h, Prev: prev[:],
			TxRoot: ledger.NewTree(envs).Root(), NumTxs: uint64(len(envs)), Time: int64(h), Proposer: "node-1"}, Txs: envs}
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
	var pruned uint64
	for _, s := range blog.Segments() {
		if !s.Sealed {
			continue
		}
		if _, err := blog.Rewrite(s.Seq, func(_ uint64, data []byte) ([]byte, error) {
			out, n, err := ledger.PruneRecord(data)
			pruned += uint64(n)
			return out, err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if pruned == 0 {
		t.Fatal("nothing pruned")
	}
	return g, blog, pruned
}

// TestVerifyAndReplayPruned: Verify accepts a pruned chain and counts
// what was pruned; Replay brings the state to the device's last seq, so
// an old seq is still a replay.
func TestVerifyAndReplayPruned(t *testing.T) {
	g, blog, pruned := prunedLog(t)
	sum, err := Verify(g, blog, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if sum.Blocks != 9 || sum.Txs != 25 || sum.Pruned != pruned || sum.PrunedFrom != 2 || sum.PrunedTo == 0 || sum.PrunedBlocks != sum.PrunedTo-1 {
		t.Fatalf("summary %+v, want 9 blocks, 25 txs, %d pruned from block 2", sum, pruned)
	}
	st, err := state.New(g)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := Replay(blog, st, nil); err != nil || n != 9 {
		t.Fatalf("replay: %d blocks, %v; want 9", n, err)
	}
	if d, ok := st.Device("dev-1"); !ok || d.LastSeq != 24 {
		t.Fatalf("dev-1 after replay: %+v %v, want last seq 24", d, ok)
	}
	if _, tip := st.Tip(); tip != sum.Tip {
		t.Fatal("replay and verify disagree on the tip")
	}
}
