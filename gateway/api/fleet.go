package api

import (
	"net/http"
	"time"
)

// Fleet is what the API reads about zero-touch enrollment (docs/fleet.md):
// the batches in the committed state and the claims this gateway has in
// flight. The daemon adapts the state and the claimer to it.
type Fleet interface {
	Batches() []BatchInfo
	Batch(id string) (BatchBody, bool)
	Claims() []PendingClaim
}

// BatchInfo is a fleet batch as the API shows it.
type BatchInfo struct {
	ID       string   `json:"id"`
	Vendor   string   `json:"vendor"`
	Model    string   `json:"model"`
	Groups   []string `json:"groups"`
	Height   uint64   `json:"height"` // of its fleet.batch
	Devices  int      `json:"devices"`
	Claimed  int      `json:"claimed"`
	Status   string   `json:"status"` // "pending", "approved" or "revoked"
	Approved bool     `json:"approved"`
	Revoked  bool     `json:"revoked"`
}

// BatchDevice is a device of a batch and whether a claim enrolled it.
type BatchDevice struct {
	ID        string `json:"id"`
	PublicKey []byte `json:"public_key"`
	Claimed   bool   `json:"claimed"`
}

// BatchBody answers GET /api/v1/fleet/batches/{id}: the batch and its
// devices.
type BatchBody struct {
	BatchInfo
	DeviceList []BatchDevice `json:"device_list"`
}

// PendingClaim is a claim this gateway submitted for a device's first
// CONNECT and is waiting on.
type PendingClaim struct {
	Device string    `json:"device"`
	Batch  string    `json:"batch"`
	Since  time.Time `json:"since"`
}

// SetFleet enables the fleet endpoints.
func (s *Server) SetFleet(f Fleet) {
	s.fleet = f
	s.handle("GET /api/v1/fleet/batches", s.fleetBatches)
	s.handle("GET /api/v1/fleet/batches/{id}", s.fleetBatch)
	s.handle("GET /api/v1/fleet/claims", s.fleetClaims)
}

func (s *Server) fleetBatches(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"batches": s.fleet.Batches()})
}

func (s *Server) fleetBatch(w http.ResponseWriter, r *http.Request) {
	b, ok := s.fleet.Batch(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no batch "+r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Server) fleetClaims(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"claims": s.fleet.Claims()})
}
