package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Directory is what the API needs for configuration control and the key
// directory.
type Directory interface {
	ConfigAnswer(device string, hash []byte) (*ledger.ConfigAnswer, *index.ConfigInfo, error)
	KeysAnswer(device string) (*ledger.KeysAnswer, *index.Device, error)
	// OpenBlob opens a blob that a committed tx names, to be served
	// without holding it in memory.
	OpenBlob(ctx context.Context, sum [32]byte) (io.ReadSeekCloser, error)
	// CheckConfig checks a config.set before its blob is read.
	CheckConfig(env []byte) (*ledger.Tx, error)
	// PutBlob stores the size bytes from r that a checked tx names.
	PutBlob(tx *ledger.Tx, r io.Reader, size int64) error
}

// Configs is what the API reads of the index about configurations.
type Configs interface {
	ConfigHistory(device string) ([]index.ConfigInfo, error)
	ConfigReports(device string) ([]index.ConfigReport, error)
	TargetConfigs(target string) ([]index.ConfigInfo, error)
	GroupMembers(group string) ([]string, error)
	Drifting() ([]index.Drift, error)
}

// SetDirectory enables the configuration and key directory endpoints.
func (s *Server) SetDirectory(d Directory, c Configs) {
	s.dir, s.configs = d, c
	s.handle("GET /api/v1/devices/{id}/config", s.deviceConfig)
	s.handle("POST /api/v1/devices/{id}/config/verify", s.verifyConfig)
	s.handle("GET /api/v1/devices/{id}/config/blob", s.deviceBlob)
	s.handle("GET /api/v1/devices/{id}/config/history", s.configHistory)
	s.handle("GET /api/v1/devices/{id}/keys", s.deviceKeys)
	s.handle("GET /api/v1/blobs/{sum}", s.blob)
	s.handle("GET /api/v1/configs/{target}", s.targetConfigs)
	s.handle("POST /api/v1/configs", s.publishConfig)
	s.handle("GET /api/v1/groups/{group}", s.group)
	s.handle("GET /api/v1/drift", s.drift)
}

// ConfigBody answers GET /api/v1/devices/{id}/config and the verify POST.
type ConfigBody struct {
	Device  string            `json:"device"`
	Current *index.ConfigInfo `json:"current"` // null: no configuration
	// Match is set by verify: whether the hash asked about is the current one.
	Match  *bool  `json:"match,omitempty"`
	Answer []byte `json:"answer"` // CBOR ledger.ConfigAnswer, base64: the proof to check with the genesis
}

// writeAnswer encodes a and writes it raw when the client asks for CBOR,
// else body(the encoding) as JSON.
func (s *Server) writeAnswer(w http.ResponseWriter, r *http.Request, a interface{ Encode() ([]byte, error) }, body func(enc []byte) any) {
	enc, err := a.Encode()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if r.Header.Get("Accept") == "application/cbor" {
		w.Header().Set("Content-Type", "application/cbor")
		w.Write(enc)
		return
	}
	writeJSON(w, http.StatusOK, body(enc))
}

func (s *Server) deviceConfig(w http.ResponseWriter, r *http.Request) {
	s.configAnswer(w, r, nil)
}

func (s *Server) configAnswer(w http.ResponseWriter, r *http.Request, hash []byte) {
	id := r.PathValue("id")
	a, cur, err := s.dir.ConfigAnswer(id, hash)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.writeAnswer(w, r, a, func(enc []byte) any {
		body := ConfigBody{Device: id, Current: cur, Answer: enc}
		if hash != nil {
			body.Match = &a.Match
		}
		return body
	})
}

// verifyConfig takes the hash as JSON {"sha256": "hex"} or as 32 raw
// bytes (application/octet-stream).
func (s *Server) verifyConfig(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1024))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "read body: "+err.Error())
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	hash := data
	if mt != "application/octet-stream" {
		var req struct {
			SHA256 string `json:"sha256"`
		}
		if err := json.Unmarshal(data, &req); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", `want {"sha256": "64 hex digits"} or 32 bytes of application/octet-stream`)
			return
		}
		if hash, err = hex.DecodeString(req.SHA256); err != nil {
			hash = nil
		}
	}
	if len(hash) != 32 {
		writeError(w, http.StatusBadRequest, "bad_request", "sha256: want 32 bytes (64 hex digits)")
		return
	}
	s.configAnswer(w, r, hash)
}

