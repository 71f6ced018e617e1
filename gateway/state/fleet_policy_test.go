package state

import (
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestPolicyOnClaimedDevice: a device enrolled by device.claim has the
// model and groups of its batch, as one enrolled by device.enroll has
// its own, so group and model rules judge it.
func TestPolicyOnClaimedDevice(t *testing.T) {
	f, _, keys := fleetFixture(t, 2) // batch b-1: model th-2, group g
	f.commit(f.sign(f.admin, "admin", ledger.Body{Kind: ledger.KindFleetApprove, FleetApprove: &ledger.FleetApprove{Batch: "b-1"}}))
	f.commit(f.sign(f.admin, "admin", policyBody(&ledger.PolicySet{Version: 1, Rules: []ledger.Rule{
		{Name: "g-temp-only", When: "'g' in device.groups", Allow: "record.stream == 'temp'"},
		{Name: "th-2-small", When: "device.model == 'th-2'", Allow: "record.size <= 16"},
	}})))
	f.commit(f.sign(keys[0], "d-a", claimBody(f.st, "d-a", "b-1", nil)))
	if d, ok := f.st.Device("d-a"); !ok || d.Model != "th-2" || len(d.Groups) != 1 || d.Groups[0] != "g" {
		t.Fatalf("d-a after its claim: %+v", d)
	}
	errs := f.block(1000,
		f.sign(keys[0], "d-a", rec("d-a", "temp", 1, 8)),
		f.sign(keys[0], "d-a", rec("d-a", "video", 2, 8)),
		f.sign(keys[0], "d-a", rec("d-a", "temp", 3, 17)),
		f.sign(keys[1], "d-b", claimBody(f.st, "d-b", "b-1", nil)))
	if errs[0] != nil || errs[3] != nil {
		t.Fatalf("allowed txs refused: %v, %v", errs[0], errs[3])
	}
	wantPolicy(t, errs[1], "g-temp-only")
	wantPolicy(t, errs[2], "th-2-small")
	// After a snapshot and a restore too.
	roundTrip(t, f.st)
	wantPolicy(t, f.block(2000, f.sign(keys[1], "d-b", rec("d-b", "video", 1, 8)))[0], "g-temp-only")
}
