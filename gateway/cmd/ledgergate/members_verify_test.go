package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/daemon"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/ledger/ledgertest"
)

// TestLedgerVerifyMemberChange: `ledger verify` on a data directory
// whose chain changed its members checks each certificate with the set
// in force at its height and says where the members changed; a block
// after the change certified by the old set fails it at that block; a
// backup of it restores, verified, saying the same.
func TestLedgerVerifyMemberChange(t *testing.T) {
	oldSet := []string{"node-1", "node-2", "node-3", "node-4"}
	newSet := []string{"node-2", "node-3", "node-5", "node-6", "node-7"}
	from := ledger.MembersFrom(3)
	dataDir := func(c *ledgertest.Chain) string {
		dir := filepath.Join(t.TempDir(), "data")
		if _, err := daemon.Init(dir, daemon.InitOptions{Signer: config.Dev().Signer}); err != nil {
			t.Fatal(err)
		}
		gj, err := json.Marshal(c.G)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, daemon.GenesisFile), gj, 0o644); err != nil {
			t.Fatal(err)
		}
		blog, err := ledger.OpenLog(filepath.Join(dir, daemon.BlocksDir), ledger.LogOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer blog.Close()
		for _, rec := range c.Recs {
			if err := blog.Append(rec); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	build := func(wrongAt uint64) *ledgertest.Chain {
		c := ledgertest.New(t, "verifymembers", oldSet...)
		for h := uint64(1); h <= from+3; h++ {
			var txs [][]byte
			if h == 3 {
				txs = append(txs, c.Reconfig(t, newSet...))
			}
			signers := oldSet[:3]
			if (h >= from) != (h == wrongAt) {
				signers = newSet[:4]
			}
			c.Add(t, signers, txs...)
		}
		return c
	}
	good := dataDir(build(0))
	out := mustCLI(t, "", "ledger", "verify", "--data", good)
	want := "members changed at heights 3 (5 nodes from " + strconv.FormatUint(from, 10) + ": node-2 node-3 node-5 node-6 node-7)"
	if !strings.Contains(out, want) || !strings.Contains(out, "ok: "+strconv.FormatUint(from+3, 10)+" blocks") {
		t.Errorf("ledger verify:\n%s\nwant %q", out, want)
	}
	work := t.TempDir()
	mustCLI(t, work, "backup", "--data", good, "--out", filepath.Join(work, "b.tar"))
	if out := mustCLI(t, work, "restore", filepath.Join(work, "b.tar"), "--data", filepath.Join(work, "restored")); !strings.Contains(out, "ledger verify: members changed at heights 3") {
		t.Errorf("restore:\n%s", out)
	}

	for _, at := range []uint64{from, from - 1} {
		out, errs, code := cli(t, "", "ledger", "verify", "--data", dataDir(build(at)))
		if code == 0 || !strings.Contains(errs, "block "+strconv.FormatUint(at, 10)+":") || !strings.Contains(errs, "is not a member at height") {
			t.Errorf("block %d certified by the wrong set: exit %d\n%s%s", at, code, out, errs)
		}
	}
}