// writeBlob serves a blob from its file, as it is sent.
func (s *Server) writeBlob(w http.ResponseWriter, r *http.Request, sum [32]byte) {
	f, err := s.dir.OpenBlob(r.Context(), sum)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	http.ServeContent(w, r, "", time.Time{}, f)
}

func (s *Server) deviceBlob(w http.ResponseWriter, r *http.Request) {
	_, cur, err := s.dir.ConfigAnswer(r.PathValue("id"), nil)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if cur == nil {
		writeError(w, http.StatusNotFound, "not_found", "no configuration published for device "+r.PathValue("id"))
		return
	}
	sum, _ := ledger.ParseHash(cur.Blob)
	s.writeBlob(w, r, sum)
}

func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	sum, err := ledger.ParseHash(r.PathValue("sum"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "blob address: want 64 hex digits")
		return
	}
	s.writeBlob(w, r, sum)
}

// HistoryBody answers GET /api/v1/devices/{id}/config/history.
type HistoryBody struct {
	Device  string               `json:"device"`
	Configs []index.ConfigInfo   `json:"configs"` // every config.set that applied to it, in commit order
	Reports []index.ConfigReport `json:"reports"` // what it reported applying, in commit order
}

func (s *Server) configHistory(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cs, err := s.configs.ConfigHistory(id)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	rs, err := s.configs.ConfigReports(id)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, HistoryBody{Device: id, Configs: cs, Reports: rs})
}

// proven is what a device's keys answer proves of d, without its activity
// (records, last seq and seen, reports): what a caller without
// read:records is shown on a route open to devices.
func proven(d *index.Device) *index.Device {
	return &index.Device{ID: d.ID, Status: d.Status, Alg: d.Alg, PublicKey: d.PublicKey, Fingerprint: d.Fingerprint,
		EnrolledHeight: d.EnrolledHeight, RevokedHeight: d.RevokedHeight, RevokeReason: d.RevokeReason,
		Model: d.Model, Groups: d.Groups, EncKey: d.EncKey}
}

// KeysBody answers GET /api/v1/devices/{id}/keys.
type KeysBody struct {
	*index.Device
	Answer []byte `json:"answer"` // CBOR ledger.KeysAnswer, base64: the proof to check with the genesis
}

func (s *Server) deviceKeys(w http.ResponseWriter, r *http.Request) {
	a, d, err := s.dir.KeysAnswer(r.PathValue("id"))
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if d != nil && !fullDeviceView(r) {
		d = proven(d)
	}
	s.writeAnswer(w, r, a, func(enc []byte) any { return KeysBody{Device: d, Answer: enc} })
}

func (s *Server) targetConfigs(w http.ResponseWriter, r *http.Request) {
	target := r.PathValue("target")
	if _, _, ok := ledger.ParseTarget(target); !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "target: want a device id or group:NAME")
		return
	}
	cs, err := s.configs.TargetConfigs(target)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Target  string             `json:"target"`
		Configs []index.ConfigInfo `json:"configs"`
	}{target, cs})
}

func (s *Server) group(w http.ResponseWriter, r *http.Request) {
	ids, err := s.configs.GroupMembers(r.PathValue("group"))
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Group   string   `json:"group"`
		Devices []string `json:"devices"`
	}{r.PathValue("group"), ids})
}

func (s *Server) drift(w http.ResponseWriter, _ *http.Request) {
	ds, err := s.configs.Drifting()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Devices []index.Drift `json:"devices"`
	}{ds})
}

// maxSealedBytes bounds the sealed blob of a POST /api/v1/configs.
const maxSealedBytes = 8 << 20

// publishConfig checks the config.set, stores the sealed blob it names,
// then submits it and answers with its receipt once committed (see
// upload.go for the body).
func (s *Server) publishConfig(w http.ResponseWriter, r *http.Request) {
	s.publish(w, r, maxSealedBytes, "config.set tx, 2: sealed blob",
		func(env []byte, _ int64) (*ledger.Tx, error) { return s.dir.CheckConfig(env) }, s.dir.PutBlob)
}
