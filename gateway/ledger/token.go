package ledger

import (
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// A device token is what a device presents instead of a password: a
// COSE_Sign1 envelope (kid = device id) whose payload is a CWT claims set
// (RFC 8392) of subject, audience (the chain id), issued-at and expiry,
// signed with the device's enrolled key, and written as unpadded base64url.
// It is the MQTT password when the username is the device id.

// MaxTokenTTL is the longest a token may live.
const MaxTokenTTL = 24 * time.Hour

// maxTokenBytes bounds a token before it is decoded.
const maxTokenBytes = 1024

// tokenSkew is how far in the future a token's issued-at may be, for
// device clocks that run ahead.
const tokenSkew = 5 * time.Minute

// TokenClaims are a token's claims, with RFC 8392 keys.
type TokenClaims struct {
	Subject  string `cbor:"2,keyasint"` // sub: the device id
	Audience string `cbor:"3,keyasint"` // aud: the chain id
	Expiry   int64  `cbor:"4,keyasint"` // exp: Unix seconds
	IssuedAt int64  `cbor:"6,keyasint"` // iat: Unix seconds
}

// ErrToken reports a token that is malformed, expired or not for this chain.
var ErrToken = errors.New("ledger: invalid token")

// SignToken makes a token for device id on chain, valid for ttl from now.
func SignToken(key crypto.Signer, id, chain string, now time.Time, ttl time.Duration) (string, error) {
	if ttl <= 0 || ttl > MaxTokenTTL {
		return "", fmt.Errorf("%w: ttl %s: want up to %s", ErrToken, ttl, MaxTokenTTL)
	}
	payload, err := marshal(TokenClaims{Subject: id, Audience: chain, IssuedAt: now.Unix(), Expiry: now.Add(ttl).Unix()})
	if err != nil {
		return "", fmt.Errorf("ledger: encode token: %w", err)
	}
	env, err := signEnvelope(key, id, payload)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(env), nil
}

// Token is a decoded token whose signature is still to be checked.
type Token struct {
	Claims TokenClaims
	env    *envelope
}

// ParseToken decodes a token and checks its claims for chain at now:
// subject = kid, audience = chain, lifetime at most MaxTokenTTL, not
// expired, not issued in the future. The caller then looks up the
// subject's key and calls Verify.
func ParseToken(s, chain string, now time.Time) (*Token, error) {
	if len(s) > maxTokenBytes*4/3+4 {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrToken, maxTokenBytes)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url: %v", ErrToken, err)
	}
	t, err := decodeToken(b, chain)
	if err != nil {
		return nil, err
	}
	c := &t.Claims
	switch {
	case c.Expiry-c.IssuedAt > int64(MaxTokenTTL/time.Second) || c.Expiry <= c.IssuedAt:
		return nil, fmt.Errorf("%w: lifetime %ds, at most %s", ErrToken, c.Expiry-c.IssuedAt, MaxTokenTTL)
	case now.Unix() >= c.Expiry:
		return nil, fmt.Errorf("%w: expired at %s", ErrToken, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	case c.IssuedAt > now.Add(tokenSkew).Unix():
		return nil, fmt.Errorf("%w: issued in the future", ErrToken)
	}
	return t, nil
}

// decodeToken decodes a token's envelope and claims and checks what
// needs no clock: the subject is the kid, the audience is chain.
func decodeToken(b []byte, chain string) (*Token, error) {
	env, err := openEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	t := &Token{env: env}
	if err := unmarshal(env.payload, &t.Claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrToken, err)
	}
	switch {
	case t.Claims.Subject != env.kid:
		return nil, fmt.Errorf("%w: subject %q signed as %q", ErrToken, t.Claims.Subject, env.kid)
	case t.Claims.Audience != chain:
		return nil, fmt.Errorf("%w: for chain %q, this is %q", ErrToken, t.Claims.Audience, chain)
	}
	return t, nil
}

// Verify checks the token's signature with the subject's key. It does
// not expand an Ed25519 key (see verify.go): a device that only
// connects, an idle one, never holds the expanded key's 1.5 KB.
func (t *Token) Verify(pub *PublicKey) error { return t.env.verify(pub, false) }
