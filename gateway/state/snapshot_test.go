package state

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"reflect"
	"strconv"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// richState builds a state with something in every part of a snapshot:
// devices (one re-keyed, one revoked, two sharing a key), configs,
// vendors, reviewers, firmware facts, heartbeats. It returns the
// envelopes of each block, so a test can apply them again.
func richState(t *testing.T, f *fixture) [][][]byte {
	t.Helper()
	admin := func(b ledger.Body) []byte { return f.sign(f.admin, "admin", b) }
	k1, k2, shared, vendorKey, reviewerKey := newP256(t), newP256(t), newP256(t), newP256(t), newP256(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rel := ledger.Release{Model: "th-2", Version: 2}
	blocks := [][][]byte{
		{admin(enrollBody("dev-1", der(t, k1))), admin(enrollBody("dev-2", der(t, edKey))),
			admin(enrollBody("dev-s1", der(t, shared))), admin(enrollBody("dev-s2", der(t, shared))),
			admin(ledger.Body{Kind: ledger.KindVendorEnroll, VendorEnroll: &ledger.VendorEnroll{Vendor: "acme", PublicKey: der(t, vendorKey), Models: []string{"th-1", "th-2"}}}),
			admin(ledger.Body{Kind: ledger.KindReviewerEnroll, ReviewerEnroll: &ledger.ReviewerEnroll{Reviewer: "rev", PublicKey: der(t, reviewerKey)}})},
		{f.sign(k1, "dev-1", recordBody("dev-1", 7)), f.sign(edKey, "dev-2", recordBody("dev-2", 3)),
			admin(configBody("dev-1", 4)), admin(configBody("group:hall", 2)),
			f.sign(vendorKey, "acme", ledger.Body{Kind: ledger.KindFirmwarePublish, FirmwarePublish: &ledger.FirmwarePublish{
				Model: rel.Model, Version: rel.Version, SHA256: make([]byte, 32), Size: 1, Expires: 1}})},
		{f.sign(k1, "dev-1", ledger.Body{Kind: ledger.KindRekey, Rekey: &ledger.Rekey{DeviceID: "dev-1", Seq: 8, PublicKey: der(t, k2)}}),
			f.sign(reviewerKey, "rev", ledger.Body{Kind: ledger.KindFirmwareVote, FirmwareVote: &ledger.FirmwareVote{Release: rel, Good: true}}),
			admin(ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: "dev-s1", Reason: "lost"}}),
			f.sign(f.node, "node-1", ledger.Body{Kind: ledger.KindHeartbeat, Heartbeat: &ledger.Heartbeat{Node: "node-1", Time: 1234}}),
			f.sign(f.node, "node-1", attestBody("node-1", 2, sha256.Sum256([]byte("state at 2"))))},
	}
	for _, b := range blocks {
		f.commit(b...)
	}
	return blocks
}

