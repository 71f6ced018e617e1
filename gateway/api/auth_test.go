package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// fakeLedger commits whatever it is given.
type fakeLedger struct{ submitted [][]byte }

func (f *fakeLedger) Decode(env []byte) (*ledger.Tx, error) {
	tx, err := ledger.DecodeTx(env, 64<<10)
	if errors.Is(err, ledger.ErrTooLarge) {
		return nil, ledger.Refuse(ledger.ReasonTooLarge, "%v", err)
	}
	if err != nil {
		return nil, ledger.Refuse(ledger.ReasonMalformed, "%v", err)
	}
	return tx, nil
}

func (f *fakeLedger) SubmitTx(_ context.Context, tx *ledger.Tx) (*ledger.Receipt, error) {
	f.submitted = append(f.submitted, tx.Envelope)
	return &ledger.Receipt{Tx: tx.Envelope}, nil
}
func (f *fakeLedger) Receipt([32]byte) (*ledger.Receipt, error) {
	return &ledger.Receipt{Tx: []byte{1}}, nil
}
func (f *fakeLedger) Block(uint64) (*ledger.Block, error) { return nil, index.ErrNotFound }

// fakeIndex knows one device.
type fakeIndex struct{}

var testDevice = index.Device{ID: "d1", Status: "active", LastSeq: 41, Records: 41, LastSeen: 1700000000000}

func (fakeIndex) PrunedHeight() (uint64, error)                              { return 0, nil }
func (fakeIndex) Base() (uint64, error)                                      { return 0, nil }
func (fakeIndex) Height() (uint64, error)                                    { return 1, nil }
func (fakeIndex) Counts() (index.Counts, error)                              { return index.Counts{Blocks: 1}, nil }
func (fakeIndex) Blocks(uint64, int) ([]index.BlockInfo, error)              { return nil, nil }
func (fakeIndex) TxsInBlock(uint64) ([]index.TxInfo, error)                  { return nil, nil }
func (fakeIndex) Tx([32]byte) (*index.TxInfo, error)                         { return nil, index.ErrNotFound }
func (fakeIndex) Devices(string, int) ([]index.Device, error)                { return []index.Device{testDevice}, nil }
func (fakeIndex) Records(string, uint64, int) ([]index.TxInfo, error)        { return nil, nil }
func (fakeIndex) QueryRecords(index.RecordQuery) ([]index.RecordInfo, error) { return nil, nil }
func (fakeIndex) Device(id string) (*index.Device, error) {
	if id != testDevice.ID {
		return nil, index.ErrNotFound
	}
	d := testDevice
	return &d, nil
}

// fakeDirectory answers a device's keys.
type fakeDirectory struct{ Directory }

func (fakeDirectory) KeysAnswer(string) (*ledger.KeysAnswer, *index.Device, error) {
	d := testDevice
	return &ledger.KeysAnswer{}, &d, nil
}

type testAPI struct {
	t      *testing.T
	s      *Server
	tokens *Tokens
	l      *fakeLedger
	admin  *ecdsa.PrivateKey
	device *ecdsa.PrivateKey
}

func newTestAPI(t *testing.T, p AuthPolicy) *testAPI {
	t.Helper()
	l := &fakeLedger{}
	s := New(NodeInfo{MaxTxBytes: 64 << 10}, l, fakeIndex{}, prometheus.NewRegistry(), quietLogger())
	s.SetDirectory(fakeDirectory{}, nil)
	s.SetMembership(proofBytes{0x80})
	a := &testAPI{t: t, s: s, l: l, tokens: openTestTokens(t)}
	p.Tokens = a.tokens
	if err := s.SetAuth(p); err != nil {
		t.Fatal(err)
	}
	s.Mount(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("dashboard")) }))
	a.admin, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a.device, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return a
}

func (a *testAPI) token(scopes ...Scope) string {
	a.t.Helper()
	tok, _, err := a.tokens.Create("test", scopes, 0)
	if err != nil {
		a.t.Fatal(err)
	}
	return tok
}

type answer struct {
	code   int
	reason string
	msg    string
	auth   string // WWW-Authenticate
	body   string
}

func (a *testAPI) do(method, path, token string, body []byte, hdr ...string) answer {
	a.t.Helper()
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	a.s.ServeHTTP(rec, r)
	var eb errorBody
	json.Unmarshal(rec.Body.Bytes(), &eb)
	return answer{rec.Code, eb.Reason, eb.Error, rec.Header().Get("WWW-Authenticate"), rec.Body.String()}
}

