package state

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

const chainID = "test"

type fixture struct {
	t      *testing.T
	st     *State
	admin  crypto.Signer
	node   crypto.Signer
	height uint64
}

func newP256(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func der(t *testing.T, s crypto.Signer) []byte {
	b, err := ledger.MarshalPublicKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, admin: newP256(t), node: newP256(t)}
	g := &ledger.Genesis{ChainID: chainID, Params: ledger.Params{MaxTxBytes: 4096},
		Nodes:  []ledger.Node{{ID: "node-1", PublicKey: der(t, f.node)}},
		Admins: []ledger.Admin{{ID: "admin", PublicKey: der(t, f.admin)}}}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := New(g)
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	return f
}

func (f *fixture) sign(key crypto.Signer, kid string, b ledger.Body) []byte {
	f.t.Helper()
	if b.ChainID == "" {
		b.ChainID = chainID
	}
	env, err := ledger.SignTx(key, kid, &b)
	if err != nil {
		f.t.Fatal(err)
	}
	return env
}

func enrollBody(id string, pub []byte) ledger.Body {
	return ledger.Body{Kind: ledger.KindEnroll, Enroll: &ledger.Enroll{DeviceID: id, PublicKey: pub}}
}

func recordBody(id string, seq uint64) ledger.Body {
	return ledger.Body{Kind: ledger.KindRecord, Record: &ledger.Record{DeviceID: id, Stream: "s", Seq: seq, Payload: []byte{1}}}
}

// commit checks, batches and applies envs as one block; all must pass.
func (f *fixture) commit(envs ...[]byte) {
	f.t.Helper()
	b := f.st.NewBatch()
	var txs []*ledger.Tx
	for _, env := range envs {
		c, err := f.st.Check(env)
		if err != nil {
			f.t.Fatal(err)
		}
		if err := b.Add(c); err != nil {
			f.t.Fatal(err)
		}
		txs = append(txs, c.Tx)
	}
	f.height++
	if err := f.st.Apply(f.height, [32]byte{byte(f.height)}, txs); err != nil {
		f.t.Fatal(err)
	}
}

func wantReason(t *testing.T, err error, r ledger.Reason) {
	t.Helper()
	if got := ledger.ReasonOf(err); got != r {
		t.Fatalf("got %v (reason %q), want reason %q", err, got, r)
	}
}

func TestCheckRules(t *testing.T) {
	f := newFixture(t)
	devKey := newP256(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	f.commit(f.sign(f.admin, "admin", enrollBody("dev-1", der(t, devKey))),
		f.sign(f.admin, "admin", enrollBody("dev-2", der(t, edKey))))
	f.commit(f.sign(devKey, "dev-1", recordBody("dev-1", 5)), f.sign(edKey, "dev-2", recordBody("dev-2", 1)))

	stranger := newP256(t)
	cases := []struct {
		name string
		env  []byte
		want ledger.Reason
	}{
		{"garbage", []byte("not a tx"), ledger.ReasonMalformed},
		{"too large", f.sign(devKey, "dev-1", ledger.Body{Kind: ledger.KindRecord, Record: &ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: 9, Payload: make([]byte, 5000)}}), ledger.ReasonTooLarge},
		{"wrong chain", f.sign(devKey, "dev-1", ledger.Body{Kind: ledger.KindRecord, ChainID: "other", Record: &ledger.Record{DeviceID: "dev-1", Stream: "s", Seq: 9}}), ledger.ReasonWrongChain},
		{"unknown device", f.sign(stranger, "dev-9", recordBody("dev-9", 1)), ledger.ReasonUnknownAuthor},
		{"unknown admin", f.sign(stranger, "root", enrollBody("dev-9", der(t, stranger))), ledger.ReasonUnknownAuthor},
		{"device enrolls", f.sign(devKey, "dev-1", enrollBody("dev-9", der(t, stranger))), ledger.ReasonForbidden},
		{"record for another device", f.sign(devKey, "dev-1", recordBody("dev-2", 9)), ledger.ReasonForbidden},
		{"forged signature", f.sign(stranger, "dev-1", recordBody("dev-1", 9)), ledger.ReasonBadSignature},
		{"forged admin", f.sign(stranger, "admin", enrollBody("dev-9", der(t, stranger))), ledger.ReasonBadSignature},
		{"replayed seq", f.sign(devKey, "dev-1", recordBody("dev-1", 5)), ledger.ReasonReplay},
		{"older seq", f.sign(devKey, "dev-1", recordBody("dev-1", 4)), ledger.ReasonReplay},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.st.Check(c.env)
			wantReason(t, err, c.want)
		})
	}

	// Batch rules: enroll twice, seq order within a block, revoke.
	b := f.st.NewBatch()
	add := func(env []byte) error {
		c, err := f.st.Check(env)
		if err != nil {
			return err
		}
		return b.Add(c)
	}
	if err := add(f.sign(devKey, "dev-1", recordBody("dev-1", 7))); err != nil {
		t.Fatal(err)
	}
	wantReason(t, add(f.sign(devKey, "dev-1", recordBody("dev-1", 6))), ledger.ReasonReplay)
	wantReason(t, add(f.sign(devKey, "dev-1", recordBody("dev-1", 7))), ledger.ReasonReplay)
	wantReason(t, add(f.sign(f.admin, "admin", enrollBody("dev-1", der(t, stranger)))), ledger.ReasonExists)
	wantReason(t, add(f.sign(f.admin, "admin", enrollBody("admin", der(t, stranger)))), ledger.ReasonExists)
	wantReason(t, add(f.sign(f.admin, "admin", enrollBody("node-1", der(t, stranger)))), ledger.ReasonExists)
	wantReason(t, add(f.sign(f.admin, "admin", ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: "nobody"}})), ledger.ReasonUnknownDevice)
	if err := add(f.sign(f.admin, "admin", ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: "dev-2"}})); err != nil {
		t.Fatal(err)
	}
	// dev-2 signed before the revoke was batched; the batch refuses it.
	wantReason(t, add(f.sign(edKey, "dev-2", recordBody("dev-2", 2))), ledger.ReasonRevoked)
}

