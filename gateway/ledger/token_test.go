package ledger

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// tokenAt signs an hour's token of dev-1 with fixedEd25519 at now, and
// parses it at parseAt; it returns the token, its parse and the key.
func tokenAt(t *testing.T, now, parseAt time.Time) (string, *Token, *PublicKey) {
	t.Helper()
	key := fixedEd25519()
	pk, _ := ParsePublicKey(pubDER(t, key))
	tok, err := SignToken(key, "dev-1", testChain, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseToken(tok, testChain, parseAt)
	if err != nil {
		t.Fatal(err)
	}
	return tok, got, pk
}

func TestToken(t *testing.T) {
	key := fixedEd25519()
	now := time.Unix(1_800_000_000, 0)
	tok, got, pk := tokenAt(t, now, now.Add(30*time.Minute))
	if got.Claims.Subject != "dev-1" || got.Verify(pk) != nil {
		t.Fatalf("claims %+v", got.Claims)
	}
	other, _ := ParsePublicKey(pubDER(t, newP256(t)))
	if err := got.Verify(other); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other key: %v", err)
	}
	if _, err := SignToken(key, "dev-1", testChain, now, 25*time.Hour); !errors.Is(err, ErrToken) {
		t.Fatalf("25h ttl: %v", err)
	}
	forged := strings.Replace(tok, tok[len(tok)-6:], "AAAAAA", 1)
	for name, c := range map[string]struct {
		tok   string
		chain string
		at    time.Time
	}{
		"expired":       {tok, testChain, now.Add(time.Hour)},
		"future":        {tok, testChain, now.Add(-time.Hour)},
		"other chain":   {tok, "other", now},
		"not base64":    {"%%%", testChain, now},
		"garbage":       {"AAAA", testChain, now},
		"too long":      {strings.Repeat("A", 5000), testChain, now},
		"a tx, not one": {mustTxToken(t), testChain, now},
	} {
		if _, err := ParseToken(c.tok, c.chain, c.at); !errors.Is(err, ErrToken) {
			t.Errorf("%s: got %v, want ErrToken", name, err)
		}
	}
	// A flipped signature byte decodes but does not verify.
	if tk, err := ParseToken(forged, testChain, now); err == nil && tk.Verify(pk) == nil {
		t.Fatal("forged token verified")
	}
}

func mustTxToken(t *testing.T) string {
	env, err := SignTx(fixedEd25519(), "dev-1", record("dev-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(env)
}

// TestTokenKeepsKeyUnexpanded: a token's check leaves an Ed25519 key as
// it is (an idle device costs no expanded key); a tx's check expands it
// for the txs to come.
func TestTokenKeepsKeyUnexpanded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	_, got, pk := tokenAt(t, now, now)
	for range 2 { // a connection checks its token twice
		if err := got.Verify(pk); err != nil {
			t.Fatal(err)
		}
	}
	if pk.ed.Load() != nil {
		t.Fatal("a token's check expanded the key")
	}
	env, err := SignTx(fixedEd25519(), "dev-1", record("dev-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := DecodeTx(env, len(env))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Verify(pk); err != nil {
		t.Fatal(err)
	}
	if pk.ed.Load() == nil {
		t.Fatal("a tx's check left the key unexpanded")
	}
	if err := got.Verify(pk); err != nil {
		t.Fatalf("the token with the expanded key: %v", err)
	}
}
