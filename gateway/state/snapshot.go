package state

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// A snapshot is the whole state at one height, in one deterministic CBOR
// encoding (RFC 8949 section 4.2.1): two gateways that applied the same
// blocks encode the same bytes, whatever order they learnt of devices in,
// and the SHA-256 of the bytes is the snapshot's hash. Every collection
// is an array sorted by its key; the encoding is, in CDDL:
//
//	snapshot = {
//	  1: uint,                ; format version: 1
//	  2: tstr,                ; chain id
//	  3: bstr .size 32,       ; genesis hash
//	  4: uint,                ; height of the last block applied
//	  5: bstr .size 32,       ; its hash (the genesis hash at 0)
//	  6: uint,                ; txs applied, blocks 1 to height
//	  7: [* device],          ; by id
//	  8: [* [tstr, uint]],    ; config.set target, last version; by target
//	  9: [* vendor],          ; by id
//	  10: [* [tstr, bstr]],   ; reviewer id, key (DER SPKI); by id
//	  11: [* tstr],           ; firmware facts (releases published, votes cast); sorted
//	  12: [* [tstr, int]],    ; node, time of its newest heartbeat; by node
//	  13: [* attestation],    ; each node's newest node.snapshot txs (at most 4); by node, then height
//	  14: certified,          ; the newest certified snapshot
//	  ? 15: [+ change],       ; the member changes (cluster.reconfig), oldest first; absent: none
//	  ? 17: policy-state,     ; policies, device attributes, rate counters; absent: all empty
//	}
//	device = [id: tstr, key: bstr, revoked: bool, last_seq: uint]
//	vendor = [id: tstr, key: bstr, models: [* tstr]]
//	attestation = [node: tstr, height: uint, hash: bstr .size 32, block: uint, index: uint]
//	certified = [height: uint, hash: bstr .size 32, by: [* attestation]]  ; by node; height 0, 32 zero bytes, []: none
//	change = [height: uint, tx: bstr .size 32, start: uint, nodes: [+ Node]]  ; Node as in the genesis
//	policy-state = {
//	  ? 1: [+ policy-change], ; every policy.set committed, oldest first
//	  ? 2: [+ attrs],         ; devices enrolled with a model or groups; by id
//	  ? 3: [+ rate],          ; the rate counters of the policy in force; by rule, then device
//	}
//	policy-change = [height: uint, index: uint, tx: bstr .size 32, author: tstr, policy: bstr]  ; policy: the PolicySet's deterministic encoding
//	attrs = [id: tstr, model: tstr, groups: [* tstr]]
//	rate = [rule: tstr, device: tstr, window: uint, count: uint]
//
// Admins and the genesis nodes' keys come from the genesis, which the
// snapshot names by its hash. A chain whose members never changed has no
// key 15, so its snapshots are those of gateways that predate changes;
// one that never had a policy and no device with a model or groups has
// no key 17.

// SnapshotVersion is the format version a snapshot carries in key 1.
const SnapshotVersion = 1

// MaxSnapshotBytes bounds the encoding a decoder accepts (1 GiB).
const MaxSnapshotBytes = 1 << 30

// Snapshot is a copy of the state at one height, taken under the state's
// lock (State.Snapshot) and encoded without it (Encode).
type Snapshot struct {
	Height uint64
	Tip    [32]byte
	Txs    uint64

	g         *ledger.Genesis
	devices   []Device
	configs   map[string]uint64
	vendors   []*Vendor
	reviewers map[string]*ledger.PublicKey
	facts     []string
	beats     map[string]int64
	attests   []Attestation
	certified Certified
	members   *ledger.Members
	fleet     *snapFleet
	policies  []*Policy
	rates     map[rateKey]rateCount
}

