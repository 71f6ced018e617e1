package ledger

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// Kind names what a tx does.
type Kind string

// The tx kinds.
const (
	KindEnroll Kind = "device.enroll" // admin: add a device and its key
	KindRevoke Kind = "device.revoke" // admin: revoke a device for good
	KindRekey  Kind = "device.rekey"  // device: replace its own key
	KindRecord Kind = "data.record"   // device: signed data

	KindConfigSet    Kind = "config.set"     // admin: publish a device's or a group's configuration
	KindConfigReport Kind = "config.report"  // device: the configuration it applied
	KindHeartbeat    Kind = "node.heartbeat" // node: a block when there is nothing else, so answers stay fresh
	KindSnapshot     Kind = "node.snapshot"  // node: the hash of its state snapshot at a height

	KindReconfig Kind = "cluster.reconfig" // admin: the next member set of the cluster
)

// Errors returned by DecodeTx and Tx.Verify. They wrap a detail.
var (
	ErrMalformed    = errors.New("ledger: malformed tx")
	ErrUnknownKind  = errors.New("ledger: unknown tx kind")
	ErrTooLarge     = errors.New("ledger: tx too large")
	ErrBadSignature = errors.New("ledger: bad signature")
)

// MaxIDLen bounds device, admin, node and stream ids.
const MaxIDLen = 64

// ValidID reports whether s may name a device, admin, node or stream:
// 1 to 64 of A-Z a-z 0-9 . _ -, so it is safe as an MQTT topic level and
// a file name.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// Body is the signed payload of a tx. Exactly the member named by Kind is set.
type Body struct {
	Kind    Kind    `cbor:"1,keyasint"`
	ChainID string  `cbor:"2,keyasint"`
	Enroll  *Enroll `cbor:"3,keyasint,omitempty"`
	Revoke  *Revoke `cbor:"4,keyasint,omitempty"`
	Rekey   *Rekey  `cbor:"5,keyasint,omitempty"`
	Record  *Record `cbor:"6,keyasint,omitempty"`

	ConfigSet    *ConfigSet    `cbor:"7,keyasint,omitempty"`
	ConfigReport *ConfigReport `cbor:"8,keyasint,omitempty"`
	Heartbeat    *Heartbeat    `cbor:"9,keyasint,omitempty"`

	VendorEnroll    *VendorEnroll    `cbor:"10,keyasint,omitempty"`
	ReviewerEnroll  *ReviewerEnroll  `cbor:"11,keyasint,omitempty"`
	FirmwarePublish *FirmwarePublish `cbor:"12,keyasint,omitempty"`
	FirmwareVote    *FirmwareVote    `cbor:"13,keyasint,omitempty"`
	FirmwareApprove *FirmwareApprove `cbor:"14,keyasint,omitempty"`
	FirmwareRevoke  *FirmwareRevoke  `cbor:"15,keyasint,omitempty"`
	FirmwarePolicy  *FirmwarePolicy  `cbor:"16,keyasint,omitempty"`
	FirmwareReport  *FirmwareReport  `cbor:"17,keyasint,omitempty"`

	NodeSnapshot *NodeSnapshot `cbor:"18,keyasint,omitempty"`

	ClusterReconfig *ClusterReconfig `cbor:"19,keyasint,omitempty"`

	FleetBatch   *FleetBatch   `cbor:"20,keyasint,omitempty"`
	FleetApprove *FleetApprove `cbor:"21,keyasint,omitempty"`
	FleetRevoke  *FleetRevoke  `cbor:"22,keyasint,omitempty"`
	DeviceClaim  *DeviceClaim  `cbor:"23,keyasint,omitempty"`
	EnrollToken  *EnrollToken  `cbor:"24,keyasint,omitempty"`
	PolicySet    *PolicySet    `cbor:"25,keyasint,omitempty"`
}

