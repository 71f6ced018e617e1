package state

import (
	"fmt"
	"sync"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Device is a device's registry entry. Values handed out are copies.
type Device struct {
	ID      string
	Key     *ledger.PublicKey
	Revoked bool
	LastSeq uint64
	// Model and Groups are the device's attributes as enrolled: what
	// policy rules see (never changed in place).
	Model  string
	Groups []string
}

// State is the registry built from committed blocks.
type State struct {
	g      *ledger.Genesis
	admins map[string]*ledger.PublicKey

	mu      sync.RWMutex
	devices map[string]*Device
	byKey   map[string][]*Device // devices by their current key's DER
	configs map[string]uint64    // config.set target -> last version

	vendors   map[string]*Vendor
	reviewers map[string]*ledger.PublicKey
	facts     map[string]bool  // releases published, votes cast
	beats     map[string]int64 // node -> time of its newest committed heartbeat
	members   *ledger.Members  // the member sets by height; replaced, never changed
	height    uint64
	tip       [32]byte // hash of the block at height; the genesis hash at 0
	txs       uint64   // txs in blocks 1 to height

	batches map[string]*FleetBatch    // fleet batches by id; replaced on change, never changed
	batchOf map[string]string         // device id -> the batch that names it
	tokens  map[[32]byte]*enrollToken // enrollment tokens by the hash of their secret; replaced on change

	attests   map[string][]Attestation // node -> its newest node.snapshot attestations, oldest first
	certified Certified                // the newest certified snapshot; zero: none

	policies []*Policy             // policy.set txs committed, oldest first; the last is in force
	rates    map[rateKey]rateCount // rate counters of the policy in force

	pmu    sync.Mutex           // guards pcache
	pcache map[[32]byte]*Policy // compiled policies by hash
}

// New returns the state of an empty chain.
func New(g *ledger.Genesis) (*State, error) {
	s := &State{g: g, admins: map[string]*ledger.PublicKey{}, devices: map[string]*Device{}, byKey: map[string][]*Device{},
		configs: map[string]uint64{}, tip: g.Hash(),
		vendors: map[string]*Vendor{}, reviewers: map[string]*ledger.PublicKey{}, facts: map[string]bool{}, beats: map[string]int64{},
		attests: map[string][]Attestation{}, rates: map[rateKey]rateCount{}, pcache: map[[32]byte]*Policy{},
		batches: map[string]*FleetBatch{}, batchOf: map[string]string{}, tokens: map[[32]byte]*enrollToken{}}
	for _, a := range g.Admins {
		pk, err := ledger.ParsePublicKey(a.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("state: admin %s: %w", a.ID, err)
		}
		s.admins[a.ID] = pk
	}
	m, err := ledger.NewMembers(g)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	s.members = m
	return s, nil
}

// Members returns the chain's member sets as the applied blocks leave
// them, the one pending included.
func (s *State) Members() *ledger.Members {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.members
}

// LastHeartbeat returns the time of node's newest committed heartbeat (0:
// none). A new one must be later.
func (s *State) LastHeartbeat(node string) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.beats[node]
}

// Genesis returns the chain's genesis.
func (s *State) Genesis() *ledger.Genesis { return s.g }

// Txs returns the number of txs in the blocks applied so far.
func (s *State) Txs() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.txs
}

// Tip returns the height and hash of the last applied block.
func (s *State) Tip() (uint64, [32]byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.height, s.tip
}

// Device returns a copy of a device's entry.
func (s *State) Device(id string) (Device, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.devices[id]
	if !ok {
		return Device{}, false
	}
	return *d, true
}

// DeviceByKey returns a copy of the entry of a device whose current key
// is spki (a DER SubjectPublicKeyInfo, compared byte for byte), one that
// is not revoked if there is one, of those the one with the smallest id
// (so the answer does not depend on the order the state was built in:
// replayed, or restored from a snapshot); false if no device has that
// key.
func (s *State) DeviceByKey(spki []byte) (Device, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found *Device
	for _, d := range s.byKey[string(spki)] {
		if found == nil || found.Revoked && !d.Revoked || found.Revoked == d.Revoked && d.ID < found.ID {
			found = d
		}
	}
	if found == nil {
		return Device{}, false
	}
	return *found, true
}

// indexKeyLocked files d under its current key; unindexKeyLocked takes
// it out, before its key changes.
func (s *State) indexKeyLocked(d *Device) {
	k := string(d.Key.DER)
	s.byKey[k] = append(s.byKey[k], d)
}

func (s *State) unindexKeyLocked(d *Device) {
	k := string(d.Key.DER)
	list := s.byKey[k]
	for i, o := range list {
		if o == d {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.byKey, k)
	} else {
		s.byKey[k] = list
	}
}

// ConfigVersion returns the last committed configuration version of a
// config.set target (a device id or group:NAME), 0 if none.
func (s *State) ConfigVersion(target string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.configs[target]
}

// Checked is a tx whose signature verified against Key, its author's key
// at the time of the check.
type Checked struct {
	Tx  *ledger.Tx
	Key *ledger.PublicKey
}

