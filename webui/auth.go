package webui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Bounds of the operator login.
const (
	minPasswordLen = 10
	maxPasswordLen = 72 // bcrypt uses the first 72 bytes only; refuse more rather than ignore them
	bcryptCost     = 11 // about 0.15 s on a Raspberry Pi 4

	maxSessions = 64 // the oldest is ended when one more logs in

	loginWindow       = 15 * time.Minute
	loginFailsPerAddr = 5  // failures from one address within loginWindow before it is refused
	loginFailsAll     = 50 // failures from all addresses within loginWindow before everyone is
	maxTrackedAddrs   = 1024
	maxChecking       = 2 // password checks at once; bcrypt is made to be slow
)

// Errors of the login.
var (
	errBadLogin     = errors.New("webui: wrong password")
	errTooMany      = errors.New("webui: too many failed logins")
	errBadSetup     = errors.New("webui: wrong setup token")
	errAlreadySetUp = errors.New("webui: the operator password is already set")
)

// HashPassword returns the bcrypt hash of an operator password, for
// webui.password_hash.
func HashPassword(pw string) (string, error) {
	if err := checkNewPassword(pw); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("webui: hash password: %w", err)
	}
	return string(h), nil
}

func checkNewPassword(pw string) error {
	switch {
	case len(pw) < minPasswordLen:
		return fmt.Errorf("webui: password too short: want at least %d characters", minPasswordLen)
	case len(pw) > maxPasswordLen:
		return fmt.Errorf("webui: password too long: want at most %d bytes", maxPasswordLen)
	}
	return nil
}

// session is one logged-in operator.
type session struct {
	id      string
	csrf    string // the token every form of this session carries
	created time.Time
	seen    time.Time
}

// auth holds the operator password, the one-time setup token, the
// sessions and the login rate limit.
type auth struct {
	idle, max time.Duration
	now       func() time.Time
	file      string // where a password set through setup is kept
	checking  chan struct{}

	mu       sync.Mutex
	hash     []byte // bcrypt; nil: not set up yet
	fromConf bool   // hash came from the config: setup is off
	token    string // one-time setup token; "" once used or when a password is set
	sessions map[string]*session
	fails    map[netip.Addr][]time.Time
	failsAll []time.Time
}

func newAuth(o Options, now func() time.Time) (*auth, error) {
	a := &auth{idle: o.SessionIdle, max: o.SessionMax, now: now, file: o.PasswordFile,
		checking: make(chan struct{}, maxChecking),
		sessions: map[string]*session{}, fails: map[netip.Addr][]time.Time{}}
	switch {
	case o.PasswordHash != "":
		if _, err := bcrypt.Cost([]byte(o.PasswordHash)); err != nil {
			return nil, fmt.Errorf("webui: password hash: %w", err)
		}
		a.hash, a.fromConf = []byte(o.PasswordHash), true
	case o.PasswordFile != "":
		b, err := os.ReadFile(o.PasswordFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			a.token = newToken()
		case err != nil:
			return nil, fmt.Errorf("webui: read operator password: %w", err)
		default:
			h := []byte(strings.TrimSpace(string(b)))
			if _, err := bcrypt.Cost(h); err != nil {
				return nil, fmt.Errorf("webui: %s is not a bcrypt hash (delete it to set a new password with a setup token): %w", o.PasswordFile, err)
			}
			a.hash = h
		}
	default:
		return nil, errors.New("webui: no password hash and no password file")
	}
	return a, nil
}

// newToken returns 128 random bits, base32 without padding.
func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// newID returns a 256-bit session id or CSRF token.
func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// setupToken returns the one-time setup token, "" when the password is set.
func (a *auth) setupToken() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.token
}

func (a *auth) needsSetup() bool { return a.setupToken() != "" }

// limited reports whether logins from addr are refused for now, and for
// how long.
func (a *auth) limited(addr netip.Addr) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.failsAll = recent(a.failsAll, now)
	fs := recent(a.fails[addr], now)
	if len(fs) == 0 {
		delete(a.fails, addr)
	} else {
		a.fails[addr] = fs
	}
	switch {
	case len(fs) >= loginFailsPerAddr:
		return true, fs[0].Add(loginWindow).Sub(now)
	case len(a.failsAll) >= loginFailsAll:
		return true, a.failsAll[0].Add(loginWindow).Sub(now)
	}
	return false, 0
}

// recent drops the times older than the login window.
func recent(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= loginWindow {
		i++
	}
	return ts[i:]
}

