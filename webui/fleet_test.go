package webui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"github.com/ledgergate/ledgergate/gateway/api"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fleetIndex is a fleet of n devices: every third never reported, every
// fifth of the others reported an old version.
type fleetIndex struct {
	states []index.ConfigState
	calls  int
}

func newFleetIndex(n int) *fleetIndex {
	f := &fleetIndex{}
	for i := range n {
		s := index.ConfigState{Device: fmt.Sprintf("dev-%04d", i), Model: "th-2", Groups: []string{"fleet"},
			Target: "group:fleet", Version: 3, SHA256: "aa", Height: 9}
		switch {
		case i%3 == 0:
		case i%5 == 0:
			s.Reported, s.ReportedSHA256, s.ReportedHeight = 2, "bb", 8
		default:
			s.Reported, s.ReportedSHA256, s.ReportedHeight = 3, "aa", 10
		}
		f.states = append(f.states, s)
	}
	return f
}

func (f *fleetIndex) Height() (uint64, error) { return 12, nil }
func (f *fleetIndex) ConfigStates() ([]index.ConfigState, error) {
	f.calls++
	return f.states, nil
}
func (f *fleetIndex) FirmwareModels() ([]string, error) { return []string{"th-2"}, nil }
func (f *fleetIndex) ReleaseReports(string, uint64) (map[string]index.FirmwareReport, error) {
	return map[string]index.FirmwareReport{}, nil
}

// recordingLedger commits every tx it is given at height 7.
type recordingLedger struct {
	emptyLedger
	mu  sync.Mutex
	txs []*ledger.Tx
}

func (l *recordingLedger) Submit(_ context.Context, env []byte) (*ledger.Receipt, error) {
	tx, err := ledger.DecodeTx(env, 0)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.txs = append(l.txs, tx)
	return &ledger.Receipt{Header: ledger.Header{Height: 7}}, nil
}

func (l *recordingLedger) submitted() []*ledger.Tx {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*ledger.Tx(nil), l.txs...)
}

func fleetUI(t *testing.T, admin bool) (*testUI, *recordingLedger, *fleetIndex) {
	u := newTestUI(t, false)
	l := &recordingLedger{}
	f := newFleetIndex(120)
	u.ui.d.Ledger, u.ui.d.Fleet = l, f
	u.ui.d.Rollouts = func(model string, _ time.Time) ([]Release, error) {
		if model != "th-2" {
			return nil, nil
		}
		return []Release{{ReleaseInfo: index.ReleaseInfo{Model: "th-2", Version: 2, Vendor: "acme"}, Groups: []Rollout{{
			Group: "fleet", Policy: ledger.FirmwarePolicy{Group: "fleet", RequireApproval: true, Waves: []uint32{50, 100}, MaxFailurePct: 20},
			Allowed: true, Why: "approved by the owner", Approved: true, Halted: true,
			Waves: []Wave{{Percent: 50, Devices: 2, Reported: 2, Failed: 1, Open: true}, {Percent: 100, Devices: 2}}}}}}, nil
	}
	if admin {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		u.ui.d.Admin = &Admin{ID: "admin-1", Key: k}
	}
	return u, l, f
}

