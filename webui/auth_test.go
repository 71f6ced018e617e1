package webui

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// The data the pages show does not matter to these tests, which are about
// the login: the index and the ledger are empty.
type emptyIndex struct{}

func (emptyIndex) Device(string) (*index.Device, error) { return nil, index.ErrNotFound }
func (emptyIndex) SearchDevices(string, string, int) ([]index.Device, error) {
	return nil, nil
}
func (emptyIndex) Records(string, uint64, int) ([]index.TxInfo, error) { return nil, nil }
func (emptyIndex) Blocks(uint64, int) ([]index.BlockInfo, error)       { return nil, nil }
func (emptyIndex) TxsInBlock(uint64) ([]index.TxInfo, error)           { return nil, nil }
func (emptyIndex) Tx([32]byte) (*index.TxInfo, error)                  { return nil, index.ErrNotFound }

type emptyLedger struct{}

func (emptyLedger) Submit(context.Context, []byte) (*ledger.Receipt, error) {
	return nil, errors.New("read only")
}
func (emptyLedger) Receipt([32]byte) (*ledger.Receipt, error)        { return nil, errors.New("none") }
func (emptyLedger) MembershipProof() (ledger.MembershipProof, error) { return nil, nil }

// clock is a fake clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const testPassword = "correct horse battery"

type testUI struct {
	t     *testing.T
	srv   *httptest.Server
	ui    *Server
	clock *clock
	dir   string
}

// newTestUI serves a dashboard whose operator password is testPassword,
// or, with setup, one that waits for its setup token.
func newTestUI(t *testing.T, setup bool) *testUI {
	t.Helper()
	c := &clock{now: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	o := Options{PasswordFile: filepath.Join(dir, "operator.hash"), SessionIdle: 15 * time.Minute, SessionMax: 8 * time.Hour}
	if !setup {
		h, err := HashPassword(testPassword)
		if err != nil {
			t.Fatal(err)
		}
		o.PasswordHash = h
	}
	ui, err := New(o, Deps{
		Status:  func() (api.Status, error) { return api.Status{NodeInfo: api.NodeInfo{NodeID: "node-1"}}, nil },
		Index:   emptyIndex{},
		Ledger:  emptyLedger{},
		Genesis: &ledger.Genesis{ChainID: "test"},
		Logger:  slog.New(slog.DiscardHandler),
		Now:     c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui)
	t.Cleanup(srv.Close)
	return &testUI{t: t, srv: srv, ui: ui, clock: c, dir: dir}
}

// client is a browser: it keeps cookies and does not follow redirects.
func (u *testUI) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (u *testUI) do(c *http.Client, method, path string, form url.Values, header ...string) (int, string, http.Header) {
	u.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u.srv.URL+path, body)
	if err != nil {
		u.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (u *testUI) login(c *http.Client, pw string) int {
	code, _, _ := u.do(c, "POST", "/login", url.Values{"password": {pw}})
	return code
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the form token of the session of c, from a page.
func (u *testUI) csrf(c *http.Client) string {
	u.t.Helper()
	code, body, _ := u.do(c, "GET", "/settings", nil)
	m := csrfRE.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		u.t.Fatalf("GET /settings: %d, no csrf token", code)
	}
	return m[1]
}

func TestLoginAndSession(t *testing.T) {
	u := newTestUI(t, false)
	c := u.client()
	if code, _, h := u.do(c, "GET", "/devices", nil); code != http.StatusSeeOther || h.Get("Location") != "/login?next=%2Fdevices" {
		t.Fatalf("GET /devices without a session: %d to %q, want 303 to the login", code, h.Get("Location"))
	}
	if code := u.login(c, "wrong password!"); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	if code, _, _ := u.do(c, "GET", "/", nil); code != http.StatusSeeOther {
		t.Fatalf("after a wrong password: GET / %d, want 303", code)
	}
	code, _, h := u.do(c, "POST", "/login", url.Values{"password": {testPassword}, "next": {"/ledger"}})
	if code != http.StatusSeeOther || h.Get("Location") != "/ledger" {
		t.Fatalf("login: %d to %q, want 303 to /ledger", code, h.Get("Location"))
	}
	// The cookie of a loopback address is a __Host- one: Secure, Path=/,
	// no Domain; HttpOnly and SameSite=Strict.
	sc := h.Get("Set-Cookie")
	for _, want := range []string{"__Host-ledgergate=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %q", sc, want)
		}
	}
	if strings.Contains(sc, "Domain") {
		t.Errorf("Set-Cookie %q has a Domain", sc)
	}
	if code, _, _ := u.do(c, "GET", "/", nil); code != http.StatusOK {
		t.Fatalf("GET / after login: %d", code)
	}
	// A login always makes a new session id.
	first := cookieValue(c, u.srv.URL)
	u.login(c, testPassword)
	if second := cookieValue(c, u.srv.URL); second == first || second == "" {
		t.Errorf("session id %q after a second login, want a new one (was %q)", second, first)
	}
	// An open redirect is not followed.
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		_, _, h := u.do(u.client(), "POST", "/login", url.Values{"password": {testPassword}, "next": {next}})
		if loc := h.Get("Location"); loc != "/" {
			t.Errorf("next=%q: redirect to %q, want /", next, loc)
		}
	}
}

