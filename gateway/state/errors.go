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

// decodeReject maps a ledger decode error to a rejection.
func decodeReject(err error) error {
	if errors.Is(err, ledger.ErrTooLarge) {
		return reject(ledger.ReasonTooLarge, "%v", err)
	}
	return reject(ledger.ReasonMalformed, "%v", err)
}
