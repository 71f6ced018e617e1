package mqtt

import (
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestReasonTable checks that every refusal reason has a PUBACK code, a
// failure one, and that the table names no other reason.
func TestReasonTable(t *testing.T) {
	for _, ri := range ledger.Reasons {
		c, ok := pubackCodes[ri.Reason]
		if !ok {
			t.Errorf("%s has no PUBACK code", ri.Reason)
		} else if c.Code < 0x80 {
			t.Errorf("%s maps to 0x%02x, a success", ri.Reason, c.Code)
		}
	}
	if len(pubackCodes) != len(ledger.Reasons) {
		t.Errorf("%d codes for %d reasons", len(pubackCodes), len(ledger.Reasons))
	}
}
