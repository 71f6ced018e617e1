package pbft

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Crypto signs this replica's messages and checks the others'.
type Crypto interface {
	// Sign signs data with this replica's key.
	Sign(data []byte) ([]byte, error)
	// Verify reports whether sig is node's signature over data.
	Verify(node string, data, sig []byte) bool
	// VoteBytes is what a commit for digest at seq in view signs, so that
	// 2f+1 commits are the block's commit certificate.
	VoteBytes(seq, view uint64, d Digest) []byte
}

// App builds and checks proposals. The core calls it synchronously.
type App interface {
	// Build makes the proposal at seq in view that extends the proposal
	// parent, from reqs in their order. Every request is either included
	// or rejected. An error stops the core.
	Build(seq, view uint64, parent Digest, reqs []Request) (Proposal, error)
	// Validate checks a proposal of the primary at seq that must extend
	// parent, and returns its digest and the ids of its requests.
	Validate(seq, view uint64, parent Digest, payload []byte) (Digest, [][32]byte, error)
}

// Request is a client request: for ledgergate, a tx envelope. ID is
// RequestID(Data): a caller that hashed the request already (ledgergate
// decodes a tx once, with its id) passes it on instead of hashing again.
type Request struct {
	ID   [32]byte
	Data []byte
	// Waited is how many ticks the request waited before Propose (in
	// the driver's queue, while it persisted a block): a partial batch
	// it starts is cut BatchTicks after it came, not after Propose.
	Waited int
}

// NewRequest returns the request of data, with its id.
func NewRequest(data []byte) Request { return Request{ID: RequestID(data), Data: data} }

// Forwarded is a request a peer forwarded to this replica.
type Forwarded struct {
	From string
	Request
}

// Proposal is what App.Build made.
type Proposal struct {
	Payload  []byte
	Digest   Digest
	Included []int      // indexes into the requests given to Build
	Rejected []Rejected // the others, with why
}

// Rejected is a request the primary refused. In Ready, the replica still
// waits for it: a faulty primary may lie. The driver checks the reason
// itself and calls Forget if it agrees; otherwise the request is sent
// again, and a primary that keeps refusing a valid one is replaced.
type Rejected struct {
	ID     [32]byte
	Index  int    // in Build's requests; unused in Ready
	Reason string // machine-readable, e.g. "replay"
	Detail string
	Data   []byte // the request, in Ready
}

// Config configures a Core.
type Config struct {
	ID    string   // this replica
	Nodes []string // the genesis member set, in primary order: view v's primary is Nodes[v mod n]
	// Reconfigs are the reconfigurations the application executed, up
	// to the last executed proposal given to New, in order: with Nodes
	// they give the member set of every sequence number (see Epoch).
	Reconfigs []Reconfig
	Domain    string // signed into every message (ledgergate: the chain id)
	Crypto    Crypto
	App       App

	CheckpointInterval uint64 // K: a checkpoint every K sequence numbers (default 16)
	Window             uint64 // L: sequence numbers accepted above the low watermark (default 4K)
	MaxInFlight        uint64 // proposals the primary has out before it waits (default 4)
	// PartialInFlight is how many proposals may be out (cut, not yet
	// executed) for the primary to cut a partial batch; while more are
	// out, a partial batch goes on collecting until one executes. Every
	// proposal costs every replica a fixed amount of work (votes, a
	// prepared certificate to persist, a block to write), so a busy
	// pipeline then carries fewer, bigger proposals instead of more
	// small ones. A full batch may still use the whole MaxInFlight.
	// Default (0): MaxInFlight, no difference between the two.
	PartialInFlight uint64
	MaxBatch        int // requests per proposal (default 1000)
	MaxBatchBytes   int // request bytes per proposal (default 1 MiB)
	MaxQueue        int // requests the primary queues (default 100,000)
	// BatchTicks is how many ticks the first request of a partial batch
	// waits for company before the primary cuts it (default 1: on the
	// next tick). A full batch is cut at once.
	BatchTicks     int
	RequestTimeout int // ticks a backup waits for a request to execute (default 100)
}

// ErrOverloaded is returned by Propose when the primary's queue is full.
var ErrOverloaded = errors.New("pbft: too many requests queued")

// Entry is a committed proposal, to be executed in Seq order.
type Entry struct {
	Seq     uint64
	Digest  Digest
	Payload []byte
	View    uint64 // the view its commits were cast in
	Commits []Vote // 2f+1 commit signatures, sorted by node
}

// Vote is one replica's signature in a commit certificate.
type Vote struct {
	Node string `cbor:"1,keyasint"`
	Sig  []byte `cbor:"2,keyasint"`
}

// Outbound is a message to send; To == "" is every other replica.
type Outbound struct {
	To  string
	Msg *Message
}

// Ready is the core's output, gathered since the last Advance. The
// driver's duties, in order: 1. persist HardState if not nil (fsync);
// 2. execute Committed, durably, in order; 3. send Messages; 4. validate
// Requests and Propose those that pass; answer Rejected; start a state
// transfer for Fetch; 5. call Advance.
type Ready struct {
	HardState *HardState
	Certs     []*Prepared // new prepared certificates, each replacing any before at its Seq
	Committed []Entry
	Messages  []Outbound
	Requests  []Forwarded // forwarded by peers: validate, then ProposeFor or RejectFor
	Rejected  []Rejected  // this replica's requests the primary refused
	Fetch     *Target     // replicas are ahead: fetch committed proposals up to Seq
}

// Target is a state transfer goal: Digest is the proposal at Seq, proven
// by 2f+1 checkpoints.
type Target struct {
	Seq    uint64
	Digest Digest
}

// HardState is what a replica must remember across a crash so that it
// never casts two conflicting votes at one (view, seq).
//
// With it go the prepared certificates (Ready.Certs): a replica that
// forgot one could omit it from a view-change and let a new view undo a
// committed block.
type HardState struct {
	View         uint64     `cbor:"1,keyasint"`
	Changing     bool       `cbor:"2,keyasint"` // a view-change for View was sent
	Votes        []SeqVote  `cbor:"3,keyasint"`
	Stable       uint64     `cbor:"4,keyasint"` // last checkpoint proven stable; certificates at or below it may go
	StableDigest Digest     `cbor:"5,keyasint"`
	Proof        []*Message `cbor:"6,keyasint"` // its 2f+1 checkpoints
	// Asked is the highest view this replica sent a view-change for,
	// when above View: it rejoined a lower view the others kept
	// committing in, and must not vote there (see Core.rejoin). Zero
	// otherwise, so that such a hard state encodes as before.
	Asked uint64 `cbor:"7,keyasint,omitempty"`
	// Epoch is where the epoch View was installed in starts, less one
	// (the boundary before it): zero for the genesis set, so that such
	// a hard state encodes as before. A replica whose view was installed
	// in an earlier epoch than the one it is in changes views first.
	Epoch uint64 `cbor:"8,keyasint,omitempty"`
}

