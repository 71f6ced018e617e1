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
	// Attestations by the set in force (block height+1) and by the old
	// set (block height+2, which it does not certify either).
	var attests, removed [][]byte
	for _, id := range newSet[:4] {
		attests = append(attests, c.Attest(t, id, height, hash))
	}
	for _, id := range oldSet[:3] {
		removed = append(removed, c.Attest(t, id, height, hash))
	}
	c.Add(t, newSet[:4], attests...)
	proofOf := func(h uint64, n int) []byte {
		p := &ledger.SnapshotProof{Height: height, Hash: hash[:]}
		for i := range n {
			p.Receipts = append(p.Receipts, c.Receipt(t, h, uint64(i)))
		}
		b, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	proof := proofOf(height+1, 4)
	mp, err := members.Encode()
	if err != nil {
		t.Fatal(err)
	}
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