// ClusterReconfig names the whole next member set of a cluster, in
// primary order, each node as in the genesis. Committed at height h, the
// set orders and certifies from MembersFrom(h) on (docs/protocol.md
// section 6.15).
type ClusterReconfig struct {
	Nodes []Node `cbor:"1,keyasint"`
}

// NodeSnapshot is a node's attestation that its state after the block at
// Height has the snapshot hash Hash (SHA-256 of the snapshot's
// deterministic encoding, docs/snapshots.md). A snapshot whose (height,
// hash) 2f+1 distinct genesis nodes attested is certified: a gateway may
// start from it instead of replaying the blocks up to it.
type NodeSnapshot struct {
	Node   string `cbor:"1,keyasint"`
	Height uint64 `cbor:"2,keyasint"`
	Hash   []byte `cbor:"3,keyasint"`
}

// Heartbeat is a node's tx that keeps blocks coming on an idle chain: a
// device bounds the age of the newest block it is shown (freshness), so
// the gateways commit one at least every heartbeat interval.
type Heartbeat struct {
	Node string `cbor:"1,keyasint"`
	Time int64  `cbor:"2,keyasint"` // node clock, Unix milliseconds
}

// Enroll adds a device with its signing key (DER SubjectPublicKeyInfo),
// and optionally its attributes and an encryption key.
type Enroll struct {
	DeviceID  string   `cbor:"1,keyasint"`
	PublicKey []byte   `cbor:"2,keyasint"`
	Model     string   `cbor:"3,keyasint,omitempty"`
	Groups    []string `cbor:"4,keyasint,omitempty"` // sorted, no duplicates
	// EncKey is the device's HPKE (RFC 9180) public key, an X25519
	// SubjectPublicKeyInfo: what configurations and messages to the device
	// are sealed to. It is separate from the signing key.
	EncKey []byte `cbor:"5,keyasint,omitempty"`
}

// Revoke revokes a device. A revoked id can never be enrolled again.
type Revoke struct {
	DeviceID string `cbor:"1,keyasint"`
	Reason   string `cbor:"2,keyasint,omitempty"`
}

// Rekey replaces a device's keys: the signing key, and the encryption key
// (none if EncKey is empty). It is signed with the current key and takes a
// sequence number from the same counter as the device's records.
type Rekey struct {
	DeviceID  string `cbor:"1,keyasint"`
	Seq       uint64 `cbor:"2,keyasint"`
	PublicKey []byte `cbor:"3,keyasint"`
	EncKey    []byte `cbor:"4,keyasint,omitempty"`
}

// Record is a device's signed data.
type Record struct {
	DeviceID    string `cbor:"1,keyasint"`
	Stream      string `cbor:"2,keyasint"`
	Seq         uint64 `cbor:"3,keyasint"` // strictly increasing per device
	Time        int64  `cbor:"4,keyasint"` // device clock, Unix milliseconds
	ContentType string `cbor:"5,keyasint,omitempty"`
	Payload     []byte `cbor:"6,keyasint,omitempty"`
}

// GroupPrefix starts a config.set target that names a group, as in
// "group:sensors"; any other target is a device id.
const GroupPrefix = "group:"

// MaxConfigBytes bounds a configuration (and its sealed blob, less the
// recipients' wrapped keys).
const MaxConfigBytes = 1 << 20

// Limits of the device attributes.
const (
	MaxGroups     = 16
	maxTextLen    = 256 // reasons, URIs
	maxContentLen = 128 // content types
)

// ConfigSet publishes version Version of the configuration of Target (a
// device id, or GroupPrefix and a group). The configuration is kept off
// the chain, sealed to the device (or to each member of the group) in a
// blob addressed by the SHA-256 of its bytes.
type ConfigSet struct {
	Target      string `cbor:"1,keyasint"`
	Version     uint64 `cbor:"2,keyasint"` // strictly increasing per target
	SHA256      []byte `cbor:"3,keyasint"` // of the configuration itself (the plaintext)
	Size        uint64 `cbor:"4,keyasint"` // of the configuration itself
	ContentType string `cbor:"5,keyasint,omitempty"`
	Blob        []byte `cbor:"6,keyasint"`           // SHA-256 of the sealed blob: its address
	URI         string `cbor:"7,keyasint,omitempty"` // optional other place to download the blob from
}

