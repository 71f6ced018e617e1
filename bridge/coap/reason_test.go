package coap

import (
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestReasonTable checks that every refusal reason has a response code,
// an error one (4.xx or 5.xx), and that the table names no other reason.
func TestReasonTable(t *testing.T) {
	for _, ri := range ledger.Reasons {
		c, ok := responseCodes[ri.Reason]
		if !ok {
			t.Errorf("%s has no response code", ri.Reason)
		} else if c>>5 != 4 && c>>5 != 5 {
			t.Errorf("%s maps to %v, not an error", ri.Reason, c)
		}
	}
	if len(responseCodes) != len(ledger.Reasons) {
		t.Errorf("%d codes for %d reasons", len(responseCodes), len(ledger.Reasons))
	}
}
