package pbft

import (
	"slices"
)

// startViewChange moves to view v and asks for it (PBFT 4.4): the replica
// stops taking part in the old view and sends its stable checkpoint and
// the prepared certificates above it.
func (c *Core) startViewChange(v uint64) error {
	if v <= c.view && (c.changing || v < c.view) {
		return nil
	}
	c.view, c.changing, c.vcTimer = v, true, false
	c.asked = max(c.asked, v)
	c.dirty()
	c.queue, c.queued = nil, map[[32]byte]bool{}
	return c.sendViewChange()
}

// sendViewChange sends this replica's view-change for its view.
func (c *Core) sendViewChange() error {
	v := c.view
	vc := &Message{Type: TypeViewChange, From: c.cfg.ID, View: v, Seq: c.proven, Digest: c.provenDigest.bytes(), Proof: c.proof}
	if c.execCert != nil && c.execCert.Seq > c.proven && len(c.execCert.Commits) > 0 {
		vc.Executed = c.execCert
	}
	// Another replica's commit certificate a new view started at, above
	// what this replica executed, in a later epoch: it places the
	// view-change in the epoch this replica is in (vcStart). Within one
	// epoch it stays out, so that a later new view may start lower and
	// re-propose what the replicas that executed it lost (lowerLow).
	if t := c.topCert; t != nil {
		_, ti, tok := c.epochAt(t.Seq + 1)
		_, si, sok := c.epochAt(c.vcStart(vc) + 1)
		if tok && sok && ti > si {
			vc.Executed = t
		}
	}
	for _, s := range sortedKeys(c.log) {
		if e := c.log[s]; s > c.proven && e.cert != nil {
			vc.Prepared = append(vc.Prepared, *e.cert)
		}
	}
	if err := c.sign(vc); err != nil {
		return err
	}
	c.myVCs[v] = vc
	for w := range c.myVCs {
		if w+4 < v {
			delete(c.myVCs, w)
		}
	}
	c.broadcast(vc)
	return c.addViewChange(vc)
}

func (c *Core) onViewChange(m *Message) error {
	if m.View < c.view || (m.View == c.view && !c.changing) {
		c.showNewView(m.From, m.View)
		return nil
	}
	// One view-change per sender and view, but for a later one that
	// starts higher: the sender entered a new epoch and asks again.
	if set := c.vcs[m.View]; set != nil && set[m.From] != nil && c.vcStart(m) <= c.vcStart(set[m.From]) {
		return nil
	}
	if !c.verify(m) || !c.validViewChange(m) {
		return nil
	}
	return c.addViewChange(m)
}

// vcStart is where a view-change places its sender: its stable
// checkpoint or, above, its commit certificate. The epoch of vcStart+1
// is the one the view-change counts in.
func (c *Core) vcStart(m *Message) uint64 {
	s := m.Seq
	if m.Executed != nil && m.Executed.Seq > s {
		s = m.Executed.Seq
	}
	return s
}

// vcEpoch returns the index of the epoch a view-change counts in.
func (c *Core) vcEpoch(m *Message) (int, bool) {
	_, i, ok := c.epochAt(c.vcStart(m) + 1)
	return i, ok
}

// nvEpoch returns the epoch a new-view installs its view in: that of its
// view-changes, which must all count in one.
func (c *Core) nvEpoch(m *Message) (*epoch, int, bool) {
	if len(m.ViewChanges) == 0 {
		return nil, 0, false
	}
	ep, i, ok := c.epochAt(c.vcStart(m.ViewChanges[0]) + 1)
	if !ok {
		return nil, 0, false
	}
	for _, vc := range m.ViewChanges[1:] {
		if j, ok := c.vcEpoch(vc); !ok || j != i {
			return nil, 0, false
		}
	}
	return ep, i, true
}

