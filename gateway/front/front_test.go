package front

import (
	"errors"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestUnlessBehind: while the gateway may lack blocks, a refusal those
// blocks could explain is unavailable (resend), others stay as they are;
// a gateway that is not behind refuses as before.
func TestUnlessBehind(t *testing.T) {
	yes, no := func() bool { return true }, func() bool { return false }
	other := errors.New("disk on fire")
	for _, tc := range []struct {
		err    error
		behind func() bool
		want   ledger.Reason
	}{
		{ledger.Refuse(ledger.ReasonUnknownAuthor, "kid d1"), yes, ledger.ReasonUnavailable},
		{ledger.Refuse(ledger.ReasonBadSignature, "old key"), yes, ledger.ReasonUnavailable},
		{ledger.Refuse(ledger.ReasonUnknownDevice, "d9"), yes, ledger.ReasonUnavailable},
		{ledger.Refuse(ledger.ReasonReplay, "seq 3"), yes, ledger.ReasonReplay},
		{ledger.Refuse(ledger.ReasonRevoked, "d1"), yes, ledger.ReasonRevoked},
		{ledger.Refuse(ledger.ReasonUnknownAuthor, "kid d1"), no, ledger.ReasonUnknownAuthor},
		{ledger.Refuse(ledger.ReasonUnknownAuthor, "kid d1"), nil, ledger.ReasonUnknownAuthor},
		{other, yes, ledger.ReasonInternal},
		{nil, yes, ""},
	} {
		if got := ledger.ReasonOf(unlessBehind(tc.err, tc.behind)); got != tc.want {
			t.Errorf("%v, behind %v: %q, want %q", tc.err, tc.behind != nil && tc.behind(), got, tc.want)
		}
	}
}
