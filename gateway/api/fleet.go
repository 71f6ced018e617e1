package api

import (
	"net/http"

	"github.com/ledgergate/ledgergate/gateway/state"
)

// Fleet is what the API reads about zero-touch enrollment (docs/fleet.md):
// the batches in the committed state and the claims this gateway has in
// flight. The daemon passes the state and the claimer; pending is a func
// so the API does not depend on the front ends.
type Fleet interface {
	Batches() []state.BatchInfo
	Batch(id string) (state.BatchInfo, []state.BatchDeviceInfo, bool)
}

// PendingClaims lists this gateway's claims in flight, as JSON values.
type PendingClaims func() any

// SetFleet enables the fleet endpoints.
func (s *Server) SetFleet(f Fleet, pending PendingClaims) {
	s.fleet, s.pendingClaims = f, pending
	s.handle("GET /api/v1/fleet/batches", s.fleetBatches)
	s.handle("GET /api/v1/fleet/batches/{id}", s.fleetBatch)
	s.handle("GET /api/v1/fleet/claims", s.fleetClaims)
}

// BatchBody answers GET /api/v1/fleet/batches/{id}: the batch and its
// devices, each with whether it was claimed.
type BatchBody struct {
	state.BatchInfo
	DeviceList []state.BatchDeviceInfo `json:"device_list"`
}

func (s *Server) fleetBatches(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"batches": s.fleet.Batches()})
}

func (s *Server) fleetBatch(w http.ResponseWriter, r *http.Request) {
	b, devs, ok := s.fleet.Batch(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no batch "+r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, BatchBody{BatchInfo: b, DeviceList: devs})
}

func (s *Server) fleetClaims(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"claims": s.pendingClaims()})
}
