package api

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/ledgergate/ledgergate/gateway/clock"
	"github.com/ledgergate/ledgergate/gateway/directory"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Firmware is what the API needs for firmware distribution.
type Firmware interface {
	FirmwareAnswer(device string, now time.Time) (*ledger.FirmwareAnswer, *index.ReleaseInfo, error)
	ReleaseAnswer(device, model string, version uint64) (*ledger.FirmwareAnswer, error)
	// OpenImage opens a release's image, to be served in parts.
	OpenImage(ctx context.Context, sum [32]byte) (io.ReadSeekCloser, error)
	FirmwareStatus(model string, now time.Time) ([]directory.ReleaseStatus, error)
	// CheckFirmware checks a firmware.publish, and the size of the image
	// to come, before the image is read.
	CheckFirmware(env []byte, size int64) (*ledger.Tx, error)
	// PutBlob stores the size bytes from r that a checked tx names.
	PutBlob(tx *ledger.Tx, r io.Reader, size int64) error
}

// FirmwareReports is what the API reads of the index about installations.
type FirmwareReports interface {
	DeviceFirmwareReports(device string) ([]index.FirmwareReport, error)
	FirmwareModels() ([]string, error)
}

// SetFirmware enables the firmware endpoints.
func (s *Server) SetFirmware(f Firmware, r FirmwareReports) {
	s.fw, s.fwReports = f, r
	s.handle("GET /api/v1/devices/{id}/firmware", s.deviceFirmware)
	s.handle("GET /api/v1/devices/{id}/firmware/history", s.deviceFirmwareHistory)
	s.handle("GET /api/v1/devices/{id}/firmware/{model}/{version}", s.releaseForDevice)
	s.handle("GET /api/v1/firmware", s.firmwareModels)
	s.handle("GET /api/v1/firmware/{model}", s.firmwareStatus)
	s.handle("GET /api/v1/firmware/images/{sum}", s.image)
	s.handle("POST /api/v1/firmware", s.publishFirmware)
}

// FirmwareBody answers GET /api/v1/devices/{id}/firmware and
// /firmware/{model}/{version}.
type FirmwareBody struct {
	Device  string             `json:"device"`
	Release *index.ReleaseInfo `json:"release,omitempty"`
	Answer  []byte             `json:"answer"` // CBOR ledger.FirmwareAnswer, base64: for device.VerifyFirmware
}

func (s *Server) deviceFirmware(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a, rel, err := s.fw.FirmwareAnswer(id, clock.Now())
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.writeAnswer(w, r, a, func(enc []byte) any { return FirmwareBody{Device: id, Release: rel, Answer: enc} })
}

func (s *Server) releaseForDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := strconv.ParseUint(r.PathValue("version"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "version: want a whole number")
		return
	}
	a, err := s.fw.ReleaseAnswer(id, r.PathValue("model"), v)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.writeAnswer(w, r, a, func(enc []byte) any { return FirmwareBody{Device: id, Answer: enc} })
}

func (s *Server) deviceFirmwareHistory(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d, err := s.index.Device(id)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	rs, err := s.fwReports.DeviceFirmwareReports(id)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Device    string                 `json:"device"`
		Model     string                 `json:"model"`
		Installed uint64                 `json:"installed"` // the version it last reported installing successfully
		Reports   []index.FirmwareReport `json:"reports"`
	}{id, d.Model, d.FwVersion, rs})
}

func (s *Server) firmwareModels(w http.ResponseWriter, _ *http.Request) {
	ms, err := s.fwReports.FirmwareModels()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Models []string `json:"models"`
	}{ms})
}

func (s *Server) firmwareStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.fw.FirmwareStatus(r.PathValue("model"), clock.Now())
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if st == nil {
		st = []directory.ReleaseStatus{}
	}
	writeJSON(w, http.StatusOK, struct {
		Model    string                    `json:"model"`
		Releases []directory.ReleaseStatus `json:"releases"`
	}{r.PathValue("model"), st})
}

// image serves a release's image, with Range requests: a device resumes
// an interrupted download. The image is read from its file as it is
// sent, never whole into memory.
func (s *Server) image(w http.ResponseWriter, r *http.Request) {
	sum, err := ledger.ParseHash(r.PathValue("sum"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "image address: want 64 hex digits")
		return
	}
	f, err := s.fw.OpenImage(r.Context(), sum)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+r.PathValue("sum")+`"`)
	http.ServeContent(w, r, "", time.Time{}, f)
}

// MaxImageBytes bounds a firmware image a gateway takes.
const MaxImageBytes = 64 << 20

// publishFirmware checks the vendor-signed firmware.publish, stores the
// image it names, then submits it and answers with its receipt once
// committed (see upload.go for the body).
func (s *Server) publishFirmware(w http.ResponseWriter, r *http.Request) {
	s.publish(w, r, MaxImageBytes, "firmware.publish tx, 2: image", s.fw.CheckFirmware, s.fw.PutBlob)
}