// ConfigReport is a device's statement of the configuration it applied.
// It takes a sequence number from the device's counter.
type ConfigReport struct {
	DeviceID string `cbor:"1,keyasint"`
	Seq      uint64 `cbor:"2,keyasint"`
	Version  uint64 `cbor:"3,keyasint"`
	SHA256   []byte `cbor:"4,keyasint"`
}

// ParseTarget splits a config.set target into a device id or a group
// name (exactly one is set); ok is false if the target is invalid.
func ParseTarget(t string) (device, group string, ok bool) {
	if g, isGroup := strings.CutPrefix(t, GroupPrefix); isGroup {
		return "", g, ValidID(g)
	}
	return t, "", ValidID(t)
}

// Subject is the device a tx is about (for config.set: the target).
func (b *Body) Subject() string {
	switch {
	case b.Enroll != nil:
		return b.Enroll.DeviceID
	case b.Revoke != nil:
		return b.Revoke.DeviceID
	case b.Rekey != nil:
		return b.Rekey.DeviceID
	case b.Record != nil:
		return b.Record.DeviceID
	case b.ConfigSet != nil:
		return b.ConfigSet.Target
	case b.ConfigReport != nil:
		return b.ConfigReport.DeviceID
	case b.FirmwareReport != nil:
		return b.FirmwareReport.DeviceID
	case b.VendorEnroll != nil:
		return b.VendorEnroll.Vendor
	case b.ReviewerEnroll != nil:
		return b.ReviewerEnroll.Reviewer
	case b.DeviceClaim != nil:
		return b.DeviceClaim.DeviceID
	}
	return ""
}