func TestRevokeAndRekey(t *testing.T) {
	f := newFixture(t)
	k1, k2 := newP256(t), newP256(t)
	f.commit(f.sign(f.admin, "admin", enrollBody("dev-1", der(t, k1))))
	// Checked with the old key, then the device re-keys: the old check is stale.
	stale, err := f.st.Check(f.sign(k1, "dev-1", recordBody("dev-1", 3)))
	if err != nil {
		t.Fatal(err)
	}
	wantByKey := func(k crypto.Signer, want string, revoked bool) {
		t.Helper()
		d, ok := f.st.DeviceByKey(der(t, k))
		if want == "" {
			if ok {
				t.Fatalf("key of %s found", d.ID)
			}
			return
		}
		if !ok || d.ID != want || d.Revoked != revoked {
			t.Fatalf("DeviceByKey: %+v %v, want %s revoked %v", d, ok, want, revoked)
		}
	}
	wantByKey(k1, "dev-1", false)
	wantByKey(k2, "", false)
	f.commit(f.sign(k1, "dev-1", ledger.Body{Kind: ledger.KindRekey, Rekey: &ledger.Rekey{DeviceID: "dev-1", Seq: 1, PublicKey: der(t, k2)}}))
	wantByKey(k1, "", false)
	wantByKey(k2, "dev-1", false)
	wantReason(t, f.st.NewBatch().Add(stale), ledger.ReasonBadSignature)
	_, err = f.st.Check(f.sign(k1, "dev-1", recordBody("dev-1", 4)))
	wantReason(t, err, ledger.ReasonBadSignature)
	f.commit(f.sign(k2, "dev-1", recordBody("dev-1", 2)))

	f.commit(f.sign(f.admin, "admin", ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: "dev-1", Reason: "stolen"}}))
	_, err = f.st.Check(f.sign(k2, "dev-1", recordBody("dev-1", 3)))
	wantReason(t, err, ledger.ReasonRevoked)
	// A revoked id can never come back.
	c, err := f.st.Check(f.sign(f.admin, "admin", enrollBody("dev-1", der(t, k2))))
	if err != nil {
		t.Fatal(err)
	}
	wantReason(t, f.st.NewBatch().Add(c), ledger.ReasonExists)
	wantByKey(k2, "dev-1", true)
	d, _ := f.st.Device("dev-1")
	if !d.Revoked || d.LastSeq != 2 {
		t.Fatalf("device %+v", d)
	}
	if h, _ := f.st.Tip(); h != 4 {
		t.Fatalf("height %d", h)
	}
	if err := f.st.Apply(9, [32]byte{}, nil); err == nil {
		t.Fatal("applied a block out of order")
	}
}