// Snapshot copies the state. It holds the read lock for the copy only:
// devices are copied by value (their keys are immutable and shared),
// vendors by pointer (a vendor is replaced, never changed).
func (s *State) Snapshot() *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sn := &Snapshot{Height: s.height, Tip: s.tip, Txs: s.txs, g: s.g,
		devices:   make([]Device, 0, len(s.devices)),
		configs:   maps.Clone(s.configs),
		vendors:   make([]*Vendor, 0, len(s.vendors)),
		reviewers: maps.Clone(s.reviewers),
		facts:     make([]string, 0, len(s.facts)),
		beats:     maps.Clone(s.beats),
	}
	for _, d := range s.devices {
		sn.devices = append(sn.devices, *d)
	}
	for _, v := range s.vendors {
		sn.vendors = append(sn.vendors, v)
	}
	for f := range s.facts {
		sn.facts = append(sn.facts, f)
	}
	for _, as := range s.attests {
		sn.attests = append(sn.attests, as...)
	}
	sn.certified = s.certified // By is never changed in place
	sn.members = s.members
	sn.fleet = s.fleetSnapLocked()
	sn.policies = slices.Clone(s.policies)
	sn.rates = maps.Clone(s.rates)
	return sn
}

// The encoded form. Arrays of sorted entries, not maps: a map's pairs
// are bounded by decoders, and the order is part of the check.
type snapEnc struct {
	Version   uint64       `cbor:"1,keyasint"`
	ChainID   string       `cbor:"2,keyasint"`
	Genesis   []byte       `cbor:"3,keyasint"`
	Height    uint64       `cbor:"4,keyasint"`
	Tip       []byte       `cbor:"5,keyasint"`
	Txs       uint64       `cbor:"6,keyasint"`
	Devices   []snapDevice `cbor:"7,keyasint"`
	Configs   []snapConfig `cbor:"8,keyasint"`
	Vendors   []snapVendor `cbor:"9,keyasint"`
	Reviewers []snapKey    `cbor:"10,keyasint"`
	Facts     []string     `cbor:"11,keyasint"`
	Beats     []snapBeat   `cbor:"12,keyasint"`
	Attests   []snapAttest `cbor:"13,keyasint"`
	Certified snapCert     `cbor:"14,keyasint"`
	Changes   []snapChange `cbor:"15,keyasint,omitempty"`
	Fleet     *snapFleet   `cbor:"16,keyasint,omitempty"` // fleet_snapshot.go
	Policy    *snapPolicy  `cbor:"17,keyasint,omitempty"`
}

type snapPolicy struct {
	Changes []snapPolicyChange `cbor:"1,keyasint,omitempty"`
	Attrs   []snapAttrs        `cbor:"2,keyasint,omitempty"`
	Rates   []snapRate         `cbor:"3,keyasint,omitempty"`
}

type snapPolicyChange struct {
	_      struct{} `cbor:",toarray"`
	Height uint64
	Index  uint64
	Tx     []byte
	Author string
	Policy []byte
}

type snapAttrs struct {
	_      struct{} `cbor:",toarray"`
	ID     string
	Model  string
	Groups []string
}

type snapRate struct {
	_      struct{} `cbor:",toarray"`
	Rule   string
	Device string
	Window uint64
	Count  uint64
}

type snapChange struct {
	_      struct{} `cbor:",toarray"`
	Height uint64
	Tx     []byte
	Start  uint64
	Nodes  []ledger.Node
}

type snapAttest struct {
	_      struct{} `cbor:",toarray"`
	Node   string
	Height uint64
	Hash   []byte
	Block  uint64
	Index  uint64
}

type snapCert struct {
	_      struct{} `cbor:",toarray"`
	Height uint64
	Hash   []byte
	By     []snapAttest
}

func attestEnc(a Attestation) snapAttest {
	return snapAttest{Node: a.Node, Height: a.Height, Hash: bytes.Clone(a.Hash[:]), Block: a.Block, Index: a.Index}
}

func cmpAttest(a, b snapAttest) int {
	if c := strings.Compare(a.Node, b.Node); c != 0 {
		return c
	}
	return cmp.Compare(a.Height, b.Height)
}

