package state

import (
	"bytes"
	"maps"
	"slices"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// FleetBatch is a vendor's batch of devices as the ledger holds it
// (docs/fleet.md). Its Keys are shared and never changed.
type FleetBatch struct {
	ID       string
	Vendor   string
	Model    string
	Groups   []string
	Keys     map[string][]byte // device id -> DER SubjectPublicKeyInfo
	Height   uint64            // of the block that published it
	Approved bool
	Revoked  bool
	Claimed  int // devices of the batch enrolled by a claim
}

// BatchInfo is a batch as readers (API, dashboard) see it: a copy.
type BatchInfo struct {
	ID       string   `json:"id"`
	Vendor   string   `json:"vendor"`
	Model    string   `json:"model"`
	Groups   []string `json:"groups"`
	Height   uint64   `json:"height"`
	Devices  int      `json:"devices"`
	Claimed  int      `json:"claimed"`
	Status   string   `json:"status"` // "pending", "approved" or "revoked"
	Approved bool     `json:"approved"`
	Revoked  bool     `json:"revoked"`
}

// BatchDeviceInfo is a device of a batch and whether it was claimed.
type BatchDeviceInfo struct {
	ID        string `json:"id"`
	PublicKey []byte `json:"public_key"`
	Claimed   bool   `json:"claimed"`
}

// enrollToken is a one-time enrollment token as the ledger holds it.
type enrollToken struct {
	ledger.EnrollToken
	UsedBy string // the device that used it; "" while unused
}

func (fb *FleetBatch) info() BatchInfo {
	st := "pending"
	switch {
	case fb.Revoked:
		st = "revoked"
	case fb.Approved:
		st = "approved"
	}
	return BatchInfo{ID: fb.ID, Vendor: fb.Vendor, Model: fb.Model, Groups: slices.Clone(fb.Groups), Height: fb.Height,
		Devices: len(fb.Keys), Claimed: fb.Claimed, Status: st, Approved: fb.Approved, Revoked: fb.Revoked}
}

// Batches returns every batch, sorted by id: the read interface of the
// API and the dashboard.
func (s *State) Batches() []BatchInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]BatchInfo, 0, len(s.batches))
	for _, id := range slices.Sorted(maps.Keys(s.batches)) {
		out = append(out, s.batches[id].info())
	}
	return out
}

// Batch returns a batch and its devices, sorted by id, each with whether
// it was claimed.
func (s *State) Batch(id string) (BatchInfo, []BatchDeviceInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fb, ok := s.batches[id]
	if !ok {
		return BatchInfo{}, nil, false
	}
	devs := make([]BatchDeviceInfo, 0, len(fb.Keys))
	for _, d := range slices.Sorted(maps.Keys(fb.Keys)) {
		_, claimed := s.devices[d]
		devs = append(devs, BatchDeviceInfo{ID: d, PublicKey: fb.Keys[d], Claimed: claimed})
	}
	return fb.info(), devs, true
}

// BatchKey returns the batch that names device and the key it names, if
// the batch is approved and not revoked and the device not yet enrolled:
// whether a claim of device could commit, as the committed state says.
func (s *State) BatchKey(device string) (batch string, key *ledger.PublicKey, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fb := s.batches[s.batchOf[device]]
	if fb == nil || !fb.Approved || fb.Revoked || s.devices[device] != nil {
		return "", nil, false
	}
	pk, err := ledger.ParsePublicKey(fb.Keys[device])
	if err != nil {
		return "", nil, false
	}
	return fb.ID, pk, true
}

// BatchClaim returns a claim of device from batch carrying the attributes
// the batch gives it (key, model, groups: docs/protocol.md 6.18), for a
// claimer to complete and sign; false if the batch does not name device.
func (s *State) BatchClaim(batch, device string) (*ledger.DeviceClaim, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fb := s.batches[batch]
	if fb == nil || fb.Keys[device] == nil {
		return nil, false
	}
	return &ledger.DeviceClaim{DeviceID: device, Batch: batch, PublicKey: slices.Clone(fb.Keys[device]),
		Model: fb.Model, Groups: slices.Clone(fb.Groups)}, true
}

// LedgerTime is the chain's clock as committed state sees it: the newest
// heartbeat time (Unix milliseconds) of any node. Enrollment tokens
// expire by it (docs/protocol.md 6.20).
func (s *State) LedgerTime() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var t int64
	for _, b := range s.beats {
		t = max(t, b)
	}
	return t
}

func (s *State) fleetBatch(id string) *FleetBatch {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.batches[id]
}

func (s *State) batchOfDevice(id string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.batchOf[id]
}

func (s *State) enrollToken(h [32]byte) *enrollToken {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tokens[h]
}

