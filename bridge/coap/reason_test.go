package coap

import (
	"fmt"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/ledger/spectest"
)

// TestReasonTable checks that every refusal reason has a response code,
// an error one (4.xx or 5.xx), that the table names no other reason, and
// that it is the CoAP column of the refusal table in docs/protocol.md.
func TestReasonTable(t *testing.T) {
	documented := spectest.ReasonCodes(t, spectest.ColCoAP)
	for _, ri := range ledger.Reasons {
		c, ok := responseCodes[ri.Reason]
		switch {
		case !ok:
			t.Errorf("%s has no response code", ri.Reason)
		case c>>5 != 4 && c>>5 != 5:
			t.Errorf("%s maps to %v, not an error", ri.Reason, c)
		case fmt.Sprintf("%d.%02d", c>>5, c&31) != documented[ri.Reason]:
			t.Errorf("%s: the code says %d.%02d, docs/protocol.md %q", ri.Reason, c>>5, c&31, documented[ri.Reason])
		}
	}
	if len(responseCodes) != len(ledger.Reasons) {
		t.Errorf("%d codes for %d reasons", len(responseCodes), len(ledger.Reasons))
	}
}