func (a *testAPI) sign(kind ledger.Kind) []byte {
	a.t.Helper()
	b := &ledger.Body{Kind: kind, ChainID: "c"}
	key, kid := a.admin, "admin"
	switch kind {
	case ledger.KindRecord:
		key, kid = a.device, "d1"
		b.Record = &ledger.Record{DeviceID: "d1", Stream: "s", Seq: 1, Time: 1}
	case ledger.KindRevoke:
		b.Revoke = &ledger.Revoke{DeviceID: "d1"}
	default:
		a.t.Fatalf("sign %s: not in this test", kind)
	}
	env, err := ledger.SignTx(key, kid, b)
	if err != nil {
		a.t.Fatal(err)
	}
	return env
}

func (a *testAPI) submit(env []byte, token string) answer {
	return a.do(http.MethodPost, "/api/v1/txs", token, env, "Content-Type", "application/cose")
}

// TestAuthReads: with tokens required, a read of records without a token
// is 401 unauthorized with WWW-Authenticate: Bearer; with a read:records
// token 200; with a read:ledger token 403 forbidden naming the scope it
// needs; once revoked 401 invalid_token; health stays open; the
// dashboard's paths are the dashboard's; an API path no rule names needs
// admin.
func TestAuthReads(t *testing.T) {
	a := newTestAPI(t, AuthPolicy{Required: true})
	records, ledgerTok, admin := a.token(ScopeReadRecords), a.token(ScopeReadLedger), a.token(ScopeAdmin)
	const path = "/api/v1/devices/d1/records"
	if got := a.do("GET", path, "", nil); got.code != 401 || got.reason != ReasonUnauthorized ||
		got.auth != `Bearer realm="ledgergate"` || !strings.Contains(got.msg, "read:records") {
		t.Errorf("no token: %+v", got)
	}
	if got := a.do("GET", path, records, nil); got.code != 200 {
		t.Errorf("read:records: %+v", got)
	}
	if got := a.do("GET", path, admin, nil); got.code != 200 {
		t.Errorf("admin: %+v", got)
	}
	if got := a.do("GET", path, ledgerTok, nil); got.code != 403 || got.reason != "forbidden" ||
		!strings.Contains(got.msg, "needs scope read:records") || !strings.Contains(got.auth, `error="insufficient_scope", scope="read:records"`) {
		t.Errorf("read:ledger token: %+v", got)
	}
	if got := a.do("GET", "/api/v1/status", ledgerTok, nil); got.code != 200 {
		t.Errorf("status with read:ledger: %+v", got)
	}
	// A submitter reads the status too: it signs with the chain id.
	if got := a.do("GET", "/api/v1/status", a.token(ScopeSubmit), nil); got.code != 200 {
		t.Errorf("status with submit: %+v", got)
	}
	if got := a.do("GET", "/api/v1/status", records, nil); got.code != 403 || !strings.Contains(got.msg, "needs scope read:ledger or submit") ||
		!strings.Contains(got.auth, `scope="read:ledger submit"`) {
		t.Errorf("status with read:records: %+v", got)
	}
	id, _ := TokenID(records)
	if _, err := a.tokens.Revoke(id); err != nil {
		t.Fatal(err)
	}
	if got := a.do("GET", path, records, nil); got.code != 401 || got.reason != ReasonUnauthorized ||
		!strings.Contains(got.auth, `error="invalid_token"`) || !strings.Contains(got.msg, id+" revoked") {
		t.Errorf("revoked: %+v", got)
	}
	if got := a.do("GET", path, records[:len(records)-1]+"x", nil); got.code != 401 || strings.Contains(got.body, records[17:]) {
		t.Errorf("wrong secret: %+v", got)
	}
	if got := a.do("GET", path, "", nil, "Authorization", "Basic YWRtaW46YWRtaW4="); got.code != 401 {
		t.Errorf("basic auth: %+v", got)
	}
	for _, p := range []string{"/healthz", "/metrics"} {
		if got := a.do("GET", p, "", nil); got.code != 200 {
			t.Errorf("%s without a token: %+v", p, got)
		}
	}
	if got := a.do("GET", "/devices", "", nil); got.code != 200 || got.body != "dashboard" {
		t.Errorf("dashboard path: %+v", got)
	}
	// Routes not on this server yet still have their rule (record
	// queries), and an API path no rule names needs admin.
	if got := a.do("GET", "/api/v1/records?device=d1", ledgerTok, nil); got.code != 403 || !strings.Contains(got.msg, "read:records") {
		t.Errorf("/api/v1/records: %+v", got)
	}
	if got := a.do("GET", "/api/v1/nothing", ledgerTok, nil); got.code != 403 || !strings.Contains(got.msg, "needs scope admin") {
		t.Errorf("unknown API path, read:ledger: %+v", got)
	}
	if got := a.do("GET", "/api/v1/nothing", admin, nil); got.code != 404 {
		t.Errorf("unknown API path, admin: %+v", got)
	}
	if got := a.do("DELETE", "/api/v1/devices/d1", "", nil); got.code != 401 {
		t.Errorf("another method: %+v", got)
	}
}

