package api

import (
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestReasonTable checks that every refusal reason has an HTTP status,
// an error one, and that the table names no other reason; and that a
// refusal is answered with its own reason.
func TestReasonTable(t *testing.T) {
	for _, ri := range ledger.Reasons {
		code, ok := httpStatus[ri.Reason]
		if !ok {
			t.Errorf("%s has no HTTP status", ri.Reason)
			continue
		}
		if code < 400 {
			t.Errorf("%s maps to %d, not an error", ri.Reason, code)
		}
		if c, r := ErrorStatus(ledger.Refuse(ri.Reason, "test")); c != code || r != string(ri.Reason) {
			t.Errorf("ErrorStatus(%s) = %d %s, want %d %s", ri.Reason, c, r, code, ri.Reason)
		}
	}
	if len(httpStatus) != len(ledger.Reasons) {
		t.Errorf("%d statuses for %d reasons", len(httpStatus), len(ledger.Reasons))
	}
}
