package ledger

import (
	"errors"
	"fmt"
)

// Answers are what a gateway tells a device about the ledger: its
// configuration, another device's keys. A device checks an answer itself
// with nothing but the genesis: every fact comes with the receipt of the
// tx that established it, and the answer carries the newest certified
// header (Head), so a device can bound how old the gateway's view is. A
// lying gateway can withhold a newer tx, not forge or alter one; the
// device bounds how stale it can keep it with Head.

// Head is a block header with its commit certificate: the newest block a
// gateway knows, the freshness part of an answer.
type Head struct {
	Header Header `cbor:"1,keyasint"`
	Cert   Cert   `cbor:"2,keyasint"`
}

// ConfigAnswer answers a device's question about its configuration.
type ConfigAnswer struct {
	Device string `cbor:"1,keyasint"`
	// Receipt is the receipt of the config.set that is the device's
	// current configuration (one for the device beats one for a group);
	// nil if there is none.
	Receipt *Receipt `cbor:"2,keyasint,omitempty"`
	Head    Head     `cbor:"3,keyasint"`
	// Match is the gateway's verdict that the hash asked about is the
	// current one. Only a hint: the device checks for itself.
	Match bool `cbor:"4,keyasint,omitempty"`
	// Enrollment is the receipt of the device's device.enroll: it proves
	// the device's groups, so a device that does not keep them can still
	// check that a group's config.set is for it.
	Enrollment *Receipt `cbor:"5,keyasint,omitempty"`
}

// KeysAnswer answers a lookup of a device's keys.
type KeysAnswer struct {
	Device string   `cbor:"1,keyasint"`
	Enroll *Receipt `cbor:"2,keyasint"`           // the device's enrollment: attributes and first keys
	Rekey  *Receipt `cbor:"3,keyasint,omitempty"` // its last re-key, if any: the current keys
	Revoke *Receipt `cbor:"4,keyasint,omitempty"` // its revocation, if revoked
	Head   Head     `cbor:"5,keyasint"`
}

// ErrAnswer reports an answer that does not decode.
var ErrAnswer = errors.New("ledger: malformed answer")

// Encode returns the answer's deterministic encoding.
func (a *ConfigAnswer) Encode() ([]byte, error) { return encodeAnswer(a) }

// Encode returns the answer's deterministic encoding.
func (a *KeysAnswer) Encode() ([]byte, error) { return encodeAnswer(a) }

func encodeAnswer(a any) ([]byte, error) {
	b, err := marshal(a)
	if err != nil {
		return nil, fmt.Errorf("ledger: encode answer: %w", err)
	}
	return b, nil
}

// DecodeConfigAnswer parses a configuration answer. It does not verify it.
func DecodeConfigAnswer(data []byte) (*ConfigAnswer, error) {
	var a ConfigAnswer
	if err := unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnswer, err)
	}
	return &a, nil
}

// DecodeKeysAnswer parses a keys answer. It does not verify it.
func DecodeKeysAnswer(data []byte) (*KeysAnswer, error) {
	var a KeysAnswer
	if err := unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnswer, err)
	}
	if a.Enroll == nil {
		return nil, fmt.Errorf("%w: no enrollment receipt", ErrAnswer)
	}
	return &a, nil
}

// VerifyHead checks that h is a block of g's chain that a quorum committed.
func VerifyHead(g *Genesis, h *Head) error { return g.VerifyCert(&h.Header, &h.Cert) }

// FirmwareAnswer offers a device a firmware release with what makes it
// installable under the device's group policy.
type FirmwareAnswer struct {
	Device  string   `cbor:"1,keyasint"`
	Group   string   `cbor:"2,keyasint,omitempty"` // the device's group whose policy allows the release
	Release *Receipt `cbor:"3,keyasint"`           // the firmware.publish: the vendor-signed manifest
	// Policy is the group's firmware.policy; nil: the default, which
	// requires the owner's approval.
	Policy   *Receipt   `cbor:"4,keyasint,omitempty"`
	Approval *Receipt   `cbor:"5,keyasint,omitempty"` // firmware.approve for the group
	Votes    []*Receipt `cbor:"6,keyasint,omitempty"` // good firmware.votes
	Revoke   *Receipt   `cbor:"7,keyasint,omitempty"` // a firmware.revoke of the release, if asked about a revoked one
	Head     Head       `cbor:"8,keyasint"`
	// Enrollment is the receipt of the device's device.enroll: it proves
	// the device's model and groups.
	Enrollment *Receipt `cbor:"9,keyasint,omitempty"`
	// Blocked says why the device cannot install the release although
	// its groups allow it: FirmwareBelowMinVersion. Empty: nothing known
	// stands in the way.
	Blocked string `cbor:"10,keyasint,omitempty"`
}

// FirmwareBelowMinVersion is a FirmwareAnswer's Blocked when the version
// the device last reported installing is below the release's minimum
// and no release it may install first is allowed: the device keeps its
// firmware and asks again later (an operator must release a step).
const FirmwareBelowMinVersion = "below_min_version"

// Encode returns the answer's deterministic encoding.
func (a *FirmwareAnswer) Encode() ([]byte, error) { return encodeAnswer(a) }

// DecodeFirmwareAnswer parses a firmware answer. It does not verify it.
func DecodeFirmwareAnswer(data []byte) (*FirmwareAnswer, error) {
	var a FirmwareAnswer
	if err := unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAnswer, err)
	}
	if a.Release == nil {
		return nil, fmt.Errorf("%w: no release receipt", ErrAnswer)
	}
	for i, v := range a.Votes {
		if v == nil {
			return nil, fmt.Errorf("%w: vote %d is null", ErrAnswer, i)
		}
	}
	return &a, nil
}
