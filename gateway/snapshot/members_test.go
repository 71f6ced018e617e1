package snapshot

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/ledger/ledgertest"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// TestAcceptAfterMemberChange: a snapshot taken after a member change
// and certified by the new set is accepted with the membership proof
// (the change's receipt), which comes back to be stored beside the base;
// without it, with a change receipt not certified by the set before it,
// or with the snapshot attested by a set the change removed, it is
// refused.
func TestAcceptAfterMemberChange(t *testing.T) {
	f := changedSnapshot(t)
	c, enc, proof, mp, height, hash := f.c, f.enc, f.proof, f.members, f.height, f.hash
	oldSet, newSet := f.oldSet, f.newSet
	acc, err := Accept(c.G, enc, proof, mp)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if h, _ := acc.State.Tip(); h != height || len(acc.Members) != 1 || acc.Members[0].Header.Height != 1 {
		t.Fatalf("accepted the state at %d with %d member changes", h, len(acc.Members))
	}

	// The same change, certified by the new set itself (a fork).
	fork := c.Fork(0)
	fork.Add(t, newSet[:4], c.Blocks[0].Txs...)
	forged, err := ledger.MembershipProof{fork.Receipt(t, 1, 0)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// The old set's attestations in a block the old set certifies.
	var removed [][]byte
	for _, id := range oldSet[:3] {
		removed = append(removed, c.Attest(t, id, height, hash))
	}
	byRemoved := c.Fork(height)
	byRemoved.Add(t, oldSet[:3], removed...)
	rp := &ledger.SnapshotProof{Height: height, Hash: hash[:]}
	for i := range removed {
		rp.Receipts = append(rp.Receipts, byRemoved.Receipt(t, height+1, uint64(i)))
	}
	removedProof, err := rp.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		name           string
		proof, members []byte
	}{
		{"no membership proof", proof, nil},
		{"a change not certified by the set before it", proof, forged},
		{"attested by the removed set", removedProof, mp},
		{"attested by the removed set, without the change", removedProof, nil},
		{"membership proof not CBOR", proof, []byte("members, trust me")},
	} {
		if _, err := Accept(c.G, enc, bad.proof, bad.members); !errors.Is(err, ErrNotCertified) {
			t.Errorf("%s: Accept = %v, want ErrNotCertified", bad.name, err)
		}
	}
}

// changed is a snapshot taken after a member change, certified by the
// new set: see changedSnapshot.
type changed struct {
	c                   *ledgertest.Chain
	oldSet, newSet      []string
	height              uint64
	hash                [32]byte
	enc, proof, members []byte
}

// changedSnapshot builds a chain whose block 1 changes the members from
// four nodes to five (two of them new), a snapshot at a height where the
// new set is in force, and the new set's attestations of it in the block
// after; it returns the snapshot's encoding, its proof and the chain's
// membership proof.
func changedSnapshot(t testing.TB) *changed {
	oldSet := []string{"node-1", "node-2", "node-3", "node-4"}
	newSet := []string{"node-2", "node-3", "node-5", "node-6", "node-7"}
	from := ledger.MembersFrom(1)
	height := from + 15 // the snapshot's: the new set is in force
	c := ledgertest.New(t, "snapmembers", oldSet...)
	c.Add(t, oldSet[:3], c.Reconfig(t, newSet...))
	for h := uint64(2); h <= height; h++ {
		if h < from {
			c.Add(t, oldSet[:3])
		} else {
			c.Add(t, newSet[:4])
		}
	}
	blog, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	for _, rec := range c.Recs {
		if err := blog.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	st, err := state.New(c.G)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chain.Replay(blog, st, nil); err != nil {
		t.Fatal(err)
	}
	enc, err := st.Snapshot().Encode()
	if err != nil {
		t.Fatal(err)
	}
	hash := state.SnapshotHash(enc)
	members, err := chain.ProveMembers(st.Members(), blog)
	if err != nil {
		t.Fatal(err)
	}
	// Attestations by the set in force, in the block after.
	var attests [][]byte
	for _, id := range newSet[:4] {
		attests = append(attests, c.Attest(t, id, height, hash))
	}
	c.Add(t, newSet[:4], attests...)
	p := &ledger.SnapshotProof{Height: height, Hash: hash[:]}
	for i := range attests {
		p.Receipts = append(p.Receipts, c.Receipt(t, height+1, uint64(i)))
	}
	proof, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	mp, err := members.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &changed{c: c, oldSet: oldSet, newSet: newSet, height: height, hash: hash, enc: enc, proof: proof, members: mp}
}

// FuzzAccept: whatever a peer sends as a snapshot, its proof and the
// membership proof, Accept does not panic, and what it accepts is the
// certified snapshot: its bytes hash to the proof's hash and decode as
// the state at the proof's height.
func FuzzAccept(f *testing.F) {
	fx := changedSnapshot(f)
	f.Add(fx.enc, fx.proof, fx.members)
	f.Add(fx.enc, fx.proof, []byte{})
	f.Add(fx.enc[:len(fx.enc)/2], fx.proof[:len(fx.proof)/2], fx.members[:len(fx.members)/2])
	f.Fuzz(func(t *testing.T, data, proof, members []byte) {
		if len(data)+len(proof)+len(members) > 1<<20 {
			return
		}
		acc, err := Accept(fx.c.G, data, proof, members)
		if err != nil {
			if !errors.Is(err, ErrNotCertified) {
				t.Fatalf("Accept = %v, not an ErrNotCertified", err)
			}
			return
		}
		sum := state.SnapshotHash(data)
		if h, _ := acc.State.Tip(); h != acc.Proof.Height || string(sum[:]) != string(acc.Proof.Hash) {
			t.Fatalf("accepted the state at %d hashing to %x, certified %d %x", h, sum, acc.Proof.Height, acc.Proof.Hash)
		}
	})
}
