package device

import (
	"errors"
	"fmt"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// DeviceKeys are a device's current keys and attributes as the ledger
// proves them.
type DeviceKeys struct {
	ID         string
	Model      string
	Groups     []string
	SigningKey *ledger.PublicKey
	EncKey     []byte // X25519 SubjectPublicKeyInfo; nil if the device has none
	Height     uint64 // block of the tx that set these keys
	Revoked    bool
	Reason     string // why it was revoked
}

// ErrRevoked is returned by SealTo for a revoked device.
var ErrRevoked = errors.New("device: the device is revoked")

// ErrNoEncKey is returned by SealTo for a device without an encryption key.
var ErrNoEncKey = errors.New("device: the device has no encryption key")

// VerifyKeys checks a key directory answer about device id with nothing
// but the genesis: the enrollment, the last re-key and the revocation each
// come with their receipt, and the newest block is fresh. A gateway can
// hide a re-key or a revocation only for as long as the freshness bound.
func VerifyKeys(g *ledger.Genesis, a *ledger.KeysAnswer, id string, f Freshness) (*DeviceKeys, error) {
	m, err := genesisMembers(g)
	if err != nil {
		return nil, err
	}
	return verifyKeys(m, a, id, f)
}

func verifyKeys(m *ledger.Members, a *ledger.KeysAnswer, id string, f Freshness) (*DeviceKeys, error) {
	if a.Device != id {
		return nil, fmt.Errorf("%w: answer is about device %q", ErrProof, a.Device)
	}
	if err := f.check(m, &a.Head, a.Enroll, a.Rekey, a.Revoke); err != nil {
		return nil, err
	}
	if a.Enroll == nil {
		return nil, fmt.Errorf("%w: no enrollment receipt", ErrProof)
	}
	e, err := enrollmentOf(m, a.Enroll, id) // a device.enroll or a device.claim
	if err != nil {
		return nil, err
	}
	k := &DeviceKeys{ID: id, Model: e.Model, Groups: e.Groups, EncKey: e.EncKey, Height: a.Enroll.Header.Height}
	signing := e.PublicKey
	if a.Rekey != nil {
		rk, err := provenTx(m, a.Rekey, ledger.KindRekey, id)
		if err != nil {
			return nil, err
		}
		if a.Rekey.Header.Height < a.Enroll.Header.Height {
			return nil, fmt.Errorf("%w: re-key in block %d, before the enrollment", ErrProof, a.Rekey.Header.Height)
		}
		signing, k.EncKey, k.Height = rk.Body.Rekey.PublicKey, rk.Body.Rekey.EncKey, a.Rekey.Header.Height
	}
	if k.SigningKey, err = ledger.ParsePublicKey(signing); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProof, err)
	}
	if a.Revoke != nil {
		rv, err := provenTx(m, a.Revoke, ledger.KindRevoke, id)
		if err != nil {
			return nil, err
		}
		k.Revoked, k.Reason = true, rv.Body.Revoke.Reason
	}
	return k, nil
}

// provenTx verifies r and returns its tx, which must be a kind tx about id.
func provenTx(m *ledger.Members, r *ledger.Receipt, kind ledger.Kind, id string) (*ledger.Tx, error) {
	if r == nil { // a null in an answer's list
		return nil, fmt.Errorf("%w: %s: no receipt", ErrProof, kind)
	}
	if err := m.VerifyReceipt(r); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrProof, kind, err)
	}
	tx, err := ledger.DecodeTx(r.Tx, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProof, err)
	}
	if tx.Body.Kind != kind || tx.Body.Subject() != id {
		return nil, fmt.Errorf("%w: receipt of %s about %q where %s about %q was expected", ErrProof, tx.Body.Kind, tx.Body.Subject(), kind, id)
	}
	return tx, nil
}

// SealTo encrypts plaintext end to end to a device, whose keys the caller
// checked with VerifyKeys. Only the holder of the device's encryption key
// can Open it.
func SealTo(k *DeviceKeys, plaintext []byte) ([]byte, error) {
	if k.Revoked {
		return nil, fmt.Errorf("%w: %s", ErrRevoked, k.ID)
	}
	if k.EncKey == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoEncKey, k.ID)
	}
	return Seal([][]byte{k.EncKey}, plaintext)
}