// Check decodes env and checks it against the committed state: author,
// permission and signature. It is safe to call from many goroutines.
func (s *State) Check(env []byte) (*Checked, error) {
	tx, err := s.Decode(env)
	if err != nil {
		return nil, err
	}
	return s.CheckTx(tx)
}

// Decode decodes env, of at most the chain's max_tx_bytes; a tx that
// does not decode is refused (malformed, too_large).
func (s *State) Decode(env []byte) (*ledger.Tx, error) {
	tx, err := ledger.DecodeTx(env, s.g.Params.MaxTxBytes)
	if err != nil {
		return nil, decodeReject(err)
	}
	return tx, nil
}

// CheckTx is Check for a tx already decoded (by ledger.DecodeTx, with any
// limit: the chain's max_tx_bytes is checked here).
func (s *State) CheckTx(tx *ledger.Tx) (*Checked, error) {
	if limit := s.g.Params.MaxTxBytes; limit > 0 && len(tx.Envelope) > limit {
		return nil, decodeReject(fmt.Errorf("%w: %d bytes, limit %d", ledger.ErrTooLarge, len(tx.Envelope), limit))
	}
	if tx.Body.ChainID != s.g.ChainID {
		return nil, reject(ledger.ReasonWrongChain, "tx is for chain %q, this is %q", tx.Body.ChainID, s.g.ChainID)
	}
	key, err := s.authorKey(tx)
	if err != nil {
		return nil, err
	}
	if err := tx.Verify(key); err != nil {
		return nil, reject(ledger.ReasonBadSignature, "%v", err)
	}
	return &Checked{Tx: tx, Key: key}, nil
}

// authorKey finds the key tx must be signed with, after checking that its
// author may issue it.
func (s *State) authorKey(tx *ledger.Tx) (*ledger.PublicKey, error) {
	b := &tx.Body
	switch b.Kind {
	case ledger.KindEnroll, ledger.KindRevoke, ledger.KindConfigSet, ledger.KindReconfig, ledger.KindPolicySet:
		if k, ok := s.admins[tx.Author]; ok {
			if b.PolicySet != nil {
				// Refused at submission: a policy that does not
				// compile, may cost too much or is not newer.
				if _, err := s.checkPolicySet(b.PolicySet, s.policyVersion()); err != nil {
					return nil, err
				}
			}
			return k, nil
		}
		if _, ok := s.Device(tx.Author); ok {
			return nil, reject(ledger.ReasonForbidden, "%s may only be issued by an admin, not device %s", b.Kind, tx.Author)
		}
		return nil, reject(ledger.ReasonUnknownAuthor, "no admin %q", tx.Author)
	case ledger.KindHeartbeat, ledger.KindSnapshot:
		h, _ := s.Tip()
		return s.nodeKey(tx, h+1)
	case ledger.KindVendorEnroll, ledger.KindReviewerEnroll, ledger.KindFirmwarePublish, ledger.KindFirmwareVote,
		ledger.KindFirmwareApprove, ledger.KindFirmwareRevoke, ledger.KindFirmwarePolicy:
		return s.firmwareAuthor(tx, s.vendorOrNil, s.reviewer)
	case ledger.KindFleetBatch, ledger.KindFleetApprove, ledger.KindFleetRevoke, ledger.KindDeviceClaim, ledger.KindEnrollToken:
		h, _ := s.Tip()
		return s.fleetAuthor(tx, s.vendorOrNil, s.fleetBatch, h+1)
	case ledger.KindRekey, ledger.KindRecord, ledger.KindConfigReport, ledger.KindFirmwareReport:
		if b.Subject() != tx.Author {
			return nil, reject(ledger.ReasonForbidden, "%s by %s is about device %s", b.Kind, tx.Author, b.Subject())
		}
		d, ok := s.Device(tx.Author)
		if !ok {
			return nil, reject(ledger.ReasonUnknownAuthor, "no device %q", tx.Author)
		}
		if d.Revoked {
			return nil, reject(ledger.ReasonRevoked, "device %s is revoked", d.ID)
		}
		if seq := seqOf(b); seq <= d.LastSeq {
			return nil, replay(d.LastSeq, "device %s seq %d, last committed %d", d.ID, seq, d.LastSeq)
		}
		return d.Key, nil
	}
	return nil, reject(ledger.ReasonMalformed, "unknown kind %q", b.Kind)
}

// nodeKey is the key of the member that must have signed tx, in a block
// at height; tx must be about its author.
func (s *State) nodeKey(tx *ledger.Tx, height uint64) (*ledger.PublicKey, error) {
	k, ok := s.Members().At(height).Key(tx.Author)
	if !ok {
		return nil, reject(ledger.ReasonUnknownAuthor, "no node %q is a member at height %d", tx.Author, height)
	}
	var node string
	switch {
	case tx.Body.Heartbeat != nil:
		node = tx.Body.Heartbeat.Node
	case tx.Body.NodeSnapshot != nil:
		node = tx.Body.NodeSnapshot.Node
	}
	if node != tx.Author {
		return nil, reject(ledger.ReasonForbidden, "%s by %s names node %s", tx.Body.Kind, tx.Author, node)
	}
	return k, nil
}

