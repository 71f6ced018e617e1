package ledger

import (
	"crypto/sha256"
	"fmt"
)

// Zero-touch enrollment (docs/fleet.md, docs/protocol.md sections
// 6.16-6.20): a vendor publishes a batch of device keys, the owner (an
// admin) approves it, and each device of an approved batch is enrolled,
// exactly once, by a device.claim: signed by the device with its batch key,
// or submitted by a gateway with the device's CONNECT token as evidence.
// A one-time enrollment token (enroll.token) covers a device that makes
// its key in the field.

// The fleet tx kinds.
const (
	KindFleetBatch   Kind = "fleet.batch"   // vendor: a batch of device ids and keys
	KindFleetApprove Kind = "fleet.approve" // admin: approves a batch
	KindFleetRevoke  Kind = "fleet.revoke"  // admin: no further claims from a batch
	KindDeviceClaim  Kind = "device.claim"  // device or node: enrolls one device of a batch, or with a token
	KindEnrollToken  Kind = "enroll.token"  // admin: a one-time enrollment token (its hash)
)

// Limits of the fleet txs. A batch is also bounded by the chain's
// max_tx_bytes: at the default 64 KiB, about 500 P-256 or 900 Ed25519
// devices; larger fleets publish several batches.
const (
	MaxBatchDevices = 1000
	MinSecretBytes  = 16
	MaxSecretBytes  = 64
	maxEvidence     = maxTokenBytes
)

// FleetBatch is a vendor's batch manifest: devices of one of its models,
// each with the key (DER SubjectPublicKeyInfo) made at manufacture.
type FleetBatch struct {
	Batch   string        `cbor:"1,keyasint"`
	Model   string        `cbor:"2,keyasint"`
	Groups  []string      `cbor:"3,keyasint,omitempty"` // sorted, distinct: given to each device claimed
	Devices []BatchDevice `cbor:"4,keyasint"`           // sorted by id, distinct
}

// BatchDevice is a device of a batch.
type BatchDevice struct {
	DeviceID  string `cbor:"1,keyasint"`
	PublicKey []byte `cbor:"2,keyasint"`
}

// FleetApprove is the owner's approval of a batch: its devices may claim.
type FleetApprove struct {
	Batch string `cbor:"1,keyasint"`
}

// FleetRevoke ends claims from a batch. Devices it enrolled stay enrolled
// (device.revoke revokes them one by one).
type FleetRevoke struct {
	Batch  string `cbor:"1,keyasint"`
	Reason string `cbor:"2,keyasint,omitempty"`
}

// DeviceClaim enrolls device DeviceID. Exactly one of three forms:
//
//   - batch, signed by the device: Batch set, nothing else; the author is
//     the device and the envelope verifies with the key the batch names.
//   - batch, submitted by a gateway: Batch and Evidence set; the author is
//     a member node, Evidence is the device's token (section 7, its
//     COSE_Sign1 bytes, not base64) and verifies with the batch's key.
//   - token: Secret set; the author is the device and the envelope
//     verifies with PublicKey, its new key; SHA-256(Secret) is the hash of
//     an unused, unexpired enroll.token.
//
// Every form carries the device's attributes, so that its receipt proves
// them by itself, as a device.enroll's does (docs/protocol.md 11):
// PublicKey (required; in a batch claim the key the batch names), Model
// and Groups (the batch's or the token's; absent iff empty there).
type DeviceClaim struct {
	DeviceID  string   `cbor:"1,keyasint"`
	Batch     string   `cbor:"2,keyasint,omitempty"`
	Evidence  []byte   `cbor:"3,keyasint,omitempty"`
	Secret    []byte   `cbor:"4,keyasint,omitempty"`
	PublicKey []byte   `cbor:"5,keyasint"`
	Model     string   `cbor:"6,keyasint,omitempty"`
	Groups    []string `cbor:"7,keyasint,omitempty"` // sorted, distinct
}

// EnrollToken is a one-time enrollment token: the ledger holds the
// SHA-256 of its secret, never the secret; it expires at Expires (Unix
// milliseconds of ledger time, see docs/protocol.md 6.20), and it may pin
// the device id and give the device a model and groups.
type EnrollToken struct {
	Hash     []byte   `cbor:"1,keyasint"`
	Expires  int64    `cbor:"2,keyasint"`
	DeviceID string   `cbor:"3,keyasint,omitempty"`
	Model    string   `cbor:"4,keyasint,omitempty"`
	Groups   []string `cbor:"5,keyasint,omitempty"`
}

// SecretHash is the hash under which an enroll.token holds secret.
func SecretHash(secret []byte) [32]byte { return sha256.Sum256(secret) }

