package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/ledger/ledgertest"
	"github.com/ledgergate/ledgergate/gateway/snapshot"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// joinedAfterChange makes the data directory of a gateway that joined
// from a snapshot taken after a member change: the change at block 1,
// the snapshot at a height where the new set is in force, certified by
// the new set's attestations in the block after it, and blocks/MEMBERS
// holding the change's receipt (as a join stores it). It returns the
// directory and the genesis.
func joinedAfterChange(t *testing.T) (string, *ledger.Genesis) {
	t.Helper()
	oldSet := []string{"node-1", "node-2", "node-3", "node-4"}
	newSet := []string{"node-2", "node-3", "node-5", "node-6", "node-7"}
	from := ledger.MembersFrom(1)
	height := from + 15
	c := ledgertest.New(t, "joined", oldSet...)
	c.Add(t, oldSet[:3], c.Reconfig(t, newSet...))
	for h := uint64(2); h <= height; h++ {
		if h < from {
			c.Add(t, oldSet[:3])
		} else {
			c.Add(t, newSet[:4])
		}
	}
	// The snapshot at height, from a replay of the whole chain.
	full, err := ledger.OpenLog(filepath.Join(t.TempDir(), "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	for _, rec := range c.Recs {
		if err := full.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	st, err := state.New(c.G)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chain.Replay(full, st, nil); err != nil {
		t.Fatal(err)
	}
	enc, err := st.Snapshot().Encode()
	if err != nil {
		t.Fatal(err)
	}
	hash := state.SnapshotHash(enc)
	members, err := chain.ProveMembers(st.Members(), full)
	if err != nil {
		t.Fatal(err)
	}
	var attests [][]byte
	for _, id := range newSet[:4] {
		attests = append(attests, c.Attest(t, id, height, hash))
	}
	c.Add(t, newSet[:4], attests...)
	c.Add(t, newSet[1:])
	p := &ledger.SnapshotProof{Height: height, Hash: hash[:]}
	for i := range attests {
		p.Receipts = append(p.Receipts, c.Receipt(t, height+1, uint64(i)))
	}
	proof, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "data")
	if _, err := Init(dir, InitOptions{Signer: config.Dev().Signer}); err != nil {
		t.Fatal(err)
	}
	gj, err := json.Marshal(c.G)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, GenesisFile), gj, 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := snapshot.Open(filepath.Join(dir, SnapshotsDir))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Write(height, enc); err != nil {
		t.Fatal(err)
	}
	if err := store.WriteBaseProof(proof); err != nil {
		t.Fatal(err)
	}
	blog, err := ledger.OpenLog(filepath.Join(dir, BlocksDir), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer blog.Close()
	if err := blog.SetBaseMembers(members); err != nil {
		t.Fatal(err)
	}
	if err := blog.SetBase(height, c.Hash(height)); err != nil {
		t.Fatal(err)
	}
	for _, rec := range c.Recs[height:] {
		if err := blog.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	return dir, c.G
}

// TestJoinedAfterMemberChange: the base snapshot of a gateway that joined
// after a member change is proven certified (by the new set) with the
// membership proof stored beside the base; a backup carries that proof
// and restores and verifies; without it the base is not proven and the
// backup of that directory does not restore.
func TestJoinedAfterMemberChange(t *testing.T) {
	dir, g := joinedAfterChange(t)
	check := func(dir string) error {
		blog, err := ledger.OpenLog(filepath.Join(dir, BlocksDir), ledger.LogOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		defer blog.Close()
		if _, err := BaseProof(dir, g, blog); err != nil {
			return err
		}
		from, err := BaseState(dir, g, blog)
		if err != nil {
			return err
		}
		_, err = chain.VerifyFrom(g, blog, from, nil)
		return err
	}
	if err := check(dir); err != nil {
		t.Fatalf("the joined directory: %v", err)
	}
	var buf bytes.Buffer
	if _, err := Backup(context.Background(), &buf, BackupOptions{DataDir: dir, TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(t.TempDir(), "restored")
	res, err := Restore(context.Background(), bytes.NewReader(buf.Bytes()), RestoreOptions{DataDir: restored})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if ch := res.Verified.Members.Changes(); len(ch) != 1 || res.Verified.BaseChanges != 1 {
		t.Fatalf("restore verified %d member changes, %d below the base", len(ch), res.Verified.BaseChanges)
	}
	if err := check(restored); err != nil {
		t.Fatalf("the restored directory: %v", err)
	}

	// Without the membership proof the attestations are by nodes the
	// genesis does not name.
	if err := os.Remove(filepath.Join(dir, BlocksDir, ledger.LogMembersFile)); err != nil {
		t.Fatal(err)
	}
	if err := check(dir); err == nil {
		t.Fatal("the joined directory without blocks/MEMBERS verified")
	}
	buf.Reset()
	if _, err := Backup(context.Background(), &buf, BackupOptions{DataDir: dir, TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(context.Background(), bytes.NewReader(buf.Bytes()), RestoreOptions{DataDir: filepath.Join(t.TempDir(), "x")}); !errors.Is(err, ErrBadBackup) {
		t.Fatalf("restore of a backup without blocks/MEMBERS: %v, want ErrBadBackup", err)
	}
}