func encodeState(t *testing.T, s *State) []byte {
	t.Helper()
	enc, err := s.Snapshot().Encode()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// TestSnapshotRoundTrip: a restored state encodes to the same bytes,
// answers every query as the original, and goes on from there as the
// original does.
func TestSnapshotRoundTrip(t *testing.T) {
	f := newFixture(t)
	richState(t, f)
	enc := encodeState(t, f.st)
	r, err := Restore(f.st.Genesis(), enc)
	if err != nil {
		t.Fatal(err)
	}
	if again := encodeState(t, r); !bytes.Equal(again, enc) {
		t.Fatal("a restored state encodes differently")
	}
	h1, tip1 := f.st.Tip()
	h2, tip2 := r.Tip()
	if h1 != h2 || tip1 != tip2 || f.st.Txs() != r.Txs() || r.Txs() != 16 {
		t.Fatalf("tip %d %x txs %d, restored %d %x txs %d", h1, tip1, f.st.Txs(), h2, tip2, r.Txs())
	}
	for _, id := range []string{"dev-1", "dev-2", "dev-s1", "dev-s2", "dev-x"} {
		a, aok := f.st.Device(id)
		b, bok := r.Device(id)
		if aok != bok || a.ID != b.ID || a.Revoked != b.Revoked || a.LastSeq != b.LastSeq || (aok && !bytes.Equal(a.Key.DER, b.Key.DER)) {
			t.Errorf("device %s: %+v %v, restored %+v %v", id, a, aok, b, bok)
		}
		if aok {
			x, _ := f.st.DeviceByKey(a.Key.DER)
			y, _ := r.DeviceByKey(a.Key.DER)
			if x.ID != y.ID {
				t.Errorf("DeviceByKey of %s's key: %s, restored %s", id, x.ID, y.ID)
			}
		}
	}
	for _, target := range []string{"dev-1", "group:hall", "dev-2"} {
		if a, b := f.st.ConfigVersion(target), r.ConfigVersion(target); a != b {
			t.Errorf("config %s: %d, restored %d", target, a, b)
		}
	}
	if a, b := f.st.LastHeartbeat("node-1"), r.LastHeartbeat("node-1"); a != b || a != 1234 {
		t.Errorf("heartbeat %d, restored %d", a, b)
	}
	if a, b := f.st.LastAttested("node-1"), r.LastAttested("node-1"); a != b || a != 2 {
		t.Errorf("last attested %d, restored %d", a, b)
	}
	if a, _ := f.st.Certified(); a.Height != 2 || len(a.By) != 1 {
		t.Errorf("certified %+v", a)
	}
	if a, b := f.st.Certified(); !reflect.DeepEqual(a, func() Certified { c, _ := r.Certified(); return c }()) || !b {
		t.Errorf("certified %+v, restored differs", a)
	}
	// Both go on with the same block and stay equal; the restored one
	// applies the rules from its restored registry (seq, votes, ids).
	rf := &fixture{t: t, st: r, admin: f.admin, node: f.node, height: f.height}
	rel := ledger.Release{Model: "th-2", Version: 2}
	for _, fx := range []*fixture{f, rf} {
		b := fx.st.NewBatch()
		wantReason(t, fx.addOne(b, fx.sign(f.admin, "admin", enrollBody("acme", der(t, newP256(t))))), ledger.ReasonExists)
		wantReason(t, fx.addOne(b, fx.sign(f.admin, "admin", configBody("dev-1", 4))), ledger.ReasonStaleVersion)
		c, err := fx.st.Check(fx.sign(f.admin, "admin", ledger.Body{Kind: ledger.KindFirmwareApprove, FirmwareApprove: &ledger.FirmwareApprove{Release: rel, Group: "hall"}}))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	same := f.sign(f.admin, "admin", configBody("dev-2", 1))
	f.commit(same)
	rf.commit(same)
	if !bytes.Equal(encodeState(t, f.st), encodeState(t, r)) {
		t.Fatal("after one more block the restored state differs")
	}
}

// TestSnapshotOrderIndependent: two states that applied equal blocks
// whose txs came in different orders (and so filled their maps in
// different orders) encode to the same bytes.
func TestSnapshotOrderIndependent(t *testing.T) {
	f := newFixture(t)
	keys := make([][]byte, 40)
	var enrolls, records [][]byte
	for i := range keys {
		k := newP256(t)
		id := "dev-" + strconv.Itoa(i)
		enrolls = append(enrolls, f.sign(f.admin, "admin", enrollBody(id, der(t, k))))
		records = append(records, f.sign(k, id, recordBody(id, uint64(i+1))))
		records = append(records, f.sign(f.admin, "admin", configBody(id, uint64(2*i+1))))
	}
	reversed := func(in [][]byte) [][]byte {
		out := make([][]byte, len(in))
		for i, e := range in {
			out[len(in)-1-i] = e
		}
		return out
	}
	st, err := New(f.st.Genesis())
	if err != nil {
		t.Fatal(err)
	}
	g := &fixture{t: t, st: st, admin: f.admin, node: f.node}
	f.commit(enrolls...)
	f.commit(records...)
	g.commit(reversed(enrolls)...)
	g.commit(reversed(records)...)
	a, b := encodeState(t, f.st), encodeState(t, g.st)
	if !bytes.Equal(a, b) {
		t.Fatal("equal states encode differently")
	}
	if SnapshotHash(a) != SnapshotHash(b) {
		t.Fatal("hashes differ")
	}
	// And not equal to a state that is not equal.
	g.commit(g.sign(g.admin, "admin", configBody("dev-0", 99)))
	if bytes.Equal(a, encodeState(t, g.st)) {
		t.Fatal("a different state encodes the same")
	}
}

// TestRestoreRefuses: every way the bytes can be wrong is an error
// wrapping ErrBadSnapshot, never a panic or a state.
func TestRestoreRefuses(t *testing.T) {
	f := newFixture(t)
	richState(t, f)
	enc := encodeState(t, f.st)
	other := newFixture(t) // another chain: another genesis
	var e snapEnc
	if err := snapDecMode.Unmarshal(enc, &e); err != nil {
		t.Fatal(err)
	}
	reencode := func(mod func(e *snapEnc)) []byte {
		var c snapEnc
		if err := snapDecMode.Unmarshal(enc, &c); err != nil {
			t.Fatal(err)
		}
		mod(&c)
		out, err := snapEncMode.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	nonCanonical, err := cbor.EncOptions{Sort: cbor.SortNone}.EncMode()
	if err != nil {
		t.Fatal(err)
	}
	loose, err := nonCanonical.Marshal(map[int]any{2: e.ChainID, 1: e.Version})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		g    *ledger.Genesis
		enc  []byte
	}{
		{"other chain", other.st.Genesis(), enc},
		{"empty", f.st.Genesis(), nil},
		{"truncated", f.st.Genesis(), enc[:len(enc)-1]},
		{"trailing byte", f.st.Genesis(), append(append([]byte{}, enc...), 0)},
		{"unsorted map keys", f.st.Genesis(), loose},
		{"version 2", f.st.Genesis(), reencode(func(e *snapEnc) { e.Version = 2 })},
		{"short tip", f.st.Genesis(), reencode(func(e *snapEnc) { e.Tip = e.Tip[:31] })},
		{"devices unsorted", f.st.Genesis(), reencode(func(e *snapEnc) { e.Devices[0], e.Devices[1] = e.Devices[1], e.Devices[0] })},
		{"device twice", f.st.Genesis(), reencode(func(e *snapEnc) { e.Devices[1].ID = e.Devices[0].ID })},
		{"device empty id", f.st.Genesis(), reencode(func(e *snapEnc) { e.Devices[0].ID = "" })},
		{"device bad key", f.st.Genesis(), reencode(func(e *snapEnc) { e.Devices[0].Key = []byte{1, 2, 3} })},
		{"vendor bad key", f.st.Genesis(), reencode(func(e *snapEnc) { e.Vendors[0].Key = nil })},
		{"reviewer bad key", f.st.Genesis(), reencode(func(e *snapEnc) { e.Reviewers[0].Key = []byte{0x30} })},
		{"facts unsorted", f.st.Genesis(), reencode(func(e *snapEnc) { e.Facts[0], e.Facts[1] = e.Facts[1], e.Facts[0] })},
		{"configs repeated", f.st.Genesis(), reencode(func(e *snapEnc) { e.Configs[1].Target = e.Configs[0].Target })},
		{"genesis tip at 0", f.st.Genesis(), reencode(func(e *snapEnc) { e.Height = 0 })},
		{"attestation by no node", f.st.Genesis(), reencode(func(e *snapEnc) { e.Attests[0].Node = "admin" })},
		{"attestation in a later block", f.st.Genesis(), reencode(func(e *snapEnc) { e.Attests[0].Block = 9 })},
		{"certified without a quorum", f.st.Genesis(), reencode(func(e *snapEnc) { e.Certified.By = nil })},
		{"certified of another hash", f.st.Genesis(), reencode(func(e *snapEnc) { e.Certified.Hash = make([]byte, 32) })},
		{"no certified but attestations", f.st.Genesis(), reencode(func(e *snapEnc) { e.Certified.Height = 0 })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Restore(c.g, c.enc)
			if !errors.Is(err, ErrBadSnapshot) || s != nil {
				t.Fatalf("Restore = %v, %v; want ErrBadSnapshot", s, err)
			}
		})
	}
}

// fuzzGenesis is a genesis for FuzzRestore, with fixed keys.
func fuzzGenesis(f *testing.F) *ledger.Genesis {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	pub, err := ledger.MarshalPublicKey(k)
	if err != nil {
		f.Fatal(err)
	}
	return &ledger.Genesis{ChainID: chainID, Params: ledger.Params{MaxTxBytes: 4096},
		Nodes: []ledger.Node{{ID: "node-1", PublicKey: pub}}, Admins: []ledger.Admin{{ID: "admin", PublicKey: pub}}}
}

// FuzzRestore: a snapshot file or a peer's bytes are outside input.
// Restore never panics, and what it accepts is in the one encoding: the
// state it builds encodes back to the same bytes.
func FuzzRestore(f *testing.F) {
	g := fuzzGenesis(f)
	st, err := New(g)
	if err != nil {
		f.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := ledger.MarshalPublicKey(k)
	pk, _ := ledger.ParsePublicKey(pub)
	st.devices["dev-1"] = &Device{ID: "dev-1", Key: pk, LastSeq: 3}
	st.devices["dev-2"] = &Device{ID: "dev-2", Key: pk, Revoked: true}
	st.configs["dev-1"] = 2
	st.vendors["acme"] = &Vendor{ID: "acme", Key: pk, Models: []string{"m"}}
	st.reviewers["rev"] = pk
	st.facts["release m 1"] = true
	st.beats["node-1"] = 5
	st.height, st.txs = 9, 20
	st.attests["node-1"] = []Attestation{{Node: "node-1", Height: 4, Block: 5, Index: 1}}
	st.certified = Certified{Height: 4, By: st.attests["node-1"]}
	st.batches["lot-1"] = &FleetBatch{ID: "lot-1", Vendor: "acme", Model: "m", Groups: []string{"g"}, Height: 3, Approved: true, Claimed: 1,
		Keys: map[string][]byte{"dev-1": pub, "th-2": pub}}
	st.batchOf["dev-1"], st.batchOf["th-2"] = "lot-1", "lot-1"
	st.tokens[[32]byte{7}] = &enrollToken{EnrollToken: ledger.EnrollToken{Hash: make([]byte, 32), Expires: 99, Model: "m"}, UsedBy: "f-1"}
	st.tokens[[32]byte{7}].Hash[0] = 7
	for _, s := range []*State{st} {
		enc, err := s.Snapshot().Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	empty, _ := New(g)
	enc, _ := empty.Snapshot().Encode()
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		s, err := Restore(g, data)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) && s != nil {
				t.Fatalf("error %v with a state", err)
			}
			return
		}
		again, err := s.Snapshot().Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted bytes that do not encode back:\n%x\n%x", data, again)
		}
	})
}
