package vectors

import (
	"bytes"
	"encoding/base64"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fleetTxs writes the zero-touch enrollment txs (protocol.md 6.16 to
// 6.20): tx-fleet-batch, tx-fleet-approve, tx-fleet-revoke,
// tx-device-claim, tx-enroll-token, and their invalid forms in
// tx-invalid.
func (x *gen) fleetTxs() {
	files := map[ledger.Kind]*File{}
	add := func(kind ledger.Kind, name, comment, keyName string, env []byte) {
		f := files[kind]
		if f == nil {
			f = x.file("tx-"+replaceDots(string(kind)), "tx", "Signed "+string(kind)+" txs (protocol.md sections 5 and 6.16 to 6.20).", txCheck)
			files[kind] = f
		}
		f.Cases = append(f.Cases, x.txCase(name, comment, keyName, env))
	}
	b := body(ledger.KindFleetBatch)
	b.FleetBatch = &ledger.FleetBatch{Batch: "lot-7", Model: "th-2", Groups: []string{"floor-1", "meters"},
		Devices: []ledger.BatchDevice{{DeviceID: "th-0001", PublicKey: x.k("sensor-1").spki()}, {DeviceID: "th-0002", PublicKey: x.k("sensor-2").spki()}}}
	add(ledger.KindFleetBatch, "two-devices", "Vendor acme's batch of two devices (an ES256 and an Ed25519 key) with groups.", "acme", x.sign("acme", "acme", b))
	b = body(ledger.KindFleetBatch)
	b.FleetBatch = &ledger.FleetBatch{Batch: "lot-8", Model: "th-2", Devices: []ledger.BatchDevice{{DeviceID: "th-0003", PublicKey: x.k("sensor-1").spki()}}}
	add(ledger.KindFleetBatch, "minimal", "One device, no groups: key 3 is omitted.", "acme", x.sign("acme", "acme", b))
	b = body(ledger.KindFleetApprove)
	b.FleetApprove = &ledger.FleetApprove{Batch: "lot-7"}
	add(ledger.KindFleetApprove, "approve", "", "admin", x.sign("admin", "admin", b))
	b = body(ledger.KindFleetRevoke)
	b.FleetRevoke = &ledger.FleetRevoke{Batch: "lot-7", Reason: "recall"}
	add(ledger.KindFleetRevoke, "with-reason", "", "admin", x.sign("admin", "admin", b))

	b = body(ledger.KindDeviceClaim)
	b.DeviceClaim = &ledger.DeviceClaim{DeviceID: "th-0001", Batch: "lot-7", PublicKey: x.k("sensor-1").spki(), Model: "th-2", Groups: []string{"floor-1", "meters"}}
	add(ledger.KindDeviceClaim, "by-device", "Form a: signed by the device (kid th-0001) with the key batch lot-7 names for it (sensor-1's); it carries that key and the batch's model and groups.", "sensor-1", x.sign("sensor-1", "th-0001", b))
	iat := t0/1000 + 400
	tok, err := ledger.SignToken(x.k("sensor-2").signer(), "th-0002", chainID, time.Unix(iat, 0), time.Hour)
	if err != nil {
		x.t.Fatal(err)
	}
	evidence, _ := base64.RawURLEncoding.DecodeString(tok)
	b = body(ledger.KindDeviceClaim)
	b.DeviceClaim = &ledger.DeviceClaim{DeviceID: "th-0002", Batch: "lot-7", Evidence: evidence, PublicKey: x.k("sensor-2").spki(), Model: "th-2", Groups: []string{"floor-1", "meters"}}
	c := x.txCase("by-gateway", "Form b: signed by node n2; the evidence is th-0002's CONNECT token (section 7), signed with the key batch lot-7 names for it (sensor-2's).", "n2", x.sign("n2", "n2", b))
	c.Inputs["evidence_key_spki"] = hexs(x.k("sensor-2").spki())
	files[ledger.KindDeviceClaim].Cases = append(files[ledger.KindDeviceClaim].Cases, c)
	secret := bytes.Repeat([]byte{0x5a}, 32)
	b = body(ledger.KindDeviceClaim)
	b.DeviceClaim = &ledger.DeviceClaim{DeviceID: "field-1", Secret: secret, PublicKey: x.k("sensor-2-new").spki(), Model: "th-2", Groups: []string{"field"}}
	c = x.txCase("by-token", "Form c: the device's new key (sensor-2-new's), the token's secret, 32 bytes of 0x5a, and the model and groups of tx-enroll-token full; signed with the new key.", "sensor-2-new", x.sign("sensor-2-new", "field-1", b))
	h := ledger.SecretHash(secret)
	c.Inputs["secret_sha256"] = hexs(h[:])
	files[ledger.KindDeviceClaim].Cases = append(files[ledger.KindDeviceClaim].Cases, c)

	b = body(ledger.KindEnrollToken)
	b.EnrollToken = &ledger.EnrollToken{Hash: h[:], Expires: t0 + 86_400_000, DeviceID: "field-1", Model: "th-2", Groups: []string{"field"}}
	add(ledger.KindEnrollToken, "full", "The hash of the secret of tx-device-claim by-token, expiring a day after t0, pinned to device field-1.", "admin", x.sign("admin", "admin", b))
	b = body(ledger.KindEnrollToken)
	b.EnrollToken = &ledger.EnrollToken{Hash: h[:], Expires: t0 + 3_600_000}
	add(ledger.KindEnrollToken, "minimal", "Any device id, no model, no groups.", "admin", x.sign("admin", "admin", b))

	inv := x.files["tx-invalid"]
	bad := func(name, comment, keyName string, b *ledger.Body, detail string) {
		env := sign1(x.k(keyName).plain(), keyName, enc(b))
		inv.Cases = append(inv.Cases, &Case{Name: name, Comment: comment,
			Inputs: map[string]any{"author_key": keyName, "author_spki": hexs(x.k(keyName).spki()), "max_tx_bytes": ledger.DefaultMaxTxBytes, "body_diag": diag(enc(b))},
			Hex:    hexs(env), Verdict: "ledger.ErrMalformed", Reason: "malformed", Detail: detail})
	}
	b = body(ledger.KindFleetBatch)
	b.FleetBatch = &ledger.FleetBatch{Batch: "lot-9", Model: "th-2", Devices: []ledger.BatchDevice{
		{DeviceID: "th-0002", PublicKey: x.k("sensor-1").spki()}, {DeviceID: "th-0001", PublicKey: x.k("sensor-1").spki()}}}
	bad("batch-unsorted", "Devices th-0002 before th-0001.", "acme", b, "sorted by id")
	b = body(ledger.KindFleetBatch)
	b.FleetBatch = &ledger.FleetBatch{Batch: "lot-9", Model: "th-2", Devices: []ledger.BatchDevice{{DeviceID: "th-0001", PublicKey: []byte{1, 2, 3}}}}
	bad("batch-bad-key", "A device key that is not an SPKI.", "acme", b, "th-0001")
	b = body(ledger.KindDeviceClaim)
	b.DeviceClaim = &ledger.DeviceClaim{DeviceID: "th-0001", Batch: "lot-7", Secret: secret, PublicKey: x.k("sensor-1").spki()}
	bad("claim-two-forms", "A secret and a batch.", "sensor-1", b, "names no batch")
	b = body(ledger.KindDeviceClaim)
	b.DeviceClaim = &ledger.DeviceClaim{DeviceID: "field-1", Secret: secret[:15], PublicKey: x.k("sensor-1").spki()}
	bad("claim-short-secret", "A secret of 15 bytes: at least 16.", "sensor-1", b, "want 16 to 64")
	b = body(ledger.KindDeviceClaim)
	b.DeviceClaim = &ledger.DeviceClaim{DeviceID: "th-0001", Batch: "lot-7", Model: "th-2"}
	bad("claim-no-key", "Form a without public_key: every claim carries the device's key.", "sensor-1", b, "public_key")
	b = body(ledger.KindDeviceClaim)
	b.DeviceClaim = &ledger.DeviceClaim{DeviceID: "th-0001", Batch: "lot-7", PublicKey: x.k("sensor-1").spki(), Model: "th-2", Groups: []string{"meters", "floor-1"}}
	bad("claim-groups-unsorted", "Groups meters before floor-1: sorted and distinct.", "sensor-1", b, "sorted and distinct")
	b = body(ledger.KindEnrollToken)
	b.EnrollToken = &ledger.EnrollToken{Hash: h[:31], Expires: t0}
	bad("token-short-hash", "A hash of 31 bytes.", "admin", b, "32-byte hash")
}

func replaceDots(s string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte("."), []byte("-")))
}