// TestRolloutActions: approve and halt need a session, the session's CSRF
// token, a same-origin request and the group's name typed to confirm;
// only then is the admin tx signed and submitted.
func TestRolloutActions(t *testing.T) {
	u, l, _ := fleetUI(t, true)
	const halt = "/rollouts/th-2/2/fleet/halt"
	// No session: a page goes to the login, an action is refused.
	anon := u.client()
	if code, _, h := u.do(anon, "GET", halt, nil); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Errorf("GET %s without a session: %d %q", halt, code, h.Get("Location"))
	}
	if code, _, _ := u.do(anon, "POST", halt, url.Values{"confirm": {"fleet"}}); code != http.StatusUnauthorized {
		t.Errorf("POST %s without a session: %d, want 401", halt, code)
	}
	c := u.client()
	u.login(c, testPassword)
	csrf := u.csrf(c)
	code, body, _ := u.do(c, "GET", halt, nil)
	if code != http.StatusOK || !strings.Contains(body, `name="confirm"`) || !strings.Contains(body, "firmware.revoke") {
		t.Fatalf("GET %s: %d\n%s", halt, code, body)
	}
	for _, tt := range []struct {
		name   string
		form   url.Values
		header []string
		code   int
	}{
		{"no csrf", url.Values{"confirm": {"fleet"}}, nil, http.StatusForbidden},
		{"wrong csrf", url.Values{"csrf": {csrf + "x"}, "confirm": {"fleet"}}, nil, http.StatusForbidden},
		{"cross-site", url.Values{"csrf": {csrf}, "confirm": {"fleet"}}, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"no confirmation", url.Values{"csrf": {csrf}}, nil, http.StatusBadRequest},
		{"wrong confirmation", url.Values{"csrf": {csrf}, "confirm": {"Fleet"}}, nil, http.StatusBadRequest},
	} {
		for _, path := range []string{halt, "/rollouts/th-2/2/fleet/approve"} {
			if code, _, _ := u.do(c, "POST", path, tt.form, tt.header...); code != tt.code {
				t.Errorf("%s: POST %s: %d, want %d", tt.name, path, code, tt.code)
			}
		}
	}
	if txs := l.submitted(); len(txs) != 0 {
		t.Fatalf("refused requests submitted %d txs", len(txs))
	}
	// The release is approved already: approving again is refused before
	// any tx; an unknown group is not found.
	if code, _, _ := u.do(c, "POST", "/rollouts/th-2/2/fleet/approve", url.Values{"csrf": {csrf}, "confirm": {"fleet"}}); code != http.StatusConflict {
		t.Errorf("approve an approved release: %d, want 409", code)
	}
	if code, _, _ := u.do(c, "GET", "/rollouts/th-2/2/other/halt", nil); code != http.StatusNotFound {
		t.Errorf("halt in a group without devices: %d, want 404", code)
	}
	code, _, h := u.do(c, "POST", halt, url.Values{"csrf": {csrf}, "confirm": {"fleet"}, "reason": {"boot loops"}})
	if code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "done=halted") {
		t.Fatalf("halt: %d to %q", code, h.Get("Location"))
	}
	txs := l.submitted()
	if len(txs) != 1 || txs[0].Body.FirmwareRevoke == nil || txs[0].Author != "admin-1" {
		t.Fatalf("halt submitted %+v", txs)
	}
	if r := txs[0].Body.FirmwareRevoke; r.Model != "th-2" || r.Version != 2 || r.Group != "fleet" || r.Reason != "boot loops" || txs[0].Body.ChainID != "test" {
		t.Errorf("halt revokes %+v", r)
	}
	_, body, _ = u.do(c, "GET", h.Get("Location"), nil)
	if !strings.Contains(body, "Halted th-2 version 2 in group fleet: revoked for the group in block 7.") {
		t.Errorf("after the halt the page lacks its flash:\n%s", body)
	}
}

// TestRolloutsReadOnly: without an admin key the page shows no action and
// refuses one.
func TestRolloutsReadOnly(t *testing.T) {
	u, l, _ := fleetUI(t, false)
	c := u.client()
	u.login(c, testPassword)
	code, body, _ := u.do(c, "GET", "/rollouts", nil)
	if code != http.StatusOK || strings.Contains(body, "/halt") || !strings.Contains(body, "holds no admin key") {
		t.Fatalf("GET /rollouts: %d\n%s", code, body)
	}
	for _, want := range []string{`data-release="th-2/2"`, `data-group="fleet"`, "halted by failures", `<td data-col="failed"><strong class="bad">1</strong>`,
		`<span class="tag bad">halted</span>`, `aria-label="50% installed, 50% failed"`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /rollouts lacks %q", want)
		}
	}
	if code, _, _ := u.do(c, "POST", "/rollouts/th-2/2/fleet/halt", url.Values{"csrf": {u.csrf(c)}, "confirm": {"fleet"}}); code != http.StatusForbidden {
		t.Errorf("halt without an admin key: %d, want 403", code)
	}
	if len(l.submitted()) != 0 {
		t.Error("a read-only dashboard submitted a tx")
	}
}

