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
	// Propose checks a tx and queues it for ordering without waiting for
	// the commit. Txs proposed one after another by one caller are
	// ordered in that order, so a device's records keep their sequence
	// with many in flight. A rejection carries a reason (see ReasonOf).
	Propose(ctx context.Context, env []byte) (Ticket, error)
}

// CommitterFunc adapts a function to Committer.
type CommitterFunc func(ctx context.Context, env []byte) (Ticket, error)

// Propose calls f.
func (f CommitterFunc) Propose(ctx context.Context, env []byte) (Ticket, error) { return f(ctx, env) }

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
}

// Device is a device as front ends see it.
type Device struct {
	ID      string
	Key     *ledger.PublicKey
	Revoked bool
}

// Reasons front ends report besides the ledger's own (see ReasonOf).
const (
	ReasonMalformed  = "malformed"   // not a valid tx encoding
	ReasonTopic      = "wrong_topic" // the message does not match the topic or device it came on
	ReasonNotRecord  = "not_record"  // a data topic carries data.record txs only
	ReasonNotReport  = "not_report"  // a report topic carries its kind of report only
	ReasonNotFound   = "not_found"   // no such configuration, blob or device
	ReasonTooLarge   = "too_large"
	ReasonOverloaded = "overloaded" // the gateway is busy: back off and resend
	ReasonInternal   = "internal"
)

// ReasonOf returns the stable reason of a refusal: the ledger's reject
// reason (anything with a RejectReason method), or one of this package's.
func ReasonOf(err error) string {
	var r interface{ RejectReason() string }
	if errors.As(err, &r) {
		return r.RejectReason()
	}
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ReasonInternal
}

// LastSeqOf returns, for a replay refusal, the device's last seq that the
// gateway committed or queued (the ledger's or the state's refusal
// carries it), so that a front end can tell the device; ok is false for
// any other error.
func LastSeqOf(err error) (last uint64, ok bool) {
	if ReasonOf(err) != string(ledger.ReasonReplay) {
		return 0, false
	}
	var r interface{ RejectLastSeq() uint64 }
	if errors.As(err, &r) {
		return r.RejectLastSeq(), true
	}
	var re *ledger.RefusedError
	if errors.As(err, &re) {
		return re.LastSeq, true
	}
	return 0, false
}

// RefusedError is a message a front end refuses before submitting it.
type RefusedError struct {
	Reason string
	Detail string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("bridge: refused: %s: %s", e.Reason, e.Detail)
}

// CheckRecord is the decode-and-check shared by every front end: env must
// be a data.record tx by device (the authenticated device) on stream
// (from the topic or path), at most maxBytes long. Signature, sequence
// and revocation are checked on submit.
func CheckRecord(env []byte, device, stream string, maxBytes int) (*ledger.Tx, error) {
	tx, err := checkDeviceTx(env, device, ledger.KindRecord, ReasonNotRecord, maxBytes)
	if err != nil {
		return nil, err
	}
	if stream != "" && tx.Body.Record.Stream != stream {
		return nil, &RefusedError{Reason: ReasonTopic, Detail: fmt.Sprintf("record for stream %s sent on stream %s", tx.Body.Record.Stream, stream)}
	}
	return tx, nil
}

// CheckReport is CheckRecord for a config.report tx: env must be one by
// device about itself.
func CheckReport(env []byte, device string, maxBytes int) (*ledger.Tx, error) {
	return checkDeviceTx(env, device, ledger.KindConfigReport, ReasonNotReport, maxBytes)
}

// CheckFirmwareReport is CheckReport for a firmware.report tx.
func CheckFirmwareReport(env []byte, device string, maxBytes int) (*ledger.Tx, error) {
	return checkDeviceTx(env, device, ledger.KindFirmwareReport, ReasonNotReport, maxBytes)
}

// CheckRekey is CheckReport for a device.rekey tx: env must be one by
// device about itself. It is signed with the device's current key, and
// takes a seq from the same counter as its records.
func CheckRekey(env []byte, device string, maxBytes int) (*ledger.Tx, error) {
	return checkDeviceTx(env, device, ledger.KindRekey, ReasonTopic, maxBytes)
}

// checkDeviceTx decodes env and checks that it is a kind tx by device
// about device; a tx of another kind is refused with wrongKind.
func checkDeviceTx(env []byte, device string, kind ledger.Kind, wrongKind string, maxBytes int) (*ledger.Tx, error) {
	tx, err := ledger.DecodeTx(env, maxBytes)
	if errors.Is(err, ledger.ErrTooLarge) {
		return nil, &RefusedError{Reason: ReasonTooLarge, Detail: err.Error()}
	}
	if err != nil {
		return nil, &RefusedError{Reason: ReasonMalformed, Detail: err.Error()}
	}
	if tx.Body.Kind != kind {
		return nil, &RefusedError{Reason: wrongKind, Detail: fmt.Sprintf("a %s tx, want %s", tx.Body.Kind, kind)}
	}
	if tx.Author != device || tx.Body.Subject() != device {
		return nil, &RefusedError{Reason: ReasonTopic, Detail: fmt.Sprintf("%s by %s sent as device %s", kind, tx.Author, device)}
	}
	return tx, nil
}

// Answers serves what devices ask of the ledger besides commits: their
// configuration and other devices' keys. An answer is CBOR that the device
// verifies itself against the genesis (see bridge/device); front ends only
// carry it. Errors carry a reason (ReasonOf), ReasonNotFound among them.
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
