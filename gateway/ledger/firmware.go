package ledger

import (
	"fmt"
	"math"
)

// Firmware distribution (docs/firmware.md): vendors, enrolled by an admin
// with a maintenance key and the models they make, sign release manifests
// (firmware.publish: the tx itself, signed with the maintenance key, is
// the manifest a device checks with the vendor key it has built in).
// Reviewers vote on releases; the fleet owner (an admin) sets a policy
// per group, approves and revokes releases per group; devices report what
// they installed.

// The firmware tx kinds.
const (
	KindVendorEnroll    Kind = "vendor.enroll"    // admin: a vendor's maintenance key and models
	KindReviewerEnroll  Kind = "reviewer.enroll"  // admin: a reviewer's key
	KindFirmwarePublish Kind = "firmware.publish" // vendor: a release manifest
	KindFirmwareVote    Kind = "firmware.vote"    // reviewer: good or bad, with a reason
	KindFirmwareApprove Kind = "firmware.approve" // admin: a release for a group
	KindFirmwareRevoke  Kind = "firmware.revoke"  // admin: a release, for a group or everywhere
	KindFirmwarePolicy  Kind = "firmware.policy"  // admin: what a group may install
	KindFirmwareReport  Kind = "firmware.report"  // device: what it installed
)

// MaxModels bounds the models of a vendor; MaxWaves the waves of a rollout.
const (
	MaxModels = 64
	MaxWaves  = 16
)

// VendorEnroll registers a vendor and its maintenance key (DER
// SubjectPublicKeyInfo), which signs its firmware manifests.
type VendorEnroll struct {
	Vendor    string   `cbor:"1,keyasint"`
	PublicKey []byte   `cbor:"2,keyasint"`
	Models    []string `cbor:"3,keyasint"` // sorted, distinct
}

// ReviewerEnroll registers a reviewer, who may vote on releases.
type ReviewerEnroll struct {
	Reviewer  string `cbor:"1,keyasint"`
	PublicKey []byte `cbor:"2,keyasint"`
}

// FirmwarePublish is a release manifest: it binds model, version, image
// hash and size, and an expiry.
type FirmwarePublish struct {
	Model      string `cbor:"1,keyasint"`
	Version    uint64 `cbor:"2,keyasint"`
	SHA256     []byte `cbor:"3,keyasint"` // of the image; also its address in the store
	Size       uint64 `cbor:"4,keyasint"` // of the image, in bytes
	Expires    int64  `cbor:"5,keyasint"` // Unix milliseconds: devices refuse the manifest after
	MinVersion uint64 `cbor:"6,keyasint,omitempty"`
}

// Release names a release: a model's version.
type Release struct {
	Model   string `cbor:"1,keyasint"`
	Version uint64 `cbor:"2,keyasint"`
}

// FirmwareVote is a reviewer's verdict on a release.
type FirmwareVote struct {
	Release
	Good   bool   `cbor:"3,keyasint"`
	Reason string `cbor:"4,keyasint,omitempty"`
}

// FirmwareApprove is the owner's approval of a release for a group.
type FirmwareApprove struct {
	Release
	Group string `cbor:"3,keyasint"`
}

// FirmwareRevoke withdraws a release from a group, or from every group if
// Group is empty.
type FirmwareRevoke struct {
	Release
	Group  string `cbor:"3,keyasint,omitempty"`
	Reason string `cbor:"4,keyasint,omitempty"`
}

// FirmwarePolicy says what the devices of a group may install: a release
// approved for the group, or, unless approval is required, one with at
// least MinGoodVotes good votes and no bad one. Waves are cumulative
// percentages of the group (the last is 100): the next wave starts once
// every device of the waves before reported, with at most MaxFailurePct
// percent of them failed.
type FirmwarePolicy struct {
	Group           string   `cbor:"1,keyasint"`
	RequireApproval bool     `cbor:"2,keyasint,omitempty"`
	MinGoodVotes    uint32   `cbor:"3,keyasint,omitempty"`
	Waves           []uint32 `cbor:"4,keyasint,omitempty"` // empty: one wave of 100
	MaxFailurePct   uint32   `cbor:"5,keyasint,omitempty"`
}

// FirmwareReport is a device's report of an installation.
type FirmwareReport struct {
	DeviceID string `cbor:"1,keyasint"`
	Seq      uint64 `cbor:"2,keyasint"`
	Model    string `cbor:"3,keyasint"`
	Version  uint64 `cbor:"4,keyasint"`
	OK       bool   `cbor:"5,keyasint,omitempty"`
	Detail   string `cbor:"6,keyasint,omitempty"`
}

// WavesOf returns a policy's waves, the default one wave of 100 percent
// if it has none.
func (p *FirmwarePolicy) WavesOf() []uint32 {
	if len(p.Waves) == 0 {
		return []uint32{100}
	}
	return p.Waves
}

