package api

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestReadyz: /readyz is 503 "not_ready" until SetReady, then 503
// "unavailable" with why and Retry-After while the health check says the
// gateway cannot commit, 503 "storage_full" with the detail and
// Retry-After 60 once the disk filled, and 200 when it can. A submit
// refused as unavailable is a 503 with Retry-After too; as storage_full,
// a 507.
func TestReadyz(t *testing.T) {
	s := New(NodeInfo{}, nil, nil, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	var why error
	s.SetHealth(func() error { return why })
	get := func() (int, string, errorBody) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var body errorBody
		json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, rec.Header().Get("Retry-After"), body
	}
	if code, _, body := get(); code != http.StatusServiceUnavailable || body.Reason != "not_ready" {
		t.Errorf("before SetReady: %d %+v", code, body)
	}
	s.SetReady(true)
	why = errors.New("daemon: no quorum: heard from 1 of 3 peers")
	if code, retry, body := get(); code != http.StatusServiceUnavailable || retry != "2" || body.Reason != "unavailable" || body.Error != why.Error() {
		t.Errorf("without a quorum: %d Retry-After %q %+v", code, retry, body)
	}
	why = ledger.Refuse(ledger.ReasonStorageFull, "storage full: write blocks/00000001.log: no space left on device. Free space, then restart")
	if code, retry, body := get(); code != http.StatusServiceUnavailable || retry != "60" || body.Reason != "storage_full" ||
		body.Error != "storage full: write blocks/00000001.log: no space left on device. Free space, then restart" {
		t.Errorf("on a full disk: %d Retry-After %q %+v", code, retry, body)
	}
	why = nil
	if code, _, _ := get(); code != http.StatusOK {
		t.Errorf("with a quorum: %d", code)
	}

	rec := httptest.NewRecorder()
	s.writeErr(rec, ledger.Refuse(ledger.ReasonUnavailable, "chain: not committed within 5s"))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "2" {
		t.Errorf("unavailable submit: %d Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	rec = httptest.NewRecorder()
	s.writeErr(rec, ledger.Refuse(ledger.ReasonStorageFull, "chain: this gateway's disk is full"))
	if rec.Code != http.StatusInsufficientStorage || rec.Header().Get("Retry-After") != "60" {
		t.Errorf("storage_full submit: %d Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}