// Validate checks the body's syntax; whether it is allowed is for the state.
func (b *Body) Validate() error {
	if b.ChainID == "" {
		return fmt.Errorf("%w: no chain id", ErrMalformed)
	}
	set := 0
	for _, p := range []bool{b.Enroll != nil, b.Revoke != nil, b.Rekey != nil, b.Record != nil, b.ConfigSet != nil, b.ConfigReport != nil, b.Heartbeat != nil, b.NodeSnapshot != nil, b.ClusterReconfig != nil,
		b.VendorEnroll != nil, b.ReviewerEnroll != nil, b.FirmwarePublish != nil, b.FirmwareVote != nil, b.FirmwareApprove != nil,
		b.FirmwareRevoke != nil, b.FirmwarePolicy != nil, b.FirmwareReport != nil,
		b.FleetBatch != nil, b.FleetApprove != nil, b.FleetRevoke != nil, b.DeviceClaim != nil, b.EnrollToken != nil, b.PolicySet != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("%w: %d kind payloads, want 1", ErrMalformed, set)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrMalformed, b.Kind, fmt.Sprintf(format, a...))
	}
	switch b.Kind {
	case KindEnroll:
		if b.Enroll == nil {
			return bad("no enroll payload")
		}
		if !ValidID(b.Enroll.DeviceID) {
			return bad("invalid device id %q", b.Enroll.DeviceID)
		}
		if _, err := ParsePublicKey(b.Enroll.PublicKey); err != nil {
			return bad("%v", err)
		}
		if err := validAttributes(b.Enroll); err != nil {
			return bad("%v", err)
		}
		if b.Enroll.EncKey != nil {
			if _, err := ParseEncKey(b.Enroll.EncKey); err != nil {
				return bad("%v", err)
			}
		}
	case KindRevoke:
		if b.Revoke == nil {
			return bad("no revoke payload")
		}
		if !ValidID(b.Revoke.DeviceID) {
			return bad("invalid device id %q", b.Revoke.DeviceID)
		}
		if len(b.Revoke.Reason) > maxTextLen {
			return bad("reason longer than 256 bytes")
		}
	case KindRekey:
		if b.Rekey == nil {
			return bad("no rekey payload")
		}
		if !ValidID(b.Rekey.DeviceID) {
			return bad("invalid device id %q", b.Rekey.DeviceID)
		}
		if b.Rekey.Seq == 0 || b.Rekey.Seq > math.MaxInt64 {
			return bad("seq %d: want 1 to 2^63-1", b.Rekey.Seq)
		}
		if _, err := ParsePublicKey(b.Rekey.PublicKey); err != nil {
			return bad("%v", err)
		}
		if b.Rekey.EncKey != nil {
			if _, err := ParseEncKey(b.Rekey.EncKey); err != nil {
				return bad("%v", err)
			}
		}
	case KindRecord:
		r := b.Record
		if r == nil {
			return bad("no record payload")
		}
		if !ValidID(r.DeviceID) {
			return bad("invalid device id %q", r.DeviceID)
		}
		if !ValidID(r.Stream) {
			return bad("invalid stream %q", r.Stream)
		}
		if r.Seq == 0 || r.Seq > math.MaxInt64 {
			return bad("seq %d: want 1 to 2^63-1", r.Seq)
		}
		if len(r.ContentType) > maxContentLen {
			return bad("content type longer than 128 bytes")
		}
	case KindConfigSet:
		c := b.ConfigSet
		if c == nil {
			return bad("no config.set payload")
		}
		if _, _, ok := ParseTarget(c.Target); !ok {
			return bad("invalid target %q: want a device id or group:NAME", c.Target)
		}
		if c.Version == 0 || c.Version > math.MaxInt64 {
			return bad("version %d: want 1 to 2^63-1", c.Version)
		}
		if len(c.SHA256) != 32 || len(c.Blob) != 32 {
			return bad("sha256 and blob must be 32-byte SHA-256 digests")
		}
		if c.Size > MaxConfigBytes {
			return bad("size %d: at most %d", c.Size, MaxConfigBytes)
		}
		if len(c.ContentType) > maxContentLen {
			return bad("content type longer than 128 bytes")
		}
		if len(c.URI) > maxTextLen {
			return bad("uri longer than 256 bytes")
		}
	case KindConfigReport:
		r := b.ConfigReport
		if r == nil {
			return bad("no config.report payload")
		}
		if !ValidID(r.DeviceID) {
			return bad("invalid device id %q", r.DeviceID)
		}
		if r.Seq == 0 || r.Seq > math.MaxInt64 || r.Version > math.MaxInt64 {
			return bad("seq %d, version %d: want seq 1 to 2^63-1, version 0 to 2^63-1", r.Seq, r.Version)
		}
		if len(r.SHA256) != 32 {
			return bad("sha256 must be a 32-byte digest")
		}
	case KindHeartbeat:
		if b.Heartbeat == nil {
			return bad("no heartbeat payload")
		}
		if !ValidID(b.Heartbeat.Node) {
			return bad("invalid node id %q", b.Heartbeat.Node)
		}
	case KindSnapshot:
		n := b.NodeSnapshot
		if n == nil {
			return bad("no node.snapshot payload")
		}
		if !ValidID(n.Node) {
			return bad("invalid node id %q", n.Node)
		}
		if n.Height == 0 || n.Height > math.MaxInt64 {
			return bad("height %d: want 1 to 2^63-1", n.Height)
		}
		if len(n.Hash) != 32 {
			return bad("hash must be a 32-byte SHA-256 digest")
		}
	case KindReconfig:
		if b.ClusterReconfig == nil {
			return bad("no cluster.reconfig payload")
		}
		if err := CheckMembers(b.ClusterReconfig.Nodes); err != nil {
			return bad("%v", err)
		}
	case KindPolicySet:
		if b.PolicySet == nil {
			return bad("no policy.set payload")
		}
		if err := b.PolicySet.Validate(); err != nil {
			return bad("%v", err)
		}
	default:
		err, ok := b.validateFirmware()
		if !ok {
			err, ok = b.validateFleet()
		}
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownKind, string(b.Kind))
		}
		if err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// validAttributes checks an enrollment's model and groups.
