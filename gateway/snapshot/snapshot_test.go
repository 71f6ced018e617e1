package snapshot

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/nodetest"
	"github.com/ledgergate/ledgergate/gateway/state"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// chainOf commits blocks on a real single-node chain (three devices
// enrolled, then records, one block each: the test waits for each
// receipt) and returns the genesis and the block log, open until the
// test ends.
func chainOf(t *testing.T, records int) (*ledger.Genesis, *ledger.Log) {
	t.Helper()
	n := nodetest.Start(t, nodetest.Options{})
	keys := map[string]crypto.Signer{}
	for i := 0; i < 3; i++ {
		id := "dev-" + strconv.Itoa(i)
		keys[id] = n.Enroll(t, id, []ledger.Alg{ledger.ES256, ledger.EdDSA}[i%2])
	}
	for r := 0; r < records; r++ {
		id := "dev-" + strconv.Itoa(r%3)
		env, err := device.SignRecord(keys[id], n.Genesis.ChainID, ledger.Record{DeviceID: id, Stream: "s", Seq: uint64(r + 1), Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = n.Chain.Submit(ctx, env)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	n.Stop(t)
	log, err := ledger.OpenLog(filepath.Join(n.Dir, "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return n.Genesis, log
}

// stateAt is the state after the log's blocks 1 to h.
func stateAt(t *testing.T, g *ledger.Genesis, log *ledger.Log, h uint64) *state.State {
	t.Helper()
	st, err := state.New(g)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= h; i++ {
		data, err := log.Read(i - 1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ledger.DecodeBlock(data)
		if err != nil {
			t.Fatal(err)
		}
		txs := make([]*ledger.Tx, len(b.Txs))
		for j, env := range b.Txs {
			if txs[j], err = ledger.DecodeTx(env, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Apply(i, b.Header.Hash(), txs); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func encode(t *testing.T, st *state.State) []byte {
	t.Helper()
	enc, err := st.Snapshot().Encode()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// write stores the state at height h in s.
func write(t *testing.T, s *Store, g *ledger.Genesis, log *ledger.Log, h uint64) []byte {
	t.Helper()
	enc := encode(t, stateAt(t, g, log, h))
	if err := s.Write(h, enc); err != nil {
		t.Fatal(err)
	}
	return enc
}

// flip changes one byte of the snapshot file at height h.
func flip(t *testing.T, s *Store, h uint64, at int) {
	t.Helper()
	name := filepath.Join(s.Dir(), fileName(h))
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	data[at%len(data)] ^= 0x10
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLoadThenReplay: a start loads the newest usable snapshot and
// replays only the blocks after it; a damaged or mismatching snapshot
// is skipped for the older one, then for a full replay. Whatever it
// starts from, the state it ends with is the one a full replay builds.
func TestLoadThenReplay(t *testing.T) {
	g, log := chainOf(t, 9)
	n := log.Len()
	if n != 12 {
		t.Fatalf("log has %d blocks, want 12", n)
	}
	full := encode(t, stateAt(t, g, log, n))
	cases := []struct {
		name     string
		setup    func(t *testing.T, s *Store)
		from     uint64 // snapshot loaded
		skipped  int
		replayed uint64
	}{
		{"none", func(t *testing.T, s *Store) {}, 0, 0, 12},
		{"newest", func(t *testing.T, s *Store) { write(t, s, g, log, 4); write(t, s, g, log, 9) }, 9, 0, 3},
		{"at the tip", func(t *testing.T, s *Store) { write(t, s, g, log, 12) }, 12, 0, 0},
		{"newest damaged", func(t *testing.T, s *Store) { write(t, s, g, log, 4); write(t, s, g, log, 9); flip(t, s, 9, 100) }, 4, 1, 8},
		{"hash trailer damaged", func(t *testing.T, s *Store) {
			write(t, s, g, log, 4)
			enc := write(t, s, g, log, 9)
			flip(t, s, 9, len(enc)+3)
		}, 4, 1, 8},
		{"both damaged", func(t *testing.T, s *Store) {
			write(t, s, g, log, 4)
			write(t, s, g, log, 9)
			flip(t, s, 9, 7)
			flip(t, s, 4, 50)
		}, 0, 2, 12},
		{"truncated", func(t *testing.T, s *Store) {
			write(t, s, g, log, 4)
			enc := write(t, s, g, log, 9)
			if err := os.Truncate(filepath.Join(s.Dir(), fileName(9)), int64(len(enc)/2)); err != nil {
				t.Fatal(err)
			}
		}, 4, 1, 8},
		{"empty file", func(t *testing.T, s *Store) {
			write(t, s, g, log, 4)
			if err := os.WriteFile(filepath.Join(s.Dir(), fileName(9)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, 4, 1, 8},
		{"beyond the log", func(t *testing.T, s *Store) {
			write(t, s, g, log, 4)
			if err := s.Write(13, encode(t, stateAt(t, g, log, 12))); err != nil {
				t.Fatal(err)
			}
		}, 4, 1, 8},
		{"another height's state", func(t *testing.T, s *Store) {
			write(t, s, g, log, 4)
			if err := s.Write(9, encode(t, stateAt(t, g, log, 8))); err != nil {
				t.Fatal(err)
			}
		}, 4, 1, 8},
		{"another chain", func(t *testing.T, s *Store) {
			write(t, s, g, log, 4)
			og, olog := chainOf(t, 7)
			if err := s.Write(9, encode(t, stateAt(t, og, olog, 9))); err != nil {
				t.Fatal(err)
			}
		}, 4, 1, 8},
		{"not a snapshot", func(t *testing.T, s *Store) {
			write(t, s, g, log, 4)
			if err := s.Write(9, []byte("hello")); err != nil {
				t.Fatal(err)
			}
		}, 4, 1, 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			c.setup(t, s)
			st, ld, err := Load(s, g, log, quiet)
			if err != nil {
				t.Fatal(err)
			}
			if ld.Height != c.from || len(ld.Skipped) != c.skipped {
				t.Fatalf("loaded height %d, skipped %v; want %d and %d skipped", ld.Height, ld.Skipped, c.from, c.skipped)
			}
			replayed, err := chain.Replay(log, st, nil)
			if err != nil {
				t.Fatal(err)
			}
			if replayed != c.replayed {
				t.Fatalf("replayed %d blocks, want %d", replayed, c.replayed)
			}
			if !bytes.Equal(encode(t, st), full) {
				t.Fatal("the state differs from the one a full replay builds")
			}
		})
	}
}

// TestStoreKeepsNewest: a store keeps the newest Keep files, and Open
// removes what an interrupted write left (a crash between the temporary
// file and the rename).
func TestStoreKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []uint64{3, 10, 7, 12} {
		if err := s.Write(h, []byte("snapshot "+strconv.FormatUint(h, 10))); err != nil {
			t.Fatal(err)
		}
	}
	hs, err := s.Heights()
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || hs[0] != 12 || hs[1] != 10 {
		t.Fatalf("heights %v, want [12 10]", hs)
	}
	got, err := s.Read(12)
	if err != nil || string(got) != "snapshot 12" {
		t.Fatalf("Read = %q, %v", got, err)
	}
	// A write interrupted before its rename; and a stray file.
	torn := filepath.Join(dir, fileName(13)+".123"+tmpSuffix)
	if err := os.WriteFile(torn, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(torn); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the interrupted write is still there: %v", err)
	}
	if hs, _ := s.Heights(); len(hs) != 2 {
		t.Fatalf("heights %v after a reopen", hs)
	}
	flip(t, s, 10, 2)
	if _, err := s.Read(10); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Read of a damaged file: %v", err)
	}
	// The newest certified snapshot is spared too: peers fetch it.
	s.Spare(func() uint64 { return 12 })
	for _, h := range []uint64{14, 16} {
		if err := s.Write(h, []byte("snapshot")); err != nil {
			t.Fatal(err)
		}
	}
	if hs, _ := s.Heights(); len(hs) != 3 || hs[0] != 16 || hs[1] != 14 || hs[2] != 12 {
		t.Fatalf("heights %v, want [16 14 12]", hs)
	}
}

// TestWriter: offered snapshots are written off the caller's goroutine,
// and Written reports each with its hash.
func TestWriter(t *testing.T) {
	g, log := chainOf(t, 3)
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(s, quiet)
	type done struct {
		h   uint64
		sum [32]byte
		due bool
	}
	written := make(chan done, 4)
	w.Written = func(h uint64, sum [32]byte, due bool) { written <- done{h, sum, due} }
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); w.Run(ctx) }()
	defer func() { cancel(); <-stopped }()
	st := stateAt(t, g, log, 5)
	w.Offer(st.Snapshot(), true)
	select {
	case d := <-written:
		if d.h != 5 || d.sum != state.SnapshotHash(encode(t, st)) || !d.due {
			t.Fatalf("written %d %x", d.h, d.sum)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing written")
	}
	enc, err := s.Read(5)
	if err != nil || !bytes.Equal(enc, encode(t, st)) {
		t.Fatalf("Read(5): %v", err)
	}
}

func TestPolicy(t *testing.T) {
	cases := []struct {
		p                     Policy
		height, before, after uint64
		due                   bool
	}{
		{Policy{}, 100, 0, 1000, false},
		{Policy{EveryBlocks: 10}, 10, 0, 0, true},
		{Policy{EveryBlocks: 10}, 11, 0, 0, false},
		{Policy{EveryTxs: 100}, 7, 90, 99, false},
		{Policy{EveryTxs: 100}, 7, 90, 100, true},
		{Policy{EveryTxs: 100}, 7, 100, 150, false},
		{Policy{EveryTxs: 100}, 7, 150, 420, true},
		{Policy{EveryBlocks: 10, EveryTxs: 100}, 9, 0, 5, false},
	}
	for _, c := range cases {
		if got := c.p.Due(c.height, c.before, c.after); got != c.due {
			t.Errorf("%+v.Due(%d, %d, %d) = %v", c.p, c.height, c.before, c.after, got)
		}
	}
	if !(Policy{EveryBlocks: 10}).DueSince(9, 0, 10, 0) || (Policy{EveryBlocks: 10}).DueSince(10, 0, 19, 0) ||
		!(Policy{EveryTxs: 5}).DueSince(3, 4, 3, 5) || (Policy{}).DueSince(0, 0, 1000, 1000) {
		t.Error("DueSince")
	}
}

// TestProofOfCertified: a node attests the hash of its snapshot with a
// node.snapshot tx; with a quorum (here the one node) the snapshot is
// certified, and the proof built from the blocks verifies with the
// genesis alone. A proof of other bytes does not.
func TestProofOfCertified(t *testing.T) {
	n := nodetest.Start(t, nodetest.Options{})
	n.Enroll(t, "dev-1", ledger.ES256)
	n.Enroll(t, "dev-2", ledger.EdDSA)
	st := n.Chain.State()
	sn := st.Snapshot()
	enc, err := sn.Encode()
	if err != nil {
		t.Fatal(err)
	}
	hash := state.SnapshotHash(enc)
	env, err := ledger.SignTx(n.NodeKey(), "node-1", &ledger.Body{Kind: ledger.KindSnapshot, ChainID: n.Genesis.ChainID,
		NodeSnapshot: &ledger.NodeSnapshot{Node: "node-1", Height: sn.Height, Hash: hash[:]}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Chain.Submit(ctx, env); err != nil {
		t.Fatal(err)
	}
	c, ok := st.Certified()
	if !ok || c.Height != sn.Height || c.Hash != hash {
		t.Fatalf("certified %+v %v, want height %d", c, ok, sn.Height)
	}
	p, err := state.ProofOf(c, n.Chain.Block)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ledger.DecodeSnapshotProof(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.VerifySnapshotProof(n.Genesis, got); err != nil {
		t.Fatal(err)
	}
	// The snapshot's bytes are what the hash certifies: restored, they
	// are the state at that height.
	r, err := state.Restore(n.Genesis, enc)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := r.Tip(); h != c.Height {
		t.Fatalf("restored at %d", h)
	}
	forged := *got
	forged.Hash = bytes.Clone(forged.Hash)
	forged.Hash[0] ^= 1
	if err := ledger.VerifySnapshotProof(n.Genesis, &forged); err == nil {
		t.Fatal("a proof of another hash verified")
	}
	// What a joining gateway checks of a peer's offer: the real one is
	// accepted, anything else refused.
	acc, err := Accept(n.Genesis, enc, raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := acc.State.Tip(); h != c.Height || acc.Proof.Height != c.Height || len(acc.Members) != 0 {
		t.Fatalf("accepted the state at %d, proof of %d, %d member changes", h, acc.Proof.Height, len(acc.Members))
	}
	changed := bytes.Clone(enc)
	changed[len(changed)/2] ^= 1
	forgedRaw, err := forged.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sum := state.SnapshotHash(changed)
	recertified := *got
	recertified.Hash = sum[:]
	recertifiedRaw, err := recertified.Encode()
	if err != nil {
		t.Fatal(err)
	}
	later, err := n.Chain.State().Snapshot().Encode() // a real snapshot, of a later height, not certified
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		name        string
		data, proof []byte
	}{
		{"bytes changed", changed, raw},
		{"bytes changed, proof of their hash", changed, recertifiedRaw},
		{"proof of another hash", enc, forgedRaw},
		{"another snapshot", later, raw},
		{"no proof", enc, nil},
		{"proof not CBOR", enc, []byte("certified, trust me")},
	} {
		if _, err := Accept(n.Genesis, bad.data, bad.proof, nil); !errors.Is(err, ErrNotCertified) {
			t.Errorf("%s: Accept = %v, want ErrNotCertified", bad.name, err)
		}
	}
	// Another attestation of the same height is a replay: a node
	// attests each height once.
	again, err := ledger.SignTx(n.NodeKey(), "node-1", &ledger.Body{Kind: ledger.KindSnapshot, ChainID: n.Genesis.ChainID,
		NodeSnapshot: &ledger.NodeSnapshot{Node: "node-1", Height: sn.Height, Hash: forged.Hash}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Chain.Submit(ctx, again); ledger.ReasonOf(err) != ledger.ReasonReplay {
		t.Fatalf("a second attestation of height %d: %v, want a replay", sn.Height, err)
	}
}