// TestBatchOnParent: a batch on an uncommitted parent batch sees the
// parent's devices and sequence numbers, and once the parent is applied
// it reads the state instead.
func TestBatchOnParent(t *testing.T) {
	f := newFixture(t)
	devKey := newP256(t)
	check := func(b *Batch, env []byte) (*Checked, error) {
		tx, err := ledger.DecodeTx(env, 4096)
		if err != nil {
			t.Fatal(err)
		}
		c, err := b.Check(tx)
		if err != nil {
			return nil, err
		}
		return c, tx.Verify(c.Key)
	}
	enroll := f.sign(f.admin, "admin", enrollBody("dev-1", der(t, devKey)))
	rec1 := f.sign(devKey, "dev-1", recordBody("dev-1", 1))
	rec2 := f.sign(devKey, "dev-1", recordBody("dev-1", 2))

	parent := f.st.NewBatch()
	c, err := check(parent, enroll)
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Add(c); err != nil {
		t.Fatal(err)
	}
	if _, err := check(f.st.NewBatch(), rec1); ledger.ReasonOf(err) != ledger.ReasonUnknownAuthor {
		t.Fatalf("record on the committed state, before its enrollment: %v", err)
	}
	child := f.st.NewBatchOn(parent)
	c1, err := check(child, rec1)
	if err != nil {
		t.Fatalf("record on top of its enrollment: %v", err)
	}
	if err := child.Add(c1); err != nil {
		t.Fatal(err)
	}
	grandchild := f.st.NewBatchOn(child)
	c1again, _ := check(grandchild, rec1)
	wantReason(t, grandchild.Add(c1again), ledger.ReasonReplay)
	c, _ = check(grandchild, enroll)
	wantReason(t, grandchild.Add(c), ledger.ReasonExists)

	// The parent commits: its batch defers to the state.
	tx, _ := ledger.DecodeTx(enroll, 4096)
	if err := f.st.Apply(1, [32]byte{1}, []*ledger.Tx{tx}); err != nil {
		t.Fatal(err)
	}
	parent.Applied()
	next := f.st.NewBatchOn(child)
	c2, err := check(next, rec2)
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Add(c2); err != nil {
		t.Fatalf("seq 2 after seq 1 in the parent: %v", err)
	}
}

func configBody(target string, version uint64) ledger.Body {
	sum := make([]byte, 32)
	return ledger.Body{Kind: ledger.KindConfigSet, ConfigSet: &ledger.ConfigSet{Target: target, Version: version, SHA256: sum, Blob: sum}}
}

// addOne checks env and adds it to b, returning the first error.
func (f *fixture) addOne(b *Batch, env []byte) error {
	f.t.Helper()
	c, err := f.st.Check(env)
	if err != nil {
		return err
	}
	return b.Add(c)
}

func TestConfigRules(t *testing.T) {
	f := newFixture(t)
	devKey := newP256(t)
	f.commit(f.sign(f.admin, "admin", enrollBody("dev-1", der(t, devKey))))
	f.commit(f.sign(f.admin, "admin", configBody("dev-1", 1)), f.sign(f.admin, "admin", configBody("group:meters", 3)))
	if v := f.st.ConfigVersion("dev-1"); v != 1 {
		t.Fatalf("ConfigVersion(dev-1) = %d, want 1", v)
	}

	b := f.st.NewBatch()
	wantReason(t, f.addOne(b, f.sign(f.admin, "admin", configBody("dev-1", 1))), ledger.ReasonStaleVersion)
	wantReason(t, f.addOne(b, f.sign(f.admin, "admin", configBody("group:meters", 2))), ledger.ReasonStaleVersion)
	wantReason(t, f.addOne(b, f.sign(f.admin, "admin", configBody("dev-9", 1))), ledger.ReasonUnknownDevice)
	if err := f.addOne(b, f.sign(f.admin, "admin", configBody("dev-1", 5))); err != nil {
		t.Fatalf("version 5 after 1: %v", err)
	}
	// The batch sees its own txs: version 4 after the batch's 5 is stale.
	wantReason(t, f.addOne(b, f.sign(f.admin, "admin", configBody("dev-1", 4))), ledger.ReasonStaleVersion)
	// Only an admin may publish; only the device may report, with its counter.
	_, err := f.st.Check(f.sign(devKey, "dev-1", configBody("dev-1", 9)))
	wantReason(t, err, ledger.ReasonForbidden)
	report := func(seq uint64) []byte {
		return f.sign(devKey, "dev-1", ledger.Body{Kind: ledger.KindConfigReport, ConfigReport: &ledger.ConfigReport{
			DeviceID: "dev-1", Seq: seq, Version: 1, SHA256: make([]byte, 32)}})
	}
	f.commit(report(1))
	_, err = f.st.Check(report(1))
	wantReason(t, err, ledger.ReasonReplay)
	_, err = f.st.Check(f.sign(devKey, "dev-1", recordBody("dev-1", 1)))
	wantReason(t, err, ledger.ReasonReplay) // reports and records share the counter

	f.commit(f.sign(f.admin, "admin", ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: "dev-1"}}))
	wantReason(t, f.addOne(f.st.NewBatch(), f.sign(f.admin, "admin", configBody("dev-1", 7))), ledger.ReasonRevoked)
}