func validAttributes(e *Enroll) error {
	if e.Model != "" && !ValidID(e.Model) {
		return fmt.Errorf("invalid model %q: want 1 to 64 of A-Z a-z 0-9 . _ -", e.Model)
	}
	if len(e.Groups) > MaxGroups {
		return fmt.Errorf("%d groups, at most %d", len(e.Groups), MaxGroups)
	}
	for i, g := range e.Groups {
		if !ValidID(g) {
			return fmt.Errorf("invalid group %q", g)
		}
		if i > 0 && e.Groups[i-1] >= g {
			return fmt.Errorf("groups must be sorted and distinct (%q before %q)", e.Groups[i-1], g)
		}
	}
	return nil
}

// Tx is a decoded, syntactically valid tx. Its signature is checked by Verify.
type Tx struct {
	ID       [32]byte // SHA-256 of Envelope
	Envelope []byte   // the COSE_Sign1 bytes, exactly as signed and hashed
	Alg      Alg
	Author   string // the kid
	Body     Body
	// Pruned marks the stand-in of a tx a retention policy dropped (see
	// Stub): it has its ID and, of its body, the device and seq; no
	// envelope, and it does not verify.
	Pruned bool
	env    *envelope
}

// protectedHeader is the only protected header ledgergate accepts.
type protectedHeader struct {
	Alg int64  `cbor:"1,keyasint"`
	Kid []byte `cbor:"4,keyasint"`
}

// emptyMap is the CBOR encoding of {}: the required unprotected header.
var emptyMap = []byte{0xa0}

// SignTx signs body as author kid and returns the envelope bytes.
func SignTx(signer crypto.Signer, kid string, body *Body) ([]byte, error) {
	if err := body.Validate(); err != nil {
		return nil, err
	}
	payload, err := marshal(body)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode body: %w", err)
	}
	return signEnvelope(signer, kid, payload)
}

// signEnvelope makes a tagged COSE_Sign1 over payload with the only
// header layout ledgergate accepts: alg and kid protected, nothing
// unprotected.
func signEnvelope(signer crypto.Signer, kid string, payload []byte) ([]byte, error) {
	alg, err := AlgOf(signer)
	if err != nil {
		return nil, err
	}
	if !ValidID(kid) {
		return nil, fmt.Errorf("%w: invalid kid %q", ErrMalformed, kid)
	}
	calg, _ := alg.coseAlg()
	inner, err := marshal(protectedHeader{Alg: int64(calg), Kid: []byte(kid)})
	if err != nil {
		return nil, fmt.Errorf("ledger: encode header: %w", err)
	}
	rawProt, err := marshal(inner)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode header: %w", err)
	}
	if alg == ES256 {
		signer = sha256Named{signer}
	}
	cs, err := cose.NewSigner(calg, signer)
	if err != nil {
		return nil, fmt.Errorf("ledger: signer: %w", err)
	}
	m := cose.Sign1Message{
		Headers: cose.Headers{
			Protected:      cose.ProtectedHeader{cose.HeaderLabelAlgorithm: calg, cose.HeaderLabelKeyID: []byte(kid)},
			RawProtected:   rawProt,
			RawUnprotected: emptyMap,
		},
		Payload: payload,
	}
	if err := m.Sign(rand.Reader, nil, cs); err != nil {
		return nil, fmt.Errorf("ledger: sign: %w", err)
	}
	return m.MarshalCBOR()
}

// sha256Named hands go-cose's ES256 digest to the signer with its hash
// named. go-cose v1.3.0 signs through a crypto.Signer with nil opts
// (ecdsaCryptoSigner.SignDigest), which leaves the signer to guess what
// the 32 bytes are; the TPM's node key signs only what it is told is a
// SHA-256 digest, and refused (issue 20, defect 3). ES256 is ECDSA with
// SHA-256 (RFC 9053 section 2.1), so SHA-256 is what it is.
type sha256Named struct{ crypto.Signer }

