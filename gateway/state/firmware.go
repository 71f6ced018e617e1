package state

import (
	"fmt"
	"slices"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Vendor is an enrolled firmware vendor.
type Vendor struct {
	ID     string
	Key    *ledger.PublicKey
	Models []string
}

// The facts of the firmware registry that later txs depend on, as keys of
// State.facts and Batch.facts.
func releaseFact(r ledger.Release) string { return fmt.Sprintf("release %s %d", r.Model, r.Version) }
func voteFact(r ledger.Release, reviewer string) string {
	return fmt.Sprintf("vote %s %d %s", r.Model, r.Version, reviewer)
}

// releaseOf is the release a firmware tx is about.
func releaseOf(b *ledger.Body) (ledger.Release, bool) {
	switch {
	case b.FirmwarePublish != nil:
		return ledger.Release{Model: b.FirmwarePublish.Model, Version: b.FirmwarePublish.Version}, true
	case b.FirmwareVote != nil:
		return b.FirmwareVote.Release, true
	case b.FirmwareApprove != nil:
		return b.FirmwareApprove.Release, true
	case b.FirmwareRevoke != nil:
		return b.FirmwareRevoke.Release, true
	}
	return ledger.Release{}, false
}

// firmwareAuthor finds the key a firmware tx must be signed with: an
// admin's for the owner's txs, the vendor's maintenance key for a
// manifest, a reviewer's for a vote. vendor and reviewer look the author
// up (in the state, or in a batch and its parents).
func (s *State) firmwareAuthor(tx *ledger.Tx, vendor func(string) *Vendor, reviewer func(string) *ledger.PublicKey) (*ledger.PublicKey, error) {
	switch tx.Body.Kind {
	case ledger.KindVendorEnroll, ledger.KindReviewerEnroll, ledger.KindFirmwareApprove, ledger.KindFirmwareRevoke, ledger.KindFirmwarePolicy:
		if k, ok := s.admins[tx.Author]; ok {
			return k, nil
		}
		return nil, reject(ledger.ReasonUnknownAuthor, "%s may only be issued by an admin; no admin %q", tx.Body.Kind, tx.Author)
	case ledger.KindFirmwarePublish:
		if v := vendor(tx.Author); v != nil {
			return v.Key, nil
		}
		return nil, reject(ledger.ReasonUnknownAuthor, "no vendor %q", tx.Author)
	case ledger.KindFirmwareVote:
		if k := reviewer(tx.Author); k != nil {
			return k, nil
		}
		return nil, reject(ledger.ReasonUnknownAuthor, "no reviewer %q", tx.Author)
	}
	return nil, reject(ledger.ReasonMalformed, "unknown kind %q", tx.Body.Kind)
}

// Vendor returns an enrolled vendor.
func (s *State) Vendor(id string) (*Vendor, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.vendors[id]
	return v, ok
}

func (s *State) reviewer(id string) *ledger.PublicKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.reviewers[id]
}

func (s *State) vendorOrNil(id string) *Vendor {
	v, _ := s.Vendor(id)
	return v
}

func (s *State) fact(key string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.facts[key]
}

// applyFirmware applies a committed firmware tx; false if tx is none.
func (s *State) applyFirmwareLocked(tx *ledger.Tx) (bool, error) {
	b := &tx.Body
	switch {
	case b.VendorEnroll != nil:
		pk, err := ledger.ParsePublicKey(b.VendorEnroll.PublicKey)
		if err != nil {
			return true, err
		}
		s.vendors[b.VendorEnroll.Vendor] = &Vendor{ID: b.VendorEnroll.Vendor, Key: pk, Models: b.VendorEnroll.Models}
	case b.ReviewerEnroll != nil:
		pk, err := ledger.ParsePublicKey(b.ReviewerEnroll.PublicKey)
		if err != nil {
			return true, err
		}
		s.reviewers[b.ReviewerEnroll.Reviewer] = pk
	case b.FirmwarePublish != nil:
		r, _ := releaseOf(b)
		s.facts[releaseFact(r)] = true
	case b.FirmwareVote != nil:
		s.facts[voteFact(b.FirmwareVote.Release, tx.Author)] = true
	case b.FirmwareApprove != nil, b.FirmwareRevoke != nil, b.FirmwarePolicy != nil:
	default:
		return false, nil
	}
	return true, nil
}

