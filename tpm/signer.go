package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// HardwareSigner is the node key held by a TPM. It is safe for concurrent
// use; signatures are made one at a time.
type HardwareSigner struct {
	t    *TPM
	name tpm2.TPM2BName
	pub  *ecdsa.PublicKey
	desc string

	mu   sync.Mutex // one signature at a time, so pacing holds across goroutines
	pace pacer
}

var _ Signer = (*HardwareSigner)(nil)

// Signer loads the persistent node key and returns a signer for it. It fails
// with ErrNoNodeKey when the handle is empty and ErrHandleTaken when it
// holds something that is not a node key.
//
// When VulnerableFirmware reports the TPM's firmware as leaking ECDSA nonces
// through timing (TPM-Fail), each signature is padded to at least
// Options.RateLimit, which also bounds the signing rate.
func (t *TPM) Signer() (*HardwareSigner, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.mu.Unlock()
	pub, name, err := t.readPublic()
	if isNoObject(err) {
		return nil, fmt.Errorf("%w at handle 0x%08x (%s): create it first", ErrNoNodeKey, uint32(t.handle), t.path)
	}
	if err != nil {
		return nil, err
	}
	if err := checkNodeKey(pub); err != nil {
		return nil, fmt.Errorf("%w: 0x%08x (%s): %v", ErrHandleTaken, uint32(t.handle), t.path, err)
	}
	key, err := eccPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("tpm: node key at 0x%08x: %w", uint32(t.handle), err)
	}
	t.keyName = name
	s := &HardwareSigner{
		t:    t,
		name: name,
		pub:  key,
		desc: fmt.Sprintf("TPM 2.0 key at 0x%08x (%s)", uint32(t.handle), t.describe()),
		pace: pacer{now: time.Now, sleep: time.Sleep},
	}
	info := Info{Manufacturer: t.fixed.manufacturer, VendorString: t.fixed.vendor, Firmware: t.fixed.firmware}
	if vulnerable, why := VulnerableFirmware(info); vulnerable {
		if t.rateLimit > 0 {
			s.pace.min = t.rateLimit
			s.desc += fmt.Sprintf(", paced to %v per signature: %s", t.rateLimit, why)
		} else {
			s.desc += ", NOT paced: " + why
		}
		t.log.Warn("tpm firmware leaks ecdsa nonces through timing; update it",
			"reason", why, "pace", max(t.rateLimit, 0))
	}
	return s, nil
}

// Public returns the node key's ECDSA P-256 public key.
func (s *HardwareSigner) Public() crypto.PublicKey { return s.pub }

// Hardware is true: the private key never leaves the TPM.
func (s *HardwareSigner) Hardware() bool { return true }

// Describe names the key, the TPM and its firmware, and the path.
func (s *HardwareSigner) Describe() string { return s.desc }

// Sign signs a SHA-256 digest with TPM2_Sign (ECDSA, SHA-256) and returns
// the ASN.1 DER signature. opts.HashFunc() must be crypto.SHA256. The TPM
// draws the nonce from its own generator, so rand is not used. Each
// signature is checked against the public key before it is returned.
func (s *HardwareSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 {
		return nil, errors.New("tpm: the node key signs SHA-256 digests only (opts.HashFunc() must be crypto.SHA256)")
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("tpm: digest is %d bytes, a SHA-256 digest is %d", len(digest), sha256.Size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	start := s.pace.now()
	defer s.pace.wait(start)

	r, ss, err := s.t.sign(s.name, digest)
	if err != nil {
		return nil, err
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, ss})
	if err != nil {
		return nil, fmt.Errorf("tpm: encode signature: %w", err)
	}
	if !ecdsa.VerifyASN1(s.pub, digest, der) {
		return nil, errors.New("tpm: the TPM returned a signature that does not verify with the node key")
	}
	return der, nil
}

// sign runs TPM2_Sign on the node key. With an auth value, the command runs
// in a salted HMAC session (the auth value never crosses the bus and its
// HMAC cannot be attacked offline) that encrypts the digest; without one, a
// password session with the empty auth value. It retries once when the
// cached salt key is gone (a TPM reset).
func (t *TPM) sign(name tpm2.TPM2BName, digest []byte) (r, s *big.Int, err error) {
	if err := t.lock(); err != nil {
		return nil, nil, err
	}
	defer t.mu.Unlock()
	var rsp *tpm2.SignResponse
	for retried := false; ; retried = true {
		if len(t.auth) > 0 && t.salt == nil {
			salt, err := t.storagePrimary()
			if err != nil {
				return nil, nil, err
			}
			t.salt = salt
		}
		rsp, err = t.signOnce(name, digest)
		if err == nil {
			break
		}
		if retried || t.salt == nil || !staleHandle(err) {
			return nil, nil, t.keyErr(err)
		}
		t.flush(t.salt.handle)
		t.salt = nil
	}
	if rsp.Signature.SigAlg != tpm2.TPMAlgECDSA {
		return nil, nil, fmt.Errorf("tpm: sign: the TPM returned a signature of scheme 0x%04x, not ECDSA", uint16(rsp.Signature.SigAlg))
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: sign: %w", err)
	}
	if sig.Hash != tpm2.TPMAlgSHA256 {
		return nil, nil, fmt.Errorf("tpm: sign: the TPM signed with hash 0x%04x, not SHA-256", uint16(sig.Hash))
	}
	rb, sb := sig.SignatureR.Buffer, sig.SignatureS.Buffer
	if len(rb) == 0 || len(rb) > 32 || len(sb) == 0 || len(sb) > 32 {
		return nil, nil, fmt.Errorf("tpm: sign: the TPM returned r and s of %d and %d bytes", len(rb), len(sb))
	}
	return new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb), nil
}

// signOnce sends one TPM2_Sign, in a salted session when there is a salt
// key. The caller holds t.mu.
func (t *TPM) signOnce(name tpm2.TPM2BName, digest []byte) (*tpm2.SignResponse, error) {
	auth := tpm2.PasswordAuth(nil)
	if t.salt != nil {
		auth = sessionFor(t.salt, t.auth)
	}
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: t.handle, Name: name, Auth: auth},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		// A NULL ticket: the key is unrestricted (TPM 2.0 Part 3, 20.2).
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(t.tr)
	if errors.Is(err, ErrUnavailable) {
		return nil, err // says where; nothing was signed
	}
	if err != nil {
		return nil, fmt.Errorf("tpm: sign with the node key at 0x%08x: %w", uint32(t.handle), err)
	}
	return rsp, nil
}

// staleHandle reports errors a vanished transient object causes.
func staleHandle(err error) bool {
	return errors.Is(err, tpm2.TPMRCReferenceH0) || errors.Is(err, tpm2.TPMRCHandle)
}

// pacer pads each signature to at least min, so that a caller sees the same
// time for every signature and can collect them only slowly.
type pacer struct {
	min   time.Duration
	now   func() time.Time
	sleep func(time.Duration)
}

// wait sleeps until min has passed since start.
func (p pacer) wait(start time.Time) {
	if p.min <= 0 {
		return
	}
	if d := p.min - p.now().Sub(start); d > 0 {
		p.sleep(d)
	}
}
