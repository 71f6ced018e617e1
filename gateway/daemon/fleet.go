package daemon

import (
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/front"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// fleetView is the state's fleet batches and the claimer's claims in
// flight as the API reads them (api.Fleet).
type fleetView struct {
	st      *state.State
	claimer *front.Claimer
}

func batchInfo(b state.BatchInfo) api.BatchInfo {
	return api.BatchInfo{ID: b.ID, Vendor: b.Vendor, Model: b.Model, Groups: b.Groups, Height: b.Height, Devices: b.Devices,
		Claimed: b.Claimed, Status: b.Status, Approved: b.Approved, Revoked: b.Revoked}
}

func (f fleetView) Batches() []api.BatchInfo {
	bs := f.st.Batches()
	out := make([]api.BatchInfo, len(bs))
	for i, b := range bs {
		out[i] = batchInfo(b)
	}
	return out
}

func (f fleetView) Batch(id string) (api.BatchBody, bool) {
	b, devs, ok := f.st.Batch(id)
	if !ok {
		return api.BatchBody{}, false
	}
	body := api.BatchBody{BatchInfo: batchInfo(b), DeviceList: make([]api.BatchDevice, len(devs))}
	for i, d := range devs {
		body.DeviceList[i] = api.BatchDevice{ID: d.ID, PublicKey: d.PublicKey, Claimed: d.Claimed}
	}
	return body, true
}

func (f fleetView) Claims() []api.PendingClaim {
	ps := f.claimer.Pending()
	out := make([]api.PendingClaim, len(ps))
	for i, p := range ps {
		out[i] = api.PendingClaim{Device: p.Device, Batch: p.Batch, Since: p.Since}
	}
	return out
}
