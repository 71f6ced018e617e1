// Package bridge is what the protocol front ends (MQTT, CoAP) need from
// the gateway, as two small interfaces, plus the device-message check
// they share. Front ends import this package and the ledger formats, never
// the gateway's internals.
package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Committer has signed txs committed.
type Committer interface {
	// Propose checks a tx, decoded by the front end (CheckRecord and the
	// other checks below), and queues it for ordering without waiting for
	// the commit. The decoded tx, with its id, travels on to the commit:
	// its envelope is not decoded or hashed again. Txs proposed one after
	// another by one caller are ordered in that order, so a device's
	// records keep their sequence with many in flight. A rejection is a
	// *ledger.RefusedError (see ledger.ReasonOf).
	Propose(ctx context.Context, tx *ledger.Tx) (Ticket, error)
}

// CommitterFunc adapts a function to Committer.
type CommitterFunc func(ctx context.Context, tx *ledger.Tx) (Ticket, error)

// Propose calls f.
func (f CommitterFunc) Propose(ctx context.Context, tx *ledger.Tx) (Ticket, error) { return f(ctx, tx) }

// Ticket is a proposed tx's claim on its receipt.
type Ticket interface {
	// Wait returns the receipt once the tx's block is on disk, or why the
	// tx was not committed.
	Wait(ctx context.Context) (*ledger.Receipt, error)
}

// Directory answers who a device is, for authentication.
type Directory interface {
	// ChainID is the chain's id: the audience of device tokens.
	ChainID() string
	// MaxTxBytes is the largest tx the chain accepts.
	MaxTxBytes() int
	// Device returns the device's current registry entry.
	Device(id string) (Device, bool)
	// DeviceByKey returns the entry of a device whose current key is
	// spki, a DER SubjectPublicKeyInfo compared byte for byte (one not
	// revoked if there is one): who a TLS or DTLS client certificate's
	// key is, before any message of the client is read.
	DeviceByKey(spki []byte) (Device, bool)
	// Behind reports whether this gateway may lack committed blocks: it
	// is catching up with its peers, or hears from too few of them to
	// know. A device it does not know, or whose key does not match,
	// may have been enrolled or re-keyed in those blocks, so it is told
	// to come back (MQTT: server unavailable), not that its credentials
	// are wrong.
	Behind() bool
}

// Device is a device as front ends see it.
type Device struct {
	ID      string
	Key     *ledger.PublicKey
	Revoked bool
}

// CheckRecord is the decode-and-check shared by every front end: env must
// be a data.record tx by device (the authenticated device) on stream
// (from the topic or path), at most maxBytes long. Signature, sequence
// and revocation are checked on submit.
func CheckRecord(env []byte, device, stream string, maxBytes int) (*ledger.Tx, error) {
	tx, err := DecodeTx(env, maxBytes)
	if err != nil {
		return nil, err
	}
	if err := CheckRecordTx(tx, device, stream); err != nil {
		return nil, err
	}
	return tx, nil
}

// CheckReport is CheckRecord for a config.report tx: env must be one by
// device about itself.
func CheckReport(env []byte, device string, maxBytes int) (*ledger.Tx, error) {
	return checkDeviceTx(env, device, ledger.KindConfigReport, ledger.ReasonNotReport, maxBytes)
}

// CheckFirmwareReport is CheckReport for a firmware.report tx.
func CheckFirmwareReport(env []byte, device string, maxBytes int) (*ledger.Tx, error) {
	return checkDeviceTx(env, device, ledger.KindFirmwareReport, ledger.ReasonNotReport, maxBytes)
}

// CheckRekey is CheckReport for a device.rekey tx: env must be one by
// device about itself. It is signed with the device's current key, and
// takes a seq from the same counter as its records.
func CheckRekey(env []byte, device string, maxBytes int) (*ledger.Tx, error) {
	return checkDeviceTx(env, device, ledger.KindRekey, ledger.ReasonTopic, maxBytes)
}

// DecodeTx decodes env, at most maxBytes long, as the one decode of a
// device's tx at the edge; a tx that does not decode is refused
// (malformed, too_large).
func DecodeTx(env []byte, maxBytes int) (*ledger.Tx, error) {
	tx, err := ledger.DecodeTx(env, maxBytes)
	if errors.Is(err, ledger.ErrTooLarge) {
		return nil, &ledger.RefusedError{Reason: ledger.ReasonTooLarge, Detail: err.Error()}
	}
	if err != nil {
		return nil, &ledger.RefusedError{Reason: ledger.ReasonMalformed, Detail: err.Error()}
	}
	return tx, nil
}

