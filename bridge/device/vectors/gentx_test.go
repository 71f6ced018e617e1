package vectors

import (
	"bytes"
	"crypto/elliptic"
	"math"
	"math/big"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// parts are the four members of a COSE_Sign1 after its tag.
type parts struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

func split(env []byte) parts {
	var p parts
	if err := cbor.Unmarshal(env[1:], &p); err != nil {
		panic("vectors: invariant: " + err.Error())
	}
	return p
}

// txCase is the vector of a signed envelope.
func (x *gen) txCase(name, comment, keyName string, env []byte) *Case {
	p := split(env)
	tx, err := ledger.DecodeTx(env, 0)
	if err != nil {
		x.t.Fatalf("%s: %v", name, err)
	}
	return &Case{Name: name, Comment: comment,
		Inputs: map[string]any{"author_key": keyName, "author_spki": hexs(x.k(keyName).spki()), "kid": tx.Author, "alg": string(tx.Alg),
			"max_tx_bytes": ledger.DefaultMaxTxBytes, "body_diag": diag(p.Payload)},
		Hex: hexs(env),
		Outputs: map[string]any{"tx_id": hexs(tx.ID[:]), "payload": hexs(p.Payload), "protected": hexs(p.Protected),
			"to_be_signed": hexs(toBeSigned(p.Protected, p.Payload)), "signature": hexs(p.Signature), "kind": string(tx.Body.Kind)},
		Verdict: "ok"}
}

const txCheck = "Decode the tagged COSE_Sign1 (protocol.md section 5) of at most inputs.max_tx_bytes bytes, its payload as the Body of section 6 (deterministic CBOR, exactly one payload of the kind), and verify the signature with inputs.author_spki over the Sig_structure (outputs.to_be_signed). outputs.tx_id is SHA-256 of hex."

// txFiles writes tx-<kind>.json: every kind, its smallest and its fullest body.
func (x *gen) txFiles() {
	files := map[ledger.Kind]*File{}
	add := func(kind ledger.Kind, name, comment, keyName string, env []byte) {
		f := files[kind]
		if f == nil {
			f = x.file("tx-"+strings.ReplaceAll(string(kind), ".", "-"), "tx",
				"Signed "+string(kind)+" txs (protocol.md sections 5 and 6).", txCheck)
			files[kind] = f
		}
		f.Cases = append(f.Cases, x.txCase(name, comment, keyName, env))
	}
	t := x.txs
	add(ledger.KindEnroll, "full", "Every field: model, sorted groups, an X25519 encryption key. ES256 admin.", "admin", t["enroll-full"])
	add(ledger.KindEnroll, "minimal", "Required fields only; the device key is Ed25519.", "admin", t["enroll-minimal"])
	add(ledger.KindRevoke, "with-reason", "", "admin", t["revoke"])
	b := body(ledger.KindRevoke)
	b.Revoke = &ledger.Revoke{DeviceID: "sensor-9"}
	add(ledger.KindRevoke, "minimal", "No reason: key 2 is omitted.", "admin", x.sign("admin", "admin", b))
	add(ledger.KindRekey, "full", "Signed by the device's current Ed25519 key; the new keys are ES256 and X25519.", "sensor-2", t["rekey"])
	b = body(ledger.KindRekey)
	b.Rekey = &ledger.Rekey{DeviceID: "sensor-1", Seq: math.MaxInt64, PublicKey: x.k("sensor-2").spki()}
	add(ledger.KindRekey, "minimal-max-seq", "No encryption key afterwards; seq at its maximum 2^63-1.", "sensor-1", x.sign("sensor-1", "sensor-1", b))
	add(ledger.KindRecord, "full", "content_type and payload.", "sensor-1", t["record-full"])
	add(ledger.KindRecord, "minimal", "No content type, no payload.", "sensor-1", t["record-minimal"])
	add(ledger.KindRecord, "minimal-high-s", "The minimal record with its ES256 signature (r, s) replaced by (r, n - s): it verifies too, so the same body has a second tx id (protocol.md 5.1).",
		"sensor-1", highS(t["record-minimal"]))
	b = body(ledger.KindRecord)
	b.Record = &ledger.Record{DeviceID: "sensor-2", Stream: "door.state_2", Seq: 24, Time: -1, Payload: []byte{0}}
	add(ledger.KindRecord, "eddsa", "An Ed25519 device; seq 24 is the first that takes two bytes (0x18 0x18); a negative time.", "sensor-2", x.sign("sensor-2", "sensor-2", b))
	add(ledger.KindConfigSet, "group", "A group target with every field.", "admin", t["config-set"])
	b = body(ledger.KindConfigSet)
	b.ConfigSet = &ledger.ConfigSet{Target: "sensor-1", Version: 7, SHA256: sum(nil), Size: 0, Blob: sum([]byte("blob"))}
	add(ledger.KindConfigSet, "device-minimal", "A device target, an empty configuration (size 0 is REQUIRED and present).", "admin", x.sign("admin", "admin", b))
	add(ledger.KindConfigReport, "report", "", "sensor-1", t["config-report"])
	b = body(ledger.KindConfigReport)
	b.ConfigReport = &ledger.ConfigReport{DeviceID: "sensor-1", Seq: 5, Version: 0, SHA256: sum(nil)}
	add(ledger.KindConfigReport, "version-0", "Version 0 (nothing applied yet) is present as 0x00.", "sensor-1", x.sign("sensor-1", "sensor-1", b))
	add(ledger.KindHeartbeat, "heartbeat", "", "n2", t["heartbeat"])
	b = body(ledger.KindSnapshot)
	b.NodeSnapshot = &ledger.NodeSnapshot{Node: "n2", Height: 10000, Hash: sum([]byte("snapshot at 10000"))}
	add(ledger.KindSnapshot, "snapshot", "Node n2 attests the hash of its state snapshot after block 10000.", "n2", x.sign("n2", "n2", b))
	add(ledger.KindVendorEnroll, "vendor", "", "admin", t["vendor"])
	add(ledger.KindReviewerEnroll, "reviewer", "", "admin", t["reviewer"])
	add(ledger.KindFirmwarePublish, "no-min-version", "", "acme", t["publish-v2"])
	add(ledger.KindFirmwarePublish, "min-version", "", "acme", t["publish-v3"])
	add(ledger.KindFirmwareVote, "good", "The release's keys 1 and 2 are inline in the vote's map.", "rev-1", t["vote"])
	b = body(ledger.KindFirmwareVote)
	b.FirmwareVote = &ledger.FirmwareVote{Release: ledger.Release{Model: "th-2", Version: 3}}
	add(ledger.KindFirmwareVote, "bad-no-reason", "good = false is REQUIRED and present (0x03 0xf4).", "rev-1", x.sign("rev-1", "rev-1", b))
	add(ledger.KindFirmwareApprove, "approve", "", "admin", t["approve"])
	add(ledger.KindFirmwareRevoke, "group", "", "admin", t["firmware-revoke"])
	b = body(ledger.KindFirmwareRevoke)
	b.FirmwareRevoke = &ledger.FirmwareRevoke{Release: ledger.Release{Model: "th-2", Version: 4}}
	add(ledger.KindFirmwareRevoke, "everywhere", "No group: revoked for every group.", "admin", x.sign("admin", "admin", b))
	add(ledger.KindFirmwarePolicy, "full", "", "admin", t["policy"])
	b = body(ledger.KindFirmwarePolicy)
	b.FirmwarePolicy = &ledger.FirmwarePolicy{Group: "meters", RequireApproval: true}
	add(ledger.KindFirmwarePolicy, "approval", "", "admin", x.sign("admin", "admin", b))
	add(ledger.KindFirmwareReport, "ok", "", "sensor-1", t["firmware-report"])
	b = body(ledger.KindFirmwareReport)
	b.FirmwareReport = &ledger.FirmwareReport{DeviceID: "sensor-1", Seq: 6, Model: "th-2", Version: 3}
	add(ledger.KindFirmwareReport, "failed", "ok = false is omitted.", "sensor-1", x.sign("sensor-1", "sensor-1", b))
}

// highS replaces an ES256 envelope's s by n - s.
func highS(env []byte) []byte {
	p := split(env)
	n := elliptic.P256().Params().N
	s := new(big.Int).Sub(n, new(big.Int).SetBytes(p.Signature[32:]))
	sig := append(bytes.Clone(p.Signature[:32]), s.FillBytes(make([]byte, 32))...)
	return envelope(p.Protected, p.Unprotected, p.Payload, sig)
}

// invalidTxs writes tx-invalid.json: envelopes the gateway refuses.
func (x *gen) invalidTxs() {
	f := x.file("tx-invalid", "tx", "Tx envelopes that MUST be refused (protocol.md sections 2, 5 and 6), each with the refusal reason a gateway answers.", txCheck)
	s1 := x.k("sensor-1")
	// record is a data.record body of sensor-1 with the given entries.
	rec := func(entries ...kv) []byte {
		return cMap(ik(1, cText("data.record")), ik(2, cText(chainID)), ik(6, cMap(entries...)))
	}
	good := []kv{ik(1, cText("sensor-1")), ik(2, cText("temp")), ik(3, cUint(9)), ik(4, cInt(t0))}
	with := func(extra ...kv) []kv { return append(append([]kv{}, good...), extra...) }
	add := func(name, comment, keyName string, env []byte, verdict, reason, detail string) {
		c := &Case{Name: name, Comment: comment,
			Inputs: map[string]any{"author_key": keyName, "author_spki": hexs(x.k(keyName).spki()), "max_tx_bytes": ledger.DefaultMaxTxBytes},
			Hex:    hexs(env), Verdict: verdict, Reason: reason, Detail: detail}
		if len(env) > 1 && env[0] == 0xd2 {
			var p parts
			if cbor.Unmarshal(env[1:], &p) == nil && p.Payload != nil {
				c.Inputs["body_diag"] = diag(p.Payload)
			}
		}
		f.Cases = append(f.Cases, c)
	}
	signed := func(payload []byte) []byte { return sign1(s1.plain(), "sensor-1", payload) }
	const mal, canon = "ledger.ErrMalformed", "not in deterministic encoding"
	if env := signed(rec(good...)); true {
		if _, err := ledger.DecodeTx(env, 0); err != nil {
			x.t.Fatalf("the base of the invalid txs is invalid: %v", err)
		}
	}
	add("unsorted-map", "Body keys 2 before 1.", "sensor-1",
		signed(cMap(ik(2, cText(chainID)), ik(1, cText("data.record")), ik(6, cMap(good...)))), mal, "malformed", canon)
	add("non-minimal-int", "seq 9 written as 0x18 0x09.", "sensor-1",
		signed(rec(ik(1, cText("sensor-1")), ik(2, cText("temp")), ik(3, []byte{0x18, 0x09}), ik(4, cInt(t0)))), mal, "malformed", canon)
	indef := append([]byte{0xbf}, cat(ik(1, cText("sensor-1")).k, ik(1, cText("sensor-1")).v)...)
	for _, e := range good[1:] {
		indef = append(indef, cat(e.k, e.v)...)
	}
	indef = append(indef, 0xff)
	add("indefinite-map", "The record map has an indefinite length (0xbf ... 0xff).", "sensor-1",
		signed(cMap(ik(1, cText("data.record")), ik(2, cText(chainID)), ik(6, indef))), mal, "malformed", "indefinite-length")
	add("missing-required", "The record has no time (key 4).", "sensor-1", signed(rec(good[:3]...)), mal, "malformed", "data.record: missing required field 4 (time)")
	add("unknown-key", "The record has a key 7.", "sensor-1", signed(rec(with(ik(7, cText("x")))...)), mal, "malformed", "unknown field")
	add("empty-optional-present", "content_type present as the empty string: it must be omitted.", "sensor-1",
		signed(rec(with(ik(5, cText("")))...)), mal, "malformed", "data.record: field 5 (content type): present but empty; omit it")
	add("duplicate-key", "The record has key 2 twice.", "sensor-1",
		signed(rec(append(with(), ik(2, cText("temp")))...)), mal, "malformed", "duplicate map key")
	add("tag-in-body", "The time is tagged (tag 1, epoch time).", "sensor-1",
		signed(rec(ik(1, cText("sensor-1")), ik(2, cText("temp")), ik(3, cUint(9)), ik(4, cat([]byte{0xc1}, cInt(t0))))), mal, "malformed", "tag")
	add("trailing-bytes", "One byte after the body map.", "sensor-1", signed(append(rec(good...), 0x00)), mal, "malformed", "extraneous data")
	body := rec(good...)
	prot := protected(algES256, "sensor-1")
	sig := rawSign(s1.plain(), toBeSigned(prot, body))
	add("unprotected-not-empty", "The kid in the unprotected header as well.", "sensor-1",
		envelope(prot, cMap(ik(4, cBytes([]byte("sensor-1")))), body, sig), mal, "malformed", "unprotected header must be empty")
	prot3 := cMap(ik(1, cInt(algES256)), ik(3, cText("application/cbor")), ik(4, cBytes([]byte("sensor-1"))))
	add("extra-protected-parameter", "A content type (3) in the protected header.", "sensor-1",
		envelope(prot3, cMap(), body, rawSign(s1.plain(), toBeSigned(prot3, body))), mal, "malformed", "unknown field")
	add("untagged", "A COSE_Sign1 without tag 18.", "sensor-1", envelope(prot, cMap(), body, sig)[1:], mal, "malformed", "not a tagged COSE_Sign1")
	add("envelope-trailing-byte", "One byte after the envelope.", "sensor-1", append(envelope(prot, cMap(), body, sig), 0x00), mal, "malformed", "extraneous data")
	protES384 := protected(-35, "sensor-1")
	add("alg-es384", "alg -35 (ES384) is not accepted.", "sensor-1",
		envelope(protES384, cMap(), body, rawSign(s1.plain(), toBeSigned(protES384, body))), mal, "malformed", "unknown or unsupported algorithm")
	protKid := protected(algES256, "sensor 1")
	add("kid-not-an-id", "kid \"sensor 1\" has a space.", "sensor-1",
		envelope(protKid, cMap(), body, rawSign(s1.plain(), toBeSigned(protKid, body))), mal, "malformed", "invalid kid")
	protKidText := cMap(ik(1, cInt(algES256)), ik(4, cText("sensor-1")))
	add("kid-text-string", "kid as a text string, not a byte string.", "sensor-1",
		envelope(protKidText, cMap(), body, rawSign(s1.plain(), toBeSigned(protKidText, body))), mal, "malformed", "")
	add("null-payload", "A detached (nil) payload.", "sensor-1",
		cat([]byte{0xd2}, cArr(cBytes(prot), cMap(), []byte{0xf6}, cBytes(sig))), mal, "malformed", "")
	flipped := append([]byte{}, sig...)
	flipped[63] ^= 0x01
	add("bad-signature", "The last byte of s changed.", "sensor-1", envelope(prot, cMap(), body, flipped), "ledger.ErrBadSignature", "bad_signature", "")
	der, _ := s1.ec.Sign(nil, sum(toBeSigned(prot, body)), cryptoSHA256)
	add("es256-der-signature", "An ASN.1 DER ECDSA signature where COSE wants 64-byte r || s.", "sensor-1",
		envelope(prot, cMap(), body, der), "ledger.ErrBadSignature", "bad_signature", "")
	add("wrong-key", "A valid envelope checked with another device's key.", "sensor-2", signed(body), "ledger.ErrBadSignature", "bad_signature", "")
	s2 := x.k("sensor-2")
	protMix := protected(algES256, "sensor-2")
	add("alg-not-the-keys", "Signed with the Ed25519 key but alg says ES256.", "sensor-2",
		envelope(protMix, cMap(), body, ed25519Sign(s2, toBeSigned(protMix, body))), "ledger.ErrBadSignature", "bad_signature", "")
	add("seq-0", "seq must be at least 1.", "sensor-1",
		signed(rec(ik(1, cText("sensor-1")), ik(2, cText("temp")), ik(3, cUint(0)), ik(4, cInt(t0)))), mal, "malformed", "seq 0")
	add("seq-2^63", "seq above 2^63-1.", "sensor-1",
		signed(rec(ik(1, cText("sensor-1")), ik(2, cText("temp")), ik(3, cUint(1<<63)), ik(4, cInt(t0)))), mal, "malformed", "want 1 to 2^63-1")
	add("stream-not-an-id", "stream \"a/b\".", "sensor-1",
		signed(rec(ik(1, cText("sensor-1")), ik(2, cText("a/b")), ik(3, cUint(9)), ik(4, cInt(t0)))), mal, "malformed", "invalid stream")
	enrollWith := func(groups ...string) []byte {
		var gs [][]byte
		for _, g := range groups {
			gs = append(gs, cText(g))
		}
		return cMap(ik(1, cText("device.enroll")), ik(2, cText(chainID)),
			ik(3, cMap(ik(1, cText("sensor-7")), ik(2, cBytes(s1.spki())), ik(4, cArr(gs...)))))
	}
	admin := x.k("admin")
	add("groups-unsorted", "groups [meters, fleet].", "admin", sign1(admin.plain(), "admin", enrollWith("meters", "fleet")), mal, "malformed", "sorted and distinct")
	add("groups-duplicate", "groups [fleet, fleet].", "admin", sign1(admin.plain(), "admin", enrollWith("fleet", "fleet")), mal, "malformed", "sorted and distinct")
	var many []string
	for i := 0; i < 17; i++ {
		many = append(many, string(rune('a'+i)))
	}
	add("groups-17", "17 groups, at most 16.", "admin", sign1(admin.plain(), "admin", enrollWith(many...)), mal, "malformed", "at most 16")
	add("two-payloads", "A record and an enroll in one body.", "sensor-1",
		signed(cMap(ik(1, cText("data.record")), ik(2, cText(chainID)), ik(3, cMap(ik(1, cText("sensor-7")), ik(2, cBytes(s1.spki())))), ik(6, cMap(good...)))),
		mal, "malformed", "2 kind payloads")
	add("kind-payload-mismatch", "kind data.record with an enroll payload.", "sensor-1",
		signed(cMap(ik(1, cText("data.record")), ik(2, cText(chainID)), ik(3, cMap(ik(1, cText("sensor-7")), ik(2, cBytes(s1.spki())))))),
		mal, "malformed", "no record payload")
	add("unknown-kind", "kind data.delete.", "sensor-1",
		signed(cMap(ik(1, cText("data.delete")), ik(2, cText(chainID)), ik(6, cMap(good...)))), "ledger.ErrUnknownKind", "malformed", "")
	add("no-chain-id", "chain id empty.", "sensor-1",
		signed(cMap(ik(1, cText("data.record")), ik(2, cText("")), ik(6, cMap(good...)))), mal, "malformed", "no chain id")
	vote := cMap(ik(1, cText("firmware.vote")), ik(2, cText(chainID)), ik(13, cMap(ik(1, cText("th-2")), ik(2, cUint(2)))))
	add("vote-without-good", "firmware.vote without key 3: good is REQUIRED even when false.", "rev-1", sign1(x.k("rev-1").plain(), "rev-1", vote), mal, "malformed", "firmware.vote: missing required field 3 (good)")
	big := signed(rec(with(ik(6, cBytes(make([]byte, 600))))...))
	c := len(f.Cases)
	add("too-large", "An envelope of more than max_tx_bytes (512 here).", "sensor-1", big, "ledger.ErrTooLarge", "too_large", "")
	f.Cases[c].Inputs["max_tx_bytes"] = 512
}
