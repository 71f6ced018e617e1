package vectors

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"testing/cryptotest"

	"github.com/fxamacker/cbor/v2"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// File is one vector file: docs/vectors/<name>.json.
type File struct {
	Structure   string  `json:"structure"`
	Description string  `json:"description"`
	Check       string  `json:"check"`
	Cases       []*Case `json:"cases"`
}

// Case is one vector. Hex is the bytes under test; Verdict is "ok" or
// the name of the error the check fails with.
type Case struct {
	Name    string         `json:"name"`
	Comment string         `json:"comment,omitempty"`
	Inputs  map[string]any `json:"inputs,omitempty"`
	Hex     string         `json:"hex"`
	Outputs map[string]any `json:"outputs,omitempty"`
	Verdict string         `json:"verdict"`
	Reason  string         `json:"reason,omitempty"`
	Detail  string         `json:"detail,omitempty"`
}

// The fixed inputs.
const (
	chainID = "vectors-1"
	t0      = int64(1767225600000) // 2026-01-01T00:00:00Z, Unix ms
	minute  = int64(60_000)
	day     = 24 * 60 * minute
	// nowMs is the device clock of the answer vectors: 30 s after the
	// head (block 6), and exactly the expiry of release th-2 v4.
	nowMs  = t0 + 6*minute + 30_000
	maxAge = 10 * minute
)

// hexs is lowercase hex.
func hexs(b []byte) string { return hex.EncodeToString(b) }

func sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// detEnc is deterministic CBOR as the ledger encodes it.
var detEnc = func() cbor.EncMode {
	o := cbor.CoreDetEncOptions()
	o.Time = cbor.TimeUnix
	m, err := o.EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

func enc(v any) []byte {
	b, err := detEnc.Marshal(v)
	if err != nil {
		panic("vectors: invariant: " + err.Error())
	}
	return b
}

// diag is the CBOR diagnostic notation (RFC 8949 8) of b.
func diag(b []byte) string {
	s, err := cbor.Diagnose(b)
	if err != nil {
		return "(not CBOR: " + err.Error() + ")"
	}
	return s
}

// gen builds every vector file.
type gen struct {
	t      *testing.T
	keys   map[string]*key
	order  []string
	g      *ledger.Genesis
	blocks []*ledger.Block
	files  map[string]*File

	config, sealed, sealedOther []byte
	image2, image3              []byte
	txs                         map[string][]byte // named envelopes
}

func (x *gen) key(name, alg string) *key {
	k := newKey(name, alg)
	x.keys[name] = k
	x.order = append(x.order, name)
	return k
}

func (x *gen) k(name string) *key {
	k, ok := x.keys[name]
	if !ok {
		x.t.Fatalf("no key %s", name)
	}
	return k
}

func (x *gen) file(name, structure, description, check string) *File {
	f := &File{Structure: structure, Description: description, Check: check}
	x.files[name] = f
	return f
}

// generate returns every vector file's contents by name.
func generate(t *testing.T) map[string][]byte {
	// Only the sealed blobs draw randomness; the seed makes it fixed.
	cryptotest.SetGlobalRandom(t, 1)
	x := &gen{t: t, keys: map[string]*key{}, files: map[string]*File{}, txs: map[string][]byte{}}
	for _, k := range [][2]string{
		{"admin", "ES256"}, {"sensor-1", "ES256"}, {"sensor-2", "EdDSA"}, {"sensor-2-new", "ES256"},
		{"acme", "EdDSA"}, {"acme-impostor", "EdDSA"}, {"rev-1", "ES256"},
		{"n1", "ES256"}, {"n2", "ES256"}, {"n3", "ES256"}, {"n4", "ES256"}, {"n5", "ES256"}, {"n6", "ES256"}, {"n7", "ES256"},
		{"sensor-1.enc", "X25519"}, {"sensor-2.enc", "X25519"}, {"sensor-2-new.enc", "X25519"},
		{"operator.enc", "X25519"}, {"meter-3.enc", "X25519"},
	} {
		x.key(k[0], k[1])
	}
	x.genesis()
	x.sealing()
	x.chain()
	x.txFiles()
	x.invalidTxs()
	x.membership()
	x.reconfigTxs()
	x.fleetTxs()
	x.policyTxs()
	x.tokens()
	x.headers()
	x.certs()
	x.merkle()
	x.receipts()
	x.configAnswers()
	x.keysAnswers()
	x.firmwareAnswers()
	x.sealedFile()
	x.hpke()
	x.reasons()
	x.schema()
	x.keysFile()

	out := map[string][]byte{}
	for name, f := range x.files {
		b, err := json.MarshalIndent(f, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		out[name+".json"] = append(b, '\n')
	}
	return out
}

func (x *gen) keysFile() {
	f := x.file("keys", "keys",
		"Every key the vectors use. The private scalar (ES256, X25519) or seed (EdDSA) is SHA-256 of \"ledgergate vectors \" + name; pkcs8 is the PKCS#8 DER private key, spki the DER SubjectPublicKeyInfo (protocol.md section 4).",
		"The spki is the public key of the scalar or seed; pkcs8 holds the same key.")
	for _, n := range x.order {
		k := x.keys[n]
		f.Cases = append(f.Cases, &Case{Name: n, Inputs: k.json(), Hex: hexs(k.spki()), Verdict: "ok"})
	}
}

// genesisOf makes a genesis of the first n of nodes.
func (x *gen) genesisOf(chain string, nodes ...string) *ledger.Genesis {
	g := &ledger.Genesis{ChainID: chain, Time: t0, Params: ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
		Admins: []ledger.Admin{{ID: "admin", PublicKey: x.k("admin").spki()}}}
	for i, n := range nodes {
		g.Nodes = append(g.Nodes, ledger.Node{ID: n, PublicKey: x.k(n).spki(), Addrs: []string{fmt.Sprintf("10.0.0.%d:7000", i+1)}})
	}
	if err := g.Validate(); err != nil {
		x.t.Fatal(err)
	}
	return g
}

func (x *gen) genesis() {
	f := x.file("genesis", "genesis",
		"Genesis files (JSON, protocol.md section 8). hex is the file's bytes; outputs are the deterministic CBOR the genesis hash is taken over, the hash, and the quorum.",
		"Parse the JSON strictly and validate it; encode keys 1..5 as deterministic CBOR; the SHA-256 of that is outputs.hash; quorum = floor((n + floor((n-1)/3)) / 2) + 1.")
	x.g = x.genesisOf(chainID, "n1", "n2", "n3", "n4")
	add := func(name, comment string, g *ledger.Genesis) {
		js, err := g.JSON()
		if err != nil {
			x.t.Fatal(err)
		}
		cb := enc(g)
		h := g.Hash()
		f.Cases = append(f.Cases, &Case{Name: name, Comment: comment, Inputs: map[string]any{"json": string(js)}, Hex: hexs(js),
			Outputs: map[string]any{"cbor": hexs(cb), "hash": hexs(h[:]), "quorum": g.Quorum(), "nodes": len(g.Nodes)}, Verdict: "ok"})
	}
	add("main", "The genesis of every other vector: 4 nodes (quorum 3), one admin.", x.g)
	add("single", "One node, as `ledgergate run --dev` makes: quorum 1.", x.genesisOf(chainID, "n1"))
	add("other-chain", "Another chain with the same nodes: receipts of chain vectors-1 do not verify with it.", x.genesisOf("vectors-2", "n1", "n2", "n3", "n4"))
	add("seven", "7 nodes: f = 2, quorum 5.", x.genesisOf(chainID, "n1", "n2", "n3", "n4", "n5", "n6", "n7"))
	bad := func(name, comment, js string) {
		f.Cases = append(f.Cases, &Case{Name: name, Comment: comment, Inputs: map[string]any{"json": js}, Hex: hexs([]byte(js)), Verdict: "ledger.ErrGenesis"})
	}
	main := f.Cases[0].Inputs["json"].(string)
	bad("unknown-field", "A key the format does not define.", strings.Replace(main, `"chain_id"`, `"colour": "red",`+"\n  "+`"chain_id"`, 1))
	bad("node-ed25519", "Node keys must be P-256.", strings.Replace(main, base64.StdEncoding.EncodeToString(x.k("n2").spki()), base64.StdEncoding.EncodeToString(x.k("acme").spki()), 1))
	bad("duplicate-node", "Two nodes with one id.", strings.Replace(main, `"id": "n2"`, `"id": "n1"`, 1))
	bad("max-tx-bytes-small", "params.max_tx_bytes below 512.", strings.Replace(main, `"max_tx_bytes": 65536`, `"max_tx_bytes": 511`, 1))
}

// sign signs body as kid with key, through the ledger, and checks that
// the specification-only builder makes the same bytes.
func (x *gen) sign(keyName, kid string, body *ledger.Body) []byte {
	k := x.k(keyName)
	env, err := ledger.SignTx(k.signer(), kid, body)
	if err != nil {
		x.t.Fatalf("sign %s: %v", body.Kind, err)
	}
	if spec := sign1(k.plain(), kid, enc(body)); string(spec) != string(env) {
		x.t.Fatalf("%s: ledger.SignTx and the specification disagree:\n%x\n%x", body.Kind, env, spec)
	}
	return env
}

// block appends a block of txs, certified by signers in certView.
func (x *gen) block(view, certView uint64, signers []string, txs ...[]byte) *ledger.Block {
	h := uint64(len(x.blocks) + 1)
	var prev []byte
	if h == 1 {
		gh := x.g.Hash()
		prev = gh[:]
	} else {
		ph := x.blocks[h-2].Header.Hash()
		prev = ph[:]
	}
	b := &ledger.Block{Header: ledger.Header{ChainID: chainID, Height: h, Prev: prev, TxRoot: ledger.NewTree(txs).Root(),
		NumTxs: uint64(len(txs)), Time: t0 + int64(h)*minute, View: view, Proposer: "n1"}, Txs: txs}
	b.Cert = x.cert(&b.Header, certView, signers...)
	x.blocks = append(x.blocks, b)
	return b
}

func (x *gen) cert(h *ledger.Header, view uint64, signers ...string) ledger.Cert {
	c := ledger.Cert{View: view}
	for _, n := range signers {
		s, err := ledger.SignVote(x.k(n).signer(), n, h, view)
		if err != nil {
			x.t.Fatal(err)
		}
		c.Sigs = append(c.Sigs, s)
	}
	return c
}

func (x *gen) receipt(height, index uint64) *ledger.Receipt {
	b := x.blocks[height-1]
	r, err := ledger.NewReceipt(b, ledger.NewTree(b.Txs), index)
	if err != nil {
		x.t.Fatal(err)
	}
	return r
}

func (x *gen) head(height uint64) ledger.Head {
	b := x.blocks[height-1]
	return ledger.Head{Header: b.Header, Cert: b.Cert}
}

func (x *gen) sealing() {
	x.config = []byte("interval = 10\nunits = \"metric\"\n")
	var err error
	x.sealed, err = device.Seal([][]byte{x.k("sensor-1.enc").spki(), x.k("operator.enc").spki()}, x.config)
	if err != nil {
		x.t.Fatal(err)
	}
	x.sealedOther, err = device.Seal([][]byte{x.k("meter-3.enc").spki()}, x.config)
	if err != nil {
		x.t.Fatal(err)
	}
	x.image2 = []byte("th-2 firmware version 2\x00\x01\x02\x03")
	x.image3 = []byte("th-2 firmware version 3\x00\x01\x02\x03")
}

func body(kind ledger.Kind) *ledger.Body { return &ledger.Body{Kind: kind, ChainID: chainID} }

// chain makes the six blocks every receipt and answer vector is cut from.
// Block 6 holds a device.claim (form a) of th-0005, a th-2 in group fleet
// whose batch lot-5 names sensor-2's key: the enrollment of a claimed
// device in the answer vectors (receipts do not show the batch).
func (x *gen) chain() {
	tx := func(name, keyName, kid string, b *ledger.Body) []byte {
		env := x.sign(keyName, kid, b)
		x.txs[name] = env
		return env
	}
	enroll1 := body(ledger.KindEnroll)
	enroll1.Enroll = &ledger.Enroll{DeviceID: "sensor-1", PublicKey: x.k("sensor-1").spki(), Model: "th-2", Groups: []string{"fleet", "meters"}, EncKey: x.k("sensor-1.enc").spki()}
	enroll2 := body(ledger.KindEnroll)
	enroll2.Enroll = &ledger.Enroll{DeviceID: "sensor-2", PublicKey: x.k("sensor-2").spki()}
	vendor := body(ledger.KindVendorEnroll)
	vendor.VendorEnroll = &ledger.VendorEnroll{Vendor: "acme", PublicKey: x.k("acme").spki(), Models: []string{"th-2", "th-3"}}
	reviewer := body(ledger.KindReviewerEnroll)
	reviewer.ReviewerEnroll = &ledger.ReviewerEnroll{Reviewer: "rev-1", PublicKey: x.k("rev-1").spki()}
	x.block(0, 0, []string{"n1", "n2", "n3"},
		tx("enroll-full", "admin", "admin", enroll1), tx("enroll-minimal", "admin", "admin", enroll2),
		tx("vendor", "admin", "admin", vendor), tx("reviewer", "admin", "admin", reviewer))

	rec1 := body(ledger.KindRecord)
	rec1.Record = &ledger.Record{DeviceID: "sensor-1", Stream: "temp", Seq: 1, Time: t0 + 90_000, ContentType: "application/json", Payload: []byte(`{"temp":21.5}`)}
	rec2 := body(ledger.KindRecord)
	rec2.Record = &ledger.Record{DeviceID: "sensor-1", Stream: "temp", Seq: 2, Time: t0 + 100_000}
	cs := body(ledger.KindConfigSet)
	cs.ConfigSet = &ledger.ConfigSet{Target: "group:fleet", Version: 1, SHA256: sum(x.config), Size: uint64(len(x.config)),
		ContentType: "text/plain", Blob: sum(x.sealed), URI: "https://example.com/blobs/" + hexs(sum(x.sealed))}
	x.block(0, 0, []string{"n2", "n3", "n4"},
		tx("record-full", "sensor-1", "sensor-1", rec1), tx("record-minimal", "sensor-1", "sensor-1", rec2),
		tx("config-set", "admin", "admin", cs))

	pub := func(v, minV uint64, img []byte, expires int64) *ledger.Body {
		b := body(ledger.KindFirmwarePublish)
		b.FirmwarePublish = &ledger.FirmwarePublish{Model: "th-2", Version: v, SHA256: sum(img), Size: uint64(len(img)), Expires: expires, MinVersion: minV}
		return b
	}
	vote := body(ledger.KindFirmwareVote)
	vote.FirmwareVote = &ledger.FirmwareVote{Release: ledger.Release{Model: "th-2", Version: 2}, Good: true, Reason: "soak test passed"}
	policy := body(ledger.KindFirmwarePolicy)
	policy.FirmwarePolicy = &ledger.FirmwarePolicy{Group: "fleet", MinGoodVotes: 1, Waves: []uint32{10, 50, 100}, MaxFailurePct: 5}
	approve := body(ledger.KindFirmwareApprove)
	approve.FirmwareApprove = &ledger.FirmwareApprove{Release: ledger.Release{Model: "th-2", Version: 2}, Group: "meters"}
	x.block(1, 2, []string{"n4", "n3", "n2", "n1"},
		tx("publish-v2", "acme", "acme", pub(2, 0, x.image2, t0+90*day)), tx("vote", "rev-1", "rev-1", vote),
		tx("policy", "admin", "admin", policy), tx("approve", "admin", "admin", approve),
		tx("publish-v3", "acme", "acme", pub(3, 2, x.image3, t0+90*day)), tx("publish-v4", "acme", "acme", pub(4, 0, x.image3, nowMs)))

	rekey := body(ledger.KindRekey)
	rekey.Rekey = &ledger.Rekey{DeviceID: "sensor-2", Seq: 1, PublicKey: x.k("sensor-2-new").spki(), EncKey: x.k("sensor-2-new.enc").spki()}
	x.block(2, 2, []string{"n1", "n3", "n4"}, tx("rekey", "sensor-2", "sensor-2", rekey))

	revoke := body(ledger.KindRevoke)
	revoke.Revoke = &ledger.Revoke{DeviceID: "sensor-2", Reason: "stolen"}
	fwRevoke := body(ledger.KindFirmwareRevoke)
	fwRevoke.FirmwareRevoke = &ledger.FirmwareRevoke{Release: ledger.Release{Model: "th-2", Version: 3}, Group: "fleet", Reason: "bricks units"}
	report := body(ledger.KindConfigReport)
	report.ConfigReport = &ledger.ConfigReport{DeviceID: "sensor-1", Seq: 3, Version: 1, SHA256: sum(x.config)}
	fwReport := body(ledger.KindFirmwareReport)
	fwReport.FirmwareReport = &ledger.FirmwareReport{DeviceID: "sensor-1", Seq: 4, Model: "th-2", Version: 2, OK: true, Detail: "booted in 2.1 s"}
	x.block(2, 2, []string{"n1", "n2", "n3"},
		tx("revoke", "admin", "admin", revoke), tx("firmware-revoke", "admin", "admin", fwRevoke),
		tx("config-report", "sensor-1", "sensor-1", report), tx("firmware-report", "sensor-1", "sensor-1", fwReport))

	hb := body(ledger.KindHeartbeat)
	hb.Heartbeat = &ledger.Heartbeat{Node: "n2", Time: t0 + 6*minute}
	claim := body(ledger.KindDeviceClaim)
	claim.DeviceClaim = &ledger.DeviceClaim{DeviceID: "th-0005", Batch: "lot-5", PublicKey: x.k("sensor-2").spki(), Model: "th-2", Groups: []string{"fleet"}}
	x.block(3, 3, []string{"n2", "n3", "n4"}, tx("heartbeat", "n2", "n2", hb), tx("claim", "sensor-2", "th-0005", claim))
}