// fleetAuthor finds the key a fleet tx must be signed with. batch looks a
// batch up (in the state, or in a block under construction); height is
// the block's, for a node's claim.
func (s *State) fleetAuthor(tx *ledger.Tx, vendor func(string) *Vendor, batch func(string) *FleetBatch, height uint64) (*ledger.PublicKey, error) {
	b := &tx.Body
	switch b.Kind {
	case ledger.KindFleetApprove, ledger.KindFleetRevoke, ledger.KindEnrollToken:
		if k, ok := s.admins[tx.Author]; ok {
			return k, nil
		}
		return nil, reject(ledger.ReasonUnknownAuthor, "%s may only be issued by an admin; no admin %q", b.Kind, tx.Author)
	case ledger.KindFleetBatch:
		if v := vendor(tx.Author); v != nil {
			return v.Key, nil
		}
		return nil, reject(ledger.ReasonUnknownAuthor, "no vendor %q: a batch is published by its vendor's maintenance key", tx.Author)
	case ledger.KindDeviceClaim:
		c := b.DeviceClaim
		switch c.Path() {
		case ledger.ClaimByToken:
			if tx.Author != c.DeviceID {
				return nil, reject(ledger.ReasonForbidden, "a token claim of %s must be signed by the device, not %s", c.DeviceID, tx.Author)
			}
			pk, err := ledger.ParsePublicKey(c.PublicKey)
			if err != nil {
				return nil, reject(ledger.ReasonMalformed, "%v", err)
			}
			return pk, nil
		case ledger.ClaimByNode:
			k, ok := s.Members().At(height).Key(tx.Author)
			if !ok {
				return nil, reject(ledger.ReasonUnknownAuthor, "no node %q is a member at height %d: a claim with evidence is submitted by a gateway", tx.Author, height)
			}
			return k, nil
		default:
			if tx.Author != c.DeviceID {
				return nil, reject(ledger.ReasonForbidden, "a claim of %s must be signed by the device with its batch key, not by %s", c.DeviceID, tx.Author)
			}
			fb := batch(c.Batch)
			if fb == nil || fb.Keys[c.DeviceID] == nil {
				return nil, reject(ledger.ReasonNotFound, "batch %q does not name device %s: ask the vendor which batch it is in", c.Batch, c.DeviceID)
			}
			pk, err := ledger.ParsePublicKey(fb.Keys[c.DeviceID])
			if err != nil {
				return nil, reject(ledger.ReasonMalformed, "%v", err)
			}
			return pk, nil
		}
	}
	return nil, reject(ledger.ReasonMalformed, "unknown kind %q", b.Kind)
}

// isFleet reports whether k is a fleet kind.
func isFleet(k ledger.Kind) bool {
	switch k {
	case ledger.KindFleetBatch, ledger.KindFleetApprove, ledger.KindFleetRevoke, ledger.KindDeviceClaim, ledger.KindEnrollToken:
		return true
	}
	return false
}

// Batch overlays: the batch, its uncommitted parents, then the state.

func (b *Batch) fleetBatch(id string) *FleetBatch {
	for x := b; x != nil && !x.applied; x = x.parent {
		if fb, ok := x.batches[id]; ok {
			return fb
		}
	}
	return b.s.fleetBatch(id)
}

func (b *Batch) batchOfDevice(id string) string {
	for x := b; x != nil && !x.applied; x = x.parent {
		if bt, ok := x.batchOf[id]; ok {
			return bt
		}
	}
	return b.s.batchOfDevice(id)
}

func (b *Batch) enrollToken(h [32]byte) *enrollToken {
	for x := b; x != nil && !x.applied; x = x.parent {
		if t, ok := x.tokens[h]; ok {
			return t
		}
	}
	return b.s.enrollToken(h)
}

// ledgerTime is LedgerTime as the batch sees it: heartbeats of
// uncommitted parents and of txs before in this block count.
func (b *Batch) ledgerTime() int64 {
	t := b.s.LedgerTime()
	for x := b; x != nil && !x.applied; x = x.parent {
		for _, v := range x.beats {
			t = max(t, v)
		}
	}
	return t
}