func (a *auth) failed(addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if _, ok := a.fails[addr]; !ok && len(a.fails) >= maxTrackedAddrs {
		for k := range a.fails { // forget one address; the global bound still holds
			delete(a.fails, k)
			break
		}
	}
	a.fails[addr] = append(a.fails[addr], now)
	a.failsAll = append(a.failsAll, now)
}

// login checks the password and starts a new session.
func (a *auth) login(addr netip.Addr, password string) (*session, error) {
	if ok, wait := a.limited(addr); ok {
		return nil, fmt.Errorf("%w: try again in %s", errTooMany, wait.Round(time.Second))
	}
	a.mu.Lock()
	hash := a.hash
	a.mu.Unlock()
	if hash == nil {
		return nil, errBadLogin
	}
	a.checking <- struct{}{}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	<-a.checking
	if err != nil {
		a.failed(addr)
		return nil, errBadLogin
	}
	return a.newSession(), nil
}

// setup sets the operator password with the one-time token and starts a
// session.
func (a *auth) setup(addr netip.Addr, token, password string) (*session, error) {
	if ok, wait := a.limited(addr); ok {
		return nil, fmt.Errorf("%w: try again in %s", errTooMany, wait.Round(time.Second))
	}
	if err := checkNewPassword(password); err != nil {
		return nil, err
	}
	a.mu.Lock()
	want := a.token
	a.mu.Unlock()
	if want == "" {
		return nil, errAlreadySetUp
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(strings.TrimSpace(token))), []byte(want)) != 1 {
		a.failed(addr)
		return nil, errBadSetup
	}
	h, err := HashPassword(password)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != want { // another request used it meanwhile
		return nil, errAlreadySetUp
	}
	if err := writeFile(a.file, []byte(h+"\n")); err != nil {
		return nil, err
	}
	a.hash, a.token = []byte(h), ""
	return a.newSessionLocked(), nil
}

func (a *auth) newSession() *session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.newSessionLocked()
}

// newSessionLocked starts a session with a new id: an id never outlives
// the login it was made for (no session fixation).
func (a *auth) newSessionLocked() *session {
	now := a.now()
	for id, s := range a.sessions {
		if a.expired(s, now) {
			delete(a.sessions, id)
		}
	}
	if len(a.sessions) >= maxSessions {
		var oldest *session
		for _, s := range a.sessions {
			if oldest == nil || s.created.Before(oldest.created) {
				oldest = s
			}
		}
		delete(a.sessions, oldest.id)
	}
	s := &session{id: newID(), csrf: newID(), created: now, seen: now}
	a.sessions[s.id] = s
	return s
}

func (a *auth) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) >= a.idle || now.Sub(s.created) >= a.max
}

// session returns the live session of id and marks it used; nil if there
// is none or it has expired.
func (a *auth) session(id string) *session {
	if id == "" {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[id]
	if !ok {
		return nil
	}
	now := a.now()
	if a.expired(s, now) {
		delete(a.sessions, id)
		return nil
	}
	s.seen = now
	c := *s
	return &c
}

// alive reports whether session id is live, without counting it as used:
// an open live page must not keep a session from going idle.
func (a *auth) alive(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[id]
	return ok && !a.expired(s, a.now())
}

func (a *auth) logout(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.sessions, id)
}

// writeFile writes data to path atomically, readable by its owner only.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".operator-*")
	if err != nil {
		return fmt.Errorf("webui: save operator password: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("webui: save operator password: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("webui: save operator password: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("webui: save operator password: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("webui: save operator password: %w", err)
	}
	return nil
}

// cookie names the session cookie. Over TLS, and on a loopback address
// (which browsers treat as a secure context), it is a __Host- cookie with
// Secure; over plain HTTP on the network a browser would drop such a
// cookie, so there it is a plain one and the pages say that the
// dashboard should be served over TLS.
type cookie struct {
	name   string
	secure bool
}

func cookieFor(r *http.Request) cookie {
	if r.TLS != nil || loopbackHost(r.Host) {
		return cookie{name: "__Host-ledgergate", secure: true}
	}
	return cookie{name: "ledgergate", secure: false}
}

func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}

func (c cookie) set(w http.ResponseWriter, id string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: c.name, Value: id, Path: "/", MaxAge: int(maxAge.Seconds()),
		Secure: c.secure, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

func (c cookie) clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: c.name, Value: "", Path: "/", MaxAge: -1,
		Secure: c.secure, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func (c cookie) get(r *http.Request) string {
	ck, err := r.Cookie(c.name)
	if err != nil {
		return ""
	}
	return ck.Value
}

// remoteAddr is the client's address, for the login rate limit.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
