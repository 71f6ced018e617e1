package state

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fleetFixture enrolls vendor acme (model th-2) and publishes batch b-1
// of n device keys, not yet approved.
func fleetFixture(t *testing.T, n int) (*fixture, crypto.Signer, []crypto.Signer) {
	f := newFixture(t)
	vendor := newP256(t)
	f.commit(f.sign(f.admin, "admin", ledger.Body{Kind: ledger.KindVendorEnroll, VendorEnroll: &ledger.VendorEnroll{Vendor: "acme", PublicKey: der(t, vendor), Models: []string{"th-2"}}}))
	keys := make([]crypto.Signer, n)
	var devs []ledger.BatchDevice
	for i := range keys {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		keys[i] = k
		devs = append(devs, ledger.BatchDevice{DeviceID: "d-" + string(rune('a'+i)), PublicKey: der(t, k)})
	}
	f.commit(f.sign(vendor, "acme", ledger.Body{Kind: ledger.KindFleetBatch, FleetBatch: &ledger.FleetBatch{Batch: "b-1", Model: "th-2", Groups: []string{"g"}, Devices: devs}}))
	return f, vendor, keys
}

// claimBody is a claim of id from batch with the attributes the batch
// gives it, as st holds the batch.
func claimBody(st *State, id, batch string, evidence []byte) ledger.Body {
	c, ok := st.BatchClaim(batch, id)
	if !ok {
		panic("no batch " + batch + " naming " + id)
	}
	c.Evidence = evidence
	return ledger.Body{Kind: ledger.KindDeviceClaim, DeviceClaim: c}
}

