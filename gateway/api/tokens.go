package api

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
)

// API tokens (docs/api.md, "Authentication"). A token is the string
// lgt_<id>_<secret>: id is 12 hex digits, visible in logs, lists and
// revocations; secret is 256 random bits in lowercase base32. The store
// keeps only the SHA-256 of the whole string, in a JSON file of the data
// directory (TokensFile), written atomically with fsync, mode 0600.
// Whoever changes the file (the gateway's dashboard, the CLI) takes an
// exclusive flock on TokensFile+".lock" and reads, changes and writes it
// under that lock; a running gateway sees the change on the next request
// (it compares the file's inode, size and times on each check).

// TokensFile is the token store's file name in the data directory.
const TokensFile = "api-tokens.json"

// Scope is what a token may do.
type Scope string

// The scopes. Admin implies every other scope.
const (
	ScopeReadRecords Scope = "read:records" // records and device data
	ScopeReadLedger  Scope = "read:ledger"  // blocks, txs, receipts, status, firmware releases
	ScopeSubmit      Scope = "submit"       // submit txs of non-admin kinds
	ScopeMetrics     Scope = "read:metrics" // /metrics when api.metrics_token is set
	ScopeAdmin       Scope = "admin"        // txs of admin kinds, and everything else
)

// Scopes lists every scope, in the order the CLI and the dashboard show
// them.
var Scopes = []Scope{ScopeReadRecords, ScopeReadLedger, ScopeSubmit, ScopeMetrics, ScopeAdmin}

// ParseScope checks a scope's name.
func ParseScope(s string) (Scope, error) {
	if slices.Contains(Scopes, Scope(s)) {
		return Scope(s), nil
	}
	names := make([]string, len(Scopes))
	for i, sc := range Scopes {
		names[i] = string(sc)
	}
	return "", fmt.Errorf("api: unknown scope %q: want one of %s", s, strings.Join(names, ", "))
}

// Token is one API token as the store keeps it: never its secret.
type Token struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Scopes  []Scope   `json:"scopes"`
	SHA256  string    `json:"sha256"` // hex SHA-256 of the whole token string
	Created time.Time `json:"created"`
	// Expires is when the token stops working; zero: never.
	Expires time.Time `json:"expires,omitzero"`
	// LastUsed is coarse: it is written at most every LastUsedEvery.
	LastUsed time.Time `json:"last_used,omitzero"`
	// Revoked is when it was revoked; zero: it was not.
	Revoked time.Time `json:"revoked,omitzero"`
}

// Has reports whether the token grants scope (admin grants every scope).
func (t *Token) Has(scope Scope) bool {
	return slices.Contains(t.Scopes, scope) || slices.Contains(t.Scopes, ScopeAdmin)
}

// State is "active", "revoked" or "expired" at now.
func (t *Token) State(now time.Time) string {
	switch {
	case !t.Revoked.IsZero():
		return "revoked"
	case !t.Expires.IsZero() && !now.Before(t.Expires):
		return "expired"
	}
	return "active"
}

// LastUsedEvery is how coarse a token's LastUsed is: a use is written to
// the file only when the last one written is older than this.
const LastUsedEvery = 10 * time.Minute

// Bounds of the store.
const (
	maxTokenName  = 64
	maxTokens     = 1000
	maxTokensFile = 4 << 20
	tokenIDBytes  = 6
	tokenPrefix   = "lgt_"
)

// Errors of the token store. ErrBadToken covers a token that is
// malformed, unknown or whose secret is wrong: the answer does not say
// which.
var (
	ErrBadToken     = errors.New("api: unknown or wrong API token")
	ErrTokenRevoked = errors.New("api: API token revoked")
	ErrTokenExpired = errors.New("api: API token expired")
	ErrNoSuchToken  = errors.New("api: no such API token")
	// ErrTokenStore wraps why the store's file cannot be read now: every
	// token is refused until it can (fail closed).
	ErrTokenStore = errors.New("api: token store unreadable")
)

// tokenFile is the JSON of the store's file.
type tokenFile struct {
	Version int     `json:"version"`
	Tokens  []Token `json:"tokens"`
}

// fileStamp tells whether the file changed since it was read: each write
// renames a new file into place.
type fileStamp struct {
	ino, size    int64
	mtime, ctime int64
	exists       bool
}

// Tokens is the token store of one data directory.
type Tokens struct {
	path   string
	logger *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	byID   map[string]Token
	stamp  fileStamp
	err    error                // why the file as it is cannot be read; nil if it can
	logged error                // the err last logged
	tried  map[string]time.Time // when a token's last use was last written (or tried)
}

// OpenTokens reads the store at path (a missing file is an empty store).
// A file that cannot be read or is not a valid store is an error: the
// gateway does not start on it rather than open its API.
func OpenTokens(path string, logger *slog.Logger) (*Tokens, error) {
	s := &Tokens{path: path, logger: logger, now: time.Now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloadLocked()
	if s.err != nil {
		return nil, s.err
	}
	return s, nil
}

// Path is the store's file.
func (s *Tokens) Path() string { return s.path }

// SetClock replaces time.Now (tests).
func (s *Tokens) SetClock(now func() time.Time) { s.now = now }

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), exists: true}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = int64(sys.Ino)
		st.ctime = sys.Ctim.Nano()
	}
	return st
}

