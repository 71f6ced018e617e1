package api

import (
	"fmt"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/ledger/spectest"
)

// TestReasonTable checks that every refusal reason has an HTTP status, an
// error one, that the table names no other reason, that it is the HTTP
// column of the refusal table in docs/protocol.md, and that a refusal is
// answered with its own reason.
func TestReasonTable(t *testing.T) {
	documented := spectest.ReasonCodes(t, spectest.ColHTTP)
	for _, ri := range ledger.Reasons {
		code, ok := httpStatus[ri.Reason]
		switch {
		case !ok:
			t.Errorf("%s has no HTTP status", ri.Reason)
			continue
		case code < 400:
			t.Errorf("%s maps to %d, not an error", ri.Reason, code)
		case fmt.Sprint(code) != documented[ri.Reason]:
			t.Errorf("%s: the code says %d, docs/protocol.md %q", ri.Reason, code, documented[ri.Reason])
		}
		if c, r := ErrorStatus(ledger.Refuse(ri.Reason, "test")); c != code || r != string(ri.Reason) {
			t.Errorf("ErrorStatus(%s) = %d %s, want %d %s", ri.Reason, c, r, code, ri.Reason)
		}
	}
	if len(httpStatus) != len(ledger.Reasons) {
		t.Errorf("%d statuses for %d reasons", len(httpStatus), len(ledger.Reasons))
	}
}