// vendor, reviewer and fact look through the batch, its uncommitted
// parents, then the state.
func (b *Batch) vendor(id string) *Vendor {
	for x := b; x != nil && !x.applied; x = x.parent {
		if v, ok := x.vendors[id]; ok {
			return v
		}
	}
	return b.s.vendorOrNil(id)
}

func (b *Batch) reviewer(id string) *ledger.PublicKey {
	for x := b; x != nil && !x.applied; x = x.parent {
		if k, ok := x.reviewers[id]; ok {
			return k
		}
	}
	return b.s.reviewer(id)
}

func (b *Batch) fact(key string) bool {
	for x := b; x != nil && !x.applied; x = x.parent {
		if x.facts[key] {
			return true
		}
	}
	return b.s.fact(key)
}

// idTaken reports whether id names a device, admin, node, vendor or
// reviewer: ids share one namespace, as they are kids.
func (b *Batch) idTaken(id string) bool {
	_, admin := b.s.admins[id]
	_, node := b.s.g.Node(id)
	return admin || node || b.device(id) != nil || b.vendor(id) != nil || b.reviewer(id) != nil
}

// addFirmware admits a firmware tx (other than a device's report).
func (b *Batch) addFirmware(tx *ledger.Tx) error {
	body := &tx.Body
	switch {
	case body.VendorEnroll != nil:
		v := body.VendorEnroll
		if b.idTaken(v.Vendor) {
			return reject(ledger.ReasonExists, "%s is already taken", v.Vendor)
		}
		pk, err := ledger.ParsePublicKey(v.PublicKey)
		if err != nil {
			return reject(ledger.ReasonMalformed, "%v", err)
		}
		b.vendors[v.Vendor] = &Vendor{ID: v.Vendor, Key: pk, Models: v.Models}
	case body.ReviewerEnroll != nil:
		r := body.ReviewerEnroll
		if b.idTaken(r.Reviewer) {
			return reject(ledger.ReasonExists, "%s is already taken", r.Reviewer)
		}
		pk, err := ledger.ParsePublicKey(r.PublicKey)
		if err != nil {
			return reject(ledger.ReasonMalformed, "%v", err)
		}
		b.reviewers[r.Reviewer] = pk
	case body.FirmwarePublish != nil:
		r, _ := releaseOf(body)
		v := b.vendor(tx.Author)
		if v == nil || !slices.Contains(v.Models, r.Model) {
			return reject(ledger.ReasonForbidden, "vendor %s does not make model %s", tx.Author, r.Model)
		}
		if b.fact(releaseFact(r)) {
			return reject(ledger.ReasonExists, "%s version %d is already published", r.Model, r.Version)
		}
		b.facts[releaseFact(r)] = true
	case body.FirmwarePolicy != nil:
	default:
		r, ok := releaseOf(body)
		if !ok {
			return reject(ledger.ReasonMalformed, "unknown kind %q", body.Kind)
		}
		if !b.fact(releaseFact(r)) {
			return reject(ledger.ReasonUnknownRelease, "%s version %d was never published", r.Model, r.Version)
		}
		if body.FirmwareVote != nil {
			key := voteFact(r, tx.Author)
			if b.fact(key) {
				return reject(ledger.ReasonExists, "%s already voted on %s version %d", tx.Author, r.Model, r.Version)
			}
			b.facts[key] = true
		}
	}
	b.ids[tx.ID] = true
	return nil
}