// seqOf is the device sequence number a rekey, record or config report
// carries.
func seqOf(b *ledger.Body) uint64 {
	switch {
	case b.Record != nil:
		return b.Record.Seq
	case b.Rekey != nil:
		return b.Rekey.Seq
	case b.ConfigReport != nil:
		return b.ConfigReport.Seq
	case b.FirmwareReport != nil:
		return b.FirmwareReport.Seq
	}
	return 0
}

// Apply applies the txs of the committed block at height, whose hash is
// hash, with time 0: for chains without rate limits (tests). The
// gateway applies blocks with ApplyBlock.
func (s *State) Apply(height uint64, hash [32]byte, txs []*ledger.Tx) error {
	return s.ApplyBlock(height, hash, 0, txs)
}

// ApplyBlock applies the txs of the committed block at height, whose hash
// is hash and whose header's time is t (what the policy's rate counters
// count in). The block must be the one after the current tip.
func (s *State) ApplyBlock(height uint64, hash [32]byte, t int64, txs []*ledger.Tx) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if height != s.height+1 {
		return fmt.Errorf("state: apply block %d at height %d", height, s.height)
	}
	for i, tx := range txs {
		if tx.Body.NodeSnapshot != nil {
			s.attestLocked(tx.Body.NodeSnapshot, height, uint64(i))
			continue
		}
		if tx.Body.PolicySet != nil {
			p, err := s.compiled(tx.Body.PolicySet)
			if err != nil {
				return fmt.Errorf("state: block %d tx %x: %w", height, tx.ID[:8], err)
			}
			s.policies = append(s.policies, p.withTx(height, uint64(i), tx))
			clear(s.rates)
			continue
		}
		if tx.Body.Record != nil && !tx.Pruned {
			s.countLocked(tx.Body.Record, height, t)
		}
		if err := s.applyLocked(tx); err != nil {
			return fmt.Errorf("state: block %d tx %x: %w", height, tx.ID[:8], err)
		}
	}
	s.height, s.tip = height, hash
	s.txs += uint64(len(txs))
	return nil
}

func (s *State) applyLocked(tx *ledger.Tx) error {
	b := &tx.Body
	switch b.Kind {
	case ledger.KindEnroll:
		pk, err := ledger.ParsePublicKey(b.Enroll.PublicKey)
		if err != nil {
			return err
		}
		d := &Device{ID: b.Enroll.DeviceID, Key: pk, Model: b.Enroll.Model, Groups: b.Enroll.Groups}
		s.devices[d.ID] = d
		s.indexKeyLocked(d)
		return nil
	case ledger.KindRevoke:
		if d, ok := s.devices[b.Revoke.DeviceID]; ok {
			d.Revoked = true
			return nil
		}
	case ledger.KindRekey:
		if d, ok := s.devices[b.Rekey.DeviceID]; ok {
			pk, err := ledger.ParsePublicKey(b.Rekey.PublicKey)
			if err != nil {
				return err
			}
			s.unindexKeyLocked(d)
			d.Key, d.LastSeq = pk, b.Rekey.Seq
			s.indexKeyLocked(d)
			return nil
		}
	case ledger.KindRecord, ledger.KindConfigReport, ledger.KindFirmwareReport:
		if d, ok := s.devices[b.Subject()]; ok {
			d.LastSeq = seqOf(b)
			return nil
		}
	case ledger.KindConfigSet:
		s.configs[b.ConfigSet.Target] = b.ConfigSet.Version
		return nil
	case ledger.KindHeartbeat:
		// max: blocks committed before heartbeat times had to rise may
		// hold one that does not.
		s.beats[b.Heartbeat.Node] = max(s.beats[b.Heartbeat.Node], b.Heartbeat.Time)
		return nil
	case ledger.KindReconfig:
		m, err := s.members.Next(s.height+1, tx.ID, b.ClusterReconfig.Nodes)
		if err != nil {
			return err
		}
		s.members = m
		return nil
	}
	if ok, err := s.applyFirmwareLocked(tx); ok {
		return err
	}
	if ok, err := s.applyFleetLocked(tx); ok {
		return err
	}
	return fmt.Errorf("state: invariant: committed %s about unknown device %q", b.Kind, b.Subject())
}

// countLocked counts a committed record in the rate counters of the
// rules of the policy in force that apply to it.
func (s *State) countLocked(r *ledger.Record, height uint64, t int64) {
	p := s.policyLocked()
	d := s.devices[r.DeviceID]
	if p == nil || d == nil {
		return
	}
	in := inputOf(d, r, height, t)
	p.rated(&in, func(i int, rt *ledger.Rate) {
		k := rateKey{rule: p.rules[i].name, device: d.ID}
		w := windowOf(t, rt.Window)
		c := s.rates[k]
		if c.Window != w {
			c = rateCount{Window: w}
		}
		c.Count++
		s.rates[k] = c
	})
}
