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

// TestRefuseMaxAge: the retry hints of the refusals that say "later":
// Max-Age 2 for overloaded and unavailable, 60 for storage_full (the
// gateway commits again only once restarted), none for the others.
func TestRefuseMaxAge(t *testing.T) {
	for _, c := range []struct {
		reason ledger.Reason
		maxAge optUint
	}{
		{ledger.ReasonOverloaded, opt(retryAfter)},
		{ledger.ReasonUnavailable, opt(retryAfter)},
		{ledger.ReasonStorageFull, opt(retryStorageFull)},
		{ledger.ReasonReplay, optUint{}},
	} {
		if an := refuse(c.reason, "detail"); an.maxAge != c.maxAge {
			t.Errorf("%s: Max-Age %+v, want %+v", c.reason, an.maxAge, c.maxAge)
		}
	}
}
