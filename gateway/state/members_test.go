package state

import (
	"bytes"
	"crypto"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

func reconfigBody(nodes ...ledger.Node) ledger.Body {
	return ledger.Body{Kind: ledger.KindReconfig, ClusterReconfig: &ledger.ClusterReconfig{Nodes: nodes}}
}

func heartbeatBody(node string, time int64) ledger.Body {
	return ledger.Body{Kind: ledger.KindHeartbeat, Heartbeat: &ledger.Heartbeat{Node: node, Time: time}}
}

// TestReconfig: an admin's cluster.reconfig changes the member set from
// ledger.MembersFrom of its height, not before; a second one is refused
// while the first is pending; the new member's node txs count only from
// then; a snapshot carries the change.
func TestReconfig(t *testing.T) {
	f, keys := fourNodes(t)
	g := f.st.Genesis()
	e := newP256(t)
	next := append(append([]ledger.Node(nil), g.Nodes[:3]...), ledger.Node{ID: "node-e", PublicKey: der(t, e), Addrs: []string{"10.0.0.5:7000"}})

	// Only an admin, and never with an id of a device.
	_, err := f.st.Check(f.sign(keys[0], "node-1", reconfigBody(next...)))
	wantReason(t, err, ledger.ReasonUnknownAuthor)
	f.commit(f.sign(f.admin, "admin", enrollBody("dev-1", der(t, newP256(t)))))
	clash := append(append([]ledger.Node(nil), g.Nodes[:3]...), ledger.Node{ID: "dev-1", PublicKey: der(t, e)})
	b := f.st.NewBatch()
	wantReason(t, f.addOne(b, f.sign(f.admin, "admin", reconfigBody(clash...))), ledger.ReasonExists)

	// Two in one block: the second sees the first pending.
	b = f.st.NewBatch()
	if err := f.addOne(b, f.sign(f.admin, "admin", reconfigBody(next...))); err != nil {
		t.Fatal(err)
	}
	wantReason(t, f.addOne(b, f.sign(f.admin, "admin", reconfigBody(g.Nodes...))), ledger.ReasonForbidden)

	// Committed at height 2: the new set is in force from 81.
	f.commit(f.sign(f.admin, "admin", reconfigBody(next...)))
	m := f.st.Members()
	if from := m.Last().Start; from != ledger.MembersFrom(2) || from != 81 {
		t.Fatalf("new set from %d, want 81", from)
	}
	// A second change: refused while the first is pending.
	b = f.st.NewBatch()
	wantReason(t, f.addOne(b, f.sign(f.admin, "admin", reconfigBody(g.Nodes...))), ledger.ReasonForbidden)

	// Until 81 the genesis set signs node txs; node-e is nobody yet.
	beat := func(k crypto.Signer, node string, time int64) []byte {
		return f.sign(k, node, heartbeatBody(node, time))
	}
	_, err = f.st.Check(beat(e, "node-e", 1))
	wantReason(t, err, ledger.ReasonUnknownAuthor)
	for f.height < 80 {
		f.commit(beat(keys[3], "node-4", int64(f.height+1)))
	}
	// The block at 81: node-4 is out, node-e in.
	_, err = f.st.Check(beat(keys[3], "node-4", 1000))
	wantReason(t, err, ledger.ReasonUnknownAuthor)
	f.commit(beat(e, "node-e", 1))
	if f.st.Members().Pending(f.height + 1) {
		t.Fatal("the change is still pending after its start")
	}
	// node-4 may never be enrolled as a device: its id was a node's.
	b = f.st.NewBatch()
	wantReason(t, f.addOne(b, f.sign(f.admin, "admin", enrollBody("node-4", der(t, newP256(t))))), ledger.ReasonExists)

	// A snapshot carries the change; restored, it refuses and accepts the same.
	enc := encodeState(t, f.st)
	r, err := Restore(g, enc)
	if err != nil {
		t.Fatal(err)
	}
	if again := encodeState(t, r); !bytes.Equal(again, enc) {
		t.Fatal("a restored state encodes differently")
	}
	if a, b := r.Members().Last(), f.st.Members().Last(); a.Start != b.Start || a.Height != b.Height || a.Tx != b.Tx || len(a.Nodes) != len(b.Nodes) {
		t.Fatalf("restored members %+v, want %+v", a, b)
	}
	rf := &fixture{t: t, st: r, admin: f.admin, height: f.height}
	_, err = rf.st.Check(beat(keys[3], "node-4", 2000))
	wantReason(t, err, ledger.ReasonUnknownAuthor)
	rf.commit(beat(e, "node-e", 2))
}

// TestSnapshotWithoutChangesUnchanged: a chain whose members never changed
// encodes no key 15, so its snapshots hash as before changes existed.
func TestSnapshotWithoutChangesUnchanged(t *testing.T) {
	f := newFixture(t)
	enc := encodeState(t, f.st)
	// The map's header says how many keys follow: 14 (0xae), not 15.
	if enc[0] != 0xae {
		t.Fatalf("snapshot of a chain without changes starts %#x, want a map of 14 keys (0xae)", enc[0])
	}
}
