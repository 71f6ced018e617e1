package chain

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/ledger/ledgertest"
	"github.com/ledgergate/ledgergate/gateway/state"
)

var (
	oldSet = []string{"node-1", "node-2", "node-3", "node-4"}
	newSet = []string{"node-2", "node-3", "node-5", "node-6", "node-7"}
)

// changeAt is the height of the change in reconfigChain, from is where
// the new set takes effect.
const changeAt = 2

var changeFrom = ledger.MembersFrom(changeAt)

// reconfigChain builds a chain of n blocks whose block changeAt commits a
// cluster.reconfig from oldSet to newSet; block h is certified by the
// quorum of the set signers(h) returns.
func reconfigChain(t *testing.T, n uint64, signers func(h uint64) []string) *ledgertest.Chain {
	t.Helper()
	c := ledgertest.New(t, "members", oldSet...)
	for h := uint64(1); h <= n; h++ {
		var txs [][]byte
		if h == changeAt {
			txs = append(txs, c.Reconfig(t, newSet...))
		}
		c.Add(t, signers(h), txs...)
	}
	return c
}

// rightSigners certifies each block with a quorum of the set in force.
func rightSigners(h uint64) []string {
	if h >= changeFrom {
		return newSet[1:] // 4 of 5: the quorum
	}
	return oldSet[1:] // 3 of 4
}

func writeLog(t *testing.T, recs [][]byte) *ledger.Log {
	t.Helper()
	return baseLog(t, recs, 0, [32]byte{})
}