func TestFleetBatchRules(t *testing.T) {
	f, vendor, keys := fleetFixture(t, 3)
	admin := func(b ledger.Body) []byte { return f.sign(f.admin, "admin", b) }
	b := f.st.NewBatch()
	// Not approved: no claim.
	wantReason(t, f.addOne(b, f.sign(keys[0], "d-a", claimBody(f.st, "d-a", "b-1", nil))), ledger.ReasonForbidden)
	// A claim signed with another key than the batch names.
	_, err := f.st.Check(f.sign(keys[1], "d-a", claimBody(f.st, "d-a", "b-1", nil)))
	wantReason(t, err, ledger.ReasonBadSignature)
	// A claim whose attributes are not the batch's (checked once the
	// batch is approved, below).
	differ := func(edit func(*ledger.DeviceClaim)) []byte {
		body := claimBody(f.st, "d-a", "b-1", nil)
		edit(body.DeviceClaim)
		return f.sign(keys[0], "d-a", body)
	}
	// Only the vendor publishes, only its models, a batch id once, a device id once.
	_, err = f.st.Check(f.sign(f.admin, "admin", ledger.Body{Kind: ledger.KindFleetBatch, FleetBatch: &ledger.FleetBatch{Batch: "b-2", Model: "th-2", Devices: []ledger.BatchDevice{{DeviceID: "x", PublicKey: der(t, vendor)}}}}))
	wantReason(t, err, ledger.ReasonUnknownAuthor)
	pub := func(batch, model, dev string) []byte {
		return f.sign(vendor, "acme", ledger.Body{Kind: ledger.KindFleetBatch, FleetBatch: &ledger.FleetBatch{Batch: batch, Model: model, Devices: []ledger.BatchDevice{{DeviceID: dev, PublicKey: der(t, vendor)}}}})
	}
	wantReason(t, f.addOne(b, pub("b-2", "other", "x")), ledger.ReasonForbidden)
	wantReason(t, f.addOne(b, pub("b-1", "th-2", "x")), ledger.ReasonExists)
	wantReason(t, f.addOne(b, pub("b-2", "th-2", "d-a")), ledger.ReasonExists)
	wantReason(t, f.addOne(b, pub("b-2", "th-2", "acme")), ledger.ReasonExists)
	// A batch's device id is not enrolled by hand.
	wantReason(t, f.addOne(b, admin(enrollBody("d-a", der(t, vendor)))), ledger.ReasonExists)
	// Only an admin approves.
	_, err = f.st.Check(f.sign(vendor, "acme", ledger.Body{Kind: ledger.KindFleetApprove, FleetApprove: &ledger.FleetApprove{Batch: "b-1"}}))
	wantReason(t, err, ledger.ReasonUnknownAuthor)
	wantReason(t, f.addOne(b, admin(ledger.Body{Kind: ledger.KindFleetApprove, FleetApprove: &ledger.FleetApprove{Batch: "nope"}})), ledger.ReasonNotFound)

	f.commit(admin(ledger.Body{Kind: ledger.KindFleetApprove, FleetApprove: &ledger.FleetApprove{Batch: "b-1"}}))
	// Claim by the device, then the same id again in the same block and the next: exists.
	b = f.st.NewBatch()
	wantReason(t, f.addOne(b, differ(func(c *ledger.DeviceClaim) { c.Model = "th-3" })), ledger.ReasonForbidden)
	wantReason(t, f.addOne(b, differ(func(c *ledger.DeviceClaim) { c.Groups = nil })), ledger.ReasonForbidden)
	wantReason(t, f.addOne(b, differ(func(c *ledger.DeviceClaim) { c.Groups = []string{"g", "h"} })), ledger.ReasonForbidden)
	other := der(t, keys[1])
	wantReason(t, f.addOne(b, differ(func(c *ledger.DeviceClaim) { c.PublicKey = other })), ledger.ReasonForbidden)
	first := f.sign(keys[0], "d-a", claimBody(f.st, "d-a", "b-1", nil))
	if err := f.addOne(b, first); err != nil {
		t.Fatal(err)
	}
	f.commit(first)
	wantReason(t, f.addOne(f.st.NewBatch(), first), ledger.ReasonExists) // enrolled once
	if d, ok := f.st.Device("d-a"); !ok || !bytes.Equal(d.Key.DER, der(t, keys[0])) {
		t.Fatalf("d-a after its claim: %+v %v", d, ok)
	}
	// A record of the claimed device commits.
	f.commit(f.sign(keys[0], "d-a", recordBody("d-a", 1)))

	// Claim by a node with the device's token as evidence.
	tok := func(key crypto.Signer, id string) []byte {
		s, err := ledger.SignToken(key, id, chainID, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return mustB64(t, s)
	}
	b = f.st.NewBatch()
	wantReason(t, f.addOne(b, f.sign(f.node, "node-1", claimBody(f.st, "d-b", "b-1", tok(keys[2], "d-b")))), ledger.ReasonBadSignature)
	wantReason(t, f.addOne(b, f.sign(f.node, "node-1", claimBody(f.st, "d-b", "b-1", tok(keys[2], "d-c")))), ledger.ReasonForbidden)
	_, err = f.st.Check(f.sign(keys[1], "d-x", claimBody(f.st, "d-b", "b-1", tok(keys[1], "d-b"))))
	wantReason(t, err, ledger.ReasonUnknownAuthor) // evidence is carried by nodes only
	f.commit(f.sign(f.node, "node-1", claimBody(f.st, "d-b", "b-1", tok(keys[1], "d-b"))))
	if infos := f.st.Batches(); len(infos) != 1 || infos[0].Claimed != 2 || infos[0].Status != "approved" {
		t.Fatalf("batches: %+v", infos)
	}

	// Revoked: no more claims; the claimed devices stay.
	f.commit(admin(ledger.Body{Kind: ledger.KindFleetRevoke, FleetRevoke: &ledger.FleetRevoke{Batch: "b-1"}}))
	b = f.st.NewBatch()
	wantReason(t, f.addOne(b, f.sign(keys[2], "d-c", claimBody(f.st, "d-c", "b-1", nil))), ledger.ReasonRevoked)
	if _, ok := f.st.Device("d-b"); !ok {
		t.Fatal("d-b gone with its batch's revocation")
	}
	roundTrip(t, f.st)
}

func TestEnrollTokenRules(t *testing.T) {
	f := newFixture(t)
	admin := func(b ledger.Body) []byte { return f.sign(f.admin, "admin", b) }
	secret := bytes.Repeat([]byte{7}, 32)
	h := ledger.SecretHash(secret)
	beat := func(ms int64) []byte {
		return f.sign(f.node, "node-1", ledger.Body{Kind: ledger.KindHeartbeat, Heartbeat: &ledger.Heartbeat{Node: "node-1", Time: ms}})
	}
	f.commit(beat(1000), admin(ledger.Body{Kind: ledger.KindEnrollToken, EnrollToken: &ledger.EnrollToken{Hash: h[:], Expires: 5000, Model: "th-2"}}))
	k1, k2 := newP256(t), newP256(t)
	claimAs := func(key crypto.Signer, id string, secret []byte, model string, groups ...string) []byte {
		return f.sign(key, id, ledger.Body{Kind: ledger.KindDeviceClaim, DeviceClaim: &ledger.DeviceClaim{DeviceID: id, Secret: secret, PublicKey: der(t, key), Model: model, Groups: groups}})
	}
	claim := func(key crypto.Signer, id string, secret []byte) []byte { return claimAs(key, id, secret, "th-2") }
	b := f.st.NewBatch()
	wantReason(t, f.addOne(b, claim(k1, "f-1", bytes.Repeat([]byte{8}, 32))), ledger.ReasonNotFound)
	_, err := f.st.Check(f.sign(k2, "f-1", ledger.Body{Kind: ledger.KindDeviceClaim, DeviceClaim: &ledger.DeviceClaim{DeviceID: "f-1", Secret: secret, PublicKey: der(t, k1), Model: "th-2"}}))
	wantReason(t, err, ledger.ReasonBadSignature) // signed with the key it enrolls
	// The claim carries the token's model and groups, or is refused.
	wantReason(t, f.addOne(b, claimAs(k1, "f-1", secret, "")), ledger.ReasonForbidden)
	wantReason(t, f.addOne(b, claimAs(k1, "f-1", secret, "th-2", "g")), ledger.ReasonForbidden)
	f.commit(claim(k1, "f-1", secret))
	// Used once: a second use, with another key or id, is refused.
	b = f.st.NewBatch()
	wantReason(t, f.addOne(b, claim(k2, "f-2", secret)), ledger.ReasonExists)
	roundTrip(t, f.st)

	// Expired by ledger time.
	s2 := bytes.Repeat([]byte{9}, 32)
	h2 := ledger.SecretHash(s2)
	f.commit(admin(ledger.Body{Kind: ledger.KindEnrollToken, EnrollToken: &ledger.EnrollToken{Hash: h2[:], Expires: 6000}}))
	f.commit(beat(6000))
	wantReason(t, f.addOne(f.st.NewBatch(), claimAs(k2, "f-2", s2, "")), ledger.ReasonForbidden)
}

// roundTrip checks that a snapshot of st restores to a state that encodes
// the same.
func roundTrip(t *testing.T, st *State) {
	t.Helper()
	enc, err := st.Snapshot().Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Restore(st.Genesis(), enc)
	if err != nil {
		t.Fatal(err)
	}
	again, err := back.Snapshot().Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, again) {
		t.Fatal("snapshot of the restored state differs")
	}
	if len(back.Batches()) != len(st.Batches()) {
		t.Fatal("batches lost in the round trip")
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
