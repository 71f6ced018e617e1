package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTestTokens(t *testing.T) *Tokens {
	t.Helper()
	s, err := OpenTokens(filepath.Join(t.TempDir(), TokensFile), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenStoreKeepsOnlyAHash: a created token checks; the file holds
// its SHA-256 and never the secret, is 0600, and lists the token; a token
// with one character changed, another prefix, or an unknown id does not
// check.
func TestTokenStoreKeepsOnlyAHash(t *testing.T) {
	s := openTestTokens(t)
	tok, made, err := s.Create("grafana", []Scope{ScopeReadRecords, ScopeReadRecords}, 0)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := TokenID(tok)
	if !ok || id != made.ID || !strings.HasPrefix(tok, "lgt_"+made.ID+"_") || len(tok) != len("lgt_")+12+1+52 {
		t.Fatalf("token %q (id %q, %v) for %+v", tok, id, ok, made)
	}
	if len(made.Scopes) != 1 {
		t.Errorf("scopes %v: want the duplicate dropped", made.Scopes)
	}
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	secret := tok[len("lgt_")+13:]
	sum := sha256.Sum256([]byte(tok))
	if strings.Contains(string(b), secret) || !strings.Contains(string(b), hex.EncodeToString(sum[:])) {
		t.Fatalf("the file holds the secret, or not its hash:\n%s", b)
	}
	fi, _ := os.Stat(s.Path())
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := s.Check(tok)
	if err != nil || got.ID != made.ID || !got.Has(ScopeReadRecords) || got.Has(ScopeSubmit) {
		t.Fatalf("Check = %+v, %v", got, err)
	}
	flip := []byte(tok)
	flip[len(flip)-1] ^= 1
	for _, bad := range []string{string(flip), "lgx_" + tok[4:], "lgt_000000000000_" + secret, "", "lgt_" + made.ID, tok + "x"} {
		if _, err := s.Check(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("Check(%q) = %v, want ErrBadToken", bad, err)
		}
	}
	// A second store on the same file (another process) sees it.
	other, err := OpenTokens(s.Path(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := other.List(); err != nil || len(ts) != 1 || ts[0].Name != "grafana" {
		t.Fatalf("List = %+v, %v", ts, err)
	}
}

// TestTokenRevokeSeenByAnotherStore: a token revoked through one store
// (the CLI) is refused at once by another that had checked it (the
// gateway), without a restart; revoking twice keeps the first time; an
// unknown id is an error.
func TestTokenRevokeSeenByAnotherStore(t *testing.T) {
	gw := openTestTokens(t)
	tok, made, err := gw.Create("ci", []Scope{ScopeSubmit}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Check(tok); err != nil {
		t.Fatal(err)
	}
	cli, err := OpenTokens(gw.Path(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	rv, err := cli.Revoke(made.ID)
	if err != nil || rv.Revoked.IsZero() {
		t.Fatalf("Revoke = %+v, %v", rv, err)
	}
	if _, err := gw.Check(tok); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("after revoke: Check = %v, want ErrTokenRevoked", err)
	}
	again, err := cli.Revoke(made.ID)
	if err != nil || !again.Revoked.Equal(rv.Revoked) {
		t.Errorf("revoke again: %+v, %v", again, err)
	}
	if _, err := cli.Revoke("0123456789ab"); !errors.Is(err, ErrNoSuchToken) {
		t.Errorf("revoke unknown: %v", err)
	}
	ts, _ := gw.List()
	if len(ts) != 1 || ts[0].State(time.Now()) != "revoked" {
		t.Errorf("List = %+v", ts)
	}
}

// TestTokenExpiryAndLastUse: a token works until its expiry and not from
// then on; its last use is written, coarsely.
func TestTokenExpiryAndLastUse(t *testing.T) {
	s := openTestTokens(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	tok, made, err := s.Create("short", []Scope{ScopeReadLedger}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !made.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("expires %v", made.Expires)
	}
	if _, err := s.Check(tok); err != nil {
		t.Fatal(err)
	}
	ts, _ := s.List()
	if !ts[0].LastUsed.Equal(now) {
		t.Errorf("last used %v, want %v", ts[0].LastUsed, now)
	}
	now = now.Add(time.Minute)
	s.Check(tok)
	ts, _ = s.List()
	if !ts[0].LastUsed.Equal(now.Add(-time.Minute)) {
		t.Errorf("a use a minute later was written: last used %v", ts[0].LastUsed)
	}
	now = now.Add(time.Hour)
	if _, err := s.Check(tok); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("after expiry: %v", err)
	}
	if _, _, err := s.Create("bad", []Scope{"write:all"}, 0); err == nil {
		t.Error("an unknown scope was accepted")
	}
	if _, _, err := s.Create("", []Scope{ScopeAdmin}, 0); err == nil {
		t.Error("an empty name was accepted")
	}
	if _, _, err := s.Create("none", nil, 0); err == nil {
		t.Error("a token without scopes was accepted")
	}
}

// TestTokenStoreCorrupt: a file that is not a valid store is an error
// naming the file at open (the gateway does not start), and a store whose
// file goes bad while running refuses every token until it is fixed.
func TestTokenStoreCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, TokensFile)
	for name, content := range map[string]string{
		"truncated":     `{"version": 1, "tokens": [`,
		"unknown field": `{"version": 1, "tokens": [], "admin": true}`,
		"version":       `{"version": 2, "tokens": []}`,
		"bad hash":      `{"version": 1, "tokens": [{"id": "0123456789ab", "name": "x", "scopes": ["admin"], "sha256": "00", "created": "2026-01-01T00:00:00Z"}]}`,
		"bad scope":     `{"version": 1, "tokens": [{"id": "0123456789ab", "name": "x", "scopes": ["root"], "sha256": "` + strings.Repeat("0", 64) + `", "created": "2026-01-01T00:00:00Z"}]}`,
		"trailing":      `{"version": 1, "tokens": []} {}`,
	} {
		os.WriteFile(path, []byte(content), 0o600)
		_, err := OpenTokens(path, quietLogger())
		if !errors.Is(err, ErrTokenStore) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: OpenTokens = %v, want ErrTokenStore naming the file", name, err)
		}
	}
	os.Remove(path)
	s, err := OpenTokens(path, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.Create("x", []Scope{ScopeAdmin}, 0)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	os.WriteFile(path, good[:len(good)/2], 0o600)
	if _, err := s.Check(tok); !errors.Is(err, ErrTokenStore) {
		t.Fatalf("a token checked against a corrupt file: %v", err)
	}
	if _, _, err := s.Create("y", []Scope{ScopeAdmin}, 0); !errors.Is(err, ErrTokenStore) {
		t.Fatalf("a token created over a corrupt file: %v", err)
	}
	os.WriteFile(path, good, 0o600)
	if _, err := s.Check(tok); err != nil {
		t.Fatalf("after the file was fixed: %v", err)
	}
}

// TestTokenStoreConcurrentWriters: stores in parallel (the CLI and the
// gateway) creating tokens lose none of them: each write is a locked
// read-change-write of the whole file.
func TestTokenStoreConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), TokensFile)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w := 0; w < 4; w++ {
		s, err := OpenTokens(path, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, _, err := s.Create("w", []Scope{ScopeReadLedger}, 0); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, err := OpenTokens(path, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if ts, _ := s.List(); len(ts) != 40 {
		t.Fatalf("%d tokens after 40 creates", len(ts))
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+TokensFile+"-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// FuzzTokenCheck: a presented token (the Authorization header's bytes)
// never makes Check panic, and nothing but the token itself checks.
func FuzzTokenCheck(f *testing.F) {
	s, err := OpenTokens(filepath.Join(f.TempDir(), TokensFile), quietLogger())
	if err != nil {
		f.Fatal(err)
	}
	tok, _, err := s.Create("fuzz", []Scope{ScopeAdmin}, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(tok[:17] + strings.Repeat("a", 52))
	f.Add("lgt__")
	f.Add("lgt_" + tok[4:16] + "_")
	f.Fuzz(func(t *testing.T, presented string) {
		if len(presented) > 1024 {
			return
		}
		_, err := s.Check(presented)
		if (err == nil) != (presented == tok) {
			t.Fatalf("Check(%q) = %v", presented, err)
		}
	})
}

// FuzzTokenFile: no file content makes reading the store panic, and what
// it accepts passes its own checks when written back.
func FuzzTokenFile(f *testing.F) {
	f.Add([]byte(`{"version": 1, "tokens": []}`))
	f.Add([]byte(`{"version": 1, "tokens": [{"id": "0123456789ab", "name": "x", "scopes": ["admin"], "sha256": "` +
		strings.Repeat("0", 64) + `", "created": "2026-01-01T00:00:00Z", "revoked": "2026-01-02T00:00:00Z"}]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			return
		}
		path := filepath.Join(dir, TokensFile)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		tf, err := readTokenFile(path)
		if err != nil {
			return
		}
		if err := tf.check(); err != nil {
			t.Fatalf("accepted a file that does not check: %v", err)
		}
	})
}