// addFleet admits a fleet tx whose author the batch's Check found.
func (b *Batch) addFleet(c *Checked) error {
	tx := c.Tx
	body := &tx.Body
	switch body.Kind {
	case ledger.KindFleetBatch:
		f := body.FleetBatch
		v := b.vendor(tx.Author)
		if v == nil || !slices.Contains(v.Models, f.Model) {
			return reject(ledger.ReasonForbidden, "vendor %s does not make model %s", tx.Author, f.Model)
		}
		if b.fleetBatch(f.Batch) != nil {
			return reject(ledger.ReasonExists, "batch %s is already published: choose another batch id", f.Batch)
		}
		keys := make(map[string][]byte, len(f.Devices))
		for _, d := range f.Devices {
			if b.idTaken(d.DeviceID) {
				return reject(ledger.ReasonExists, "device id %s of the batch is already taken", d.DeviceID)
			}
			if other := b.batchOfDevice(d.DeviceID); other != "" {
				return reject(ledger.ReasonExists, "device id %s is already in batch %s", d.DeviceID, other)
			}
			keys[d.DeviceID] = d.PublicKey
		}
		b.batches[f.Batch] = &FleetBatch{ID: f.Batch, Vendor: tx.Author, Model: f.Model, Groups: f.Groups, Keys: keys, Height: b.height}
		for id := range keys {
			b.batchOf[id] = f.Batch
		}
	case ledger.KindFleetApprove, ledger.KindFleetRevoke:
		id := ""
		if body.FleetApprove != nil {
			id = body.FleetApprove.Batch
		} else {
			id = body.FleetRevoke.Batch
		}
		fb := b.fleetBatch(id)
		if fb == nil {
			return reject(ledger.ReasonNotFound, "no batch %q: the vendor publishes it first (fleet.batch)", id)
		}
		if fb.Revoked {
			return reject(ledger.ReasonRevoked, "batch %s is revoked, for good", id)
		}
		next := *fb
		if body.FleetApprove != nil {
			if fb.Approved {
				return reject(ledger.ReasonExists, "batch %s is already approved", id)
			}
			next.Approved = true
		} else {
			next.Revoked = true
		}
		b.batches[id] = &next
	case ledger.KindEnrollToken:
		t := body.EnrollToken
		var h [32]byte
		copy(h[:], t.Hash)
		if b.enrollToken(h) != nil {
			return reject(ledger.ReasonExists, "a token with this hash exists: make a new secret")
		}
		if t.DeviceID != "" && (b.idTaken(t.DeviceID) || b.batchOfDevice(t.DeviceID) != "") {
			return reject(ledger.ReasonExists, "device id %s is already taken", t.DeviceID)
		}
		b.tokens[h] = &enrollToken{EnrollToken: *t}
	case ledger.KindDeviceClaim:
		return b.addClaim(c)
	}
	b.ids[tx.ID] = true
	return nil
}

// addClaim admits a device.claim: the device is not enrolled, and its
// batch approved and not revoked (the evidence, if any, verifying with
// the batch's key), or its token unused and unexpired.
func (b *Batch) addClaim(c *Checked) error {
	tx := c.Tx
	cl := tx.Body.DeviceClaim
	id := cl.DeviceID
	if d := b.device(id); d != nil {
		return reject(ledger.ReasonExists, "device %s is already enrolled", id)
	}
	var key *ledger.PublicKey
	// The model and groups the claim gives the device, as device.enroll
	// does: policy rules read them (state/policy.go inputOf).
	var model string
	var groups []string
	if cl.Path() == ledger.ClaimByToken {
		h := ledger.SecretHash(cl.Secret)
		t := b.enrollToken(h)
		switch {
		case t == nil:
			return reject(ledger.ReasonNotFound, "no enrollment token has this secret: ask the owner for a token")
		case t.UsedBy != "":
			return reject(ledger.ReasonExists, "the enrollment token was used, by device %s: a token enrolls one device once", t.UsedBy)
		case t.DeviceID != "" && t.DeviceID != id:
			return reject(ledger.ReasonForbidden, "the enrollment token is for device %s, not %s", t.DeviceID, id)
		}
		if now := b.ledgerTime(); t.Expires <= now {
			return reject(ledger.ReasonForbidden, "the enrollment token expired at %d (ledger time %d): ask the owner for a new one", t.Expires, now)
		}
		if b.idTaken(id) || b.batchOfDevice(id) != "" {
			return reject(ledger.ReasonExists, "device id %s is taken", id)
		}
		if err := claimAttributes(cl, "the token", nil, t.Model, t.Groups); err != nil {
			return err
		}
		used := *t
		used.UsedBy = id
		b.tokens[h] = &used
		key = c.Key
		model, groups = t.Model, t.Groups
	} else {
		fb := b.fleetBatch(cl.Batch)
		if fb == nil || fb.Keys[id] == nil {
			return reject(ledger.ReasonNotFound, "batch %q does not name device %s", cl.Batch, id)
		}
		if fb.Revoked {
			return reject(ledger.ReasonRevoked, "batch %s is revoked: it enrolls no more devices", fb.ID)
		}
		if !fb.Approved {
			return reject(ledger.ReasonForbidden, "batch %s is not approved yet: the owner approves it (ledgergate fleet batch approve %s)", fb.ID, fb.ID)
		}
		pk, err := ledger.ParsePublicKey(fb.Keys[id])
		if err != nil {
			return reject(ledger.ReasonMalformed, "%v", err)
		}
		if err := claimAttributes(cl, "batch "+fb.ID, fb.Keys[id], fb.Model, fb.Groups); err != nil {
			return err
		}
		if cl.Path() == ledger.ClaimByNode {
			tok, err := ledger.ClaimToken(cl.Evidence, b.s.g.ChainID)
			if err != nil {
				return reject(ledger.ReasonMalformed, "evidence: %v", err)
			}
			if tok.Claims.Subject != id {
				return reject(ledger.ReasonForbidden, "evidence is a token of %s, not %s", tok.Claims.Subject, id)
			}
			if err := tok.Verify(pk); err != nil {
				return reject(ledger.ReasonBadSignature, "evidence does not verify with the key batch %s names for %s: %v", fb.ID, id, err)
			}
		}
		next := *fb
		next.Claimed++
		b.batches[fb.ID] = &next
		key = pk
		model, groups = fb.Model, fb.Groups
	}
	b.pending[id] = &Device{ID: id, Key: key, Model: model, Groups: groups}
	b.ids[tx.ID] = true
	return nil
}

