package device

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// DefaultMaxAge is the default freshness bound: how old the newest
// certified block of an answer may be. The gateways make a block at least
// every heartbeat (a minute by default), so an answer whose newest block
// is older than this comes from a gateway that is cut off, or that hides
// newer blocks (a freeze attack).
const DefaultMaxAge = 10 * time.Minute

// Why an answer is refused. Each error wraps one of these.
var (
	// ErrProof: the answer proves nothing (a receipt or certificate that
	// does not verify with the genesis, another chain, another device).
	ErrProof = errors.New("device: answer does not verify")
	// ErrStaleHead: the answer's newest block is older than the freshness
	// bound.
	ErrStaleHead = errors.New("device: answer is not fresh")
	// ErrRollback: the configuration is older than one the device already
	// accepted.
	ErrRollback = errors.New("device: configuration older than the one accepted before")
	// ErrNotCurrent: the hash is not the device's current configuration;
	// download it again.
	ErrNotCurrent = errors.New("device: not the current configuration")
	// ErrNoConfig: no configuration was published for the device.
	ErrNoConfig = errors.New("device: no configuration published")
)

// Freshness bounds how old an answer's newest block may be.
type Freshness struct {
	MaxAge time.Duration    // DefaultMaxAge if 0
	Now    func() time.Time // time.Now if nil
}

// check verifies h's certificate and age, and that it is not older than
// any block the answer's receipts are in.
func (f Freshness) check(m *ledger.Members, h *ledger.Head, receipts ...*ledger.Receipt) error {
	if err := m.VerifyHead(h); err != nil {
		return fmt.Errorf("%w: newest block: %w", ErrProof, err)
	}
	maxAge, now := f.MaxAge, f.Now
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	}
	if now == nil {
		now = time.Now
	}
	if age := now().Sub(time.UnixMilli(h.Header.Time)); age > maxAge {
		return fmt.Errorf("%w: newest block %d is %s old, the bound is %s", ErrStaleHead, h.Header.Height, age.Round(time.Second), maxAge)
	}
	for _, r := range receipts {
		if r != nil && r.Header.Height > h.Header.Height {
			return fmt.Errorf("%w: newest block %d is below block %d of a receipt", ErrProof, h.Header.Height, r.Header.Height)
		}
	}
	return nil
}

// ConfigPolicy is what a device knows when it checks a configuration
// answer: who it is, and the last configuration it accepted.
type ConfigPolicy struct {
	Device string
	// Groups are the groups it was enrolled in; nil: take them from the
	// enrollment receipt the answer carries.
	Groups []string
	Last   *Accepted
	Freshness
}

// Accepted is a configuration a device accepted: what it must keep across
// restarts so that no gateway can roll it back (see ConfigState).
type Accepted struct {
	Target  string `json:"target"`  // the config.set's target: the device, or group:NAME
	Version uint64 `json:"version"` // per target
	Height  uint64 `json:"height"`  // block of the config.set: orders configs of different targets
	SHA256  string `json:"sha256"`  // hex
}

// VerifyConfig checks a gateway's answer with nothing but the genesis and
// tells whether hash (the SHA-256 of a configuration the device holds) is
// the device's current configuration. It accepts, returning what to
// remember, only when:
//
//   - the answer's receipt proves a committed config.set for this device
//     or one of its groups, and its newest block carries a valid
//     certificate (no forged or foreign proof);
//   - that block is at most p.MaxAge old (no freeze);
//   - the config.set is not older than p.Last (no rollback): not in an
//     earlier block, and for the same target not a lower version;
//   - its SHA-256 is hash (else ErrNotCurrent: download it again).
func VerifyConfig(g *ledger.Genesis, a *ledger.ConfigAnswer, hash [32]byte, p ConfigPolicy) (*Accepted, error) {
	m, err := genesisMembers(g)
	if err != nil {
		return nil, err
	}
	return verifyConfig(m, a, hash, p)
}

func verifyConfig(m *ledger.Members, a *ledger.ConfigAnswer, hash [32]byte, p ConfigPolicy) (*Accepted, error) {
	cs, r, err := configOf(m, a, p)
	if err != nil {
		return nil, err
	}
	acc := &Accepted{Target: cs.Target, Version: cs.Version, Height: r.Header.Height, SHA256: hex.EncodeToString(cs.SHA256)}
	if l := p.Last; l != nil {
		if acc.Height < l.Height || acc.Target == l.Target && acc.Version < l.Version {
			return nil, fmt.Errorf("%w: %s version %d (block %d), accepted %s version %d (block %d)",
				ErrRollback, acc.Target, acc.Version, acc.Height, l.Target, l.Version, l.Height)
		}
	}
	if !bytes.Equal(cs.SHA256, hash[:]) {
		return nil, fmt.Errorf("%w: the current one is %s version %d, sha256 %x", ErrNotCurrent, cs.Target, cs.Version, cs.SHA256)
	}
	return acc, nil
}

// Manifest returns the config.set an answer proves, checked as
// VerifyConfig does except for the hash: what to download next.
func Manifest(g *ledger.Genesis, a *ledger.ConfigAnswer, p ConfigPolicy) (*ledger.ConfigSet, error) {
	m, err := genesisMembers(g)
	if err != nil {
		return nil, err
	}
	cs, _, err := configOf(m, a, p)
	return cs, err
}