// CheckRecordTx is CheckRecord for a tx already decoded (DecodeTx).
func CheckRecordTx(tx *ledger.Tx, device, stream string) error {
	if err := checkKind(tx, device, ledger.KindRecord, ledger.ReasonNotRecord); err != nil {
		return err
	}
	if stream != "" && tx.Body.Record.Stream != stream {
		return &ledger.RefusedError{Reason: ledger.ReasonTopic, Detail: fmt.Sprintf("record for stream %s sent on stream %s", tx.Body.Record.Stream, stream)}
	}
	return nil
}

// checkDeviceTx decodes env and checks that it is a kind tx by device
// about device; a tx of another kind is refused with wrongKind.
func checkDeviceTx(env []byte, device string, kind ledger.Kind, wrongKind ledger.Reason, maxBytes int) (*ledger.Tx, error) {
	tx, err := DecodeTx(env, maxBytes)
	if err != nil {
		return nil, err
	}
	if err := checkKind(tx, device, kind, wrongKind); err != nil {
		return nil, err
	}
	return tx, nil
}

// checkKind checks that tx is a kind tx by device about device; a tx of
// another kind is refused with wrongKind.
func checkKind(tx *ledger.Tx, device string, kind ledger.Kind, wrongKind ledger.Reason) error {
	if tx.Body.Kind != kind {
		return &ledger.RefusedError{Reason: wrongKind, Detail: fmt.Sprintf("a %s tx, want %s", tx.Body.Kind, kind)}
	}
	if tx.Author != device || tx.Body.Subject() != device {
		return &ledger.RefusedError{Reason: ledger.ReasonTopic, Detail: fmt.Sprintf("%s by %s sent as device %s", kind, tx.Author, device)}
	}
	return nil
}

// Membership serves the chain's membership proof (docs/protocol.md 10.2):
// what a device needs, with the genesis, to verify receipts and answers
// certified after a change of the gateways' member set.
type Membership interface {
	// MembershipProof returns the encoded MembershipProof of the chain's
	// committed member changes, oldest first: the empty proof (0x80)
	// before any change.
	MembershipProof() ([]byte, error)
}

// Answers serves what devices ask of the ledger besides commits: their
// configuration and other devices' keys. An answer is CBOR that the device
// verifies itself against the genesis (see bridge/device); front ends only
// carry it. Refusals are *ledger.RefusedError, ledger.ReasonNotFound among them.
type Answers interface {
	// Config is device's current configuration manifest with its proof,
	// for the retained config topic; nil if device has no configuration.
	Config(device string) ([]byte, error)
	// VerifyConfig answers whether hash (a SHA-256) is device's current
	// configuration.
	VerifyConfig(device string, hash []byte) ([]byte, error)
	// Blob returns a sealed configuration blob of device's: the one whose
	// address (SHA-256) is ref or, if ref is empty, its current one. It
	// may fetch the blob from another gateway.
	Blob(ctx context.Context, device string, ref []byte) ([]byte, error)
	// Keys answers device's lookup of other's keys.
	Keys(device, other string) ([]byte, error)
	// Firmware is the newest firmware device may install, with its proof,
	// for the retained firmware topic; nil if there is none.
	Firmware(device string) ([]byte, error)
}

// Claimer enrolls, on its first CONNECT, a device that an approved fleet
// batch names (docs/protocol.md 6.19, path b): the gateway submits a
// device.claim with the device's token as evidence and waits for its
// commit.
type Claimer interface {
	// Claim returns nil once device is enrolled with the key its batch
	// names, by this claim or by another gateway's. token is the
	// device's CONNECT token (its COSE_Sign1 bytes), whose time the
	// caller checked. A device no approved, unrevoked batch names, or a
	// token that does not verify with the key the batch names, is
	// refused before any consensus work, as ErrNotClaimable; a refusal
	// from the ledger is a *ledger.RefusedError (overloaded: too many
	// claims in flight).
	Claim(ctx context.Context, device string, token []byte) error
}

// ErrNotClaimable is a Claimer's answer for a device it may not enroll:
// no approved batch names it, or its token is not signed with the key the
// batch names. The device is unknown, as before batches existed.
var ErrNotClaimable = errors.New("bridge: no approved batch names this device and key")