// reloadLocked reads the file again if it changed since it was read.
func (s *Tokens) reloadLocked() {
	fi, err := os.Stat(s.path)
	var st fileStamp
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		s.fail(fmt.Errorf("%w: %w", ErrTokenStore, err))
		return
	default:
		st = stampOf(fi)
	}
	if st == s.stamp && s.byID != nil {
		return
	}
	f, err := readTokenFile(s.path)
	if err != nil {
		s.fail(err)
		return
	}
	s.byID = map[string]Token{}
	for _, t := range f.Tokens {
		s.byID[t.ID] = t
	}
	s.stamp, s.err, s.logged = st, nil, nil
}

// fail makes every check fail with err until the file is readable again.
func (s *Tokens) fail(err error) {
	s.err, s.byID, s.stamp = err, nil, fileStamp{}
	if s.logger != nil && (s.logged == nil || s.logged.Error() != err.Error()) {
		s.logger.Error("api token store unreadable: every API token is refused until it is fixed", "file", s.path, "err", err)
		s.logged = err
	}
}

// readTokenFile reads and checks a store file; a missing one is empty.
func readTokenFile(path string) (*tokenFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &tokenFile{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokenStore, err)
	}
	if len(b) > maxTokensFile {
		return nil, fmt.Errorf("%w: %s: %d bytes, at most %d", ErrTokenStore, path, len(b), maxTokensFile)
	}
	var f tokenFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s: %w (fix it, or remove it to revoke every token)", ErrTokenStore, path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s: data after the JSON object", ErrTokenStore, path)
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w (fix it, or remove it to revoke every token)", ErrTokenStore, path, err)
	}
	return &f, nil
}

func (f *tokenFile) check() error {
	if f.Version != 1 {
		return fmt.Errorf("version %d, want 1", f.Version)
	}
	if len(f.Tokens) > maxTokens {
		return fmt.Errorf("%d tokens, at most %d", len(f.Tokens), maxTokens)
	}
	seen := map[string]bool{}
	var errs []error
	for i, t := range f.Tokens {
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("token %d (%q): %s", i, t.ID, fmt.Sprintf(format, a...)))
		}
		if !validTokenID(t.ID) {
			bad("id: want %d hex digits", 2*tokenIDBytes)
		}
		if seen[t.ID] {
			bad("id used twice")
		}
		seen[t.ID] = true
		if err := checkTokenName(t.Name); err != nil {
			bad("%v", err)
		}
		if h, err := hex.DecodeString(t.SHA256); err != nil || len(h) != sha256.Size {
			bad("sha256: want 64 hex digits")
		}
		if len(t.Scopes) == 0 {
			bad("no scopes")
		}
		for _, sc := range t.Scopes {
			if _, err := ParseScope(string(sc)); err != nil {
				bad("%v", err)
			}
		}
		if t.Created.IsZero() {
			bad("no created time")
		}
	}
	return errors.Join(errs...)
}

