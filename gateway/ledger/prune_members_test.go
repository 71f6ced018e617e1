package ledger_test

import (
	"bytes"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/ledger/ledgertest"
)

// TestPruneKeepsChangesAndAttestations: retention prunes data.record
// payloads only. A block holding a cluster.reconfig, a node.snapshot and
// a data.record keeps the first two whole when pruned, and their receipts
// built from the pruned block still verify: the membership proof and the
// snapshot proofs a gateway serves never lose a receipt to retention.
func TestPruneKeepsChangesAndAttestations(t *testing.T) {
	c := ledgertest.New(t, "prune", "node-1", "node-2", "node-3", "node-4")
	reconfig := c.Reconfig(t, "node-2", "node-3", "node-4", "node-5")
	attest := c.Attest(t, "node-1", 16, [32]byte{16})
	record := c.Sign(t, "dev-1", &ledger.Body{Kind: ledger.KindRecord,
		Record: &ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: 1, Payload: []byte("payload")}})
	c.Add(t, []string{"node-1", "node-2", "node-3"}, reconfig, attest, record)

	out, n, err := ledger.PruneRecord(c.Recs[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := ledger.DecodeBlock(out)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || !b.IsPruned() || len(b.Pruned) != 1 || b.Pruned[0].Index != 2 {
		t.Fatalf("pruned %d txs, stubs %+v; want the data.record (tx 2) alone", n, b.Pruned)
	}
	if !bytes.Equal(b.Txs[0], reconfig) || !bytes.Equal(b.Txs[1], attest) {
		t.Fatal("pruning changed the cluster.reconfig or the node.snapshot")
	}
	if again, n, err := ledger.PruneRecord(out); err != nil || n != 0 || !bytes.Equal(again, out) {
		t.Fatalf("pruning again: %d more, %v", n, err)
	}
	tree := b.Tree()
	rc, err := ledger.NewReceipt(b, tree, 0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ledger.VerifyMembership(c.G, ledger.MembershipProof{*rc})
	if err != nil {
		t.Fatalf("the change's receipt from the pruned block: %v", err)
	}
	if len(m.Changes()) != 1 || m.Last().Start != ledger.MembersFrom(1) {
		t.Fatalf("%d changes", len(m.Changes()))
	}
	ra, err := ledger.NewReceipt(b, tree, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.VerifyReceipt(ra); err != nil {
		t.Fatalf("the attestation's receipt from the pruned block: %v", err)
	}
	if _, err := ledger.NewReceipt(b, tree, 2); err == nil {
		t.Fatal("a receipt of the pruned record was built")
	}
}