// TestAuthSubmitByKind: with tokens required, a submit token may submit
// a device's record but not an admin's revoke (403 forbidden, the message
// names the admin scope); an admin token may; without a token an admin
// tx is 401. With device paths open, a device submits its record without
// a token; with device_paths = "tokens" it needs the submit scope.
func TestAuthSubmitByKind(t *testing.T) {
	for _, devicePaths := range []bool{false, true} {
		a := newTestAPI(t, AuthPolicy{Required: true, DevicePaths: devicePaths})
		submit, records, admin := a.token(ScopeSubmit), a.token(ScopeReadRecords), a.token(ScopeAdmin)
		record, revoke := a.sign(ledger.KindRecord), a.sign(ledger.KindRevoke)
		if got := a.submit(revoke, submit); got.code != 403 || got.reason != "forbidden" || !strings.Contains(got.msg, "needs scope admin") {
			t.Errorf("device paths tokens %v: revoke with submit: %+v", devicePaths, got)
		}
		// Without a token: while devices' kinds are open the tx is read to
		// learn its kind; else it is refused before its body is read.
		wantMsg := "device.revoke tx needs an API token with scope admin"
		if devicePaths {
			wantMsg = "needs an API token with scope submit"
		}
		if got := a.submit(revoke, ""); got.code != 401 || !strings.Contains(got.msg, wantMsg) {
			t.Errorf("device paths tokens %v: revoke without a token: %+v", devicePaths, got)
		}
		if got := a.submit(record, submit); got.code != 200 {
			t.Errorf("device paths tokens %v: record with submit: %+v", devicePaths, got)
		}
		if got := a.submit(revoke, admin); got.code != 200 {
			t.Errorf("device paths tokens %v: revoke with admin: %+v", devicePaths, got)
		}
		want := 200
		if devicePaths {
			want = 401
		}
		if got := a.submit(record, ""); got.code != want {
			t.Errorf("device paths tokens %v: record without a token: %+v, want %d", devicePaths, got, want)
		}
		if got := a.submit(record, records); devicePaths && got.code != 403 {
			t.Errorf("device paths tokens %v: record with read:records: %+v", devicePaths, got)
		}
		if got := a.submit([]byte("not a tx"), submit); got.code != 400 || got.reason != "malformed" {
			t.Errorf("device paths tokens %v: garbage: %+v", devicePaths, got)
		}
		n := 0
		for _, env := range a.l.submitted {
			if bytes.Equal(env, revoke) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("device paths tokens %v: the revoke reached the ledger %d times, want once (with the admin token)", devicePaths, n)
		}
		if got := a.do("POST", "/api/v1/configs", submit, nil); got.code != 403 || !strings.Contains(got.msg, "needs scope admin") {
			t.Errorf("config upload with submit: %+v", got)
		}
	}
}

// TestAuthDevicePaths: the routes devices use (docs/protocol.md 13.4)
// answer without a token while device_paths is "open", and then show a
// device's keys without its activity; a read:records token sees it all.
func TestAuthDevicePaths(t *testing.T) {
	a := newTestAPI(t, AuthPolicy{Required: true})
	var body struct {
		LastSeq uint64 `json:"last_seq"`
		Records uint64 `json:"records"`
		ID      string `json:"id"`
	}
	got := a.do("GET", "/api/v1/devices/d1/keys", "", nil)
	json.Unmarshal([]byte(got.body), &body)
	if got.code != 200 || body.ID != "d1" || body.LastSeq != 0 || body.Records != 0 {
		t.Errorf("keys without a token: %d %+v", got.code, body)
	}
	got = a.do("GET", "/api/v1/devices/d1/keys", a.token(ScopeReadRecords), nil)
	json.Unmarshal([]byte(got.body), &body)
	if got.code != 200 || body.LastSeq != 41 || body.Records != 41 {
		t.Errorf("keys with read:records: %d %+v", got.code, body)
	}
	if got := a.do("GET", "/api/v1/txs/"+strings.Repeat("ab", 32)+"/receipt", "", nil); got.code != 200 {
		t.Errorf("receipt without a token: %+v", got)
	}
	closed := newTestAPI(t, AuthPolicy{Required: true, DevicePaths: true})
	if got := closed.do("GET", "/api/v1/devices/d1/keys", "", nil); got.code != 401 {
		t.Errorf("keys without a token, device_paths tokens: %+v", got)
	}
}