// SeqVote is the digest this replica voted for at Seq in View.
type SeqVote struct {
	Seq    uint64 `cbor:"1,keyasint"`
	View   uint64 `cbor:"2,keyasint"`
	Digest Digest `cbor:"3,keyasint"`
}

// Status is a snapshot for operators.
type Status struct {
	View     uint64
	Primary  string
	Epoch    uint64 // the first sequence number of the member set this replica is in
	Members  int    // its size
	Member   bool   // whether this replica is one of them
	Pending  uint64 // the start of a later member set already committed, or 0: the chain must reach it (heartbeats)
	Changing bool   // waiting for a new-view
	Stable   uint64 // last checkpoint proven stable by 2f+1 signatures
	Low      uint64 // low watermark: Stable, or higher after a state transfer
	Executed uint64
	Queued   int // requests waiting at the primary
	Waiting  int // requests this backup waits to see executed
	InFlight int // proposals above Executed
}

// entry is the log slot of one sequence number.
type entry struct {
	seq      uint64
	view     uint64   // view of pp
	pp       *Message // accepted pre-prepare in view, with payload
	digest   Digest
	valid    bool // App.Validate passed on top of parent
	parent   Digest
	ids      [][32]byte
	prepares map[string]*Message // view `view`, any digest
	commits  map[string]*Message

	sentPrepare, sentCommit bool
	prepared, committed     bool
	executed                bool
	execDigest              Digest
	cert                    *Prepared // highest-view prepared certificate
	certView                uint64
}

// Core is one PBFT replica as a state machine: messages in, messages and
// commits out. It does no I/O, reads no clock and starts no goroutines.
type Core struct {
	cfg     Config
	epochs  []*epoch // member sets by sequence number, the genesis one first
	told    uint64   // the highest sequence number whose reconfiguration, if any, is in epochs
	viewEp  uint64   // the boundary before the epoch view was installed in (HardState.Epoch)
	topCert *Executed

	view     uint64
	changing bool
	asked    uint64 // the highest view this replica sent a view-change for: it never votes below it
	vcTimer  bool   // the view-change timer runs (2f+1 view-changes seen)
	now      int
	deadline int // when the running timer fires
	backoff  uint

	log            map[uint64]*entry
	low            uint64 // last stable checkpoint
	lowDigest      Digest
	proven         uint64 // highest checkpoint this replica can prove stable
	provenDigest   Digest
	proof          []*Message // its 2f+1 checkpoints
	lastExec       uint64
	lastExecDigest Digest
	execCert       *Executed // lastExec's commit certificate
	nextSeq        uint64

	checkpoints map[uint64]map[string]*Message
	vcs         map[uint64]map[string]*Message
	newView     *Message            // the new-view that installed view; shown to lagging peers
	myVCs       map[uint64]*Message // view-changes this replica sent, by view
	nvSent      uint64              // the view this replica last sent a new-view for, as its primary
	shown       map[string]int      // tick this replica last helped a peer catch up on views
	queried     map[string]int      // tick this replica last asked a peer for its view
	future      []*Message

	queue    []queued
	since    int // the tick the queue last became non-empty
	queued   map[[32]byte]bool
	inflight map[[32]byte]uint64
	waiting  map[[32]byte]*wait // requests forwarded to the primary
	arrived  uint64             // counts requests taken into waiting: their order
	stalled  uint64             // lastExec at the previous retransmission tick
	votes    map[uint64]SeqVote
	hsDirty  bool
	hsSeq    uint64 // counts hard state changes
	taken    taken

	rd Ready
}

// wait is a request forwarded to the primary, waited for.
type wait struct {
	data  []byte
	sent  int    // tick it was last sent
	order uint64 // the order it was proposed in here: sent again in this order
}

type queued struct {
	req  Request
	from string // "" if proposed here
}

// waitingInOrder returns the ids of the requests waited for, in the order
// they were proposed here. Requests sent again (on a timeout, to a new
// primary) keep that order: the application may depend on it (a device's
// records must commit in the order of their sequence numbers, and one
// proposed after a later one is refused as a replay).
func (c *Core) waitingInOrder() [][32]byte {
	ids := make([][32]byte, 0, len(c.waiting))
	for id := range c.waiting {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b [32]byte) int { return cmp.Compare(c.waiting[a].order, c.waiting[b].order) })
	return ids
}

// orderQueue puts the requests proposed here back in the order they were
// proposed in, in the queue positions they hold; forwarded requests keep
// their places. It runs after requests were queued again out of turn.
func (c *Core) orderQueue() {
	var pos []int
	var own []queued
	for i, q := range c.queue {
		if q.from == "" && c.waiting[q.req.ID] != nil {
			pos = append(pos, i)
			own = append(own, q)
		}
	}
	slices.SortStableFunc(own, func(a, b queued) int {
		return cmp.Compare(c.waiting[a.req.ID].order, c.waiting[b.req.ID].order)
	})
	for k, i := range pos {
		c.queue[i] = own[k]
	}
}