type snapDevice struct {
	_       struct{} `cbor:",toarray"`
	ID      string
	Key     []byte
	Revoked bool
	LastSeq uint64
}

type snapConfig struct {
	_       struct{} `cbor:",toarray"`
	Target  string
	Version uint64
}

type snapVendor struct {
	_      struct{} `cbor:",toarray"`
	ID     string
	Key    []byte
	Models []string
}

type snapKey struct {
	_   struct{} `cbor:",toarray"`
	ID  string
	Key []byte
}

type snapBeat struct {
	_    struct{} `cbor:",toarray"`
	Node string
	Time int64
}

var snapEncMode, snapDecMode = snapModes()

func snapModes() (cbor.EncMode, cbor.DecMode) {
	eo := cbor.CoreDetEncOptions()
	eo.NilContainers = cbor.NilContainerAsEmpty
	em, err := eo.EncMode()
	if err != nil {
		panic("state: invariant: cbor enc mode: " + err.Error())
	}
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   8,
		MaxArrayElements:  1 << 28,
		MaxMapPairs:       32,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic("state: invariant: cbor dec mode: " + err.Error())
	}
	return em, dm
}

// Encode returns the snapshot's deterministic encoding; its SHA-256 is
// the snapshot's hash.
func (sn *Snapshot) Encode() ([]byte, error) {
	gh := sn.g.Hash()
	e := snapEnc{Version: SnapshotVersion, ChainID: sn.g.ChainID, Genesis: gh[:], Height: sn.Height, Tip: sn.Tip[:], Txs: sn.Txs,
		Devices: make([]snapDevice, 0, len(sn.devices)), Configs: make([]snapConfig, 0, len(sn.configs)),
		Vendors: make([]snapVendor, 0, len(sn.vendors)), Reviewers: make([]snapKey, 0, len(sn.reviewers)),
		Facts: slices.Sorted(slices.Values(sn.facts)), Beats: make([]snapBeat, 0, len(sn.beats))}
	for _, d := range sn.devices {
		e.Devices = append(e.Devices, snapDevice{ID: d.ID, Key: d.Key.DER, Revoked: d.Revoked, LastSeq: d.LastSeq})
	}
	slices.SortFunc(e.Devices, func(a, b snapDevice) int { return strings.Compare(a.ID, b.ID) })
	for _, t := range slices.Sorted(maps.Keys(sn.configs)) {
		e.Configs = append(e.Configs, snapConfig{Target: t, Version: sn.configs[t]})
	}
	for _, v := range sn.vendors {
		e.Vendors = append(e.Vendors, snapVendor{ID: v.ID, Key: v.Key.DER, Models: v.Models})
	}
	slices.SortFunc(e.Vendors, func(a, b snapVendor) int { return strings.Compare(a.ID, b.ID) })
	for _, id := range slices.Sorted(maps.Keys(sn.reviewers)) {
		e.Reviewers = append(e.Reviewers, snapKey{ID: id, Key: sn.reviewers[id].DER})
	}
	for _, n := range slices.Sorted(maps.Keys(sn.beats)) {
		e.Beats = append(e.Beats, snapBeat{Node: n, Time: sn.beats[n]})
	}
	e.Attests = make([]snapAttest, 0, len(sn.attests))
	for _, a := range sn.attests {
		e.Attests = append(e.Attests, attestEnc(a))
	}
	slices.SortFunc(e.Attests, cmpAttest)
	e.Certified = snapCert{Height: sn.certified.Height, Hash: bytes.Clone(sn.certified.Hash[:]), By: make([]snapAttest, 0, len(sn.certified.By))}
	for _, a := range sn.certified.By {
		e.Certified.By = append(e.Certified.By, attestEnc(a))
	}
	for _, c := range sn.members.Changes() {
		e.Changes = append(e.Changes, snapChange{Height: c.Height, Tx: bytes.Clone(c.Tx[:]), Start: c.Start, Nodes: c.Nodes})
	}
	e.Fleet = sn.fleet
	var ps snapPolicy
	for _, p := range sn.policies {
		enc, err := snapEncMode.Marshal(&p.Set)
		if err != nil {
			return nil, fmt.Errorf("state: encode snapshot: policy: %w", err)
		}
		ps.Changes = append(ps.Changes, snapPolicyChange{Height: p.Height, Index: p.Index, Tx: bytes.Clone(p.Tx[:]), Author: p.Author, Policy: enc})
	}
	for _, d := range sn.devices {
		if d.Model != "" || len(d.Groups) > 0 {
			ps.Attrs = append(ps.Attrs, snapAttrs{ID: d.ID, Model: d.Model, Groups: d.Groups})
		}
	}
	slices.SortFunc(ps.Attrs, func(a, b snapAttrs) int { return strings.Compare(a.ID, b.ID) })
	for k, c := range sn.rates {
		ps.Rates = append(ps.Rates, snapRate{Rule: k.rule, Device: k.device, Window: c.Window, Count: c.Count})
	}
	slices.SortFunc(ps.Rates, cmpRate)
	if len(ps.Changes)+len(ps.Attrs)+len(ps.Rates) > 0 {
		e.Policy = &ps
	}
	out, err := snapEncMode.Marshal(&e)
	if err != nil {
		return nil, fmt.Errorf("state: encode snapshot: %w", err)
	}
	return out, nil
}