// configOf checks a's proofs, freshness and target and returns its config.set.
func configOf(m *ledger.Members, a *ledger.ConfigAnswer, p ConfigPolicy) (*ledger.ConfigSet, *ledger.Receipt, error) {
	if a.Device != p.Device {
		return nil, nil, fmt.Errorf("%w: answer is for device %q", ErrProof, a.Device)
	}
	if err := p.check(m, &a.Head, a.Receipt); err != nil {
		return nil, nil, err
	}
	r := a.Receipt
	if r == nil {
		return nil, nil, ErrNoConfig
	}
	if err := m.VerifyReceipt(r); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrProof, err)
	}
	tx, err := ledger.DecodeTx(r.Tx, 0)
	if err != nil || tx.Body.ConfigSet == nil {
		return nil, nil, fmt.Errorf("%w: the receipt is not of a config.set", ErrProof)
	}
	cs := tx.Body.ConfigSet
	dev, group, _ := ledger.ParseTarget(cs.Target)
	groups := p.Groups
	if group != "" && groups == nil {
		e, err := enrollmentOf(m, a.Enrollment, p.Device)
		if err != nil {
			return nil, nil, err
		}
		groups = e.Groups
	}
	if dev != p.Device && (group == "" || !slices.Contains(groups, group)) {
		return nil, nil, fmt.Errorf("%w: the config.set is for %s", ErrProof, cs.Target)
	}
	return cs, r, nil
}

// enrollmentOf checks an answer's enrollment receipt: a committed
// device.enroll of device, or a committed device.claim of device (docs/
// protocol.md 11, 6.18). It carries the device's key, groups and model; a
// claim's as an Enroll without an encryption key.
func enrollmentOf(m *ledger.Members, r *ledger.Receipt, device string) (*ledger.Enroll, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: the answer carries no enrollment to show the device's groups", ErrProof)
	}
	if err := m.VerifyReceipt(r); err != nil {
		return nil, fmt.Errorf("%w: enrollment: %w", ErrProof, err)
	}
	tx, err := ledger.DecodeTx(r.Tx, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProof, err)
	}
	switch b := &tx.Body; {
	case b.Kind == ledger.KindEnroll && b.Enroll.DeviceID == device:
		return b.Enroll, nil
	case b.Kind == ledger.KindDeviceClaim && b.DeviceClaim.DeviceID == device:
		c := b.DeviceClaim
		return &ledger.Enroll{DeviceID: c.DeviceID, PublicKey: c.PublicKey, Model: c.Model, Groups: c.Groups}, nil
	}
	return nil, fmt.Errorf("%w: enrollment receipt of %s about %q where device.enroll or device.claim about %q was expected",
		ErrProof, tx.Body.Kind, tx.Body.Subject(), device)
}

// ConfigState keeps the last accepted configuration in a file, for
// anti-rollback across restarts.
type ConfigState struct{ path string }

// OpenConfigState uses path as the state (created on the first Accept).
func OpenConfigState(path string) *ConfigState { return &ConfigState{path: path} }

// Last returns the last accepted configuration, nil if none.
func (s *ConfigState) Last() (*Accepted, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("device: read config state: %w", err)
	}
	var a Accepted
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("device: config state %s: %w", s.path, err)
	}
	return &a, nil
}

// Verify is VerifyConfig with p.Last read from the state; on success the
// accepted configuration is stored before Verify returns.
func (s *ConfigState) Verify(g *ledger.Genesis, a *ledger.ConfigAnswer, hash [32]byte, p ConfigPolicy) (*Accepted, error) {
	last, err := s.Last()
	if err != nil {
		return nil, err
	}
	p.Last = last
	acc, err := VerifyConfig(g, a, hash, p)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(acc)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(s.path, append(b, '\n')); err != nil {
		return nil, fmt.Errorf("device: store config state: %w", err)
	}
	return acc, nil
}

// OpenConfig checks that blob is the one cs names and opens it with the
// device's encryption key; it returns the configuration after checking its
// size and SHA-256 against cs.
func OpenConfig(cs *ledger.ConfigSet, blob []byte, key *ecdh.PrivateKey) ([]byte, error) {
	if sum := sha256.Sum256(blob); !bytes.Equal(sum[:], cs.Blob) {
		return nil, fmt.Errorf("%w: blob sha256 %x, the config.set names %x", ErrNotCurrent, sum, cs.Blob)
	}
	pt, err := Open(key, blob)
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(pt); uint64(len(pt)) != cs.Size || !bytes.Equal(sum[:], cs.SHA256) {
		return nil, fmt.Errorf("%w: the opened configuration is not the one the config.set names", ErrNotCurrent)
	}
	return pt, nil
}

// SignConfigReport signs a config.report: the device applied r.Version,
// whose SHA-256 is r.SHA256. r.Seq comes from the device's counter (see
// SeqFile), shared with its records.
func SignConfigReport(key crypto.Signer, chainID string, r ledger.ConfigReport) ([]byte, error) {
	return ledger.SignTx(key, r.DeviceID, &ledger.Body{Kind: ledger.KindConfigReport, ChainID: chainID, ConfigReport: &r})
}