func (r *Release) validate() error {
	if !ValidID(r.Model) {
		return fmt.Errorf("invalid model %q", r.Model)
	}
	if r.Version == 0 || r.Version > math.MaxInt64 {
		return fmt.Errorf("version %d: want 1 to 2^63-1", r.Version)
	}
	return nil
}

// validateFirmware checks the syntax of a firmware tx's payload; nil,
// false if b is not a firmware tx.
func (b *Body) validateFirmware() (error, bool) {
	switch b.Kind {
	case KindVendorEnroll:
		v := b.VendorEnroll
		if v == nil {
			return fmt.Errorf("no payload"), true
		}
		if !ValidID(v.Vendor) {
			return fmt.Errorf("invalid vendor id %q", v.Vendor), true
		}
		if _, err := ParsePublicKey(v.PublicKey); err != nil {
			return err, true
		}
		if len(v.Models) == 0 || len(v.Models) > MaxModels {
			return fmt.Errorf("%d models: want 1 to %d", len(v.Models), MaxModels), true
		}
		return sortedIDs("models", v.Models), true
	case KindReviewerEnroll:
		r := b.ReviewerEnroll
		if r == nil {
			return fmt.Errorf("no payload"), true
		}
		if !ValidID(r.Reviewer) {
			return fmt.Errorf("invalid reviewer id %q", r.Reviewer), true
		}
		_, err := ParsePublicKey(r.PublicKey)
		return err, true
	case KindFirmwarePublish:
		f := b.FirmwarePublish
		if f == nil {
			return fmt.Errorf("no payload"), true
		}
		if err := (&Release{Model: f.Model, Version: f.Version}).validate(); err != nil {
			return err, true
		}
		if len(f.SHA256) != 32 || f.Size == 0 || f.Size > math.MaxInt64 || f.Expires <= 0 || f.MinVersion > math.MaxInt64 {
			return fmt.Errorf("want a 32-byte sha256, a size above 0 and an expiry"), true
		}
		return nil, true
	case KindFirmwareVote:
		v := b.FirmwareVote
		if v == nil {
			return fmt.Errorf("no payload"), true
		}
		if len(v.Reason) > maxTextLen {
			return fmt.Errorf("reason longer than %d bytes", maxTextLen), true
		}
		return v.validate(), true
	case KindFirmwareApprove:
		a := b.FirmwareApprove
		if a == nil {
			return fmt.Errorf("no payload"), true
		}
		if !ValidID(a.Group) {
			return fmt.Errorf("invalid group %q", a.Group), true
		}
		return a.validate(), true
	case KindFirmwareRevoke:
		r := b.FirmwareRevoke
		if r == nil {
			return fmt.Errorf("no payload"), true
		}
		if r.Group != "" && !ValidID(r.Group) || len(r.Reason) > maxTextLen {
			return fmt.Errorf("invalid group %q or reason", r.Group), true
		}
		return r.validate(), true
	case KindFirmwarePolicy:
		p := b.FirmwarePolicy
		if p == nil {
			return fmt.Errorf("no payload"), true
		}
		if !ValidID(p.Group) {
			return fmt.Errorf("invalid group %q", p.Group), true
		}
		if p.MaxFailurePct > 100 || p.MinGoodVotes > 1000 {
			return fmt.Errorf("max failure %d%%, min good votes %d: want at most 100%% and 1000", p.MaxFailurePct, p.MinGoodVotes), true
		}
		if len(p.Waves) > MaxWaves {
			return fmt.Errorf("%d waves, at most %d", len(p.Waves), MaxWaves), true
		}
		for i, w := range p.Waves {
			if w == 0 || w > 100 || i > 0 && w <= p.Waves[i-1] || i == len(p.Waves)-1 && w != 100 {
				return fmt.Errorf("waves %v: want increasing percentages ending at 100", p.Waves), true
			}
		}
		return nil, true
	case KindFirmwareReport:
		r := b.FirmwareReport
		if r == nil {
			return fmt.Errorf("no payload"), true
		}
		if !ValidID(r.DeviceID) || r.Seq == 0 || r.Seq > math.MaxInt64 || len(r.Detail) > maxTextLen {
			return fmt.Errorf("invalid device id, seq or detail"), true
		}
		return (&Release{Model: r.Model, Version: r.Version}).validate(), true
	}
	return nil, false
}

// sortedIDs checks that ids are valid, sorted and distinct.
func sortedIDs(what string, ids []string) error {
	for i, id := range ids {
		if !ValidID(id) {
			return fmt.Errorf("invalid %s entry %q", what, id)
		}
		if i > 0 && ids[i-1] >= id {
			return fmt.Errorf("%s must be sorted and distinct (%q before %q)", what, ids[i-1], id)
		}
	}
	return nil
}