// validViewChange checks a view-change's checkpoint proof and prepared
// certificates.
//
// Each certificate counts with the member set of its sequence number; a
// view-change counts in the epoch above where it starts (vcStart), and
// carries no prepared certificate above that epoch's end: a correct
// replica prepares there only once it is in the later epoch.
func (c *Core) validViewChange(m *Message) bool {
	i, ok := c.vcEpoch(m)
	if !ok {
		return false
	}
	end := c.end(i)
	if m.Seq > 0 && !c.validProof(m.Seq, digestOf(m.Digest), m.Proof) {
		return false
	}
	if x := m.Executed; x != nil && !c.validCommits(x) {
		return false
	}
	seqs := map[uint64]bool{}
	for _, p := range m.Prepared {
		pp := p.PrePrepare
		if pp == nil || pp.Type != TypePrePrepare || pp.View >= m.View || pp.Seq <= m.Seq || pp.Seq > end || seqs[pp.Seq] {
			return false
		}
		ep, _, ok := c.epochAt(pp.Seq)
		if !ok || pp.From != ep.primary(pp.View) || !c.verify(pp) {
			return false
		}
		seqs[pp.Seq] = true
		from := map[string]bool{}
		for _, q := range p.Prepares {
			if q.View != pp.View || q.Seq != pp.Seq || !slices.Equal(q.Digest, pp.Digest) || from[q.From] || !c.verify(q) {
				return false
			}
			from[q.From] = true
		}
		if len(from) < ep.q {
			return false
		}
	}
	return true
}

// validCommits checks a commit certificate: 2f+1 distinct members'
// commit signatures.
func (c *Core) validCommits(x *Executed) bool {
	ep, _, ok := c.epochAt(x.Seq)
	if !ok {
		return false
	}
	from := map[string]bool{}
	data := c.cfg.Crypto.VoteBytes(x.Seq, x.View, x.Digest)
	for _, v := range x.Commits {
		if from[v.Node] || !ep.has(v.Node) || !c.cfg.Crypto.Verify(v.Node, data, v.Sig) {
			return false
		}
		from[v.Node] = true
	}
	return len(from) >= ep.q
}

// validProof checks 2f+1 distinct signed checkpoints for (seq, d).
func (c *Core) validProof(seq uint64, d Digest, proof []*Message) bool {
	ep, _, ok := c.epochAt(seq)
	if !ok {
		return false
	}
	from := map[string]bool{}
	for _, cp := range proof {
		if cp == nil || cp.Type != TypeCheckpoint || cp.Seq != seq || Digest(cp.Digest) != d || from[cp.From] || !c.verify(cp) {
			return false
		}
		from[cp.From] = true
	}
	return len(from) >= ep.q
}

// addViewChange records a valid view-change and applies the rules that
// follow from the view-changes seen (PBFT 4.5.2): join a view change that
// f+1 replicas ask for; start the timer once 2f+1 ask for ours; as the new
// primary, send the new-view.
func (c *Core) addViewChange(m *Message) error {
	set := c.vcs[m.View]
	if set == nil {
		set = map[string]*Message{}
		c.vcs[m.View] = set
	}
	set[m.From] = m
	for v := range c.vcs {
		if v < c.view {
			delete(c.vcs, v)
		}
	}
	// f+1 other replicas ask for views above ours: at least one is
	// correct. (This replica's own view-change counts only once it
	// rejoined a lower view: it asked for that one alone.)
	//
	// Only view-changes of this replica's current epoch count: a view
	// number is global, but each epoch's members change views among
	// themselves (see doc.go, reconfiguration).
	ep, ci, ok := c.cur()
	if !ok || !ep.has(c.cfg.ID) {
		return nil
	}
	lowest := map[string]uint64{}
	for _, v := range sortedKeys(c.vcs) {
		if v <= c.view {
			continue
		}
		for from, vc := range c.vcs[v] {
			if i, ok := c.vcEpoch(vc); !ok || i != ci {
				continue
			}
			if _, ok := lowest[from]; !ok && from != c.cfg.ID {
				lowest[from] = v
			}
		}
	}
	if len(lowest) >= ep.f+1 {
		target := uint64(0)
		for _, v := range lowest {
			if target == 0 || v < target {
				target = v
			}
		}
		if target > c.view {
			return c.startViewChange(target)
		}
	}
	if !c.changing {
		return nil
	}
	mine := c.vcsIn(c.view, ci)
	if len(mine) >= ep.q && !c.vcTimer {
		c.vcTimer = true
		c.deadline = c.now + c.timeout()
	}
	if len(mine) >= ep.q && mine[c.cfg.ID] != nil && ep.primary(c.view) == c.cfg.ID && c.nvSent < c.view && !c.passive() {
		return c.sendNewView()
	}
	return nil
}

// vcsIn returns the view-changes for view v that count in epoch i.
func (c *Core) vcsIn(v uint64, i int) map[string]*Message {
	out := map[string]*Message{}
	for from, vc := range c.vcs[v] {
		if j, ok := c.vcEpoch(vc); ok && j == i {
			out[from] = vc
		}
	}
	return out
}

// chosen is a proposal the new view must re-propose.
type chosen struct {
	seq     uint64
	digest  Digest
	payload []byte
}