// New returns a replica whose application has executed up to last (Seq 0
// and the chain's genesis hash for a new chain; for a later one, with its
// commit certificate), restored from hs and certs (zero for a new replica).
func New(cfg Config, hs HardState, certs []*Prepared, last Executed) (*Core, error) {
	lastExec, lastDigest := last.Seq, last.Digest
	if cfg.Crypto == nil || cfg.App == nil {
		return nil, errors.New("pbft: config needs Crypto and App")
	}
	if err := checkNodes(cfg.Nodes); err != nil {
		return nil, err
	}
	if cfg.ID == "" {
		return nil, errors.New("pbft: config needs the replica's ID")
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 16
	}
	if cfg.Window == 0 {
		cfg.Window = 4 * cfg.CheckpointInterval
	}
	if cfg.Window < 2*cfg.CheckpointInterval {
		return nil, errors.New("pbft: window must be at least two checkpoint intervals")
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 4
	}
	if cfg.PartialInFlight == 0 || cfg.PartialInFlight > cfg.MaxInFlight {
		cfg.PartialInFlight = cfg.MaxInFlight
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.BatchTicks <= 0 {
		cfg.BatchTicks = 1
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = 1 << 20
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = 100_000
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 100
	}
	c := &Core{
		cfg: cfg, epochs: []*epoch{newEpoch(1, cfg.Nodes)}, told: lastExec, viewEp: hs.Epoch,
		view: hs.View, changing: hs.Changing, asked: hs.Asked,
		log: map[uint64]*entry{}, low: lastExec, lowDigest: lastDigest,
		lastExec: lastExec, lastExecDigest: lastDigest, nextSeq: lastExec + 1, execCert: &last,
		checkpoints: map[uint64]map[string]*Message{}, vcs: map[uint64]map[string]*Message{},
		shown: map[string]int{}, queried: map[string]int{}, myVCs: map[uint64]*Message{}, queued: map[[32]byte]bool{}, inflight: map[[32]byte]uint64{},
		waiting: map[[32]byte]*wait{}, votes: map[uint64]SeqVote{},
	}
	for _, r := range cfg.Reconfigs {
		if r.Seq > lastExec {
			return nil, fmt.Errorf("pbft: reconfiguration at %d above the last executed proposal %d", r.Seq, lastExec)
		}
		if err := c.addReconfig(r); err != nil {
			return nil, err
		}
	}
	for _, v := range hs.Votes {
		if v.Seq > lastExec {
			c.votes[v.Seq] = v
		}
	}
	if hs.Changing {
		c.asked = max(c.asked, hs.View)
	}
	if hs.Stable > 0 && c.validProof(hs.Stable, hs.StableDigest, hs.Proof) {
		c.proven, c.provenDigest, c.proof = hs.Stable, hs.StableDigest, hs.Proof
	}
	for _, p := range certs {
		if p == nil || p.PrePrepare == nil || p.PrePrepare.Seq <= c.proven {
			continue
		}
		e := c.slot(p.PrePrepare.Seq)
		if e.cert == nil || p.PrePrepare.View > e.certView {
			e.cert, e.certView = p, p.PrePrepare.View
		}
	}
	if c.changing {
		// Restarted during a view change: ask again (with what survived).
		if err := c.sendViewChange(); err != nil {
			return nil, err
		}
	}
	// A restarted primary lost the proposals it voted for: it must not
	// propose again at those numbers in this view.
	for s := range c.votes {
		if c.votes[s].View == c.view && s >= c.nextSeq {
			c.nextSeq = s + 1
		}
	}
	// Restarted past a boundary its view was not installed in.
	if err := c.enterEpoch(); err != nil {
		return nil, err
	}
	return c, nil
}

// primary returns view v's primary in this replica's current epoch
// ("" while it does not know that epoch).
func (c *Core) primary(v uint64) string {
	ep, _, ok := c.cur()
	if !ok {
		return ""
	}
	return ep.primary(v)
}

func (c *Core) isPrimary() bool { return !c.changing && c.settled() && c.primary(c.view) == c.cfg.ID }

// alone reports whether this replica is the only member now and in
// every member set it knows of: it sends nothing and signs only commits.
func (c *Core) alone() bool {
	ep, _, ok := c.cur()
	last := c.epochs[len(c.epochs)-1]
	return ok && ep.n == 1 && last.n == 1 && ep.has(c.cfg.ID) && last.has(c.cfg.ID)
}

// passive reports whether this replica is in a view below one it sent a
// view-change for: it follows the view (executes what 2f+1 others commit,
// sends its requests to the primary) but casts no vote in it, neither
// prepare, commit, pre-prepare nor new-view (see rejoin).
func (c *Core) passive() bool { return c.view < c.asked }

// Status returns a snapshot.
func (c *Core) Status() Status {
	st := Status{
		View: c.view, Primary: c.primary(c.view), Changing: c.changing, Stable: c.proven, Low: c.low, Executed: c.lastExec,
		Queued: len(c.queue), Waiting: len(c.waiting), InFlight: len(c.inflight),
	}
	if ep, i, ok := c.cur(); ok {
		st.Epoch, st.Members, st.Member = ep.start, ep.n, ep.has(c.cfg.ID)
		if i+1 < len(c.epochs) {
			st.Pending = c.epochs[i+1].start
		}
	}
	return st
}

// HasReady reports whether Ready has anything.
func (c *Core) HasReady() bool {
	return c.hsDirty || len(c.rd.Certs) > 0 || len(c.rd.Committed) > 0 || len(c.rd.Messages) > 0 || len(c.rd.Requests) > 0 ||
		len(c.rd.Rejected) > 0 || c.rd.Fetch != nil
}

// Ready returns the output gathered since the last Advance.
func (c *Core) Ready() Ready {
	rd := c.rd
	if c.hsDirty {
		hs := c.hardState()
		rd.HardState = &hs
	}
	c.taken = taken{
		certs: len(rd.Certs), committed: len(rd.Committed), messages: len(rd.Messages),
		requests: len(rd.Requests), rejected: len(rd.Rejected), fetch: rd.Fetch, hs: c.hsSeq,
	}
	return rd
}

// taken is how much of the output the last Ready handed out.
type taken struct {
	certs, committed, messages, requests, rejected int
	fetch                                          *Target
	hs                                             uint64
}

// Advance tells the core the last Ready was handled. Output made since
// (by ProposeFor, RejectFor, Caught while the driver worked on the Ready)
// stays for the next Ready.
func (c *Core) Advance() {
	t := c.taken
	c.rd.Certs = slices.Clone(c.rd.Certs[t.certs:])
	c.rd.Committed = slices.Clone(c.rd.Committed[t.committed:])
	c.rd.Messages = slices.Clone(c.rd.Messages[t.messages:])
	c.rd.Requests = slices.Clone(c.rd.Requests[t.requests:])
	c.rd.Rejected = slices.Clone(c.rd.Rejected[t.rejected:])
	if c.rd.Fetch == t.fetch {
		c.rd.Fetch = nil
	}
	if c.hsSeq == t.hs {
		c.hsDirty = false
	}
	c.taken = taken{}
}

// dirty notes that the hard state changed and must be persisted before
// the next message leaves.
func (c *Core) dirty() {
	c.hsDirty = true
	c.hsSeq++
}

func (c *Core) hardState() HardState {
	hs := HardState{View: c.view, Changing: c.changing, Stable: c.proven, StableDigest: c.provenDigest, Proof: c.proof, Epoch: c.viewEp}
	if c.asked > c.view {
		hs.Asked = c.asked
	}
	for _, s := range sortedKeys(c.votes) {
		hs.Votes = append(hs.Votes, c.votes[s])
	}
	return hs
}

// Tick advances the core's clock by one tick.
func (c *Core) Tick() error {
	if err := c.tick(); err != nil {
		return err
	}
	return c.enterEpoch()
}

func (c *Core) tick() error {
	c.now++
	if c.now%c.resendEvery() == 0 {
		c.resend()
	}
	if !c.member() {
		return nil // it follows by state transfer; its timers start nothing
	}
	if c.changing {
		if c.vcTimer && c.now >= c.deadline {
			c.backoff++
			return c.startViewChange(c.view + 1)
		}
		return nil
	}
	if len(c.waiting) > 0 && c.now >= c.deadline {
		c.backoff++
		return c.startViewChange(c.view + 1)
	}
	return c.maybePropose(true)
}

// NextTick is how many ticks from now the next tick is that may do more
// than count: cut a partial batch, fire the request or view-change
// timer, or retransmit; 0 if no tick would, until the next input. A
// driver may sleep until then and call Tick for each tick passed, instead
// of waking for every tick: the ticks before it do nothing.
//
// A cluster retransmits at every resend tick; a single replica only while
// requests wait (it has no one to send to).
func (c *Core) NextTick() int {
	next := 0
	at := func(tick int) { // tick: the core's clock when it is due
		k := max(tick-c.now, 1)
		if next == 0 || k < next {
			next = k
		}
	}
	if !c.alone() || c.changing || len(c.waiting) > 0 {
		r := c.resendEvery()
		at(c.now + r - c.now%r)
	}
	switch {
	case c.changing:
		if c.vcTimer {
			at(c.deadline)
		}
	case len(c.waiting) > 0:
		at(c.deadline)
	}
	// The batch deadline, once the pipeline has room: while a block is
	// out, the primary of a cluster would otherwise wake every tick until
	// it executes (the execution, not a tick, makes room).
	if !c.changing && len(c.queue) > 0 && c.isPrimary() && !c.passive() && c.room() {
		at(c.since + c.cfg.BatchTicks)
	}
	return next
}

func (c *Core) resendEvery() int { return max(c.cfg.RequestTimeout/2, 1) }

// resend retransmits when nothing executed since the last retransmission
// tick: peers may have lost this replica's votes (a dropped connection, a
// full queue), and a lost vote would otherwise stall a slot for good. A
// replica in a view change sends its view-change again; the primary its
// pre-prepares; every replica its prepares, commits, latest checkpoint,
// and the requests it still waits for.
//
// A replica in a view change asks again every period, whether blocks
// executed or not: blocks it fetched from peers that commit without it
// are no progress of its view change, and its view-change is what shows
// the others that it needs their new-view (issue 20).
func (c *Core) resend() {
	stalled := c.lastExec == c.stalled
	c.stalled = c.lastExec
	if c.changing {
		if vc := c.myVCs[c.view]; vc != nil {
			c.broadcast(vc)
		}
		c.resendRequests()
		return
	}
	if !stalled {
		return
	}
	for _, s := range sortedKeys(c.log) {
		e := c.log[s]
		if e.view != c.view || e.pp == nil {
			continue
		}
		if e.pp.From == c.cfg.ID {
			c.broadcast(e.pp)
		}
		if p := e.prepares[c.cfg.ID]; p != nil && e.sentPrepare {
			c.broadcast(p)
		}
		if cm := e.commits[c.cfg.ID]; cm != nil && e.sentCommit {
			c.broadcast(cm)
		}
	}
	for _, s := range slices.Backward(sortedKeys(c.checkpoints)) {
		if cp := c.checkpoints[s][c.cfg.ID]; cp != nil {
			c.broadcast(cp)
			break
		}
	}
	c.resendRequests()
}

// resendRequests sends the requests waited for too long to every replica,
// as a PBFT client does when its request times out: each backup then
// watches it, so a primary that ignores it is replaced, and a replica cut
// off from the view still gets its requests ordered.
//
// They go in the order they were proposed in here; the primary queues
// its own again in that order, ahead of later ones already queued.
func (c *Core) resendRequests() {
	requeued := false
	for _, id := range c.waitingInOrder() {
		w := c.waiting[id]
		if w.sent > c.now-c.resendEvery() {
			continue
		}
		w.sent = c.now
		if c.isPrimary() {
			if !c.queued[id] && c.inflight[id] == 0 {
				c.queue = append(c.queue, queued{req: Request{ID: id, Data: w.data}})
				c.since = 0 // it waited long enough: cut on the next tick
				c.queued[id] = true
				requeued = true
			}
			continue
		}
		c.broadcast(&Message{Type: TypeRequest, From: c.cfg.ID, Payload: w.data})
	}
	if requeued {
		c.orderQueue()
	}
}

// timeout is the current timer length: doubled for each view change
// that did not lead to progress (PBFT 4.5.2).
func (c *Core) timeout() int {
	return c.cfg.RequestTimeout << min(c.backoff, 6)
}

// Propose submits a request (r.ID must be RequestID(r.Data)): the
// primary queues it, a backup forwards it to the primary and watches that
// it executes. A request already queued, in flight or waited for is
// ignored.
func (c *Core) Propose(r Request) error {
	if err := c.propose1(r); err != nil {
		return err
	}
	return c.enterEpoch()
}

func (c *Core) propose1(r Request) error {
	if _, ok := c.waiting[r.ID]; ok {
		return nil
	}
	if c.isPrimary() && (c.queued[r.ID] || c.inflight[r.ID] != 0) {
		return nil
	}
	return c.propose(r, "")
}

func (c *Core) propose(r Request, from string) error {
	if from == "" {
		// Waited for until executed, whoever is primary: a proposal that
		// never prepares is lost in a view change, and this replica
		// proposes the request again in the next view.
		if len(c.waiting) == 0 {
			c.deadline = c.now + c.timeout()
		}
		if w := c.waiting[r.ID]; w != nil {
			w.sent = c.now // proposed again (a new view): keeps its order
		} else {
			c.arrived++
			c.waiting[r.ID] = &wait{data: r.Data, sent: c.now, order: c.arrived}
		}
	}
	if c.isPrimary() {
		if len(c.queue) >= c.cfg.MaxQueue {
			delete(c.waiting, r.ID)
			return ErrOverloaded
		}
		if len(c.queue) == 0 {
			c.since = c.now - max(r.Waited, 0)
		}
		c.queue = append(c.queue, queued{req: r, from: from})
		c.queued[r.ID] = true
		if len(c.queue) >= c.cfg.MaxBatch {
			return c.maybePropose(false)
		}
		return nil
	}
	if !c.changing && from == "" {
		c.send(c.primary(c.view), &Message{Type: TypeRequest, From: c.cfg.ID, Payload: r.Data})
	}
	return nil
}

// maybePropose has the primary cut proposals while the pipeline has room;
// a partial batch is cut only on a tick, once its first request waited
// BatchTicks ticks.
func (c *Core) maybePropose(tick bool) error {
	if c.passive() {
		return nil // a pre-prepare is a vote: the others replace this primary
	}
	partial := tick && c.now-c.since >= c.cfg.BatchTicks
	for c.isPrimary() && len(c.queue) > 0 && (partial || len(c.queue) >= c.cfg.MaxBatch) {
		seq := c.nextSeq
		if !c.room() {
			return nil
		}
		parent, ok := c.heldAt(seq - 1)
		if !ok {
			return nil // behind: wait for the parent (state transfer, or its pre-prepare to validate)
		}
		n, size := 0, 0
		for n < len(c.queue) && n < c.cfg.MaxBatch && (n == 0 || size+len(c.queue[n].req.Data) <= c.cfg.MaxBatchBytes) {
			size += len(c.queue[n].req.Data)
			n++
		}
		batch := c.queue[:n]
		reqs := make([]Request, n)
		for i, q := range batch {
			reqs[i] = q.req
			delete(c.queued, q.req.ID)
		}
		c.queue = slices.Clone(c.queue[n:])
		p, err := c.cfg.App.Build(seq, c.view, parent, reqs)
		if err != nil {
			return fmt.Errorf("pbft: build proposal %d: %w", seq, err)
		}
		if err := c.reject(batch, p.Rejected); err != nil {
			return err
		}
		if len(p.Included) == 0 {
			continue
		}
		if !c.vote(seq, p.Digest) {
			return fmt.Errorf("pbft: invariant: primary voted before at %d in view %d", seq, c.view)
		}
		pp := &Message{Type: TypePrePrepare, From: c.cfg.ID, View: c.view, Seq: seq, Digest: p.Digest.bytes(), Payload: p.Payload}
		if err := c.sign(pp); err != nil {
			return err
		}
		c.nextSeq++
		c.broadcast(pp)
		ids := make([][32]byte, len(p.Included))
		for i, k := range p.Included {
			ids[i] = reqs[k].ID
		}
		e := c.slot(seq)
		c.resetSlot(e, c.view)
		e.pp, e.digest, e.valid, e.ids = pp, p.Digest, true, ids
		for _, id := range ids {
			c.inflight[id] = seq
		}
		if err := c.advanceSlots(seq); err != nil {
			return err
		}
	}
	return nil
}

// room reports whether the pipeline takes the primary's next proposal:
// a full batch while fewer than MaxInFlight proposals are out and the
// window has room, a partial one while fewer than PartialInFlight are (it
// waits for the pipeline to drain). Only an execution or a checkpoint
// makes room, never a tick.
func (c *Core) room() bool {
	seq := c.nextSeq
	if seq-c.lastExec > c.cfg.MaxInFlight || seq > c.low+c.cfg.Window || !c.processable(seq) {
		return false
	}
	return len(c.queue) >= c.cfg.MaxBatch || seq-1-c.lastExec < c.cfg.PartialInFlight
}

// reject answers the requests Build refused.
func (c *Core) reject(batch []queued, rej []Rejected) error {
	for _, r := range rej {
		if r.Index < 0 || r.Index >= len(batch) {
			return fmt.Errorf("pbft: invariant: App.Build rejected request %d of %d", r.Index, len(batch))
		}
		q := batch[r.Index]
		if q.from == "" {
			c.rd.Rejected = append(c.rd.Rejected, Rejected{ID: q.req.ID, Reason: r.Reason, Detail: r.Detail, Data: q.req.Data})
			continue
		}
		if err := c.sendReject(q.from, q.req.ID, r.Reason, r.Detail); err != nil {
			return err
		}
	}
	return nil
}

func (c *Core) sendReject(to string, id [32]byte, reason, detail string) error {
	m := &Message{Type: TypeReject, From: c.cfg.ID, View: c.view, Digest: slices.Clone(id[:]), Payload: []byte(reason), Detail: detail}
	if err := c.sign(m); err != nil {
		return err
	}
	c.send(to, m)
	return nil
}

// ProposeFor takes a request a peer forwarded, once the driver found it
// valid: the primary queues it; a backup forwards it to the primary and
// watches that it executes (PBFT 4.4: a backup that receives a request
// starts its timer).
func (c *Core) ProposeFor(from string, r Request) error {
	if err := c.proposeFor(from, r); err != nil {
		return err
	}
	return c.enterEpoch()
}

func (c *Core) proposeFor(from string, r Request) error {
	if _, ok := c.waiting[r.ID]; ok {
		return nil
	}
	if !c.isPrimary() {
		// Watched even when a proposal holds it: that proposal may never
		// commit, and only a timer notices.
		return c.propose(r, "")
	}
	if c.queued[r.ID] || c.inflight[r.ID] != 0 {
		return nil
	}
	err := c.propose(r, from)
	if errors.Is(err, ErrOverloaded) {
		return c.sendReject(from, r.ID, "overloaded", err.Error())
	}
	return err
}

// RejectFor tells the peer that forwarded a request why the driver found
// it invalid.
func (c *Core) RejectFor(from string, id [32]byte, reason, detail string) error {
	return c.sendReject(from, id, reason, detail)
}

// digestAt returns the proposal digest this replica holds at seq, if it
// knows it: executed, or validated in the current view.
func (c *Core) digestAt(seq uint64) (Digest, bool) {
	if seq == c.lastExec {
		return c.lastExecDigest, true
	}
	if seq == c.low {
		return c.lowDigest, true
	}
	e := c.log[seq]
	if e == nil {
		return Digest{}, false
	}
	if e.executed {
		return e.execDigest, true
	}
	if e.valid && e.view == c.view {
		return e.digest, true
	}
	return Digest{}, false
}

// heldAt returns the digest of the proposal at seq if the application
// holds it, so that a proposal may be built on it: executed, or built or
// validated in this view. The low watermark alone is not enough: a new
// view or a checkpoint may put it above what this replica executed, and
// then the application holds no block there until state transfer brings
// it (issue 20: a new primary behind the others built on a block it did
// not hold, and its driver stopped).
func (c *Core) heldAt(seq uint64) (Digest, bool) {
	if seq == c.lastExec {
		return c.lastExecDigest, true
	}
	if seq < c.lastExec {
		return Digest{}, false
	}
	if e := c.log[seq]; e != nil && e.valid && e.view == c.view {
		return e.digest, true
	}
	return Digest{}, false
}

func (c *Core) slot(seq uint64) *entry {
	e := c.log[seq]
	if e == nil {
		e = &entry{seq: seq, prepares: map[string]*Message{}, commits: map[string]*Message{}}
		c.log[seq] = e
	}
	return e
}

// resetSlot prepares e for a pre-prepare in view v, keeping what outlives
// views: execution and the prepared certificate.
func (c *Core) resetSlot(e *entry, v uint64) {
	if e.view == v && e.pp != nil {
		return
	}
	c.dropIDs(e)
	keepP, keepC := map[string]*Message{}, map[string]*Message{}
	for k, m := range e.prepares {
		if m.View == v {
			keepP[k] = m
		}
	}
	for k, m := range e.commits {
		if m.View == v {
			keepC[k] = m
		}
	}
	*e = entry{seq: e.seq, view: v, prepares: keepP, commits: keepC,
		executed: e.executed, execDigest: e.execDigest, cert: e.cert, certView: e.certView}
}

// dropIDs forgets that e's requests are in flight: its proposal is gone.
func (c *Core) dropIDs(e *entry) {
	for _, id := range e.ids {
		if c.inflight[id] == e.seq {
			delete(c.inflight, id)
		}
	}
}

// sign signs m. A single replica signs only its commits: they are the
// block's commit certificate (ledger.Cert), which receipts carry; its
// other messages reach no one (it sends nothing, persists no prepared
// certificates, and never checks its own signatures), and their
// signatures cost 2.4 % of its CPU at 1,000 txs/s.
func (c *Core) sign(m *Message) error {
	if c.alone() && m.Type != TypeCommit {
		return nil
	}
	var data []byte
	if m.Type == TypeCommit {
		data = c.cfg.Crypto.VoteBytes(m.Seq, m.View, digestOf(m.Digest))
	} else {
		data = signBytes(c.cfg.Domain, m)
	}
	sig, err := c.cfg.Crypto.Sign(data)
	if err != nil {
		return fmt.Errorf("pbft: sign %s: %w", m.Type, err)
	}
	m.Sig = sig
	return nil
}

// verify checks m's signature by m.From, a member of the set m counts
// in: that of its sequence number for pre-prepares, prepares, commits and
// checkpoints; that of where it starts for a view-change; that of its
// view-changes for a new-view; this replica's current one otherwise.
func (c *Core) verify(m *Message) bool {
	if !c.memberFor(m) {
		return false
	}
	var data []byte
	if m.Type == TypeCommit {
		data = c.cfg.Crypto.VoteBytes(m.Seq, m.View, digestOf(m.Digest))
	} else {
		data = signBytes(c.cfg.Domain, m)
	}
	return c.cfg.Crypto.Verify(m.From, data, m.Sig)
}

// memberFor reports whether m.From is a member of the set m counts in.
func (c *Core) memberFor(m *Message) bool {
	var ep *epoch
	var ok bool
	switch m.Type {
	case TypePrePrepare, TypePrepare, TypeCommit, TypeCheckpoint:
		ep, _, ok = c.epochAt(m.Seq)
	case TypeViewChange:
		ep, _, ok = c.epochAt(c.vcStart(m) + 1)
	case TypeNewView:
		ep, _, ok = c.nvEpoch(m)
	default:
		ep, _, ok = c.cur()
	}
	return ok && ep.has(m.From)
}

// send sends m to one replica. A replica alone in its set, now and in
// every set it knows of, signs only its commits and sends nothing: the
// replicas it left behind (a cluster shrunk to one) are no peers of it.
func (c *Core) send(to string, m *Message) {
	if to == c.cfg.ID || c.alone() {
		return
	}
	c.rd.Messages = append(c.rd.Messages, Outbound{To: to, Msg: m})
}

// broadcast sends m to every other replica; a single replica has none
// and sends nothing.
func (c *Core) broadcast(m *Message) {
	if !c.alone() {
		c.rd.Messages = append(c.rd.Messages, Outbound{Msg: m})
	}
}

// vote records that this replica votes for d at (view, seq), refusing a
// vote that conflicts with one cast before (also before a crash), and
// any vote in a view below one this replica asked for (see rejoin).
func (c *Core) vote(seq uint64, d Digest) bool {
	if c.passive() {
		return false
	}
	if ep, _, ok := c.epochAt(seq); !ok || !ep.has(c.cfg.ID) {
		return false
	}
	if v, ok := c.votes[seq]; ok && v.View == c.view && v.Digest != d {
		return false
	}
	if v, ok := c.votes[seq]; ok && v.View == c.view {
		return true
	}
	c.votes[seq] = SeqVote{Seq: seq, View: c.view, Digest: d}
	c.dirty()
	return true
}

// Step processes a message from a peer. Messages that are invalid, forged
// or stale are dropped; an error means the core cannot go on (its signer
// or its application failed).
func (c *Core) Step(m *Message) error {
	if err := c.step(m); err != nil {
		return err
	}
	return c.enterEpoch()
}

func (c *Core) step(m *Message) error {
	if m == nil || m.From == c.cfg.ID || !c.senderKnown(m.From) {
		return nil
	}
	if m.Type == TypeViewQuery {
		c.showNewView(m.From, m.View)
		return nil
	}
	if m.Type != TypeRequest && m.Type != TypeViewChange && m.Type != TypeNewView && m.Type != TypeCheckpoint {
		if m.View < c.view {
			c.showNewView(m.From, m.View)
			return nil
		}
		if m.View > c.view || c.changing {
			c.hold(m)
			return nil
		}
	}
	switch m.Type {
	case TypeRequest:
		if ep, _, ok := c.cur(); !ok || !ep.has(m.From) || !ep.has(c.cfg.ID) {
			return nil // from or to a removed replica, or one not in yet
		}
		c.rd.Requests = append(c.rd.Requests, Forwarded{From: m.From, Request: Request{ID: RequestID(m.Payload), Data: m.Payload}})
		return nil
	case TypePrePrepare:
		return c.onPrePrepare(m)
	case TypePrepare:
		return c.onPrepare(m)
	case TypeCommit:
		return c.onCommit(m)
	case TypeCheckpoint:
		return c.onCheckpoint(m)
	case TypeViewChange:
		return c.onViewChange(m)
	case TypeNewView:
		return c.onNewView(m)
	case TypeReject:
		return c.onReject(m)
	}
	return nil
}

// hold keeps a message of a view this replica has not installed yet, to
// be stepped once it has.
// A replica that hears a later view than its own (or than the one it is
// changing to) missed a new-view (it was down or cut off): it asks the
// sender for it. A correct replica sends prepares, commits and
// pre-prepares of a view only once it installed it.
func (c *Core) hold(m *Message) {
	if m.View > c.view {
		if last, ok := c.queried[m.From]; !ok || c.now-last >= c.resendEvery() {
			c.queried[m.From] = c.now
			c.send(m.From, &Message{Type: TypeViewQuery, From: c.cfg.ID, View: c.view})
		}
	}
	if m.View > c.view+1 || len(c.future) >= 4*int(c.cfg.Window)*c.epochs[len(c.epochs)-1].n {
		return
	}
	c.future = append(c.future, m)
}

// showNewView helps a peer stuck in view v: it sends the new-view that
// installed a view at or above v, or this replica's own view-change for v
// (which the peer may have lost), at most once per retransmission period.
func (c *Core) showNewView(to string, v uint64) {
	if last, ok := c.shown[to]; ok && c.now-last < c.resendEvery() {
		return
	}
	if c.newView != nil && c.newView.View >= v {
		c.shown[to] = c.now
		c.send(to, c.newView)
		return
	}
	if vc := c.myVCs[v]; vc != nil {
		c.shown[to] = c.now
		c.send(to, vc)
	}
}

// inWindow reports whether this replica orders seq now: within the
// watermarks (PBFT 4.2), and in its current epoch (processable).
func (c *Core) inWindow(seq uint64) bool {
	return seq > c.low && seq <= c.low+c.cfg.Window && c.processable(seq)
}

func (c *Core) onReject(m *Message) error {
	if m.From != c.primary(c.view) || !c.verify(m) {
		return nil
	}
	id := [32]byte(m.Digest)
	w, ok := c.waiting[id]
	if !ok {
		return nil
	}
	c.rd.Rejected = append(c.rd.Rejected, Rejected{ID: id, Reason: string(m.Payload), Detail: m.Detail, Data: w.data})
	return nil
}

// Forget stops waiting for a request: the driver confirmed its rejection.
func (c *Core) Forget(id [32]byte) { delete(c.waiting, id) }

func (c *Core) onPrePrepare(m *Message) error {
	if !c.inWindow(m.Seq) || m.From != c.primary(m.View) || !c.verify(m) {
		return nil
	}
	e := c.slot(m.Seq)
	if e.pp != nil && e.view == m.View {
		return nil // a second pre-prepare in this view: ignore an equivocation
	}
	c.resetSlot(e, m.View)
	e.pp, e.digest = m, digestOf(m.Digest)
	return c.advanceSlots(m.Seq)
}

func (c *Core) onPrepare(m *Message) error {
	if !c.inWindow(m.Seq) || !c.verify(m) {
		return nil
	}
	e := c.slot(m.Seq)
	if e.pp == nil || e.view != m.View {
		c.resetSlotVotes(e, m.View)
	}
	if _, dup := e.prepares[m.From]; dup {
		return nil
	}
	e.prepares[m.From] = m
	return c.advanceSlots(m.Seq)
}

func (c *Core) onCommit(m *Message) error {
	if !c.inWindow(m.Seq) || !c.verify(m) {
		return nil
	}
	e := c.slot(m.Seq)
	if e.pp == nil || e.view != m.View {
		c.resetSlotVotes(e, m.View)
	}
	if _, dup := e.commits[m.From]; dup {
		return nil
	}
	e.commits[m.From] = m
	return c.advanceSlots(m.Seq)
}

// resetSlotVotes drops votes of other views from a slot that has no
// pre-prepare of view v yet.
func (c *Core) resetSlotVotes(e *entry, v uint64) {
	for k, m := range e.prepares {
		if m.View != v {
			delete(e.prepares, k)
		}
	}
	for k, m := range e.commits {
		if m.View != v {
			delete(e.commits, k)
		}
	}
}

// count returns how many distinct votes in votes match view and d.
func count(votes map[string]*Message, view uint64, d Digest) int {
	n := 0
	for _, m := range votes {
		if m.View == view && Digest(m.Digest) == d {
			n++
		}
	}
	return n
}

// advanceSlots moves the slots from seq upwards as far as they go:
// validate, prepare, commit, execute. Prepares go out in sequence order:
// a replica prepares seq only once seq-1 is prepared in this view or
// executed, so a prepared certificate at seq implies f+1 correct replicas
// hold one at seq-1, and the new primary always finds a gap-free chain.
func (c *Core) advanceSlots(seq uint64) error {
	for s := seq; ; s++ {
		e := c.log[s]
		if e == nil || e.view != c.view || e.pp == nil || !c.processable(s) {
			break
		}
		before := *e
		if err := c.advance(e); err != nil {
			return err
		}
		if s > seq && e.valid == before.valid && e.prepared == before.prepared && e.sentPrepare == before.sentPrepare {
			break
		}
	}
	return c.execute()
}

func (c *Core) advance(e *entry) error {
	if !e.valid {
		if !c.validate(e) {
			return nil
		}
	}
	// A vote refused (one cast before for another digest, or a passive
	// replica's) is not sent, but the slot still prepares and commits on
	// the others' votes: 2f+1 of them are a certificate either way.
	if !e.sentPrepare && c.prevPrepared(e.seq) && c.vote(e.seq, e.digest) {
		p := &Message{Type: TypePrepare, From: c.cfg.ID, View: c.view, Seq: e.seq, Digest: e.digest.bytes()}
		if err := c.sign(p); err != nil {
			return err
		}
		e.sentPrepare = true
		e.prepares[c.cfg.ID] = p
		c.broadcast(p)
	}
	ep, _, _ := c.epochAt(e.seq) // processable: known
	if !e.prepared && count(e.prepares, c.view, e.digest) >= ep.q {
		e.prepared = true
		e.cert, e.certView = c.certificate(e), c.view
		c.rd.Certs = append(c.rd.Certs, e.cert)
	}
	if e.prepared && !e.sentCommit && c.vote(e.seq, e.digest) {
		cm := &Message{Type: TypeCommit, From: c.cfg.ID, View: c.view, Seq: e.seq, Digest: e.digest.bytes()}
		if err := c.sign(cm); err != nil {
			return err
		}
		e.sentCommit = true
		e.commits[c.cfg.ID] = cm
		c.broadcast(cm)
	}
	if e.prepared && !e.committed && count(e.commits, c.view, e.digest) >= ep.q {
		e.committed = true
	}
	return nil
}

// prevPrepared reports whether seq-1 is prepared in this view or executed.
func (c *Core) prevPrepared(seq uint64) bool {
	if seq-1 <= c.lastExec || seq-1 <= c.low {
		return true
	}
	p := c.log[seq-1]
	return p != nil && p.view == c.view && p.prepared
}

// validate checks e's proposal against its parent, if the parent is known.
func (c *Core) validate(e *entry) bool {
	if e.executed || e.seq <= c.lastExec {
		d, ok := c.digestAt(e.seq)
		if ok && d == e.digest {
			e.valid = true
		}
		return e.valid
	}
	parent, ok := c.digestAt(e.seq - 1)
	if !ok {
		return false
	}
	d, ids, err := c.cfg.App.Validate(e.seq, e.view, parent, e.pp.Payload)
	if err != nil || d != e.digest {
		return false
	}
	e.valid, e.ids, e.parent = true, ids, parent
	for _, id := range ids {
		c.inflight[id] = e.seq
	}
	return true
}

// checkParents drops the validation of slots above seq that were checked
// against another parent than what seq turned out to be.
func (c *Core) checkParents(seq uint64) {
	for s := seq + 1; ; s++ {
		e := c.log[s]
		parent, ok := c.digestAt(s - 1)
		if e == nil || !e.valid || e.executed || (ok && e.parent == parent) {
			return
		}
		e.valid = false
		c.dropIDs(e)
	}
}

// certificate returns e's prepared certificate: its pre-prepare and the
// matching prepares.
func (c *Core) certificate(e *entry) *Prepared {
	p := &Prepared{PrePrepare: e.pp}
	for _, k := range sortedKeys(e.prepares) {
		m := e.prepares[k]
		if m.View == c.view && Digest(m.Digest) == e.digest {
			p.Prepares = append(p.Prepares, m)
		}
	}
	return p
}

// execute hands out committed proposals in sequence order.
func (c *Core) execute() error {
	for {
		e := c.log[c.lastExec+1]
		if e == nil || !e.committed || e.executed {
			return nil
		}
		ent := Entry{Seq: e.seq, Digest: e.digest, Payload: e.pp.Payload, View: e.view}
		for _, k := range sortedKeys(e.commits) {
			m := e.commits[k]
			if m.View == e.view && Digest(m.Digest) == e.digest {
				ent.Commits = append(ent.Commits, Vote{Node: m.From, Sig: m.Sig})
			}
		}
		c.rd.Committed = append(c.rd.Committed, ent)
		c.execCert = &Executed{Seq: e.seq, View: e.view, Digest: e.digest, Commits: ent.Commits}
		e.executed, e.execDigest = true, e.digest
		c.lastExec, c.lastExecDigest = e.seq, e.digest
		if err := c.learn(e.seq, e.pp.Payload); err != nil {
			return err
		}
		c.progress(e.ids)
		if ep, _, _ := c.epochAt(e.seq); e.seq%c.cfg.CheckpointInterval == 0 && ep.has(c.cfg.ID) {
			cp := &Message{Type: TypeCheckpoint, From: c.cfg.ID, Seq: e.seq, Digest: e.digest.bytes()}
			if err := c.sign(cp); err != nil {
				return err
			}
			c.broadcast(cp)
			c.addCheckpoint(cp)
		}
	}
}

// progress forgets executed requests and restarts the request timer.
func (c *Core) progress(ids [][32]byte) {
	executed := false
	for _, id := range ids {
		delete(c.inflight, id)
		delete(c.queued, id)
		if _, ok := c.waiting[id]; ok {
			delete(c.waiting, id)
			executed = true
		}
	}
	if executed {
		c.backoff = 0
		c.deadline = c.now + c.timeout()
	}
}

func (c *Core) onCheckpoint(m *Message) error {
	if m.Seq <= c.proven {
		return nil
	}
	if _, _, ok := c.epochAt(m.Seq); !ok {
		// Above the member sets this replica knows: it is far behind.
		// Whoever signed, the certificates on the blocks it fetches
		// make the fetch safe.
		if c.cfg.Crypto.Verify(m.From, signBytes(c.cfg.Domain, m), m.Sig) {
			c.behind(m)
		}
		return nil
	}
	if !c.verify(m) {
		return nil
	}
	c.addCheckpoint(m)
	return nil
}

// learn asks the application whether the proposal executed at seq
// carries a reconfiguration, and records it.
func (c *Core) learn(seq uint64, payload []byte) error {
	if seq <= c.told {
		return nil
	}
	c.told = seq
	rc, ok := c.cfg.App.(Reconfigurer)
	if !ok {
		return nil
	}
	if nodes, ok := rc.Reconfig(seq, payload); ok {
		if err := c.addReconfig(Reconfig{Seq: seq, Nodes: nodes}); err != nil {
			return fmt.Errorf("pbft: reconfiguration at %d: %w", seq, err)
		}
	}
	return nil
}

// addCheckpoint records a checkpoint; 2f+1 matching ones make it stable
// (PBFT 4.3); f+1 matching ones above what this replica executed mean it
// fell behind and must fetch.
func (c *Core) addCheckpoint(m *Message) {
	if m.Seq > c.low+2*c.cfg.Window && m.Seq > c.lastExec+2*c.cfg.Window {
		// Far ahead: still a sign this replica is behind, but keep no state.
		c.behind(m)
		return
	}
	set := c.checkpoints[m.Seq]
	if set == nil {
		set = map[string]*Message{}
		c.checkpoints[m.Seq] = set
	}
	set[m.From] = m
	d := digestOf(m.Digest)
	ep, _, ok := c.epochAt(m.Seq)
	if !ok {
		return
	}
	matching := 0
	for _, x := range set {
		if Digest(x.Digest) == d {
			matching++
		}
	}
	if matching >= ep.f+1 && m.Seq > c.lastExec {
		c.setFetch(m.Seq, d)
	}
	if matching >= ep.q && m.Seq <= c.lastExec {
		var proof []*Message
		for _, k := range sortedKeys(set) {
			if Digest(set[k].Digest) == d {
				proof = append(proof, set[k])
			}
		}
		c.stabilize(m.Seq, d, proof)
	}
}

// behind notes a single far-ahead checkpoint; certificates on the blocks
// make the fetch safe whoever triggered it.
func (c *Core) behind(m *Message) {
	if m.Seq > c.lastExec {
		c.setFetch(m.Seq, digestOf(m.Digest))
	}
}

func (c *Core) setFetch(seq uint64, d Digest) {
	if c.rd.Fetch == nil || c.rd.Fetch.Seq < seq {
		c.rd.Fetch = &Target{Seq: seq, Digest: d}
	}
}

// stabilize records a checkpoint proven by 2f+1 signatures and makes it
// the low watermark (PBFT 4.3).
func (c *Core) stabilize(seq uint64, d Digest, proof []*Message) {
	if seq > c.proven {
		c.proven, c.provenDigest, c.proof = seq, d, proof
	}
	c.raiseLow(seq, d)
}

// raiseLow moves the low watermark to seq and truncates the log below,
// but for the prepared certificates above what this replica executed.
//
// A new view may start at another replica's commit certificate above
// what this one executed (install): the proposals up to there are
// decided, but this replica holds none of them until state transfer
// brings them, and the replicas that executed them may lose them (a
// wiped disk). Its prepared certificates are then all that is left of
// them here: they go into its view-changes until it executed them, so
// that a later new view that starts lower re-proposes them (PBFT 4.4)
// rather than new proposals at those numbers (the chaos suite lost
// acknowledged records that way: see lowerLow).
func (c *Core) raiseLow(seq uint64, d Digest) {
	if seq <= c.low {
		return
	}
	c.low, c.lowDigest = seq, d
	for s, e := range c.log {
		if s > seq {
			continue
		}
		c.dropIDs(e)
		if s > c.lastExec && e.cert != nil {
			c.log[s] = &entry{seq: s, view: e.certView, prepares: map[string]*Message{}, commits: map[string]*Message{},
				cert: e.cert, certView: e.certView}
			continue
		}
		delete(c.log, s)
	}
	for s := range c.checkpoints {
		if s < seq {
			delete(c.checkpoints, s)
		}
	}
	for s := range c.votes {
		if s <= seq {
			delete(c.votes, s)
			c.dirty()
		}
	}
	if c.nextSeq <= seq {
		c.nextSeq = seq + 1
	}
}

// Caught tells the core that state transfer executed everything up to
// last, including the requests ids. The transferred proposals carry commit
// certificates: they are decided, so the window may start above them.
func (c *Core) Caught(last Executed, ids [][32]byte) error {
	seq, d := last.Seq, last.Digest
	if seq <= c.lastExec {
		return nil
	}
	c.progress(ids)
	c.lastExec, c.lastExecDigest, c.execCert = seq, d, &last
	c.told = max(c.told, seq)
	c.checkParents(seq)
	if set := c.checkpoints[seq]; set != nil {
		c.addCheckpoint(set[sortedKeys(set)[0]])
	}
	c.raiseLow(seq, d)
	// A block 2f+1 replicas committed in a lower view, above what this
	// replica had executed, while its own view change has not gathered
	// 2f+1 (which would start its timer: that one is real): the others
	// went on without it. It rejoins them, unless it is that view's
	// primary, which the others replace anyway once it proposes nothing.
	_, li, lok := c.epochAt(last.Seq)
	_, ci, cok := c.cur()
	if c.changing && !c.vcTimer && last.View < c.view && lok && cok && li == ci && c.primary(last.View) != c.cfg.ID && c.validCommits(&last) {
		if err := c.rejoin(last.View); err != nil {
			return err
		}
	}
	if err := c.enterEpoch(); err != nil {
		return err
	}
	if err := c.advanceSlots(seq + 1); err != nil {
		return err
	}
	return c.maybePropose(false)
}

func sortedKeys[K interface{ ~uint64 | ~string }, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
