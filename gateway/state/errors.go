package state

import (
	"errors"
	"fmt"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// reject is a rejection by the rules: a *ledger.RefusedError.
func reject(r ledger.Reason, format string, a ...any) error {
	return &ledger.RefusedError{Reason: r, Detail: fmt.Sprintf(format, a...)}
}

// replay is a ledger.ReasonReplay rejection that carries the device's
// last seq (committed, or queued in the batch), so the device can resync.
func replay(last uint64, format string, a ...any) error {
	return &ledger.RefusedError{Reason: ledger.ReasonReplay, Detail: fmt.Sprintf(format, a...), LastSeq: last}
}

// decodeReject maps a ledger decode error to a rejection.
func decodeReject(err error) error {
	if errors.Is(err, ledger.ErrTooLarge) {
		return reject(ledger.ReasonTooLarge, "%v", err)
	}
	return reject(ledger.ReasonMalformed, "%v", err)
}
