package webui

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fleetBatches is a committed state with one pending batch of 120
// devices, two of them claimed, and one claim in flight.
type fleetBatches struct{ status string }

func (f *fleetBatches) info() api.BatchInfo {
	return api.BatchInfo{ID: "lot-7", Vendor: "acme", Model: "th-2", Groups: []string{"hall-b"}, Height: 4, Devices: 120, Claimed: 2, Status: f.status}
}
func (f *fleetBatches) Batches() []api.BatchInfo { return []api.BatchInfo{f.info()} }
func (f *fleetBatches) Batch(id string) (api.BatchBody, bool) {
	if id != "lot-7" {
		return api.BatchBody{}, false
	}
	b := api.BatchBody{BatchInfo: f.info()}
	for i := range 120 {
		b.DeviceList = append(b.DeviceList, api.BatchDevice{ID: "th-" + string(rune('a'+i/26)) + string(rune('a'+i%26)), PublicKey: []byte{byte(i)}, Claimed: i == 3 || i == 70})
	}
	return b, true
}
func (f *fleetBatches) Claims() []api.PendingClaim {
	return []api.PendingClaim{{Device: "th-zz", Batch: "lot-7", Since: time.Date(2026, 11, 21, 11, 59, 58, 0, time.UTC)}}
}

// TestBatchActions: approving and revoking a batch need a session, the
// session's CSRF token, a same-origin request and the batch id typed to
// confirm; only then is the admin tx signed and submitted.
func TestBatchActions(t *testing.T) {
	u, l, _ := fleetUI(t, true)
	fb := &fleetBatches{status: "pending"}
	u.ui.d.Batches = fb
	const approve = "/batches/lot-7/approve"
	anon := u.client()
	if code, _, h := u.do(anon, "GET", "/batches", nil); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Errorf("GET /batches without a session: %d %q", code, h.Get("Location"))
	}
	if code, _, _ := u.do(anon, "POST", approve, url.Values{"confirm": {"lot-7"}}); code != http.StatusUnauthorized {
		t.Errorf("POST %s without a session: %d, want 401", approve, code)
	}
	c := u.client()
	u.login(c, testPassword)
	csrf := u.csrf(c)
	code, body, _ := u.do(c, "GET", "/batches", nil)
	for _, want := range []string{`<tr data-batch="lot-7">`, `<span class="tag warn">pending</span>`, "2 of 120", `href="/batches/lot-7/approve"`, `<tr data-claim="th-zz">`} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET /batches: %d, lacks %q", code, want)
		}
	}
	for _, tt := range []struct {
		name   string
		form   url.Values
		header []string
		code   int
	}{
		{"no csrf", url.Values{"confirm": {"lot-7"}}, nil, http.StatusForbidden},
		{"wrong csrf", url.Values{"csrf": {"x" + csrf}, "confirm": {"lot-7"}}, nil, http.StatusForbidden},
		{"cross-site", url.Values{"csrf": {csrf}, "confirm": {"lot-7"}}, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"no confirmation", url.Values{"csrf": {csrf}}, nil, http.StatusBadRequest},
		{"wrong confirmation", url.Values{"csrf": {csrf}, "confirm": {"lot-"}}, nil, http.StatusBadRequest},
	} {
		for _, path := range []string{approve, "/batches/lot-7/revoke"} {
			if code, _, _ := u.do(c, "POST", path, tt.form, tt.header...); code != tt.code {
				t.Errorf("%s: POST %s: %d, want %d", tt.name, path, code, tt.code)
			}
		}
	}
	if code, _, _ := u.do(c, "GET", "/batches/lot-8/approve", nil); code != http.StatusNotFound {
		t.Errorf("an unknown batch: %d, want 404", code)
	}
	if txs := l.submitted(); len(txs) != 0 {
		t.Fatalf("refused requests submitted %d txs", len(txs))
	}
	code, _, h := u.do(c, "POST", approve, url.Values{"csrf": {csrf}, "confirm": {"lot-7"}})
	if code != http.StatusSeeOther || h.Get("Location") != "/batches?batch=lot-7&done=approved&height=7" {
		t.Fatalf("approve: %d to %q", code, h.Get("Location"))
	}
	fb.status = "approved"
	if code, _, _ := u.do(c, "POST", approve, url.Values{"csrf": {csrf}, "confirm": {"lot-7"}}); code != http.StatusConflict {
		t.Errorf("approving an approved batch: %d, want 409", code)
	}
	if code, _, _ := u.do(c, "POST", "/batches/lot-7/revoke", url.Values{"csrf": {csrf}, "confirm": {"lot-7"}, "reason": {"recall"}}); code != http.StatusSeeOther {
		t.Errorf("revoke: %d", code)
	}
	txs := l.submitted()
	if len(txs) != 2 || txs[0].Body.Kind != ledger.KindFleetApprove || txs[0].Body.FleetApprove.Batch != "lot-7" ||
		txs[1].Body.Kind != ledger.KindFleetRevoke || txs[1].Body.FleetRevoke.Batch != "lot-7" || txs[1].Body.FleetRevoke.Reason != "recall" {
		t.Fatalf("submitted %+v", txs)
	}
	// The batch's devices, 50 a page, filtered by claim.
	_, body, _ = u.do(c, "GET", "/batches/lot-7", nil)
	if n := strings.Count(body, "<tr data-device="); n != pageSize || !strings.Contains(body, `<tr data-device="th-aa">`) || !strings.Contains(body, `rel="next"`) {
		t.Errorf("the batch page lists %d devices", n)
	}
	_, body, _ = u.do(c, "GET", "/batches/lot-7?claimed=claimed", nil)
	if n := strings.Count(body, "<tr data-device="); n != 2 || !strings.Contains(body, `<a href="/devices/th-cs">th-cs</a>`) {
		t.Errorf("the claimed devices: %d\n%s", n, body)
	}
}