// decide computes, from 2f+1 view-changes, where the new view starts and
// the proposals it must re-propose (PBFT 4.4). It starts at the highest
// stable checkpoint or commit certificate reported (either decides all
// below it: proposals chain); above, for each sequence number, it takes
// the prepared certificate of the highest view. The in-order prepare rule
// makes these gap-free; a gap ends the list.
//
// Re-proposals stop at end, the last sequence number of the epoch the
// view-changes count in: the next epoch's members order what follows.
func (c *Core) decide(vcs []*Message, end uint64) (minS uint64, minD Digest, proof []*Message, cert *Executed, out []chosen) {
	for _, vc := range vcs {
		if vc.Seq > minS || proof == nil && vc.Seq == minS && vc.Seq > 0 {
			minS, minD, proof = vc.Seq, digestOf(vc.Digest), vc.Proof
		}
	}
	for _, vc := range vcs {
		if x := vc.Executed; x != nil && x.Seq > minS {
			minS, minD, proof, cert = x.Seq, x.Digest, nil, x
		}
	}
	for s := minS + 1; s <= end; s++ {
		var best *Message
		for _, vc := range vcs {
			for _, p := range vc.Prepared {
				if p.PrePrepare.Seq == s && (best == nil || p.PrePrepare.View > best.View) {
					best = p.PrePrepare
				}
			}
		}
		if best == nil {
			break
		}
		out = append(out, chosen{seq: s, digest: digestOf(best.Digest), payload: best.Payload})
	}
	return minS, minD, proof, cert, out
}

// sendNewView has the new primary announce its view with 2f+1
// view-changes and the re-proposals they imply.
func (c *Core) sendNewView() error {
	ep, ci, _ := c.cur() // addViewChange checked
	set := c.vcsIn(c.view, ci)
	vcs := []*Message{set[c.cfg.ID]}
	for _, k := range sortedKeys(set) {
		if k != c.cfg.ID && len(vcs) < ep.q {
			vcs = append(vcs, set[k])
		}
	}
	_, _, _, _, props := c.decide(vcs, c.end(ci))
	nv := &Message{Type: TypeNewView, From: c.cfg.ID, View: c.view}
	for _, vc := range vcs {
		nv.ViewChanges = append(nv.ViewChanges, withoutPayloads(vc))
	}
	for _, p := range props {
		pp := &Message{Type: TypePrePrepare, From: c.cfg.ID, View: c.view, Seq: p.seq, Digest: p.digest.bytes(), Payload: p.payload}
		if err := c.sign(pp); err != nil {
			return err
		}
		nv.PrePrepares = append(nv.PrePrepares, pp)
	}
	if err := c.sign(nv); err != nil {
		return err
	}
	c.nvSent = c.view
	c.broadcast(nv)
	return c.install(nv)
}

func (c *Core) onNewView(m *Message) error {
	if m.View < c.view || (m.View == c.view && !c.changing) {
		return nil
	}
	// A new-view counts in the epoch of its view-changes: this
	// replica's current one, or a later one it is behind in (install
	// then moves it there); one of an earlier epoch is the old members'
	// business.
	ep, i, ok := c.nvEpoch(m)
	if _, ci, cok := c.cur(); !ok || (cok && i < ci) {
		return nil
	}
	if m.From != ep.primary(m.View) || !c.verify(m) {
		return nil
	}
	from := map[string]bool{}
	for _, vc := range m.ViewChanges {
		if vc == nil || vc.Type != TypeViewChange || vc.View != m.View || from[vc.From] || !c.verify(vc) || !c.validViewChange(vc) {
			return nil
		}
		from[vc.From] = true
	}
	if len(from) < ep.q {
		return nil
	}
	_, _, _, _, props := c.decide(m.ViewChanges, c.end(i))
	if len(props) != len(m.PrePrepares) {
		return nil
	}
	for i, pp := range m.PrePrepares {
		if pp.View != m.View || pp.From != m.From || pp.Seq != props[i].seq || Digest(pp.Digest) != props[i].digest || !c.verify(pp) {
			return nil
		}
	}
	return c.install(m)
}