// TestDriftPage: counts, filters and pages over the fleet, read from the
// index once per height.
func TestDriftPage(t *testing.T) {
	u, _, f := fleetUI(t, false)
	c := u.client()
	u.login(c, testPassword)
	code, body, _ := u.do(c, "GET", "/drift", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /drift: %d", code)
	}
	// 120 devices: 40 never reported (i%3 == 0), 16 behind (i%5 == 0 of the others), 64 current.
	for _, want := range []string{`data-count="all">120<`, `data-count="never">40<`, `data-count="behind">16<`, `data-count="current">64<`,
		`data-target="group:fleet"`, "120 devices match.", `rel="next"`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /drift lacks %q", want)
		}
	}
	if n := strings.Count(body, "<tr data-device="); n != pageSize {
		t.Errorf("the first page lists %d devices, want %d", n, pageSize)
	}
	code, body, _ = u.do(c, "GET", "/drift?state=never&after=dev-0100", nil)
	if code != http.StatusOK || !strings.Contains(body, "40 devices match.") || strings.Contains(body, `rel="next"`) {
		t.Fatalf("never, after dev-0100: %d\n%s", code, body)
	}
	// 102, 105, ..., 117: six.
	if n := strings.Count(body, "<tr data-device="); n != 6 || !strings.Contains(body, `data-device="dev-0102"`) || strings.Contains(body, `data-device="dev-0099"`) {
		t.Errorf("never after dev-0100 lists %d devices", n)
	}
	if !strings.Contains(body, `<span class="tag bad">never reported</span>`) {
		t.Error("a device that never reported is not shown as such")
	}
	code, body, _ = u.do(c, "GET", "/drift?state=behind&q=dev-001", nil)
	if code != http.StatusOK || !strings.Contains(body, "1 device matches.") || !strings.Contains(body, `data-device="dev-0010"`) {
		t.Errorf("behind, dev-001: %d", code)
	}
	if code, _, _ := u.do(c, "GET", "/drift?state=bogus", nil); code != http.StatusBadRequest {
		t.Errorf("a bogus state: %d, want 400", code)
	}
	if f.calls != 1 {
		t.Errorf("four pages at one height read the index %d times, want once", f.calls)
	}
}

// BenchmarkDriftPage: a page of the drift of 10,000 devices, filtered by
// state, at one height (the index read is cached; this is the filter,
// the counts and the rendering).
func BenchmarkDriftPage(b *testing.B) {
	h, err := HashPassword(testPassword)
	if err != nil {
		b.Fatal(err)
	}
	f := newFleetIndex(10_000)
	ui, err := New(Options{PasswordHash: h, SessionIdle: time.Minute, SessionMax: time.Hour}, Deps{
		Status: func() (api.Status, error) { return api.Status{}, nil },
		Index:  emptyIndex{}, Ledger: emptyLedger{}, Genesis: &ledger.Genesis{ChainID: "test"},
		Logger: slog.New(slog.DiscardHandler), Fleet: f,
	})
	if err != nil {
		b.Fatal(err)
	}
	ss, err := ui.auth.login(netip.MustParseAddr("127.0.0.1"), testPassword)
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://127.0.0.1/drift?state=never&after=dev-05000", nil)
	req.AddCookie(&http.Cookie{Name: "__Host-ledgergate", Value: ss.id})
	for b.Loop() {
		w := httptest.NewRecorder()
		ui.ServeHTTP(w, req)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "3334 devices match.") {
			b.Fatalf("%d %.300s", w.Code, w.Body.String())
		}
	}
}