func validTokenID(id string) bool {
	if len(id) != 2*tokenIDBytes {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func checkTokenName(n string) error {
	if n == "" || len(n) > maxTokenName {
		return fmt.Errorf("name %q: want 1 to %d characters", n, maxTokenName)
	}
	for _, r := range n {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("name %q: only printable characters", n)
		}
	}
	return nil
}

// TokenID returns the id of a presented token string, for logs: never
// the secret. ok is false if it is not of the form lgt_<id>_<secret>.
func TokenID(tok string) (id string, ok bool) {
	rest, found := strings.CutPrefix(tok, tokenPrefix)
	if !found {
		return "", false
	}
	id, secret, found := strings.Cut(rest, "_")
	if !found || !validTokenID(id) || secret == "" {
		return "", false
	}
	return id, true
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// Check returns the token that tok is, if it is active. It reads the
// store's file again if it changed. A use is written (coarsely, see
// LastUsedEvery) to the file.
func (s *Tokens) Check(tok string) (Token, error) {
	id, ok := TokenID(tok)
	if !ok {
		return Token{}, ErrBadToken
	}
	s.mu.Lock()
	s.reloadLocked()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return Token{}, err
	}
	t, found := s.byID[id]
	now := s.now()
	noteUse := found && now.Sub(t.LastUsed) >= LastUsedEvery && now.Sub(s.tried[id]) >= LastUsedEvery
	if noteUse {
		if s.tried == nil {
			s.tried = map[string]time.Time{}
		}
		s.tried[id] = now
	}
	s.mu.Unlock()
	want, _ := hex.DecodeString(t.SHA256)
	got := hashToken(tok)
	if !found {
		want = make([]byte, sha256.Size) // compare anyway: the same work either way
	}
	if subtle.ConstantTimeCompare(got, want) != 1 || !found {
		return Token{}, ErrBadToken
	}
	switch t.State(now) {
	case "revoked":
		return t, ErrTokenRevoked
	case "expired":
		return t, ErrTokenExpired
	}
	if noteUse {
		s.noteUse(id, now)
	}
	return t, nil
}

// noteUse writes a token's last use; a failure is logged, the request
// goes on (the last use is a hint for operators, not a control).
func (s *Tokens) noteUse(id string, now time.Time) {
	err := s.update(func(f *tokenFile) error {
		for i := range f.Tokens {
			if f.Tokens[i].ID == id && now.After(f.Tokens[i].LastUsed) {
				f.Tokens[i].LastUsed = now.UTC().Truncate(time.Second)
			}
		}
		return nil
	})
	if err != nil && s.logger != nil {
		s.logger.Warn("api token: cannot record its last use", "token", id, "err", err)
	}
}

// List returns every token, newest first.
func (s *Tokens) List() ([]Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloadLocked()
	if s.err != nil {
		return nil, s.err
	}
	ts := make([]Token, 0, len(s.byID))
	for _, t := range s.byID {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b Token) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return ts, nil
}

// Create makes a token with name and scopes that expires after ttl (0:
// never). It returns the token string, which is shown once and never
// kept, and the token as stored.
func (s *Tokens) Create(name string, scopes []Scope, ttl time.Duration) (string, Token, error) {
	name = strings.TrimSpace(name)
	if err := checkTokenName(name); err != nil {
		return "", Token{}, fmt.Errorf("api: token %w", err)
	}
	if len(scopes) == 0 {
		return "", Token{}, errors.New("api: a token needs at least one scope")
	}
	var sc []Scope
	for _, x := range scopes {
		if _, err := ParseScope(string(x)); err != nil {
			return "", Token{}, err
		}
		if !slices.Contains(sc, x) {
			sc = append(sc, x)
		}
	}
	if ttl < 0 {
		return "", Token{}, fmt.Errorf("api: token lifetime %s: want 0 (never expires) or more", ttl)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	now := s.now().UTC().Truncate(time.Second)
	var tok string
	var t Token
	err := s.update(func(f *tokenFile) error {
		if len(f.Tokens) >= maxTokens {
			return fmt.Errorf("api: %d tokens already: remove revoked ones from %s first", len(f.Tokens), s.path)
		}
		for {
			idb := make([]byte, tokenIDBytes)
			rand.Read(idb)
			id := hex.EncodeToString(idb)
			if !slices.ContainsFunc(f.Tokens, func(x Token) bool { return x.ID == id }) {
				tok = tokenPrefix + id + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret))
				t = Token{ID: id, Name: name, Scopes: sc, SHA256: hex.EncodeToString(hashToken(tok)), Created: now}
				break
			}
		}
		if ttl > 0 {
			t.Expires = now.Add(ttl)
		}
		f.Tokens = append(f.Tokens, t)
		return nil
	})
	if err != nil {
		return "", Token{}, err
	}
	return tok, t, nil
}

// Revoke revokes the token id for good; revoking it again is no error.
func (s *Tokens) Revoke(id string) (Token, error) {
	var t Token
	err := s.update(func(f *tokenFile) error {
		for i := range f.Tokens {
			if f.Tokens[i].ID == id {
				if f.Tokens[i].Revoked.IsZero() {
					f.Tokens[i].Revoked = s.now().UTC().Truncate(time.Second)
				}
				t = f.Tokens[i]
				return nil
			}
		}
		return fmt.Errorf("%w: %q", ErrNoSuchToken, id)
	})
	return t, err
}

// update reads the file under its lock, applies change and writes it.
func (s *Tokens) update(change func(*tokenFile) error) error {
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	f, err := readTokenFile(s.path)
	if err != nil {
		return err
	}
	if err := change(f); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("api: encode tokens: %w", err)
	}
	if err := writeFileAtomic(s.path, append(b, '\n')); err != nil {
		return err
	}
	s.mu.Lock()
	s.reloadLocked()
	s.mu.Unlock()
	return nil
}

// lockFile takes an exclusive flock on path (created if needed) and
// returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("api: lock tokens: %w", err)
	}
	chownLikeDir(f, filepath.Dir(path))
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("api: lock tokens: %w", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// chownLikeDir gives f the owner of dir when root writes it (the CLI run
// with sudo), so that the gateway, which runs as the data directory's
// owner, can read it.
func chownLikeDir(f *os.File, dir string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		f.Chown(int(st.Uid), int(st.Gid))
	}
}

// writeFileAtomic writes data to path: a temporary file, fsync, rename,
// fsync of the directory. The file is readable by its owner only.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("api: save tokens: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	chownLikeDir(tmp, dir)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("api: save tokens: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("api: save tokens: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("api: save tokens: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("api: save tokens: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("api: save tokens: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("api: save tokens: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("api: save tokens: %w", err)
	}
	return nil
}