func cmpRate(a, b snapRate) int {
	if c := strings.Compare(a.Rule, b.Rule); c != 0 {
		return c
	}
	return strings.Compare(a.Device, b.Device)
}

// SnapshotHash is the hash of an encoded snapshot.
func SnapshotHash(enc []byte) [32]byte { return sha256.Sum256(enc) }

// ErrBadSnapshot is wrapped by every error of Restore: the bytes are not
// a snapshot of this chain in the one deterministic encoding.
var ErrBadSnapshot = errors.New("state: bad snapshot")

// Restore builds the state a snapshot encodes. enc is outside bytes (a
// file, a peer): every rule of the encoding is checked, and the snapshot
// must be of g's chain. Restore does not know whether the state is the
// one the chain's blocks build: the caller checks Tip against the block
// log, or the snapshot's hash against a certificate.
func Restore(g *ledger.Genesis, enc []byte) (*State, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, a...))
	}
	if len(enc) > MaxSnapshotBytes {
		return nil, bad("%d bytes, limit %d", len(enc), MaxSnapshotBytes)
	}
	var e snapEnc
	if err := snapDecMode.Unmarshal(enc, &e); err != nil {
		return nil, bad("%v", err)
	}
	again, err := snapEncMode.Marshal(&e)
	if err != nil {
		return nil, bad("re-encode: %v", err)
	}
	if !bytes.Equal(again, enc) {
		return nil, bad("not in deterministic encoding")
	}
	if e.Version != SnapshotVersion {
		return nil, bad("format version %d, want %d", e.Version, SnapshotVersion)
	}
	gh := g.Hash()
	if e.ChainID != g.ChainID || !bytes.Equal(e.Genesis, gh[:]) {
		return nil, bad("of chain %q with genesis %x, this is %q with %x", e.ChainID, e.Genesis, g.ChainID, gh)
	}
	if len(e.Tip) != 32 {
		return nil, bad("tip of %d bytes", len(e.Tip))
	}
	if e.Height == 0 && !bytes.Equal(e.Tip, gh[:]) {
		return nil, bad("tip at height 0 is not the genesis hash")
	}
	s, err := New(g)
	if err != nil {
		return nil, err
	}
	epochs := []ledger.Epoch{{Start: 1, Nodes: g.Nodes}}
	for _, c := range e.Changes {
		if len(c.Tx) != 32 || c.Height == 0 || c.Height > e.Height {
			return nil, bad("member change at height %d (tx id of %d bytes) in a snapshot at %d", c.Height, len(c.Tx), e.Height)
		}
		x := ledger.Epoch{Start: c.Start, Nodes: c.Nodes, Height: c.Height}
		copy(x.Tx[:], c.Tx)
		epochs = append(epochs, x)
	}
	if s.members, err = ledger.RestoreMembers(g, epochs); err != nil {
		return nil, bad("%v", err)
	}
	s.height, s.txs = e.Height, e.Txs
	copy(s.tip[:], e.Tip)
	// Keys are parsed once per distinct key (devices often share none,
	// but a parse is the costly part of a restore).
	keys := map[string]*ledger.PublicKey{}
	parse := func(der []byte) (*ledger.PublicKey, error) {
		if k, ok := keys[string(der)]; ok {
			return k, nil
		}
		k, err := ledger.ParsePublicKey(der)
		if err != nil {
			return nil, err
		}
		keys[string(der)] = k
		return k, nil
	}
	sorted := func(what string, n int, key func(int) string) error {
		for i := 1; i < n; i++ {
			if key(i-1) >= key(i) {
				return bad("%s %q after %q: not sorted or repeated", what, key(i), key(i-1))
			}
		}
		return nil
	}
	if err := sorted("device", len(e.Devices), func(i int) string { return e.Devices[i].ID }); err != nil {
		return nil, err
	}
	for _, d := range e.Devices {
		if d.ID == "" {
			return nil, bad("device with an empty id")
		}
		pk, err := parse(d.Key)
		if err != nil {
			return nil, bad("device %s: %v", d.ID, err)
		}
		dev := &Device{ID: d.ID, Key: pk, Revoked: d.Revoked, LastSeq: d.LastSeq}
		s.devices[d.ID] = dev
		s.indexKeyLocked(dev)
	}
	if err := sorted("config target", len(e.Configs), func(i int) string { return e.Configs[i].Target }); err != nil {
		return nil, err
	}
	for _, c := range e.Configs {
		s.configs[c.Target] = c.Version
	}
	if err := sorted("vendor", len(e.Vendors), func(i int) string { return e.Vendors[i].ID }); err != nil {
		return nil, err
	}
	for _, v := range e.Vendors {
		pk, err := parse(v.Key)
		if err != nil {
			return nil, bad("vendor %s: %v", v.ID, err)
		}
		s.vendors[v.ID] = &Vendor{ID: v.ID, Key: pk, Models: v.Models}
	}
	if err := sorted("reviewer", len(e.Reviewers), func(i int) string { return e.Reviewers[i].ID }); err != nil {
		return nil, err
	}
	for _, r := range e.Reviewers {
		pk, err := parse(r.Key)
		if err != nil {
			return nil, bad("reviewer %s: %v", r.ID, err)
		}
		s.reviewers[r.ID] = pk
	}
	if err := sorted("fact", len(e.Facts), func(i int) string { return e.Facts[i] }); err != nil {
		return nil, err
	}
	for _, f := range e.Facts {
		s.facts[f] = true
	}
	if err := sorted("heartbeat node", len(e.Beats), func(i int) string { return e.Beats[i].Node }); err != nil {
		return nil, err
	}
	for _, b := range e.Beats {
		s.beats[b.Node] = b.Time
	}
	attest := func(a snapAttest) (Attestation, error) {
		if _, ok := s.members.Ever(a.Node); !ok {
			return Attestation{}, bad("attestation by %q, never a member", a.Node)
		}
		if len(a.Hash) != 32 || a.Height == 0 || a.Block <= a.Height || a.Block > e.Height {
			return Attestation{}, bad("attestation by %s of height %d in block %d (hash of %d bytes)", a.Node, a.Height, a.Block, len(a.Hash))
		}
		out := Attestation{Node: a.Node, Height: a.Height, Block: a.Block, Index: a.Index}
		copy(out.Hash[:], a.Hash)
		return out, nil
	}
	for i, a := range e.Attests {
		if i > 0 && cmpAttest(e.Attests[i-1], a) >= 0 {
			return nil, bad("attestations not sorted or repeated")
		}
		x, err := attest(a)
		if err != nil {
			return nil, err
		}
		if len(s.attests[a.Node]) == maxAttests {
			return nil, bad("more than %d attestations by %s", maxAttests, a.Node)
		}
		s.attests[a.Node] = append(s.attests[a.Node], x)
	}
	if err := s.restorePolicy(e.Policy, e.Height, bad); err != nil {
		return nil, err
	}
	c := e.Certified
	if c.Height == 0 {
		if !bytes.Equal(c.Hash, make([]byte, 32)) || len(c.By) != 0 {
			return nil, bad("no certified snapshot, but a hash or attestations")
		}
	} else {
		if q := s.members.At(c.Height).Quorum(); len(c.Hash) != 32 || len(c.By) < q {
			return nil, bad("certified snapshot at %d with %d attestations, a quorum is %d", c.Height, len(c.By), q)
		}
		s.certified.Height = c.Height
		copy(s.certified.Hash[:], c.Hash)
		for i, a := range c.By {
			if i > 0 && c.By[i-1].Node >= a.Node {
				return nil, bad("certifying attestations not sorted by node or repeated")
			}
			if a.Height != c.Height || !bytes.Equal(a.Hash, c.Hash) {
				return nil, bad("an attestation of %d certifies the snapshot at %d", a.Height, c.Height)
			}
			x, err := attest(a)
			if err != nil {
				return nil, err
			}
			s.certified.By = append(s.certified.By, x)
		}
	}
	if err := s.restoreFleet(e.Fleet); err != nil {
		return nil, err
	}
	return s, nil
}