// claimAttributes refuses a claim whose attributes differ from those of
// its batch or token (from): the claim's receipt proves the device's key,
// model and groups by itself (docs/protocol.md 6.18, 11). der is the key
// from names (nil for a token: the claim's own key is the device's).
func claimAttributes(cl *ledger.DeviceClaim, from string, der []byte, model string, groups []string) error {
	if der != nil && !bytes.Equal(cl.PublicKey, der) {
		return reject(ledger.ReasonForbidden, "public_key of the claim of %s is not the key %s names for it (byte for byte): claim with that key", cl.DeviceID, from)
	}
	if cl.Model != model {
		return reject(ledger.ReasonForbidden, "model of the claim of %s is %q, %s says %q: claim with that model", cl.DeviceID, cl.Model, from, model)
	}
	if !slices.Equal(cl.Groups, groups) {
		return reject(ledger.ReasonForbidden, "groups of the claim of %s are %q, %s says %q: claim with those groups", cl.DeviceID, cl.Groups, from, groups)
	}
	return nil
}

// applyFleetLocked applies a committed fleet tx; false if tx is none.
func (s *State) applyFleetLocked(tx *ledger.Tx) (bool, error) {
	b := &tx.Body
	switch {
	case b.FleetBatch != nil:
		f := b.FleetBatch
		keys := make(map[string][]byte, len(f.Devices))
		for _, d := range f.Devices {
			keys[d.DeviceID] = d.PublicKey
			s.batchOf[d.DeviceID] = f.Batch
		}
		s.batches[f.Batch] = &FleetBatch{ID: f.Batch, Vendor: tx.Author, Model: f.Model, Groups: f.Groups, Keys: keys, Height: s.height + 1}
	case b.FleetApprove != nil:
		if fb := s.batches[b.FleetApprove.Batch]; fb != nil {
			next := *fb // copy on write: batches are read outside the lock
			next.Approved = true
			s.batches[fb.ID] = &next
		}
	case b.FleetRevoke != nil:
		if fb := s.batches[b.FleetRevoke.Batch]; fb != nil {
			next := *fb
			next.Revoked = true
			s.batches[fb.ID] = &next
		}
	case b.EnrollToken != nil:
		var h [32]byte
		copy(h[:], b.EnrollToken.Hash)
		s.tokens[h] = &enrollToken{EnrollToken: *b.EnrollToken}
	case b.DeviceClaim != nil:
		c := b.DeviceClaim
		var der []byte
		var model string
		var groups []string
		if c.Path() == ledger.ClaimByToken {
			der = c.PublicKey
			h := ledger.SecretHash(c.Secret)
			if t := s.tokens[h]; t != nil {
				model, groups = t.Model, t.Groups
				used := *t
				used.UsedBy = c.DeviceID
				s.tokens[h] = &used
			}
		} else if fb := s.batches[c.Batch]; fb != nil {
			der = fb.Keys[c.DeviceID]
			model, groups = fb.Model, fb.Groups
			next := *fb
			next.Claimed++
			s.batches[fb.ID] = &next
		}
		pk, err := ledger.ParsePublicKey(der)
		if err != nil {
			return true, err
		}
		d := &Device{ID: c.DeviceID, Key: pk, Model: model, Groups: groups}
		s.devices[d.ID] = d
		s.indexKeyLocked(d)
	default:
		return false, nil
	}
	return true, nil
}