// TestVerifyAcrossMemberChange: a chain whose later blocks are certified
// by the new set only verifies, and says where the members changed; a
// block after the boundary certified by the old set, or one before it
// certified by the new set, fails at that block.
func TestVerifyAcrossMemberChange(t *testing.T) {
	const n = 90
	c := reconfigChain(t, n, rightSigners)
	sum, err := Verify(c.G, writeLog(t, c.Recs), nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if sum.Blocks != n || sum.Members == nil || len(sum.Members.Changes()) != 1 {
		t.Fatalf("summary %+v", sum)
	}
	e := sum.Members.Changes()[0]
	if e.Height != changeAt || e.Start != changeFrom || len(e.Nodes) != len(newSet) {
		t.Fatalf("change at %d from %d of %d nodes", e.Height, e.Start, len(e.Nodes))
	}
	for _, bad := range []struct {
		name string
		at   uint64
		set  []string
	}{
		{"old set after the boundary", changeFrom, oldSet[1:]},
		{"old set well after the boundary", n, oldSet[:3]},
		{"new set before the boundary", changeFrom - 1, newSet[1:]},
		{"new set at the change", changeAt, newSet[1:]},
	} {
		t.Run(bad.name, func(t *testing.T) {
			c := reconfigChain(t, n, func(h uint64) []string {
				if h == bad.at {
					return bad.set
				}
				return rightSigners(h)
			})
			_, err := Verify(c.G, writeLog(t, c.Recs), nil)
			if err == nil || !strings.Contains(err.Error(), "is not a member at height") {
				t.Fatalf("Verify = %v, want a certificate refused", err)
			}
			if want := "block " + strconv.FormatUint(bad.at, 10) + ":"; !strings.Contains(err.Error(), want) {
				t.Fatalf("Verify = %v, want it at %q", err, want)
			}
		})
	}
}

// TestProveMembersAndVerifyFromBase: the membership proof built from the
// log verifies with the genesis alone and proves the state's members; a
// log that starts from a snapshot above the change verifies with that
// proof stored beside its base (blocks/MEMBERS), builds the same proof
// from it, and is refused without it or with a forged one.
func TestProveMembersAndVerifyFromBase(t *testing.T) {
	const n, base = 90, 84
	c := reconfigChain(t, n, rightSigners)
	full := writeLog(t, c.Recs)
	st, err := state.New(c.G)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(full, st, nil); err != nil {
		t.Fatal(err)
	}
	p, err := ProveMembers(st.Members(), full)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ledger.VerifyMembership(c.G, p)
	if err != nil {
		t.Fatalf("VerifyMembership: %v", err)
	}
	if len(p) != 1 || !m.Equal(st.Members()) {
		t.Fatalf("proof of %d receipts proves %d changes", len(p), len(m.Changes()))
	}

	// The state at the base, as a snapshot restores it.
	baseState := func() *state.State {
		st, err := state.New(c.G)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Replay(writeLog(t, c.Recs[:base]), st, nil); err != nil {
			t.Fatal(err)
		}
		return st
	}
	based := func(members ledger.MembershipProof) *ledger.Log {
		dir := filepath.Join(t.TempDir(), "blocks")
		blog, err := ledger.OpenLog(dir, ledger.LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { blog.Close() })
		if members != nil {
			if err := blog.SetBaseMembers(members); err != nil {
				t.Fatal(err)
			}
		}
		if err := blog.SetBase(base, c.Hash(base)); err != nil {
			t.Fatal(err)
		}
		for _, rec := range c.Recs[base:] {
			if err := blog.Append(rec); err != nil {
				t.Fatal(err)
			}
		}
		return blog
	}
	blog := based(p)
	sum, err := VerifyFrom(c.G, blog, baseState(), nil)
	if err != nil {
		t.Fatalf("VerifyFrom: %v", err)
	}
	if sum.Base != base || sum.Blocks != n-base || sum.BaseChanges != 1 || len(sum.Members.Changes()) != 1 {
		t.Fatalf("summary %+v", sum)
	}
	bp, err := ProveMembers(st.Members(), blog)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustEncode(t, p), mustEncode(t, bp); string(a) != string(b) {
		t.Fatal("the proof built from the based log differs from the one built from the blocks")
	}

	// Without the stored proof the change below the base is unproven.
	if _, err := VerifyFrom(c.G, based(nil), baseState(), nil); err == nil || !strings.Contains(err.Error(), "not proven") {
		t.Fatalf("VerifyFrom without blocks/MEMBERS = %v", err)
	}
	if _, err := ProveMembers(st.Members(), based(nil)); err == nil {
		t.Fatal("ProveMembers of a based log without its stored proof passed")
	}
	// A change receipt certified by a set that is not the one before it.
	forged := c.Fork(changeAt - 1)
	forged.Add(t, newSet[1:], c.Blocks[changeAt-1].Txs...)
	fp := ledger.MembershipProof{forged.Receipt(t, changeAt, 0)}
	if _, err := VerifyFrom(c.G, based(fp), baseState(), nil); err == nil || !strings.Contains(err.Error(), "membership proof") {
		t.Fatalf("VerifyFrom with a forged blocks/MEMBERS = %v", err)
	}
}

func mustEncode(t *testing.T, p ledger.MembershipProof) []byte {
	t.Helper()
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVerifyFromBaseBelowChange: a log that starts below a change, with
// the membership proof it joined with naming that change (the peer knew
// it), verifies when its blocks commit that change, and is refused when
// the stored proof names another change at that height (a fork a quorum
// signed).
func TestVerifyFromBaseBelowChange(t *testing.T) {
	const n, base = 90, 1
	c := reconfigChain(t, n, rightSigners)
	full := writeLog(t, c.Recs)
	st, err := state.New(c.G)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Replay(full, st, nil); err != nil {
		t.Fatal(err)
	}
	p, err := ProveMembers(st.Members(), full)
	if err != nil {
		t.Fatal(err)
	}
	fork := c.Fork(changeAt - 1)
	fork.Add(t, oldSet[1:], c.Reconfig(t, "node-2", "node-3", "node-4", "node-8"))
	forked := ledger.MembershipProof{fork.Receipt(t, changeAt, 0)}
	if _, err := ledger.VerifyMembership(c.G, forked); err != nil {
		t.Fatalf("the fork's change does not verify, so the test shows nothing: %v", err)
	}
	for _, tc := range []struct {
		name    string
		members ledger.MembershipProof
		ok      bool
	}{
		{"the change it commits", p, true},
		{"another change at that height", forked, false},
		{"none", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blog, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer blog.Close()
			if tc.members != nil {
				if err := blog.SetBaseMembers(tc.members); err != nil {
					t.Fatal(err)
				}
			}
			if err := blog.SetBase(base, c.Hash(base)); err != nil {
				t.Fatal(err)
			}
			for _, rec := range c.Recs[base:] {
				if err := blog.Append(rec); err != nil {
					t.Fatal(err)
				}
			}
			bst, err := state.New(c.G)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Replay(writeLog(t, c.Recs[:base]), bst, nil); err != nil {
				t.Fatal(err)
			}
			sum, err := VerifyFrom(c.G, blog, bst, nil)
			if tc.ok != (err == nil) {
				t.Fatalf("VerifyFrom = %v, want ok %v", err, tc.ok)
			}
			if err == nil && (sum.BaseChanges != 0 || len(sum.Members.Changes()) != 1) {
				t.Fatalf("summary: %d changes below the base, %d in all", sum.BaseChanges, len(sum.Members.Changes()))
			}
		})
	}
}

// blocksOrderer commits prebuilt blocks, one round each, then waits.
type blocksOrderer struct{ blocks []*ledger.Block }

func (o blocksOrderer) Propose(*state.Checked) error { return errors.New("chain test: no proposals") }

func (o blocksOrderer) Run(ctx context.Context, commit func(*Round) error) error {
	for _, b := range o.blocks {
		txs, err := b.DecodeTxs(0)
		if err != nil {
			return err
		}
		r := &Round{Block: b, Tree: b.Tree()}
		for _, tx := range txs {
			r.Txs = append(r.Txs, &state.Checked{Tx: tx})
		}
		if err := commit(r); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// TestChainMembershipProof: a running chain that committed a member
// change (and blocks certified by the new set after it) proves its
// members with Chain.MembershipProof, before and after the change takes
// effect, and the proof verifies with the genesis alone.
func TestChainMembershipProof(t *testing.T) {
	c := reconfigChain(t, changeFrom+2, rightSigners)
	// A heartbeat of a new member, certified by the new set.
	c.Add(t, newSet[1:], c.Sign(t, "node-5", &ledger.Body{Kind: ledger.KindHeartbeat,
		Heartbeat: &ledger.Heartbeat{Node: "node-5", Time: int64(1000 * (c.Height() + 1))}}))
	st, err := state.New(c.G)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	blog, err := ledger.OpenLog(filepath.Join(dir, "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	idx, err := index.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	ch := New(Deps{State: st, Log: blog, Index: idx, Orderer: blocksOrderer{c.Blocks},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if p, err := ch.MembershipProof(); err != nil || len(p) != 0 {
		t.Fatalf("before any block: %d receipts, %v", len(p), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ch.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if h, _ := st.Tip(); h == c.Height() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chain did not commit the %d blocks", c.Height())
		}
		time.Sleep(time.Millisecond) // polling the state's height
	}
	p, err := ch.MembershipProof()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ledger.VerifyMembership(c.G, p)
	if err != nil {
		t.Fatalf("VerifyMembership: %v", err)
	}
	if !m.Equal(st.Members()) || len(p) != 1 || p[0].Header.Height != changeAt {
		t.Fatalf("a proof of %d receipts proves %d changes", len(p), len(m.Changes()))
	}
	// A receipt of the last block, certified by the new set, verifies
	// with it and not with the genesis alone.
	r := c.Receipt(t, c.Height(), 0)
	if err := m.VerifyReceipt(&r); err != nil {
		t.Fatalf("a receipt after the change: %v", err)
	}
	if err := ledger.VerifyReceipt(c.G, &r); err == nil {
		t.Fatal("a receipt certified by the new set verified with the genesis nodes")
	}
}