func TestHeartbeatOnlyByItsNode(t *testing.T) {
	f := newFixture(t)
	hb := func(key crypto.Signer, kid, node string) []byte {
		return f.sign(key, kid, ledger.Body{Kind: ledger.KindHeartbeat, Heartbeat: &ledger.Heartbeat{Node: node, Time: 1}})
	}
	f.commit(hb(f.node, "node-1", "node-1"))
	_, err := f.st.Check(hb(f.node, "node-1", "node-2"))
	wantReason(t, err, ledger.ReasonForbidden)
	_, err = f.st.Check(hb(f.admin, "admin", "admin"))
	wantReason(t, err, ledger.ReasonUnknownAuthor)
	_, err = f.st.Check(hb(f.admin, "node-1", "node-1"))
	wantReason(t, err, ledger.ReasonBadSignature)
}

// TestHeartbeatKeyOnce: every check of a node's heartbeat hands back
// the same key, as for a device's records, so that a replica's
// App.Validate recognises the precheck's verdict on it (it compares the
// keys) instead of verifying the heartbeat again.
func TestHeartbeatKeyOnce(t *testing.T) {
	f := newFixture(t)
	hb := f.sign(f.node, "node-1", ledger.Body{Kind: ledger.KindHeartbeat, Heartbeat: &ledger.Heartbeat{Node: "node-1", Time: 1}})
	c1, err := f.st.Check(hb)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := ledger.DecodeTx(hb, 0)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := f.st.NewBatch().Check(tx)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Key != c2.Key {
		t.Error("the node key was parsed again for the second check")
	}
}

// TestHeartbeatOnce: a heartbeat commits once. The chaos suite saw one
// heartbeat in three blocks: queued while no quorum could commit it, it
// was proposed again in each new view, and nothing refused it.
func TestHeartbeatOnce(t *testing.T) {
	f := newFixture(t)
	hb := func(at int64) []byte {
		return f.sign(f.node, "node-1", ledger.Body{Kind: ledger.KindHeartbeat, Heartbeat: &ledger.Heartbeat{Node: "node-1", Time: at}})
	}
	first := hb(1000)
	f.commit(first)
	wantReason(t, f.addOne(f.st.NewBatch(), first), ledger.ReasonReplay)    // the same tx again
	wantReason(t, f.addOne(f.st.NewBatch(), hb(1000)), ledger.ReasonReplay) // another at the same time
	wantReason(t, f.addOne(f.st.NewBatch(), hb(999)), ledger.ReasonReplay)  // an earlier one
	b := f.st.NewBatch()
	if err := f.addOne(b, hb(1001)); err != nil {
		t.Fatalf("a later heartbeat: %v", err)
	}
	wantReason(t, f.addOne(f.st.NewBatchOn(b), hb(1001)), ledger.ReasonReplay) // one in the parent block in flight
	if got := f.st.LastHeartbeat("node-1"); got != 1000 {
		t.Errorf("LastHeartbeat = %d, want 1000 (the committed one)", got)
	}
}

