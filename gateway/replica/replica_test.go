package replica

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// fixture is a four-node chain with node keys at hand, a replica of
// node-a on an empty log, and the rounds it committed.
type fixture struct {
	g      *ledger.Genesis
	nodes  []*ecdsa.PrivateKey
	admin  *ecdsa.PrivateKey
	st     *state.State
	r      *Replica
	d      *driver
	rounds []*chain.Round
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{admin: newKey(t)}
	f.g = &ledger.Genesis{ChainID: "test", Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
		Admins: []ledger.Admin{{ID: "admin", PublicKey: der(t, f.admin)}}}
	for i := range 4 {
		k := newKey(t)
		f.nodes = append(f.nodes, k)
		f.g.Nodes = append(f.g.Nodes, ledger.Node{ID: fmt.Sprintf("node-%c", 'a'+i), PublicKey: der(t, k), Addrs: []string{"127.0.0.1:1"}})
	}
	if err := f.g.Validate(); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.st, err = state.New(f.g); err != nil {
		t.Fatal(err)
	}
	f.startOn(t, nil)
	return f
}

// startOn makes f's replica and driver on the log blog (nil: a new empty
// one) and f's state.
func (f *fixture) startOn(t *testing.T, blog *ledger.Log) {
	t.Helper()
	dir := t.TempDir()
	if blog == nil {
		var err error
		blog, err = ledger.OpenLog(filepath.Join(dir, "blocks"), ledger.LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { blog.Close() })
	}
	f.rounds = nil
	var err error
	f.r, err = New(Config{Self: "node-a", Genesis: f.g, State: f.st, Log: blog, Signer: f.nodes[0],
		Dir: filepath.Join(dir, "pbft"), Batch: chain.DefaultBatch, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Transport: nopTransport{}, Heights: func() map[string]uint64 { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	core, err := f.r.start()
	if err != nil {
		t.Fatal(err)
	}
	f.d = &driver{r: f.r, core: core, ctx: t.Context(), early: map[uint64]verdict{}, commit: func(r *chain.Round) error {
		f.rounds = append(f.rounds, r)
		if r.Block == nil {
			return nil
		}
		txs := make([]*ledger.Tx, len(r.Txs))
		for i, c := range r.Txs {
			txs[i] = c.Tx
		}
		return f.st.Apply(r.Block.Header.Height, r.Block.Header.Hash(), txs)
	}}
}

type nopTransport struct{}

func (nopTransport) Send(string, []byte) bool { return true }
func (nopTransport) Broadcast([]byte)         {}
func (nopTransport) Fetch(context.Context, string, uint64, int) ([][]byte, error) {
	return nil, nil
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func der(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	b, err := ledger.MarshalPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// enrollBlock is block `height` on prev enrolling device id, certified
// by the nodes given.
func (f *fixture) enrollBlock(t *testing.T, height uint64, prev [32]byte, id string, signers ...int) *ledger.Block {
	t.Helper()
	env, err := ledger.SignTx(f.admin, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: "test",
		Enroll: &ledger.Enroll{DeviceID: id, PublicKey: der(t, newKey(t))}})
	if err != nil {
		t.Fatal(err)
	}
	tree := ledger.NewTree([][]byte{env})
	b := &ledger.Block{Header: ledger.Header{ChainID: "test", Height: height, Prev: prev[:], TxRoot: tree.Root(),
		NumTxs: 1, Time: time.Now().UnixMilli(), View: 0, Proposer: "node-a"}, Txs: [][]byte{env}}
	b.Cert = ledger.Cert{View: 0}
	for _, i := range signers {
		s, err := ledger.SignVote(f.nodes[i], f.g.Nodes[i].ID, &b.Header, 0)
		if err != nil {
			t.Fatal(err)
		}
		b.Cert.Sigs = append(b.Cert.Sigs, s)
	}
	return b
}

func encode(t *testing.T, b *ledger.Block) []byte {
	t.Helper()
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestTransferChecksCertificates: a block fetched from a peer is applied
// only with a valid certificate of a quorum of distinct genesis nodes for
// its own height, and only if it extends this replica's chain.
func TestTransferChecksCertificates(t *testing.T) {
	cases := map[string]func(f *fixture, b *ledger.Block){
		"duplicate signer": func(f *fixture, b *ledger.Block) { b.Cert.Sigs[2] = b.Cert.Sigs[0] },
		"non-member signer": func(f *fixture, b *ledger.Block) {
			s, _ := ledger.SignVote(newKey(t), "node-z", &b.Header, 0)
			b.Cert.Sigs[2] = s
		},
		"member name, other key": func(f *fixture, b *ledger.Block) {
			s, _ := ledger.SignVote(newKey(t), "node-c", &b.Header, 0)
			b.Cert.Sigs[2] = s
		},
		"wrong height": func(f *fixture, b *ledger.Block) {
			h := b.Header
			h.Height = 2
			for i := range b.Cert.Sigs {
				b.Cert.Sigs[i], _ = ledger.SignVote(f.nodes[i], f.g.Nodes[i].ID, &h, 0)
			}
		},
		"below quorum":           func(f *fixture, b *ledger.Block) { b.Cert.Sigs = b.Cert.Sigs[:2] },
		"other view than signed": func(f *fixture, b *ledger.Block) { b.Cert.View = 1 },
		"does not extend the chain": func(f *fixture, b *ledger.Block) {
			b.Header.Prev = make([]byte, 32)
			for i := range b.Cert.Sigs {
				b.Cert.Sigs[i], _ = ledger.SignVote(f.nodes[i], f.g.Nodes[i].ID, &b.Header, 0)
			}
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			b := f.enrollBlock(t, 1, f.g.Hash(), "dev-1", 0, 1, 2)
			mutate(f, b)
			if err := f.d.transferred(fetchResult{peer: "node-b", blocks: [][]byte{encode(t, b)}}); err != nil {
				t.Fatal(err)
			}
			if len(f.rounds) != 0 {
				t.Fatal("applied a block with a bad certificate")
			}
			if h, _ := f.st.Tip(); h != 0 {
				t.Fatalf("height %d", h)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		f := newFixture(t)
		b1 := f.enrollBlock(t, 1, f.g.Hash(), "dev-1", 1, 2, 3)
		b2 := f.enrollBlock(t, 2, b1.Header.Hash(), "dev-2", 0, 2, 3)
		if err := f.d.transferred(fetchResult{peer: "node-b", blocks: [][]byte{encode(t, b1), encode(t, b2)}}); err != nil {
			t.Fatal(err)
		}
		if h, _ := f.st.Tip(); h != 2 || f.d.core.Status().Executed != 2 {
			t.Fatalf("height %d, core executed %d", h, f.d.core.Status().Executed)
		}
	})
}

// TestValidateSpeculative: a backup validates block 2 on top of block 1
// before block 1 commits: a record by a device that block 1 enrolls is
// valid, and is not valid on the committed state alone.
func TestValidateSpeculative(t *testing.T) {
	f := newFixture(t)
	dev := newKey(t)
	enroll, _ := ledger.SignTx(f.admin, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: "test",
		Enroll: &ledger.Enroll{DeviceID: "dev-1", PublicKey: der(t, dev)}})
	record, _ := ledger.SignTx(dev, "dev-1", &ledger.Body{Kind: ledger.KindRecord, ChainID: "test",
		Record: &ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: 1, Payload: []byte("x")}})
	proposal := func(height uint64, prev [32]byte, proposer string, view uint64, envs ...[]byte) []byte {
		tree := ledger.NewTree(envs)
		b := &ledger.Block{Header: ledger.Header{ChainID: "test", Height: height, Prev: prev[:], TxRoot: tree.Root(),
			NumTxs: uint64(len(envs)), Time: 1, View: view, Proposer: proposer}, Txs: envs}
		return encode(t, b)
	}
	gh := pbft.Digest(f.g.Hash())
	d1, _, err := f.r.app.Validate(1, 0, gh, proposal(1, gh, "node-a", 0, enroll))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.r.app.Validate(2, 0, d1, proposal(2, d1, "node-a", 0, record)); err != nil {
		t.Fatalf("record on top of its enrollment: %v", err)
	}
	bad := map[string]struct {
		seq    uint64
		parent pbft.Digest
		data   []byte
	}{
		"record on the committed state": {1, gh, proposal(1, gh, "node-a", 0, record)},
		"wrong height":                  {2, d1, proposal(3, d1, "node-a", 0, record)},
		"wrong parent":                  {2, d1, proposal(2, gh, "node-a", 0, record)},
		"not the view's primary":        {2, d1, proposal(2, d1, "node-b", 0, record)},
		"view from the future":          {2, d1, proposal(2, d1, "node-b", 1, record)},
		"unknown parent":                {2, pbft.Digest{1}, proposal(2, pbft.Digest{1}, "node-a", 0, record)},
		"same enrollment twice":         {2, d1, proposal(2, d1, "node-a", 0, enroll)},
		"forged signature":              {2, d1, proposal(2, d1, "node-a", 0, append(record[:len(record)-1:len(record)-1], record[len(record)-1]^1))},
	}
	for name, c := range bad {
		if _, _, err := f.r.app.Validate(c.seq, 0, c.parent, c.data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestForwardedKeepOrder: a device's records that a backup forwards to
// the primary are checked concurrently; checks that end out of order are
// still handed to the core, and so proposed, in the order the records
// came in. Before, the core took them as their checks ended, and the
// primary ordered a later record first and refused the earlier as a
// replay (issue 19).
func TestForwardedKeepOrder(t *testing.T) {
	f := newFixture(t)
	dev := newKey(t)
	enroll, _ := ledger.SignTx(f.admin, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: "test",
		Enroll: &ledger.Enroll{DeviceID: "dev-1", PublicKey: der(t, dev)}})
	tree := ledger.NewTree([][]byte{enroll})
	gh := f.g.Hash()
	b := &ledger.Block{Header: ledger.Header{ChainID: "test", Height: 1, Prev: gh[:], TxRoot: tree.Root(),
		NumTxs: 1, Time: 1, Proposer: "node-a"}, Txs: [][]byte{enroll}}
	for _, i := range []int{0, 1, 2} {
		s, err := ledger.SignVote(f.nodes[i], f.g.Nodes[i].ID, &b.Header, 0)
		if err != nil {
			t.Fatal(err)
		}
		b.Cert.Sigs = append(b.Cert.Sigs, s)
	}
	if err := f.d.transferred(fetchResult{peer: "node-b", blocks: [][]byte{encode(t, b)}}); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var verdicts []verdict
	for seq := uint64(1); seq <= n; seq++ {
		env, _ := ledger.SignTx(dev, "dev-1", &ledger.Body{Kind: ledger.KindRecord, ChainID: "test",
			Record: &ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: seq, Payload: []byte("x")}})
		c, err := f.st.Check(env)
		if err != nil {
			t.Fatal(err)
		}
		verdicts = append(verdicts, verdict{n: seq - 1, from: "node-b", req: pbft.NewRequest(env), c: c})
	}
	// The checks end in reverse order.
	for i := n - 1; i >= 0; i-- {
		if err := f.d.verdict(verdicts[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.d.core.Tick(); err != nil { // the primary cuts its batch
		t.Fatal(err)
	}
	if err := f.d.ready(); err != nil {
		t.Fatal(err)
	}
	if len(f.r.app.spec) != 1 {
		t.Fatalf("%d proposals, want 1", len(f.r.app.spec))
	}
	for _, p := range f.r.app.spec {
		if len(p.txs) != n {
			t.Fatalf("the proposal holds %d of the %d records", len(p.txs), n)
		}
		for i, c := range p.txs {
			if c.Tx.Body.Record.Seq != uint64(i+1) {
				t.Fatalf("record %d of the proposal has seq %d", i, c.Tx.Body.Record.Seq)
			}
		}
	}
}

// TestStore: the hard state and certificates survive a reopen, and
// certificates at or below the stable checkpoint are removed.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	s, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert := func(seq uint64) *pbft.Prepared {
		return &pbft.Prepared{PrePrepare: &pbft.Message{Type: pbft.TypePrePrepare, From: "node-a", Seq: seq, Digest: make([]byte, 32), Sig: []byte{1}}}
	}
	if err := s.save(nil, []*pbft.Prepared{cert(3), cert(5)}); err != nil {
		t.Fatal(err)
	}
	hs := &pbft.HardState{View: 2, Changing: true, Stable: 4, Votes: []pbft.SeqVote{{Seq: 5, View: 2}}}
	if err := s.save(hs, nil); err != nil {
		t.Fatal(err)
	}
	s2, _ := openStore(dir)
	got, certs, err := s2.load()
	if err != nil {
		t.Fatal(err)
	}
	if got.View != 2 || !got.Changing || got.Stable != 4 || len(got.Votes) != 1 {
		t.Fatalf("hard state %+v", got)
	}
	if len(certs) != 1 || certs[0].PrePrepare.Seq != 5 {
		t.Fatalf("certificates %d, want only seq 5", len(certs))
	}
}

// TestProposalsJoinTheCollectingBatch: a single node's proposals that
// come while a partial batch collects (Run takes them at the tick, not
// one by one) join that batch, and once it is cut the next proposal
// starts another.
func TestProposalsJoinTheCollectingBatch(t *testing.T) {
	admin, node := newKey(t), newKey(t)
	g := &ledger.Genesis{ChainID: "test", Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
		Admins: []ledger.Admin{{ID: "admin", PublicKey: der(t, admin)}},
		Nodes:  []ledger.Node{{ID: "node-a", PublicKey: der(t, node), Addrs: []string{"127.0.0.1:1"}}}}
	st, err := state.New(g)
	if err != nil {
		t.Fatal(err)
	}
	blog, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blog.Close() })
	batch := chain.DefaultBatch
	batch.MaxDelay = 100 * time.Millisecond
	r, err := New(Config{Self: "node-a", Genesis: g, State: st, Log: blog, Signer: node, Batch: batch,
		Tick: 2 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rounds := make(chan *chain.Round, 16)
	go func() {
		_ = r.Run(t.Context(), func(rd *chain.Round) error {
			if rd.Block != nil {
				txs := make([]*ledger.Tx, len(rd.Txs))
				for i, c := range rd.Txs {
					txs[i] = c.Tx
				}
				if err := st.Apply(rd.Block.Header.Height, rd.Block.Header.Hash(), txs); err != nil {
					return err
				}
			}
			rounds <- rd
			return nil
		})
	}()
	propose := func(id string) {
		t.Helper()
		env, err := ledger.SignTx(admin, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: "test",
			Enroll: &ledger.Enroll{DeviceID: id, PublicKey: der(t, newKey(t))}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.Check(env)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Propose(c); err != nil {
			t.Fatal(err)
		}
	}
	next := func() *chain.Round {
		t.Helper()
		select {
		case rd := <-rounds:
			return rd
		case <-time.After(10 * time.Second):
			t.Fatal("no block")
			return nil
		}
	}
	const n = 20
	propose("dev-0")
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for deadline := time.Now().Add(10 * time.Second); r.Status().Queued == 0; <-poll.C {
		if time.Now().After(deadline) {
			t.Fatal("the first proposal never reached the core")
		}
	}
	for i := 1; i < n; i++ {
		propose(fmt.Sprintf("dev-%d", i))
	}
	if rd := next(); rd.Block == nil || len(rd.Txs) != n {
		t.Fatalf("first block: %d txs, %d refused; want the %d proposed", len(rd.Txs), len(rd.Rejected), n)
	}
	propose("late")
	if rd := next(); rd.Block == nil || len(rd.Txs) != 1 || rd.Block.Header.Height != 2 {
		t.Fatalf("next block: %+v", rd)
	}
}

// TestPrecheck: the txs of a pre-prepare are verified as it arrives, and
// Validate takes those checks instead of verifying again; a tx that does
// not verify is not kept, and Validate refuses its block.
func TestPrecheck(t *testing.T) {
	f := newFixture(t)
	dev := newKey(t)
	enrollEnv, _ := ledger.SignTx(f.admin, "admin", &ledger.Body{Kind: ledger.KindEnroll, ChainID: "test",
		Enroll: &ledger.Enroll{DeviceID: "dev-1", PublicKey: der(t, dev)}})
	enroll, err := ledger.DecodeTx(enrollEnv, 0)
	if err != nil {
		t.Fatal(err)
	}
	tip := [32]byte{1}
	if err := f.st.Apply(1, tip, []*ledger.Tx{enroll}); err != nil {
		t.Fatal(err)
	}
	var records [][]byte
	for seq := range uint64(3) {
		env, err := ledger.SignTx(dev, "dev-1", &ledger.Body{Kind: ledger.KindRecord, ChainID: "test",
			Record: &ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: seq + 1, Payload: []byte("x")}})
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, env)
	}
	forged := append(records[2][:len(records[2])-1:len(records[2])-1], records[2][len(records[2])-1]^1)
	prePrepare := func(envs ...[]byte) *pbft.Message {
		tree := ledger.NewTree(envs)
		b := &ledger.Block{Header: ledger.Header{ChainID: "test", Height: 2, Prev: tip[:], TxRoot: tree.Root(),
			NumTxs: uint64(len(envs)), Time: 1, View: 0, Proposer: "node-a"}, Txs: envs}
		h := b.Header.Hash()
		// The shape of a signed message; the core, not the precheck, checks the signature.
		return &pbft.Message{Type: pbft.TypePrePrepare, From: "node-a", View: 0, Seq: 2, Digest: h[:], Payload: encode(t, b), Sig: []byte{1}}
	}

	good := prePrepare(records[0], records[1])
	f.r.precheck(good)
	for i, env := range records[:2] {
		if f.r.verified.get(ledger.TxID(env)) == nil {
			t.Fatalf("record %d: not verified by the precheck", i+1)
		}
	}
	decoded := f.r.app.decoded.m[2]
	if decoded.block == nil {
		t.Fatal("the precheck kept no decoded block")
	}
	d, _, err := f.r.app.Validate(2, 0, tip, good.Payload)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range f.r.app.spec[d].txs {
		if c != f.r.verified.get(c.Tx.ID) {
			t.Errorf("tx %d: Validate checked it again instead of taking the precheck's verdict", i)
		}
	}
	if f.r.app.spec[d].block != decoded.block || len(f.r.app.decoded.m) != 0 {
		t.Errorf("Validate decoded the block again instead of taking the precheck's (%d left)", len(f.r.app.decoded.m))
	}

	bad := prePrepare(records[0], forged)
	f.r.precheck(bad)
	if f.r.verified.get(ledger.TxID(forged)) != nil {
		t.Fatal("a forged record passed the precheck")
	}
	// A block decoded from another payload at that height is not taken
	// for this one.
	f.r.app.decoded.put(good.Payload, decoded.block, decoded.ids)
	if _, _, err := f.r.app.Validate(2, 0, tip, bad.Payload); err == nil {
		t.Fatal("Validate accepted a block with a forged record")
	}

	// A pre-prepare goes to the prechecker; one whose sender is not its
	// author or not the view's primary goes straight to the Run goroutine
	// (whose core drops it).
	f.r.Message("node-a", good.Encode())
	if len(f.r.prechecks) != 1 || len(f.r.inbox) != 0 {
		t.Fatalf("pre-prepare from its author: %d queued for the precheck, %d in the inbox; want 1, 0", len(f.r.prechecks), len(f.r.inbox))
	}
	f.r.Message("node-b", good.Encode())
	if len(f.r.prechecks) != 1 || len(f.r.inbox) != 1 {
		t.Fatalf("pre-prepare relayed by another: %d queued for the precheck, %d in the inbox; want 1, 1", len(f.r.prechecks), len(f.r.inbox))
	}
	other := *good
	other.View = 1 // node-b's view
	f.r.Message("node-a", other.Encode())
	if len(f.r.prechecks) != 1 || len(f.r.inbox) != 2 {
		t.Fatalf("pre-prepare by a node not the view's primary: %d queued for the precheck, %d in the inbox; want 1, 2", len(f.r.prechecks), len(f.r.inbox))
	}
}

// TestVerifiedCacheBounded: the cache keeps the newest entries and at
// most two generations.
func TestVerifiedCacheBounded(t *testing.T) {
	const gen = 10
	v := newVerifiedCache(gen)
	var last *state.Checked
	for i := range 35 {
		last = &state.Checked{Tx: &ledger.Tx{ID: [32]byte{byte(i)}}}
		v.put(last)
		if n := len(v.cur) + len(v.prev); n > 2*gen {
			t.Fatalf("after %d puts: %d entries, at most %d", i+1, n, 2*gen)
		}
	}
	if v.get(last.Tx.ID) != last {
		t.Fatal("the newest entry is gone")
	}
	if v.get([32]byte{0}) != nil {
		t.Fatal("the oldest entry is still there")
	}
}

// TestStartFromBase: a replica on a log that starts from a snapshot (its
// state restored at the base) starts its core at the base height, fetches
// and applies only the blocks after it, and serves peers the blocks it
// has, none at or below its base.
func TestStartFromBase(t *testing.T) {
	f := newFixture(t)
	b1 := f.enrollBlock(t, 1, f.g.Hash(), "dev-1", 1, 2, 3)
	b2 := f.enrollBlock(t, 2, b1.Header.Hash(), "dev-2", 0, 2, 3)
	if err := f.d.transferred(fetchResult{peer: "node-b", blocks: [][]byte{encode(t, b1), encode(t, b2)}}); err != nil {
		t.Fatal(err)
	}
	// The state is at 2, as a snapshot at 2 would restore it; the log
	// starts after block 2.
	blog, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blog.Close() })
	if err := blog.SetBase(2, b2.Header.Hash()); err != nil {
		t.Fatal(err)
	}
	f.startOn(t, blog)
	if x := f.d.core.Status().Executed; x != 2 {
		t.Fatalf("core starts at %d, want the base 2", x)
	}
	b3 := f.enrollBlock(t, 3, b2.Header.Hash(), "dev-3", 0, 1, 2)
	if err := f.d.transferred(fetchResult{peer: "node-b", blocks: [][]byte{encode(t, b3)}}); err != nil {
		t.Fatal(err)
	}
	if h, _ := f.st.Tip(); h != 3 || f.d.core.Status().Executed != 3 || len(f.rounds) != 1 {
		t.Fatalf("height %d, core executed %d, %d rounds: want block 3 alone applied", h, f.d.core.Status().Executed, len(f.rounds))
	}
	if err := blog.Append(encode(t, b3)); err != nil {
		t.Fatal(err)
	}
	if got, err := f.r.Blocks(1, 10); err != nil || len(got) != 0 {
		t.Fatalf("Blocks(1) = %d blocks, %v: want none (below the base)", len(got), err)
	}
	if got, err := f.r.Blocks(3, 10); err != nil || len(got) != 1 {
		t.Fatalf("Blocks(3) = %d blocks, %v: want block 3", len(got), err)
	}
	// A restart on the log now holding block 3 starts from it.
	f.startOn(t, blog)
	if x := f.d.core.Status().Executed; x != 3 {
		t.Fatalf("after a restart the core starts at %d, want 3", x)
	}
}