// restorePolicy restores key 17: the policies, the devices' attributes
// and the rate counters.
func (s *State) restorePolicy(ps *snapPolicy, height uint64, bad func(string, ...any) error) error {
	if ps == nil {
		return nil
	}
	if len(ps.Changes)+len(ps.Attrs)+len(ps.Rates) == 0 {
		return bad("policy state present but empty")
	}
	for i, c := range ps.Changes {
		if len(c.Tx) != 32 || c.Height == 0 || c.Height > height {
			return bad("policy change at height %d (tx id of %d bytes) in a snapshot at %d", c.Height, len(c.Tx), height)
		}
		if i > 0 {
			prev := ps.Changes[i-1]
			if prev.Height > c.Height || prev.Height == c.Height && prev.Index >= c.Index {
				return bad("policy changes not in chain order")
			}
		}
		set, err := decodePolicySet(c.Policy)
		if err != nil {
			return bad("policy change at height %d: %v", c.Height, err)
		}
		p, err := s.compiled(set)
		if err != nil {
			return bad("policy change at height %d: %v", c.Height, err)
		}
		p = &Policy{Height: c.Height, Index: c.Index, Author: c.Author, Set: p.Set, Hash: p.Hash, rules: p.rules}
		copy(p.Tx[:], c.Tx)
		s.policies = append(s.policies, p)
	}
	for i, a := range ps.Attrs {
		if i > 0 && ps.Attrs[i-1].ID >= a.ID {
			return bad("device attributes not sorted or repeated")
		}
		d := s.devices[a.ID]
		if d == nil || a.Model == "" && len(a.Groups) == 0 {
			return bad("attributes of %q: no such device, or none", a.ID)
		}
		d.Model, d.Groups = a.Model, a.Groups
	}
	for i, r := range ps.Rates {
		if i > 0 && cmpRate(ps.Rates[i-1], r) >= 0 {
			return bad("rate counters not sorted or repeated")
		}
		if r.Count == 0 {
			return bad("rate counter of %s for %s is 0", r.Rule, r.Device)
		}
		s.rates[rateKey{rule: r.Rule, device: r.Device}] = rateCount{Window: r.Window, Count: r.Count}
	}
	return nil
}