func (s sha256Named) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		opts = crypto.SHA256
	}
	return s.Signer.Sign(rand, digest, opts)
}

// sign1 is a COSE_Sign1 without its tag (RFC 9052 section 4.2).
type sign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   cbor.RawMessage
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

// envelope is a decoded COSE_Sign1 in ledgergate's strict layout.
type envelope struct {
	alg       Alg
	kid       string
	protected []byte // the protected header as it is in the envelope: a bstr, in deterministic encoding
	payload   []byte
	sig       []byte
}

// openEnvelope decodes a tagged COSE_Sign1 in the layout signEnvelope
// makes, byte for byte: anything else is ErrMalformed.
func openEnvelope(b []byte) (*envelope, error) {
	if len(b) == 0 || b[0] != 0xd2 { // tag 18, COSE_Sign1
		return nil, fmt.Errorf("%w: not a tagged COSE_Sign1", ErrMalformed)
	}
	if e := openCanonical(b); e != nil {
		return e, nil
	}
	return decodeEnvelope(b)
}

// decodeEnvelope is openEnvelope through the CBOR library: it decodes,
// re-encodes and compares, and names what is wrong.
func decodeEnvelope(b []byte) (*envelope, error) {
	var raw sign1
	if err := unmarshal(b[1:], &raw); err != nil {
		return nil, fmt.Errorf("%w: cose: %v", ErrMalformed, err)
	}
	if string(raw.Unprotected) != string(emptyMap) {
		return nil, fmt.Errorf("%w: unprotected header must be empty (alg and kid belong in the protected header)", ErrMalformed)
	}
	if raw.Payload == nil {
		return nil, fmt.Errorf("%w: detached or null payload", ErrMalformed)
	}
	if len(raw.Signature) == 0 {
		return nil, fmt.Errorf("%w: no signature", ErrMalformed)
	}
	var inner []byte
	var ph protectedHeader
	if err := unmarshal(raw.Protected, &inner); err != nil {
		return nil, fmt.Errorf("%w: protected header: %v", ErrMalformed, err)
	}
	if err := unmarshal(inner, &ph); err != nil {
		return nil, fmt.Errorf("%w: protected header: %v", ErrMalformed, err)
	}
	alg, err := algFromCOSE(ph.Alg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !ValidID(string(ph.Kid)) {
		return nil, fmt.Errorf("%w: invalid kid %q", ErrMalformed, ph.Kid)
	}
	return &envelope{alg: alg, kid: string(ph.Kid), protected: raw.Protected, payload: raw.Payload, sig: raw.Signature}, nil
}

// openCanonical reads b without a CBOR library when b is a well-formed
// envelope in the only layout signEnvelope makes: 0xd2, an array of four,
// the protected header as a bstr holding {1: -7 or -8, 4: kid}, the empty
// map, a non-empty payload and a non-empty signature, every length in its
// shortest form, nothing after. Those are the envelopes openEnvelope's
// decode-and-re-encode accepts whose alg is known; for anything else
// openCanonical returns nil and openEnvelope decides, with its errors
// (TestOpenCanonicalAsDecoder, FuzzOpenCanonical). The envelope's slices
// point into b, as Tx.Envelope does.
func openCanonical(b []byte) *envelope {
	if len(b) < 2 || b[0] != 0xd2 || b[1] != 0x84 {
		return nil
	}
	protected, inner, rest, ok := cborBytes(b[2:])
	// The protected header's bytes: the map {1: alg, 4: kid}.
	if !ok || len(inner) < 4 || inner[0] != 0xa2 || inner[1] != 0x01 || inner[3] != 0x04 {
		return nil
	}
	if len(rest) == 0 || rest[0] != 0xa0 {
		return nil
	}
	_, payload, rest, ok := cborBytes(rest[1:])
	if !ok || len(payload) == 0 {
		return nil
	}
	_, sig, rest, ok := cborBytes(rest)
	if !ok || len(sig) == 0 || len(rest) != 0 {
		return nil
	}
	var alg Alg
	switch inner[2] {
	case 0x26: // -7
		alg = ES256
	case 0x27: // -8
		alg = EdDSA
	default:
		return nil
	}
	_, kid, after, ok := cborBytes(inner[4:])
	if !ok || len(after) != 0 || !ValidID(string(kid)) {
		return nil
	}
	return &envelope{alg: alg, kid: string(kid), protected: protected, payload: payload, sig: sig}
}

// recordBody reads a record's body without the CBOR library when b is
// its deterministic encoding, {1: "data.record", 2: chain, 6: {1: device,
// 2: stream, 3: seq, 4: time, ?5: content type, ?6: payload}}, with
// valid UTF-8 text, the optional fields non-empty, every head in its
// shortest form and nothing after: what unmarshal accepts of a record, to
// the same values. For anything else ok is false and unmarshal decides,
// with its errors (TestRecordBodyAsDecoder, FuzzRecordBody). The strings
// and the payload are copies.
func recordBody(b []byte) (r *Record, chain string, ok bool) {
	if len(b) < 2 || b[0] != 0xa3 || b[1] != 0x01 {
		return nil, "", false
	}
	kind, b, ok := cborText(b[2:])
	if !ok || string(kind) != string(KindRecord) || len(b) == 0 || b[0] != 0x02 {
		return nil, "", false
	}
	ch, b, ok := cborText(b[1:])
	if !ok || len(b) < 2 || b[0] != 0x06 {
		return nil, "", false
	}
	n := b[1] - 0xa0 // a map of 4 to 6 pairs
	if n < 4 || n > 6 || len(b) < 3 || b[2] != 0x01 {
		return nil, "", false
	}
	dev, b, ok := cborText(b[3:])
	if !ok || len(b) == 0 || b[0] != 0x02 {
		return nil, "", false
	}
	stream, b, ok := cborText(b[1:])
	if !ok || len(b) == 0 || b[0] != 0x03 {
		return nil, "", false
	}
	major, seq, b, ok := cborHead(b[1:])
	if !ok || major != 0 || len(b) == 0 || b[0] != 0x04 {
		return nil, "", false
	}
	major, t, b, ok := cborHead(b[1:])
	if !ok || major > 1 || t > math.MaxInt64 {
		return nil, "", false
	}
	r = &Record{DeviceID: string(dev), Stream: string(stream), Seq: seq, Time: int64(t)}
	if major == 1 {
		r.Time = -1 - int64(t)
	}
	n -= 4
	if n > 0 && len(b) > 0 && b[0] == 0x05 {
		ct, rest, ok := cborText(b[1:])
		if !ok || len(ct) == 0 {
			return nil, "", false
		}
		r.ContentType, b, n = string(ct), rest, n-1
	}
	if n > 0 {
		if len(b) == 0 || b[0] != 0x06 {
			return nil, "", false
		}
		_, p, rest, ok := cborBytes(b[1:])
		if !ok || len(p) == 0 {
			return nil, "", false
		}
		r.Payload, b, n = bytes.Clone(p), rest, n-1
	}
	if n != 0 || len(b) != 0 {
		return nil, "", false
	}
	return r, string(ch), true
}

// cborText reads a text string in valid UTF-8, its head in shortest form,
// from the front of b.
func cborText(b []byte) (text, rest []byte, ok bool) {
	major, n, rest, ok := cborHead(b)
	if !ok || major != 3 || n > uint64(len(rest)) || !utf8.Valid(rest[:n]) {
		return nil, nil, false
	}
	return rest[:n], rest[n:], true
}

// cborHead reads the head of a data item from the front of b: its major
// type and argument, if the head is in shortest form (RFC 8949 section
// 4.2.1) and not of indefinite length.
func cborHead(b []byte) (major byte, v uint64, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, 0, nil, false
	}
	major, info := b[0]>>5, b[0]&0x1f
	switch {
	case info < 24:
		return major, uint64(info), b[1:], true
	case info == 24 && len(b) >= 2 && b[1] >= 24:
		return major, uint64(b[1]), b[2:], true
	case info == 25 && len(b) >= 3:
		v = uint64(binary.BigEndian.Uint16(b[1:]))
		return major, v, b[3:], v > 0xff
	case info == 26 && len(b) >= 5:
		v = uint64(binary.BigEndian.Uint32(b[1:]))
		return major, v, b[5:], v > 0xffff
	case info == 27 && len(b) >= 9:
		v = binary.BigEndian.Uint64(b[1:])
		return major, v, b[9:], v > 0xffffffff
	}
	return 0, 0, nil, false
}