func cookieValue(c *http.Client, base string) string {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "__Host-ledgergate" {
			return ck.Value
		}
	}
	return ""
}

func TestSessionTimeouts(t *testing.T) {
	u := newTestUI(t, false)
	c := u.client()
	if code := u.login(c, testPassword); code != http.StatusSeeOther {
		t.Fatalf("login: %d", code)
	}
	csrf := u.csrf(c)
	// Idle: used every 14 minutes, the session lives on...
	for range 3 {
		u.clock.add(14 * time.Minute)
		if code, _, _ := u.do(c, "GET", "/", nil); code != http.StatusOK {
			t.Fatalf("GET / after 14 idle minutes: %d, want 200", code)
		}
	}
	// ...and 15 idle minutes end it: pages go to the login, a POST and the
	// live stream are refused.
	u.clock.add(15 * time.Minute)
	if code, _, h := u.do(c, "GET", "/", nil); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Fatalf("GET / after 15 idle minutes: %d to %q, want 303 to the login", code, h.Get("Location"))
	}
	if code, _, _ := u.do(c, "POST", "/ledger/receipt", url.Values{"csrf": {csrf}, "receipt": {"00"}}); code != http.StatusUnauthorized {
		t.Fatalf("POST with an expired session: %d, want 401", code)
	}
	if code, _, _ := u.do(c, "GET", "/events", nil); code != http.StatusUnauthorized {
		t.Fatalf("GET /events with an expired session: %d, want 401", code)
	}

	// Absolute: a session in constant use ends 8 hours after its login.
	u.login(c, testPassword)
	for range 34 { // 34 * 14m = 7h56m
		u.clock.add(14 * time.Minute)
		if code, _, _ := u.do(c, "GET", "/", nil); code != http.StatusOK {
			t.Fatalf("GET / within 8 hours of the login: %d, want 200", code)
		}
	}
	u.clock.add(14 * time.Minute)
	if code, _, _ := u.do(c, "GET", "/", nil); code != http.StatusSeeOther {
		t.Fatalf("GET / 8h after the login: %d, want 303", code)
	}
}

func TestCSRF(t *testing.T) {
	u := newTestUI(t, false)
	c := u.client()
	u.login(c, testPassword)
	csrf := u.csrf(c)
	receipt := func(form url.Values, header ...string) int {
		code, _, _ := u.do(c, "POST", "/ledger/receipt", form, header...)
		return code
	}
	// The check itself: a receipt that is not one gets 400, past the guards.
	if code := receipt(url.Values{"csrf": {csrf}, "receipt": {"00"}}); code != http.StatusBadRequest {
		t.Fatalf("POST with the token: %d, want 400 (the receipt is bad)", code)
	}
	if code := receipt(url.Values{"receipt": {"00"}}); code != http.StatusForbidden {
		t.Errorf("POST without a CSRF token: %d, want 403", code)
	}
	if code := receipt(url.Values{"csrf": {csrf[:len(csrf)-1] + "x"}, "receipt": {"00"}}); code != http.StatusForbidden {
		t.Errorf("POST with a wrong CSRF token: %d, want 403", code)
	}
	// A cross-site POST is refused even with the token (say it leaked).
	if code := receipt(url.Values{"csrf": {csrf}, "receipt": {"00"}}, "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("cross-site POST (Sec-Fetch-Site): %d, want 403", code)
	}
	if code := receipt(url.Values{"csrf": {csrf}, "receipt": {"00"}}, "Origin", "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("cross-site POST (Origin): %d, want 403", code)
	}
	// So is a cross-site login (login CSRF) and a cross-site logout.
	code, _, _ := u.do(u.client(), "POST", "/login", url.Values{"password": {testPassword}}, "Sec-Fetch-Site", "cross-site")
	if code != http.StatusForbidden {
		t.Errorf("cross-site login: %d, want 403", code)
	}
	if code, _, _ := u.do(c, "POST", "/logout", url.Values{}); code != http.StatusForbidden {
		t.Errorf("logout without the token: %d, want 403", code)
	}
	if code, _, _ := u.do(c, "GET", "/", nil); code != http.StatusOK {
		t.Errorf("the session ended without a valid logout: GET / %d", code)
	}
	if code, _, _ := u.do(c, "POST", "/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("logout: %d, want 303", code)
	}
	if code, _, _ := u.do(c, "GET", "/", nil); code != http.StatusSeeOther {
		t.Errorf("GET / after logout: %d, want 303", code)
	}
}

func TestLoginRateLimit(t *testing.T) {
	u := newTestUI(t, false)
	c := u.client()
	for i := range loginFailsPerAddr {
		if code := u.login(c, "guess number "+string(rune('a'+i))); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, code)
		}
	}
	// Now even the right password is refused from this address...
	code, _, h := u.do(c, "POST", "/login", url.Values{"password": {testPassword}})
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("login after %d failures: %d (Retry-After %q), want 429 with Retry-After", loginFailsPerAddr, code, h.Get("Retry-After"))
	}
	// ...until the window has passed.
	u.clock.add(loginWindow)
	if code := u.login(c, testPassword); code != http.StatusSeeOther {
		t.Fatalf("login after the window: %d, want 303", code)
	}
}