// TestAuthOffAndMetrics: without required tokens every route is open
// (the loopback default) and a token is not even looked at; metrics_token
// guards /metrics alone, with read:metrics.
func TestAuthOffAndMetrics(t *testing.T) {
	a := newTestAPI(t, AuthPolicy{Metrics: true})
	if got := a.do("GET", "/api/v1/devices/d1/records", "", nil); got.code != 200 {
		t.Errorf("records, tokens not required: %+v", got)
	}
	if got := a.submit(a.sign(ledger.KindRevoke), ""); got.code != 200 {
		t.Errorf("admin tx, tokens not required: %+v", got)
	}
	if got := a.do("GET", "/metrics", "", nil); got.code != 401 {
		t.Errorf("metrics without a token: %+v", got)
	}
	if got := a.do("GET", "/metrics", a.token(ScopeReadLedger), nil); got.code != 403 {
		t.Errorf("metrics with read:ledger: %+v", got)
	}
	if got := a.do("GET", "/metrics", a.token(ScopeMetrics), nil); got.code != 200 {
		t.Errorf("metrics with read:metrics: %+v", got)
	}
}

// TestAuthOperatorSession: a dashboard session counts as every scope for
// GET, not for a submit (which the session's cookie would otherwise
// allow to any page the browser opens on the same site).
func TestAuthOperatorSession(t *testing.T) {
	a := newTestAPI(t, AuthPolicy{Required: true, Operator: func(r *http.Request) bool {
		c, err := r.Cookie("session")
		return err == nil && c.Value == "live"
	}})
	if got := a.do("GET", "/api/v1/devices/d1/records", "", nil, "Cookie", "session=live"); got.code != 200 {
		t.Errorf("GET with a session: %+v", got)
	}
	if got := a.do("GET", "/api/v1/devices/d1/records", "", nil, "Cookie", "session=dead"); got.code != 401 {
		t.Errorf("GET with an ended session: %+v", got)
	}
	if got := a.do("POST", "/api/v1/txs", "", a.sign(ledger.KindRevoke), "Cookie", "session=live", "Content-Type", "application/cose"); got.code != 401 {
		t.Errorf("POST of an admin tx with a session: %+v", got)
	}
}

// TestRulesCoverRoutes: every route the server registers has its rule,
// with the same pattern, and every kind of tx has a scope.
func TestRulesCoverRoutes(t *testing.T) {
	a := newTestAPI(t, AuthPolicy{Required: true})
	a.s.SetFirmware(nil, nil)
	a.s.SetFleet(nil)
	for _, p := range a.s.routes {
		if _, ok := rules[p]; !ok {
			t.Errorf("route %q has no access rule in auth.go", p)
		}
	}
	for p := range rules {
		if !slices.Contains(a.s.routes, p) && p != "GET /api/v1/records" {
			t.Errorf("rule %q names no route", p)
		}
	}
	if sc, dev := KindScope(ledger.KindEnroll); sc != ScopeAdmin || dev {
		t.Errorf("device.enroll: %s %v", sc, dev)
	}
	if sc, _ := KindScope("device.frobnicate"); sc != ScopeAdmin {
		t.Errorf("an unknown kind needs %s, want admin", sc)
	}
}

// TestAuthStoreUnreadable: a token store that goes bad while the gateway
// runs fails closed: a request with a token is refused (500 internal, the
// log says why), not let through; fixed, the token works again.
func TestAuthStoreUnreadable(t *testing.T) {
	a := newTestAPI(t, AuthPolicy{Required: true})
	tok := a.token(ScopeReadRecords)
	good, err := os.ReadFile(a.tokens.Path())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(a.tokens.Path(), []byte("{"), 0o600)
	if got := a.do("GET", "/api/v1/devices", tok, nil); got.code != 500 || got.reason != "internal" {
		t.Errorf("a token against a corrupt store: %+v", got)
	}
	if got := a.do("GET", "/api/v1/devices", "", nil); got.code != 401 {
		t.Errorf("no token against a corrupt store: %+v", got)
	}
	os.WriteFile(a.tokens.Path(), good, 0o600)
	if got := a.do("GET", "/api/v1/devices", tok, nil); got.code != 200 {
		t.Errorf("a token once the store is fixed: %+v", got)
	}
}