// cborBytes reads a byte string from the front of b whose head is in
// shortest form (RFC 8949 section 4.2.1). raw is the whole item, head
// included, content its bytes, rest what follows.
func cborBytes(b []byte) (raw, content, rest []byte, ok bool) {
	major, n, after, ok := cborHead(b)
	if !ok || major != 2 || n > uint64(len(after)) {
		return nil, nil, nil, false
	}
	h := len(b) - len(after)
	end := h + int(n)
	return b[:end], b[h:end], b[end:], true
}

// verify checks the envelope's signature with pub (see verify.go);
// expand lets an Ed25519 key be expanded for the verifies to come, as a
// tx's is (a token's, checked once a connection, is not).
func (e *envelope) verify(pub *PublicKey, expand bool) error {
	if pub.Alg != e.alg {
		return fmt.Errorf("%w: signed with %s, key is %s", ErrBadSignature, e.alg, pub.Alg)
	}
	if !verifySig(pub, e.toBeSigned(), e.sig, expand) {
		return fmt.Errorf("%w: %v", ErrBadSignature, cose.ErrVerification)
	}
	return nil
}

// decodes counts DecodeTx calls in this process (see Decodes).
var decodes atomic.Uint64

// Decodes returns how many times DecodeTx was called in this process. It
// is a counter for tests that check a message is decoded once on its way
// from a front end to its commit; it costs one atomic add per decode.
func Decodes() uint64 { return decodes.Load() }

