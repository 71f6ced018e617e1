package mqtt

import (
	"fmt"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/ledger/spectest"
)

// TestReasonTable checks that every refusal reason has a PUBACK code, a
// failure one, that the table names no other reason, and that it is the
// MQTT 5 column of the refusal table in docs/protocol.md.
func TestReasonTable(t *testing.T) {
	documented := spectest.ReasonCodes(t, spectest.ColMQTT5)
	for _, ri := range ledger.Reasons {
		c, ok := pubackCodes[ri.Reason]
		switch {
		case !ok:
			t.Errorf("%s has no PUBACK code", ri.Reason)
		case c.Code < 0x80:
			t.Errorf("%s maps to 0x%02x, a success", ri.Reason, c.Code)
		case fmt.Sprintf("0x%02x", c.Code) != documented[ri.Reason]:
			t.Errorf("%s: the code says 0x%02x, docs/protocol.md %q", ri.Reason, c.Code, documented[ri.Reason])
		}
	}
	if len(pubackCodes) != len(ledger.Reasons) {
		t.Errorf("%d codes for %d reasons", len(pubackCodes), len(ledger.Reasons))
	}
}