// install enters the view of a valid new-view: adopts its checkpoint,
// takes its re-proposals as pre-prepares, and re-forwards the requests
// this replica waits for to the new primary.
func (c *Core) install(nv *Message) error {
	ep, i, _ := c.nvEpoch(nv) // checked by onNewView, or built by sendNewView
	minS, minD, proof, cert, props := c.decide(nv.ViewChanges, c.end(i))
	c.view, c.changing, c.vcTimer, c.newView = nv.View, false, false, nv
	c.viewEp = ep.start - 1
	if cert != nil && cert.Seq == minS && (c.topCert == nil || cert.Seq > c.topCert.Seq) {
		c.topCert = cert
	}
	c.dirty()
	c.lowerLow(minS, minD)
	if minS > c.low {
		if proof != nil && minS > c.proven {
			c.proven, c.provenDigest, c.proof = minS, minD, proof
		}
		c.raiseLow(minS, minD)
		if minS > c.lastExec {
			c.setFetch(minS, minD)
		}
	}
	maxS := minS
	for _, s := range sortedKeys(c.log) {
		if s > minS {
			c.resetSlot(c.log[s], c.view)
		}
	}
	for _, pp := range nv.PrePrepares {
		maxS = pp.Seq
		if pp.Seq <= c.low {
			continue
		}
		e := c.slot(pp.Seq)
		c.resetSlot(e, c.view)
		e.pp, e.digest = pp, Digest(pp.Digest)
	}
	_ = props
	if ep.primary(c.view) == c.cfg.ID {
		c.nextSeq = max(maxS, c.lastExec, c.low) + 1
	}
	c.deadline = c.now + c.timeout()
	held := c.future
	c.future = nil
	for _, m := range held {
		if err := c.Step(m); err != nil {
			return err
		}
	}
	if err := c.advanceSlots(minS + 1); err != nil {
		return err
	}
	// Re-propose what this replica waits for only now that the
	// re-proposals are validated and their requests marked in flight, in
	// the order they were proposed here (not by id: a device's records
	// must keep their order across a view change).
	for _, id := range c.waitingInOrder() {
		if c.queued[id] || c.inflight[id] != 0 {
			continue
		}
		if err := c.propose(Request{ID: id, Data: c.waiting[id].data}, ""); err != nil {
			return err
		}
	}
	return nil
}

// lowerLow moves the low watermark down to where a new view starts, if
// it is above what this replica executed or proved stable: an earlier
// new view started at a commit certificate this replica never got the
// proposals of (raiseLow), and this new view, built from view-changes
// that lack that certificate, re-proposes them from the prepared
// certificates instead. They must be accepted and executed here: with
// the watermark left above them, this replica would drop the
// re-proposals and wait for a state transfer that no replica may be
// able to serve.
func (c *Core) lowerLow(minS uint64, minD Digest) {
	if minS >= c.low || c.low <= c.lastExec || c.low <= c.proven {
		return
	}
	s, d := c.lastExec, c.lastExecDigest
	if c.proven > s {
		s, d = c.proven, c.provenDigest
	}
	if minS > s {
		s, d = minS, minD
	}
	c.low, c.lowDigest = s, d
}

// rejoin leaves a view change nobody else joined for view v below it,
// where 2f+1 replicas went on committing: Caught proved it with a commit
// certificate of view v above what this replica had executed.
//
// PBFT 4.4 and 4.5.2 give a replica no way back. One that asked for view
// v+1 alone (its requests were lost, it was cut off, or it was stopped
// and woke up in the middle of a view change the others finished
// without it) waits for 2f+1 view-changes to start its timer, and with
// f+1 needed to make the others join, a lone replica never gets them
// while the others are content. It stayed in view_changing for good, and
// sent nothing to the primary, so its own clients got no answer
// (issue 20).
//
// It rejoins view v passively: it executes what 2f+1 others commit and
// forwards its requests to v's primary, but votes in no view below the
// highest it asked for. A view-change is a promise not to vote in lower
// views: the one it sent may still go into a later new-view, which would
// then lack a certificate for what it voted for afterwards, and a
// committed proposal could be lost. It votes again from the next view
// on, which its timer or f+1 other replicas start as usual.
func (c *Core) rejoin(v uint64) error {
	c.view, c.changing, c.vcTimer = v, false, false
	if ep, _, ok := c.cur(); ok {
		c.viewEp = ep.start - 1 // Caught checked: the others commit in view v of this epoch
	}
	c.dirty()
	for _, s := range sortedKeys(c.log) {
		if s > c.lastExec {
			c.resetSlot(c.log[s], v)
		}
	}
	c.deadline = c.now + c.timeout()
	for _, id := range c.waitingInOrder() {
		if c.queued[id] || c.inflight[id] != 0 {
			continue
		}
		if err := c.propose(Request{ID: id, Data: c.waiting[id].data}, ""); err != nil {
			return err
		}
	}
	return nil
}
