package state

import (
	"errors"
	"fmt"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Reason says why a tx was rejected. The values are part of the API.
type Reason string

// The reject reasons.
const (
	ReasonMalformed      Reason = "malformed"       // not a valid tx encoding
	ReasonTooLarge       Reason = "too_large"       // over the genesis' max_tx_bytes
	ReasonWrongChain     Reason = "wrong_chain"     // signed for another chain
	ReasonUnknownAuthor  Reason = "unknown_author"  // kid names no admin or device
	ReasonForbidden      Reason = "forbidden"       // the author may not issue this tx
	ReasonBadSignature   Reason = "bad_signature"   // signature does not verify with the author's current key
	ReasonRevoked        Reason = "revoked"         // the device is revoked
	ReasonReplay         Reason = "replay"          // seq not above the device's last seq
	ReasonExists         Reason = "exists"          // the id is already enrolled (or was, and is revoked)
	ReasonUnknownDevice  Reason = "unknown_device"  // the tx is about a device that is not enrolled
	ReasonStaleVersion   Reason = "stale_version"   // a config version not above the target's last
	ReasonUnknownRelease Reason = "unknown_release" // a vote, approval or revocation of a release never published
)

// RejectError is a tx rejected by the rules.
type RejectError struct {
	Reason Reason
	Detail string
	// LastSeq is, for ReasonReplay, the highest seq of the device that
	// this gateway has committed or queued: the device signs again with a
	// seq above it.
	LastSeq uint64
}

// RejectLastSeq is LastSeq, for packages that may not import this one
// (the front ends report it with a replay).
func (e *RejectError) RejectLastSeq() uint64 { return e.LastSeq }

// RejectReason is the reason as a string, for packages that may not
// import this one (the front ends).
func (e *RejectError) RejectReason() string { return string(e.Reason) }

func (e *RejectError) Error() string {
	return fmt.Sprintf("state: rejected: %s: %s", e.Reason, e.Detail)
}

func reject(r Reason, format string, a ...any) error {
	return &RejectError{Reason: r, Detail: fmt.Sprintf(format, a...)}
}

// replay is a ReasonReplay rejection that carries the device's last seq.
func replay(last uint64, format string, a ...any) error {
	return &RejectError{Reason: ReasonReplay, Detail: fmt.Sprintf(format, a...), LastSeq: last}
}

// ReasonOf returns the reject reason of err, or "" if err is no rejection.
func ReasonOf(err error) Reason {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// decodeReject maps a ledger decode error to a rejection.
func decodeReject(err error) error {
	if errors.Is(err, ledger.ErrTooLarge) {
		return reject(ReasonTooLarge, "%v", err)
	}
	return reject(ReasonMalformed, "%v", err)
}
