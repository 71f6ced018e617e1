package state

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Key 16 of a snapshot holds the fleet registry (docs/snapshots.md); a
// chain without batches or enrollment tokens has no key 16, so its
// snapshots hash as before:
//
//	? 16: fleet,
//	fleet = [batches: [* batch], tokens: [* token]]       ; batches by id, tokens by hash
//	batch = [id: tstr, vendor: tstr, model: tstr, groups: [* tstr], height: uint,
//	         approved: bool, revoked: bool, claimed: uint, devices: [+ [tstr, bstr]]]  ; devices by id
//	token = [hash: bstr .size 32, expires: int, device: tstr, model: tstr, groups: [* tstr], used_by: tstr]

type snapFleet struct {
	_       struct{} `cbor:",toarray"`
	Batches []snapBatch
	Tokens  []snapToken
}

type snapBatch struct {
	_        struct{} `cbor:",toarray"`
	ID       string
	Vendor   string
	Model    string
	Groups   []string
	Height   uint64
	Approved bool
	Revoked  bool
	Claimed  uint64
	Devices  []snapKey
}

type snapToken struct {
	_       struct{} `cbor:",toarray"`
	Hash    []byte
	Expires int64
	Device  string
	Model   string
	Groups  []string
	UsedBy  string
}

// fleetSnap copies the fleet registry; nil if it is empty. Batches and
// tokens are replaced, never changed, so pointers are copies.
func (s *State) fleetSnapLocked() *snapFleet {
	if len(s.batches) == 0 && len(s.tokens) == 0 {
		return nil
	}
	f := &snapFleet{Batches: make([]snapBatch, 0, len(s.batches)), Tokens: make([]snapToken, 0, len(s.tokens))}
	for _, id := range slices.Sorted(maps.Keys(s.batches)) {
		fb := s.batches[id]
		sb := snapBatch{ID: fb.ID, Vendor: fb.Vendor, Model: fb.Model, Groups: fb.Groups, Height: fb.Height,
			Approved: fb.Approved, Revoked: fb.Revoked, Claimed: uint64(fb.Claimed), Devices: make([]snapKey, 0, len(fb.Keys))}
		for _, d := range slices.Sorted(maps.Keys(fb.Keys)) {
			sb.Devices = append(sb.Devices, snapKey{ID: d, Key: fb.Keys[d]})
		}
		f.Batches = append(f.Batches, sb)
	}
	for _, t := range s.tokens {
		f.Tokens = append(f.Tokens, snapToken{Hash: t.Hash, Expires: t.Expires, Device: t.DeviceID, Model: t.Model, Groups: t.Groups, UsedBy: t.UsedBy})
	}
	slices.SortFunc(f.Tokens, func(a, b snapToken) int { return bytes.Compare(a.Hash, b.Hash) })
	return f
}

// restoreFleet checks and installs a snapshot's fleet registry.
func (s *State) restoreFleet(f *snapFleet) error {
	if f == nil {
		return nil
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: fleet: %s", ErrBadSnapshot, fmt.Sprintf(format, a...))
	}
	if len(f.Batches) == 0 && len(f.Tokens) == 0 {
		return bad("present but empty")
	}
	for i, b := range f.Batches {
		if i > 0 && f.Batches[i-1].ID >= b.ID {
			return bad("batches not sorted or repeated")
		}
		if !ledger.ValidID(b.ID) || !ledger.ValidID(b.Model) || len(b.Devices) == 0 || len(b.Devices) > ledger.MaxBatchDevices ||
			b.Claimed > uint64(len(b.Devices)) || b.Height == 0 || b.Height > s.height {
			return bad("batch %q", b.ID)
		}
		keys := make(map[string][]byte, len(b.Devices))
		for j, d := range b.Devices {
			if j > 0 && strings.Compare(b.Devices[j-1].ID, d.ID) >= 0 || !ledger.ValidID(d.ID) {
				return bad("batch %s: devices not sorted, repeated or invalid", b.ID)
			}
			if _, err := ledger.ParsePublicKey(d.Key); err != nil {
				return bad("batch %s device %s: %v", b.ID, d.ID, err)
			}
			if _, dup := s.batchOf[d.ID]; dup {
				return bad("device %s in two batches", d.ID)
			}
			keys[d.ID] = d.Key
			s.batchOf[d.ID] = b.ID
		}
		s.batches[b.ID] = &FleetBatch{ID: b.ID, Vendor: b.Vendor, Model: b.Model, Groups: b.Groups, Keys: keys, Height: b.Height,
			Approved: b.Approved, Revoked: b.Revoked, Claimed: int(b.Claimed)}
	}
	for i, t := range f.Tokens {
		if len(t.Hash) != 32 || i > 0 && bytes.Compare(f.Tokens[i-1].Hash, t.Hash) >= 0 {
			return bad("tokens not sorted, repeated or of a bad hash")
		}
		var h [32]byte
		copy(h[:], t.Hash)
		s.tokens[h] = &enrollToken{EnrollToken: ledger.EnrollToken{Hash: t.Hash, Expires: t.Expires, DeviceID: t.Device, Model: t.Model, Groups: t.Groups}, UsedBy: t.UsedBy}
	}
	return nil
}