// ClaimToken decodes the evidence of a gateway-submitted device.claim: a
// device token's envelope (the MQTT password, base64url-decoded) whose
// subject is its kid and whose audience is chain. It does not check the
// token's time: that is the CONNECT's business, and a ledger check may not
// read a clock (docs/protocol.md 6.19).
func ClaimToken(b []byte, chain string) (*Token, error) {
	if len(b) > maxEvidence {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrToken, maxEvidence)
	}
	return decodeToken(b, chain)
}

// ClaimPath says which form a device.claim has.
type ClaimPath int

// The forms of a device.claim.
const (
	ClaimByDevice ClaimPath = iota + 1 // signed by the device with its batch key
	ClaimByNode                        // submitted by a gateway with the device's token
	ClaimByToken                       // a one-time enrollment token and the device's new key
)

// Path returns the claim's form.
func (c *DeviceClaim) Path() ClaimPath {
	switch {
	case c.Secret != nil:
		return ClaimByToken
	case c.Evidence != nil:
		return ClaimByNode
	}
	return ClaimByDevice
}

// validateFleet checks the syntax of a fleet tx's payload; nil, false if
// b is not a fleet tx.
func (b *Body) validateFleet() (error, bool) {
	switch b.Kind {
	case KindFleetBatch:
		f := b.FleetBatch
		if f == nil {
			return fmt.Errorf("no payload"), true
		}
		if !ValidID(f.Batch) || !ValidID(f.Model) {
			return fmt.Errorf("invalid batch id %q or model %q", f.Batch, f.Model), true
		}
		if err := validAttributes(&Enroll{Groups: f.Groups}); err != nil {
			return err, true
		}
		if len(f.Devices) == 0 || len(f.Devices) > MaxBatchDevices {
			return fmt.Errorf("%d devices: want 1 to %d (publish larger fleets as several batches)", len(f.Devices), MaxBatchDevices), true
		}
		for i, d := range f.Devices {
			if !ValidID(d.DeviceID) {
				return fmt.Errorf("invalid device id %q", d.DeviceID), true
			}
			if i > 0 && f.Devices[i-1].DeviceID >= d.DeviceID {
				return fmt.Errorf("devices must be sorted by id and distinct (%q before %q)", f.Devices[i-1].DeviceID, d.DeviceID), true
			}
			if _, err := ParsePublicKey(d.PublicKey); err != nil {
				return fmt.Errorf("device %s: %w", d.DeviceID, err), true
			}
		}
		return nil, true
	case KindFleetApprove:
		if b.FleetApprove == nil {
			return fmt.Errorf("no payload"), true
		}
		if !ValidID(b.FleetApprove.Batch) {
			return fmt.Errorf("invalid batch id %q", b.FleetApprove.Batch), true
		}
		return nil, true
	case KindFleetRevoke:
		r := b.FleetRevoke
		if r == nil {
			return fmt.Errorf("no payload"), true
		}
		if !ValidID(r.Batch) || len(r.Reason) > maxTextLen {
			return fmt.Errorf("invalid batch id %q or reason", r.Batch), true
		}
		return nil, true
	case KindDeviceClaim:
		c := b.DeviceClaim
		if c == nil {
			return fmt.Errorf("no payload"), true
		}
		if !ValidID(c.DeviceID) {
			return fmt.Errorf("invalid device id %q", c.DeviceID), true
		}
		if _, err := ParsePublicKey(c.PublicKey); err != nil {
			return fmt.Errorf("public_key (required in every claim): %w", err), true
		}
		if err := validAttributes(&Enroll{Model: c.Model, Groups: c.Groups}); err != nil {
			return err, true
		}
		if c.Groups != nil && len(c.Groups) == 0 {
			return fmt.Errorf("groups, if present, are not empty"), true
		}
		switch c.Path() {
		case ClaimByToken:
			if c.Batch != "" || c.Evidence != nil {
				return fmt.Errorf("a token claim names no batch and carries no evidence"), true
			}
			if len(c.Secret) < MinSecretBytes || len(c.Secret) > MaxSecretBytes {
				return fmt.Errorf("secret of %d bytes: want %d to %d", len(c.Secret), MinSecretBytes, MaxSecretBytes), true
			}
		default:
			if !ValidID(c.Batch) {
				return fmt.Errorf("invalid batch id %q", c.Batch), true
			}
			if len(c.Evidence) > maxEvidence {
				return fmt.Errorf("evidence longer than %d bytes", maxEvidence), true
			}
		}
		return nil, true
	case KindEnrollToken:
		t := b.EnrollToken
		if t == nil {
			return fmt.Errorf("no payload"), true
		}
		if len(t.Hash) != 32 || t.Expires <= 0 {
			return fmt.Errorf("want a 32-byte hash and an expiry"), true
		}
		if t.DeviceID != "" && !ValidID(t.DeviceID) {
			return fmt.Errorf("invalid device id %q", t.DeviceID), true
		}
		return validAttributes(&Enroll{Model: t.Model, Groups: t.Groups}), true
	}
	return nil, false
}
