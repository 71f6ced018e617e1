package state

import (
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// Batch checks the order-dependent rules for the txs of one block under
// construction, on top of the committed state, or on top of the batch of
// an uncommitted parent block (replicas validate several blocks in
// flight). Batches are used by one goroutine, the one that applies
// blocks to the state.
type Batch struct {
	s       *State
	parent  *Batch
	pending map[string]*Device // devices touched by txs already in the batch
	configs map[string]uint64  // config versions set by txs already in the batch

	vendors    map[string]*Vendor
	reviewers  map[string]*ledger.PublicKey
	facts      map[string]bool
	ids        map[[32]byte]bool
	beats      map[string]int64  // heartbeat times of txs already in the batch
	attested   map[string]uint64 // node.snapshot heights of txs already in the batch
	batches    map[string]*FleetBatch
	batchOf    map[string]string
	tokens     map[[32]byte]*enrollToken
	newMembers *ledger.Members // set by a cluster.reconfig already in the batch
	height     uint64          // of the batch's block
	applied    bool            // the block of this batch was applied to the state

	time   int64                 // of the batch's block (SetTime): the ledger time rules see
	policy *Policy               // set by a policy.set already in the batch
	rates  map[rateKey]rateCount // rate counters as txs already in the batch leave them
	reset  bool                  // a policy.set in the batch cleared the counters before it
}

// SetTime sets the time of the batch's block (its header's, Unix ms): the
// ledger time policy rules see and rate limits count in. The proposer
// sets its clock's time before it adds txs; a validator, the header's.
func (b *Batch) SetTime(t int64) { b.time = t }

// policy returns the policy in force as the batch sees it.
func (b *Batch) policyNow() *Policy {
	for x := b; x != nil && !x.applied; x = x.parent {
		if x.policy != nil {
			return x.policy
		}
	}
	return b.s.Policy()
}

// rate returns a rate counter as the batch sees it.
func (b *Batch) rate(k rateKey) rateCount {
	for x := b; x != nil && !x.applied; x = x.parent {
		if c, ok := x.rates[k]; ok {
			return c
		}
		if x.reset {
			return rateCount{}
		}
	}
	b.s.mu.RLock()
	defer b.s.mu.RUnlock()
	return b.s.rates[k]
}

// NewBatch starts a batch on the current committed state.
func (s *State) NewBatch() *Batch { return s.NewBatchOn(nil) }

// NewBatchOn starts a batch for the block after parent's block; a nil
// parent is the committed state.
func (s *State) NewBatchOn(parent *Batch) *Batch {
	b := &Batch{s: s, parent: parent, pending: map[string]*Device{}, configs: map[string]uint64{}, ids: map[[32]byte]bool{}, beats: map[string]int64{},
		attested: map[string]uint64{}, rates: map[rateKey]rateCount{},
		batches: map[string]*FleetBatch{}, batchOf: map[string]string{}, tokens: map[[32]byte]*enrollToken{},
		vendors: map[string]*Vendor{}, reviewers: map[string]*ledger.PublicKey{}, facts: map[string]bool{}}
	if parent != nil {
		b.height = parent.height + 1
	} else {
		h, _ := s.Tip()
		b.height = h + 1
	}
	return b
}

// members returns the member sets as the batch sees them.
func (b *Batch) members() *ledger.Members {
	for x := b; x != nil && !x.applied; x = x.parent {
		if x.newMembers != nil {
			return x.newMembers
		}
	}
	return b.s.Members()
}

// Applied marks that the batch's block was applied to the state: batches
// built on it then read the state instead.
func (b *Batch) Applied() { b.applied = true }

// device returns the device as the batch sees it, or nil.
func (b *Batch) device(id string) *Device {
	for x := b; x != nil && !x.applied; x = x.parent {
		if d, ok := x.pending[id]; ok {
			return d
		}
	}
	if d, ok := b.s.Device(id); ok {
		return &d
	}
	return nil
}

// lastHeartbeat returns node's newest heartbeat time as the batch sees it.
func (b *Batch) lastHeartbeat(node string) int64 {
	for x := b; x != nil && !x.applied; x = x.parent {
		if t, ok := x.beats[node]; ok {
			return t
		}
	}
	return b.s.LastHeartbeat(node)
}

// lastAttested returns the height of node's newest node.snapshot as the
// batch sees it.
func (b *Batch) lastAttested(node string) uint64 {
	for x := b; x != nil && !x.applied; x = x.parent {
		if h, ok := x.attested[node]; ok {
			return h
		}
	}
	return b.s.LastAttested(node)
}

// configVersion returns a target's last config version as the batch sees it.
func (b *Batch) configVersion(target string) uint64 {
	for x := b; x != nil && !x.applied; x = x.parent {
		if v, ok := x.configs[target]; ok {
			return v
		}
	}
	return b.s.ConfigVersion(target)
}

// Check checks tx's author and permission as the batch sees the registry
// (a device enrolled or re-keyed by an uncommitted parent block counts),
// and returns the key its signature must verify with. It does not verify
// the signature: the caller does, for many txs at once.
func (b *Batch) Check(tx *ledger.Tx) (*Checked, error) {
	if tx.Body.ChainID != b.s.g.ChainID {
		return nil, reject(ledger.ReasonWrongChain, "tx is for chain %q, this is %q", tx.Body.ChainID, b.s.g.ChainID)
	}
	body := &tx.Body
	switch body.Kind {
	case ledger.KindEnroll, ledger.KindRevoke, ledger.KindConfigSet, ledger.KindReconfig, ledger.KindPolicySet:
		if k, ok := b.s.admins[tx.Author]; ok {
			return &Checked{Tx: tx, Key: k}, nil
		}
		return nil, reject(ledger.ReasonUnknownAuthor, "no admin %q", tx.Author)
	case ledger.KindHeartbeat, ledger.KindSnapshot:
		k, err := b.s.nodeKey(tx, b.height)
		if err != nil {
			return nil, err
		}
		return &Checked{Tx: tx, Key: k}, nil
	case ledger.KindVendorEnroll, ledger.KindReviewerEnroll, ledger.KindFirmwarePublish, ledger.KindFirmwareVote,
		ledger.KindFirmwareApprove, ledger.KindFirmwareRevoke, ledger.KindFirmwarePolicy:
		k, err := b.s.firmwareAuthor(tx, b.vendor, b.reviewer)
		if err != nil {
			return nil, err
		}
		return &Checked{Tx: tx, Key: k}, nil
	case ledger.KindFleetBatch, ledger.KindFleetApprove, ledger.KindFleetRevoke, ledger.KindDeviceClaim, ledger.KindEnrollToken:
		k, err := b.s.fleetAuthor(tx, b.vendor, b.fleetBatch, b.height)
		if err != nil {
			return nil, err
		}
		return &Checked{Tx: tx, Key: k}, nil
	case ledger.KindRekey, ledger.KindRecord, ledger.KindConfigReport, ledger.KindFirmwareReport:
		if body.Subject() != tx.Author {
			return nil, reject(ledger.ReasonForbidden, "%s by %s is about device %s", body.Kind, tx.Author, body.Subject())
		}
		d := b.device(tx.Author)
		if d == nil {
			return nil, reject(ledger.ReasonUnknownAuthor, "no device %q", tx.Author)
		}
		return &Checked{Tx: tx, Key: d.Key}, nil
	}
	return nil, reject(ledger.ReasonMalformed, "unknown kind %q", body.Kind)
}

// Add admits c to the batch if the batch so far leaves it valid.
func (b *Batch) Add(c *Checked) error {
	tx := c.Tx
	if b.ids[tx.ID] {
		var last uint64
		if d := b.device(tx.Body.Subject()); d != nil {
			last = d.LastSeq
		}
		return replay(last, "tx %x is already in this block", tx.ID[:8])
	}
	body := &tx.Body
	switch body.Kind {
	case ledger.KindConfigSet:
		return b.addConfig(tx)
	case ledger.KindReconfig:
		return b.addReconfig(tx)
	case ledger.KindPolicySet:
		return b.addPolicy(tx)
	case ledger.KindHeartbeat:
		// A heartbeat's time is its sequence number: without one, a
		// heartbeat re-proposed after a view change would commit again.
		hb := body.Heartbeat
		if last := b.lastHeartbeat(hb.Node); hb.Time <= last {
			return reject(ledger.ReasonReplay, "heartbeat of %s at %d is not after its last, at %d", hb.Node, hb.Time, last)
		}
		b.ids[tx.ID] = true
		b.beats[hb.Node] = hb.Time
		return nil
	case ledger.KindSnapshot:
		// The height is the attestation's sequence number: each is
		// above the node's last, so none commits twice and a node's
		// attestations in the state stay few (maxAttests).
		ns := body.NodeSnapshot
		if last := b.lastAttested(ns.Node); ns.Height <= last {
			return reject(ledger.ReasonReplay, "node.snapshot of %s at height %d is not above its last, at %d", ns.Node, ns.Height, last)
		}
		b.ids[tx.ID] = true
		b.attested[ns.Node] = ns.Height
		return nil
	case ledger.KindVendorEnroll, ledger.KindReviewerEnroll, ledger.KindFirmwarePublish, ledger.KindFirmwareVote,
		ledger.KindFirmwareApprove, ledger.KindFirmwareRevoke, ledger.KindFirmwarePolicy:
		return b.addFirmware(tx)
	}
	if isFleet(body.Kind) {
		return b.addFleet(c)
	}
	id := body.Subject()
	d := b.device(id)
	var next Device
	switch body.Kind {
	case ledger.KindEnroll:
		if d != nil {
			return reject(ledger.ReasonExists, "device %s is already enrolled", id)
		}
		if b.vendor(id) != nil || b.reviewer(id) != nil {
			return reject(ledger.ReasonExists, "%s is a vendor or reviewer id", id)
		}
		if bt := b.batchOfDevice(id); bt != "" {
			return reject(ledger.ReasonExists, "%s is a device of batch %s: it enrolls by a claim (device.claim)", id, bt)
		}
		if _, admin := b.s.admins[id]; admin {
			return reject(ledger.ReasonExists, "%s is an admin id", id)
		}
		if _, node := b.members().Ever(id); node {
			return reject(ledger.ReasonExists, "%s is a node id", id)
		}
		pk, err := ledger.ParsePublicKey(body.Enroll.PublicKey)
		if err != nil {
			return reject(ledger.ReasonMalformed, "%v", err)
		}
		next = Device{ID: id, Key: pk, Model: body.Enroll.Model, Groups: body.Enroll.Groups}
	case ledger.KindRevoke:
		if d == nil {
			return reject(ledger.ReasonUnknownDevice, "no device %q", id)
		}
		if d.Revoked {
			return reject(ledger.ReasonRevoked, "device %s is already revoked", id)
		}
		next = *d
		next.Revoked = true
	case ledger.KindRekey, ledger.KindRecord, ledger.KindConfigReport, ledger.KindFirmwareReport:
		if d == nil {
			return reject(ledger.ReasonUnknownAuthor, "no device %q", id)
		}
		if d.Revoked {
			return reject(ledger.ReasonRevoked, "device %s is revoked", id)
		}
		if d.Key != c.Key { // keys are shared, never copied: identity is the key
			return reject(ledger.ReasonBadSignature, "device %s changed its key since the signature was checked", id)
		}
		seq := seqOf(body)
		if seq <= d.LastSeq {
			return replay(d.LastSeq, "device %s seq %d, last %d", id, seq, d.LastSeq)
		}
		if body.Record != nil && !tx.Pruned {
			// A pruned record has no stream or payload left to
			// judge; it was judged when it committed.
			if err := b.judge(d, body.Record); err != nil {
				return err
			}
		}
		next = *d
		next.LastSeq = seq
		if body.Rekey != nil {
			pk, err := ledger.ParsePublicKey(body.Rekey.PublicKey)
			if err != nil {
				return reject(ledger.ReasonMalformed, "%v", err)
			}
			next.Key = pk
		}
	default:
		return reject(ledger.ReasonMalformed, "unknown kind %q", body.Kind)
	}
	b.pending[id] = &next
	b.ids[tx.ID] = true
	return nil
}

// addConfig admits a config.set: a device target must be enrolled and not
// revoked, and the version must be above the target's last.
func (b *Batch) addConfig(tx *ledger.Tx) error {
	c := tx.Body.ConfigSet
	if dev, _, _ := ledger.ParseTarget(c.Target); dev != "" {
		d := b.device(dev)
		if d == nil {
			return reject(ledger.ReasonUnknownDevice, "no device %q", dev)
		}
		if d.Revoked {
			return reject(ledger.ReasonRevoked, "device %s is revoked", dev)
		}
	}
	if last := b.configVersion(c.Target); c.Version <= last {
		return reject(ledger.ReasonStaleVersion, "%s version %d, last is %d", c.Target, c.Version, last)
	}
	b.configs[c.Target] = c.Version
	b.ids[tx.ID] = true
	return nil
}

// addReconfig admits a cluster.reconfig: no change pending, the new set
// valid (ledger.Members.Next), and no new member's id an admin's, a
// device's, a vendor's or a reviewer's.
func (b *Batch) addReconfig(tx *ledger.Tx) error {
	nodes := tx.Body.ClusterReconfig.Nodes
	for _, n := range nodes {
		_, admin := b.s.admins[n.ID]
		if admin || b.device(n.ID) != nil || b.vendor(n.ID) != nil || b.reviewer(n.ID) != nil {
			return reject(ledger.ReasonExists, "node id %s is an admin's, a device's, a vendor's or a reviewer's", n.ID)
		}
	}
	m, err := b.members().Next(b.height, tx.ID, nodes)
	if err != nil {
		return reject(ledger.ReasonForbidden, "%v", err)
	}
	b.newMembers = m
	b.ids[tx.ID] = true
	return nil
}

// addPolicy admits a policy.set: it compiles, and its version is above
// the last. It is in force for the txs after it in the block.
func (b *Batch) addPolicy(tx *ledger.Tx) error {
	var last uint64
	if p := b.policyNow(); p != nil {
		last = p.Set.Version
	}
	p, err := b.s.checkPolicySet(tx.Body.PolicySet, last)
	if err != nil {
		return err
	}
	b.policy = p
	b.rates = map[rateKey]rateCount{}
	b.reset = true
	b.ids[tx.ID] = true
	return nil
}

// judge evaluates the policy in force on a record by d (docs/policy.md)
// and, if it passes, counts it in the rate counters of the rules that
// apply to it.
func (b *Batch) judge(d *Device, r *ledger.Record) error {
	p := b.policyNow()
	if p == nil {
		return nil
	}
	in := inputOf(d, r, b.height, b.time)
	var counted [MaxRatedRules]rateKey
	var next [MaxRatedRules]rateCount
	n := 0
	// over is called for each rule with a rate that applies, in order:
	// the counts the record takes if no rule refuses it.
	v := p.Eval(&in, func(i int, rt *ledger.Rate) bool {
		k := rateKey{rule: p.rules[i].name, device: d.ID}
		c, w := b.rate(k), windowOf(b.time, rt.Window)
		if c.Window != w {
			c = rateCount{Window: w}
		}
		if c.Count >= rt.Count {
			return true
		}
		counted[n], next[n] = k, rateCount{Window: w, Count: c.Count + 1}
		n++
		return false
	})
	if !v.OK() {
		return reject(ledger.ReasonPolicy, "rule %q refuses %s's record on stream %s: %s", v.Rule, d.ID, r.Stream, v.Detail)
	}
	for j := range n {
		b.rates[counted[j]] = next[j]
	}
	return nil
}