func TestSetupToken(t *testing.T) {
	u := newTestUI(t, true)
	c := u.client()
	tok := u.ui.SetupToken()
	if len(tok) != 26 {
		t.Fatalf("setup token %q: want 26 base32 characters (128 bits)", tok)
	}
	if code, _, h := u.do(c, "GET", "/", nil); code != http.StatusSeeOther || h.Get("Location") != "/setup" {
		t.Fatalf("GET / before setup: %d to %q, want /setup", code, h.Get("Location"))
	}
	if code := u.login(c, testPassword); code != http.StatusUnauthorized {
		t.Fatalf("login before setup: %d, want 401", code)
	}
	setup := func(token, pw, confirm string) int {
		code, _, _ := u.do(c, "POST", "/setup", url.Values{"token": {token}, "password": {pw}, "confirm": {confirm}})
		return code
	}
	if code := setup("aaaaaaaaaaaaaaaaaaaaaaaaaa", testPassword, testPassword); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code := setup(tok, "short", "short"); code != http.StatusBadRequest {
		t.Errorf("short password: %d, want 400", code)
	}
	if code := setup(tok, testPassword, testPassword+"x"); code != http.StatusBadRequest {
		t.Errorf("passwords that differ: %d, want 400", code)
	}
	if code := setup(tok, testPassword, testPassword); code != http.StatusSeeOther {
		t.Fatalf("setup: %d, want 303", code)
	}
	if code, _, _ := u.do(c, "GET", "/", nil); code != http.StatusOK {
		t.Fatalf("GET / after setup: %d, want 200 (setup logs in)", code)
	}
	if u.ui.SetupToken() != "" {
		t.Error("the setup token is still valid after use")
	}
	if code := setup(tok, "another password", "another password"); code != http.StatusSeeOther {
		t.Errorf("a second setup: %d, want 303 to the login", code)
	}
	b, err := os.ReadFile(filepath.Join(u.dir, "operator.hash"))
	if err != nil || !strings.HasPrefix(string(b), "$2a$") {
		t.Fatalf("operator.hash: %q, %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(u.dir, "operator.hash")); fi.Mode().Perm() != 0o600 {
		t.Errorf("operator.hash mode %v, want 0600", fi.Mode().Perm())
	}
	// A dashboard built again from the file knows the password and wants
	// no setup.
	ui, err := New(Options{PasswordFile: filepath.Join(u.dir, "operator.hash"), SessionIdle: time.Minute, SessionMax: time.Hour}, u.ui.d)
	if err != nil || ui.SetupToken() != "" {
		t.Fatalf("New from the saved password: token %q, %v", ui.SetupToken(), err)
	}
	if _, err := ui.auth.login(remoteAddr(&http.Request{RemoteAddr: "127.0.0.1:1"}), testPassword); err != nil {
		t.Errorf("login with the saved password: %v", err)
	}
}

func TestCookieOverPlainHTTPOnTheNetwork(t *testing.T) {
	for _, tt := range []struct {
		host   string
		tls    bool
		name   string
		secure bool
	}{
		{"127.0.0.1:8080", false, "__Host-ledgergate", true},
		{"[::1]:8080", false, "__Host-ledgergate", true},
		{"localhost:8080", false, "__Host-ledgergate", true},
		{"192.168.1.20:8080", true, "__Host-ledgergate", true},
		{"192.168.1.20:8080", false, "ledgergate", false},
		{"gw.example:8080", false, "ledgergate", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = tt.host
		if tt.tls {
			r.TLS = &tlsState
		}
		if c := cookieFor(r); c.name != tt.name || c.secure != tt.secure {
			t.Errorf("%s tls=%v: cookie %+v, want %s secure=%v", tt.host, tt.tls, c, tt.name, tt.secure)
		}
	}
}

var tlsState = tls.ConnectionState{HandshakeComplete: true}

// TestLiveStreamDoesNotKeepSessionAlive: an open live page is no operator
// activity; when the session goes idle the stream says so and ends.
func TestLiveStreamDoesNotKeepSessionAlive(t *testing.T) {
	u := newTestUI(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go u.ui.Run(ctx)
	c := u.client()
	u.login(c, testPassword)
	req, _ := http.NewRequestWithContext(ctx, "GET", u.srv.URL+"/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- ev
			}
		}
	}()
	if ev := <-events; ev != "update" {
		t.Fatalf("first event %q, want update", ev)
	}
	u.clock.add(15 * time.Minute)
	deadline := time.After(30 * time.Second)
	for expired := false; !expired; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the stream ended without an expired event")
			}
			expired = ev == "expired"
		case <-deadline:
			t.Fatal("no expired event 30 s after the session went idle")
		}
	}
	if code, _, _ := u.do(c, "GET", "/", nil); code != http.StatusSeeOther {
		t.Errorf("GET / after 15 minutes with only the live page open: %d, want 303", code)
	}
}