func TestFirmwareRules(t *testing.T) {
	f := newFixture(t)
	vendorKey, reviewerKey, devKey := newP256(t), newP256(t), newP256(t)
	admin := func(b ledger.Body) []byte { return f.sign(f.admin, "admin", b) }
	rel := ledger.Release{Model: "th-2", Version: 2}
	publish := func(key crypto.Signer, kid string, r ledger.Release) []byte {
		return f.sign(key, kid, ledger.Body{Kind: ledger.KindFirmwarePublish, FirmwarePublish: &ledger.FirmwarePublish{
			Model: r.Model, Version: r.Version, SHA256: make([]byte, 32), Size: 1, Expires: 1}})
	}
	vote := func(r ledger.Release, good bool) []byte {
		return f.sign(reviewerKey, "rev", ledger.Body{Kind: ledger.KindFirmwareVote, FirmwareVote: &ledger.FirmwareVote{Release: r, Good: good}})
	}
	f.commit(admin(ledger.Body{Kind: ledger.KindVendorEnroll, VendorEnroll: &ledger.VendorEnroll{Vendor: "acme", PublicKey: der(t, vendorKey), Models: []string{"th-2"}}}),
		admin(ledger.Body{Kind: ledger.KindReviewerEnroll, ReviewerEnroll: &ledger.ReviewerEnroll{Reviewer: "rev", PublicKey: der(t, reviewerKey)}}),
		admin(enrollBody("dev-1", der(t, devKey))))

	b := f.st.NewBatch()
	wantReason(t, f.addOne(b, vote(rel, true)), ledger.ReasonUnknownRelease)
	wantReason(t, f.addOne(b, publish(vendorKey, "acme", ledger.Release{Model: "x-9", Version: 1})), ledger.ReasonForbidden)
	_, err := f.st.Check(publish(reviewerKey, "rev", rel))
	wantReason(t, err, ledger.ReasonUnknownAuthor) // only a vendor publishes
	_, err = f.st.Check(publish(devKey, "acme", rel))
	wantReason(t, err, ledger.ReasonBadSignature) // with its maintenance key
	if err := f.addOne(b, publish(vendorKey, "acme", rel)); err != nil {
		t.Fatal(err)
	}
	wantReason(t, f.addOne(b, publish(vendorKey, "acme", rel)), ledger.ReasonExists) // a release is published once
	if err := f.addOne(b, vote(rel, true)); err != nil {
		t.Fatalf("a vote on a release of the same block: %v", err)
	}
	wantReason(t, f.addOne(b, vote(rel, false)), ledger.ReasonExists) // one vote per reviewer
	_, err = f.st.Check(f.sign(devKey, "dev-1", ledger.Body{Kind: ledger.KindFirmwareApprove, FirmwareApprove: &ledger.FirmwareApprove{Release: rel, Group: "g"}}))
	wantReason(t, err, ledger.ReasonUnknownAuthor)                                             // only an admin approves
	wantReason(t, f.addOne(b, admin(enrollBody("acme", der(t, devKey)))), ledger.ReasonExists) // ids are shared
}

// TestReplayCarriesLastSeq: a replay refusal carries the device's last
// seq, committed (Check) or queued in the block being built (Batch.Add),
// so the device can resync its counter.
func TestReplayCarriesLastSeq(t *testing.T) {
	f := newFixture(t)
	devKey := newP256(t)
	f.commit(f.sign(f.admin, "admin", enrollBody("dev-1", der(t, devKey))))
	f.commit(f.sign(devKey, "dev-1", recordBody("dev-1", 5)))
	lastSeq := func(err error) uint64 {
		t.Helper()
		wantReason(t, err, ledger.ReasonReplay)
		last, ok := ledger.LastSeqOf(err)
		if !ok {
			t.Fatalf("%v carries no last seq", err)
		}
		return last
	}
	_, err := f.st.Check(f.sign(devKey, "dev-1", recordBody("dev-1", 3)))
	if got := lastSeq(err); got != 5 {
		t.Fatalf("Check: last_seq %d, want 5", got)
	}
	b := f.st.NewBatch()
	c, err := f.st.Check(f.sign(devKey, "dev-1", recordBody("dev-1", 9)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(c); err != nil {
		t.Fatal(err)
	}
	c2, err := f.st.Check(f.sign(devKey, "dev-1", recordBody("dev-1", 8)))
	if err != nil {
		t.Fatal(err)
	}
	if got := lastSeq(b.Add(c2)); got != 9 {
		t.Fatalf("Batch.Add: last_seq %d, want 9 (queued)", got)
	}
	if got := lastSeq(b.Add(c)); got != 9 {
		t.Fatalf("Batch.Add of the same tx: last_seq %d, want 9", got)
	}
}