// DecodeTx parses an envelope of at most maxBytes bytes (0: no limit).
// It checks syntax only; see Verify and the state package for the rest.
// The Tx it returns carries its id, computed here: code that holds the
// Tx passes it on, and neither decodes nor hashes the envelope again.
func DecodeTx(b []byte, maxBytes int) (*Tx, error) {
	decodes.Add(1)
	if maxBytes > 0 && len(b) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), maxBytes)
	}
	env, err := openEnvelope(b)
	if err != nil {
		return nil, err
	}
	tx := &Tx{Envelope: b, ID: TxID(b), Alg: env.alg, Author: env.kid, env: env}
	if r, chain, ok := recordBody(env.payload); ok {
		tx.Body = Body{Kind: KindRecord, ChainID: chain, Record: r}
	} else if err := unmarshal(env.payload, &tx.Body); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && fe.Path != "" {
			// "data.record: missing required field 3 (seq)"
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil, fmt.Errorf("%w: body: %w", ErrMalformed, err)
	}
	if err := tx.Body.Validate(); err != nil {
		return nil, err
	}
	return tx, nil
}

// Verify checks the tx's signature with the author's key.
func (tx *Tx) Verify(pub *PublicKey) error {
	if tx.env == nil {
		return fmt.Errorf("%w: tx %x has no envelope to verify", ErrPruned, tx.ID[:8])
	}
	return tx.env.verify(pub, true)
}

// TxID is the id of an envelope: its SHA-256.
func TxID(env []byte) [32]byte { return sha256.Sum256(env) }

// ParseHash reads a SHA-256 (a tx id, a blob's or an image's address)
// written as 64 hex digits.
func ParseHash(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 64 {
		return h, fmt.Errorf("ledger: %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("ledger: %q: want 64 hex digits", s)
	}
	return h, nil
}
