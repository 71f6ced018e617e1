package replica

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync/atomic"
	"time"

	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/clock"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// Transport carries consensus messages and fetches blocks from peers
// (gateway/cluster). Send and Broadcast never block.
type Transport interface {
	Send(to string, data []byte) bool
	Broadcast(data []byte)
	Fetch(ctx context.Context, peer string, from uint64, max int) ([][]byte, error)
}

// Config configures a replica.
type Config struct {
	Self    string
	Genesis *ledger.Genesis
	State   *state.State
	Log     *ledger.Log // the block log, to serve peers and find the last certificate
	Signer  crypto.Signer
	Dir     string // where the hard state lives (DATA/pbft)
	Batch   chain.BatchConfig
	// Tick is the core's clock period; the primary cuts a partial batch
	// on the first tick after its first tx waited Batch.MaxDelay.
	// ViewChangeTimeout is how long a request may wait before a backup
	// asks for a new primary.
	Tick              time.Duration
	ViewChangeTimeout time.Duration
	Logger            *slog.Logger
	Transport         Transport                // nil for a single node
	Heights           func() map[string]uint64 // peers' reported heights; nil for a single node
}

// Status is what operators see of the replica.
type Status struct {
	View     uint64 `json:"view"`
	Primary  string `json:"primary"`
	Changing bool   `json:"view_changing"`
	Stable   uint64 `json:"stable_checkpoint"`
	Executed uint64 `json:"executed"`
	Queued   int    `json:"queued"`
	Waiting  int    `json:"waiting"`
	// ChangingSince is when the running view change began; zero if none.
	ChangingSince time.Time `json:"-"`
}

// Replica is a gateway's PBFT replica and the chain's Orderer.
type Replica struct {
	cfg    Config
	logger *slog.Logger
	store  *store
	app    *app

	proposals chan queuedTx
	inbox     chan *pbft.Message  // votes and view changes
	requests  chan *pbft.Message  // forwarded requests: a flood of these must not crowd out votes
	checks    chan forwardedCheck // to the checkers (see maxChecks)
	verdicts  chan verdict
	prechecks chan *pbft.Message // pre-prepares whose txs wait for their check (see precheck.go)
	verified  *verifiedCache     // txs whose signature this replica verified
	fetched   chan fetchResult
	status    atomic.Pointer[Status]

	fetching bool
	// transferred counts the blocks state transfer applied (Transferred).
	transferred atomic.Uint64
	ahead       map[string]int // consecutive height checks each peer was ahead
}

// maxChecks bounds the forwarded requests that wait for a checker: a
// request that finds the queue full is dropped, and its forwarder sends
// it again.
const maxChecks = 8192

// forwardedCheck is a forwarded request for a checker, n its place in
// the order the requests came in.
type forwardedCheck struct {
	n  uint64
	fw pbft.Forwarded
}

// queuedTx is a proposed tx and when it was proposed.
type queuedTx struct {
	c  *state.Checked
	at time.Time
}

type verdict struct {
	n    uint64 // the order the request came in: verdicts are used in it
	from string
	req  pbft.Request
	c    *state.Checked
	err  error
}

type fetchResult struct {
	peer   string
	blocks [][]byte
	err    error
}

// New validates cfg; it does no I/O.
func New(cfg Config) (*Replica, error) {
	if cfg.Genesis == nil || cfg.State == nil || cfg.Log == nil || cfg.Signer == nil || cfg.Logger == nil {
		return nil, errors.New("replica: config needs genesis, state, log, signer and logger")
	}
	if _, ok := cfg.Genesis.Node(cfg.Self); !ok && len(cfg.Genesis.Nodes) == 1 {
		// A cluster's gateway may be one a member change added: it
		// follows the chain until its set takes effect.
		return nil, fmt.Errorf("replica: %q is not a node of the genesis", cfg.Self)
	}
	if len(cfg.Genesis.Nodes) > 1 && (cfg.Transport == nil || cfg.Heights == nil) {
		return nil, errors.New("replica: a cluster needs a transport")
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 2 * time.Millisecond
	}
	if cfg.ViewChangeTimeout <= 0 {
		cfg.ViewChangeTimeout = time.Second
	}
	// A generation of the verified cache holds what the pre-prepares in
	// flight (4, of up to MaxTxs each) bring twice over.
	verified := newVerifiedCache(max(8192, 8*cfg.Batch.MaxTxs))
	r := &Replica{
		cfg: cfg, logger: cfg.Logger,
		app: &app{g: cfg.Genesis, st: cfg.State, self: cfg.Self, now: clock.Now, checked: map[[32]byte]*state.Checked{},
			verified: verified, spec: map[pbft.Digest]*proposal{}},
		proposals: make(chan queuedTx, max(cfg.Batch.MaxPending, 1)),
		inbox:     make(chan *pbft.Message, 8192),
		requests:  make(chan *pbft.Message, 8192),
		checks:    make(chan forwardedCheck, maxChecks),
		verdicts:  make(chan verdict, 1024),
		prechecks: make(chan *pbft.Message, maxPrechecks),
		verified:  verified,
		fetched:   make(chan fetchResult, 1),
		ahead:     map[string]int{},
	}
	tip, _ := cfg.State.Tip()
	r.status.Store(&Status{Primary: cfg.State.Members().At(tip + 1).Primary(0)})
	return r, nil
}

// Status returns the replica's last status; safe from any goroutine.
func (r *Replica) Status() Status { return *r.status.Load() }

// Propose queues a checked tx for ordering (chain.Orderer).
func (r *Replica) Propose(c *state.Checked) error {
	if err := r.Member(); err != nil {
		return err
	}
	select {
	case r.proposals <- queuedTx{c: c, at: time.Now()}:
		return nil
	default:
		return chain.ErrOverloaded
	}
}

// Message takes a consensus message from a peer (the transport's
// handler). It never blocks: when the replica is swamped the message is
// dropped, and the core's retransmission recovers.
func (r *Replica) Message(from string, data []byte) {
	m, err := pbft.Decode(data)
	if err != nil {
		r.logger.Warn("dropped malformed consensus message", "peer", from, "err", err)
		return
	}
	ch := r.inbox
	switch {
	case m.Type == pbft.TypeRequest:
		ch = r.requests
	case m.Type == pbft.TypePrePrepare && m.From == from && r.primaryOf(m.View) == from && len(m.Payload) > 0:
		select {
		case r.prechecks <- m:
			return
		default: // the prechecker is behind: Validate checks the txs
		}
	}
	select {
	case ch <- m:
	default:
	}
}

// primaryOf is the id of the primary of view v (PBFT: nodes[v mod n])
// in the member set in force after the tip.
func (r *Replica) primaryOf(v uint64) string {
	tip, _ := r.cfg.State.Tip()
	return r.cfg.State.Members().At(tip + 1).Primary(v)
}

// ErrRemoved refuses a tx offered to a gateway that a member change
// removed from the cluster.
var ErrRemoved error = &ledger.RefusedError{Reason: ledger.ReasonUnavailable,
	Detail: "replica: this gateway was removed from the cluster: use another gateway"}

// ErrNotYetMember refuses a tx offered to a gateway that a member change
// added, before its set takes effect.
var ErrNotYetMember error = &ledger.RefusedError{Reason: ledger.ReasonUnavailable,
	Detail: "replica: this gateway is not a member of the cluster yet (it joins at a later height): use another gateway"}

// Member says whether this gateway is a member of the set in force after
// its tip, and so takes txs: nil, or why not (ErrRemoved,
// ErrNotYetMember). Safe from any goroutine.
func (r *Replica) Member() error {
	if len(r.cfg.Genesis.Nodes) == 1 {
		return nil
	}
	tip, _ := r.cfg.State.Tip()
	m := r.cfg.State.Members()
	if _, ok := m.At(tip + 1).Key(r.cfg.Self); ok {
		return nil
	}
	for _, e := range m.Epochs() {
		if e.Start > tip+1 {
			if _, ok := e.Key(r.cfg.Self); ok {
				return ErrNotYetMember
			}
		}
	}
	if _, ok := m.Ever(r.cfg.Self); ok {
		return ErrRemoved
	}
	return ErrNotYetMember // not named in any change this gateway applied yet
}

// Transferred is the number of blocks this replica applied by state
// transfer (fetched from peers, not ordered with them) since it started.
func (r *Replica) Transferred() uint64 { return r.transferred.Load() }

// maxServe bounds the blocks one fetch returns.
const maxServe = 256

// Blocks serves blocks [from, from+max) to a peer catching up.
func (r *Replica) Blocks(from uint64, max int) ([][]byte, error) {
	n := r.cfg.Log.Height()
	// A log that starts from a snapshot serves from its base on: a peer
	// asking for less gets nothing here and asks another.
	base, _ := r.cfg.Log.Base()
	var out [][]byte
	for h := from; h > base && h <= n && len(out) < min(max, maxServe); h++ {
		b, err := r.cfg.Log.ReadHeight(h)
		if err != nil {
			return out, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Run drives the core until ctx ends (chain.Orderer).
func (r *Replica) Run(ctx context.Context, commit func(*chain.Round) error) error {
	ctx, stop := context.WithCancel(ctx) // the checkers stop with Run
	defer stop()
	core, err := r.start()
	if r.store != nil {
		defer r.store.close()
	}
	if err != nil {
		return err
	}
	d := &driver{r: r, core: core, commit: commit, ctx: ctx, early: map[uint64]verdict{}}
	// Forwarded requests are checked, signatures included, as they come
	// in, on every core and in parallel with ordering, by a fixed number
	// of checkers.
	for range runtime.GOMAXPROCS(0) {
		go d.checker()
	}
	go r.prechecker(ctx)
	// The core's clock wakes the loop only for a tick with work (the
	// batch deadline, the request and view-change timers, a
	// retransmission: pbft.Core.NextTick), not every Tick: a single node
	// at 1,000 txs/s woke 500 times a second for about 100 blocks and
	// sleeps when idle. Each input first catches the clock up, so the
	// timers it starts count from the right tick.
	//
	// A cluster's core does the same while it is idle (nothing queued,
	// waited for or in flight, no view change): it wakes for the
	// retransmission tick, twice a second, instead of 500 times. While
	// work is in progress it ticks every Tick, as before: under load
	// that ticker drops the ticks the loop was too busy to take, or the
	// machine gave it no CPU for, which stretches its timeouts, and the
	// view-change and resend timeouts were set with that. A clock that
	// counted the time passed instead had the backups of BenchmarkPeer
	// ask for one view change after another under full load on an
	// overloaded machine (load average 12 on two cores: 858-1,253
	// msgs/s and hundreds of records refused as replays, against
	// 1,796-2,988 with the ticker), each blaming the primary for its own
	// late turns.
	d.clock = newCoreClock(r.cfg.Tick)
	defer d.clock.timer.Stop()
	cluster := len(r.cfg.Genesis.Nodes) > 1
	ticker := time.NewTicker(r.cfg.Tick)
	ticker.Stop()
	defer ticker.Stop()
	var tick <-chan time.Time // ticker.C while the ticker runs, else nil
	syncEvery := max(int(time.Second/r.cfg.Tick), 1)
	ticks := 0
	catchUp := func() error {
		n, err := d.clock.catchUp(core, time.Now())
		ticks += n
		return err
	}
	d.clock.arm(core, time.Now())
	// proposals is r.proposals, or nil while a partial batch collects in
	// the core: the tick that may cut it takes the proposals that came
	// meanwhile first, so they still join it, and they do not wake this
	// goroutine one by one (at 1,000 txs/s and 10 ms batches, one wake
	// in ten).
	proposals := r.proposals
	for {
		select {
		case <-ctx.Done():
			return nil
		case q := <-proposals:
			if err := catchUp(); err != nil {
				return err
			}
			if err := d.propose(q); err != nil {
				return err
			}
			if err := d.proposeQueued(); err != nil {
				return err
			}
		case m := <-r.inbox:
			if err := catchUp(); err != nil {
				return err
			}
			if err := core.Step(m); err != nil {
				return err
			}
		case m := <-r.requests:
			if err := catchUp(); err != nil {
				return err
			}
			if err := core.Step(m); err != nil {
				return err
			}
		case v := <-r.verdicts:
			if err := catchUp(); err != nil {
				return err
			}
			if err := d.verdict(v); err != nil {
				return err
			}
		case f := <-r.fetched:
			if err := catchUp(); err != nil {
				return err
			}
			r.fetching = false
			if err := d.transferred(f); err != nil {
				return err
			}
		case <-tick:
			if err := d.proposeQueued(); err != nil {
				return err
			}
			if err := core.Tick(); err != nil {
				return err
			}
			ticks++
		case <-d.clock.c:
			d.clock.c = nil
			if err := d.proposeQueued(); err != nil {
				return err
			}
			if err := catchUp(); err != nil {
				return err
			}
		}
		if ticks >= syncEvery {
			ticks = 0
			d.sync()
		}
		if err := d.ready(); err != nil {
			return err
		}
		st := core.Status()
		prev := r.status.Load()
		since := prev.ChangingSince
		if !st.Changing {
			since = time.Time{}
		} else if since.IsZero() {
			since = time.Now()
		}
		if prev.View != st.View || prev.Changing != st.Changing {
			switch {
			case st.Changing:
				r.logger.Warn("view change: asking for a new primary", "view", st.View, "primary", st.Primary, "executed", st.Executed)
			case st.View < prev.View:
				// The others went on committing in this view without it
				// (pbft: rejoin); it follows until the next view change.
				r.logger.Warn("view change abandoned: rejoined the view the others commit in", "view", st.View, "asked", prev.View, "primary", st.Primary, "executed", st.Executed)
			default:
				r.logger.Info("new view installed", "view", st.View, "primary", st.Primary, "executed", st.Executed)
			}
		}
		r.status.Store(&Status{View: st.View, Primary: st.Primary, Changing: st.Changing, Stable: st.Stable,
			Executed: st.Executed, Queued: st.Queued, Waiting: st.Waiting, ChangingSince: since})
		busy := cluster && (st.Queued > 0 || st.Waiting > 0 || st.InFlight > 0 || st.Changing)
		switch {
		case busy && tick == nil:
			d.clock.stop()
			ticker.Reset(r.cfg.Tick)
			tick = ticker.C
		case !busy && tick != nil:
			ticker.Stop()
			tick = nil
		}
		if tick == nil {
			d.clock.arm(core, time.Now())
		}
		proposals = r.proposals
		if st.Queued > 0 && st.Queued < r.cfg.Batch.MaxTxs && st.Primary == r.cfg.Self && !st.Changing {
			proposals = nil
		}
	}
}

// proposeQueued hands the core every proposal queued.
func (d *driver) proposeQueued() error {
	for {
		select {
		case q := <-d.r.proposals:
			if err := d.propose(q); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// start restores the core from the hard state and the block log.
func (r *Replica) start() (*pbft.Core, error) {
	var hs pbft.HardState
	var certs []*pbft.Prepared
	if len(r.cfg.Genesis.Nodes) > 1 {
		s, err := openStore(r.cfg.Dir)
		if err != nil {
			return nil, err
		}
		r.store = s
		if hs, certs, err = s.load(); err != nil {
			return nil, err
		}
	}
	last := pbft.Executed{Digest: r.cfg.Genesis.Hash()}
	if base, hash := r.cfg.Log.Base(); base > 0 {
		// A log that starts from a snapshot and holds no block after it
		// yet: the core starts at the snapshot's height with no commit
		// certificate (a view change then carries none for it; the
		// certified snapshot stands in for it, and state transfer
		// fetches the blocks after it).
		last = pbft.Executed{Seq: base, Digest: pbft.Digest(hash)}
	}
	if n := r.cfg.Log.Height(); r.cfg.Log.Len() > 0 {
		data, err := r.cfg.Log.ReadHeight(n)
		if err != nil {
			return nil, fmt.Errorf("replica: read last block: %w", err)
		}
		b, err := ledger.DecodeBlock(data)
		if err != nil {
			return nil, fmt.Errorf("replica: last block: %w", err)
		}
		last = executed(b)
	}
	crypt := newCrypto(r.cfg.Genesis, r.cfg.State, r.cfg.Signer)
	var nodes []string
	for _, n := range r.cfg.Genesis.Nodes {
		nodes = append(nodes, n.ID)
	}
	// The member changes the state applied, up to its tip: the core's
	// last executed proposal (pbft doc.go, driver's duty 1).
	var reconfigs []pbft.Reconfig
	for _, e := range r.cfg.State.Members().Changes() {
		reconfigs = append(reconfigs, pbft.Reconfig{Seq: e.Height, Nodes: e.IDs()})
	}
	timeout := max(int(r.cfg.ViewChangeTimeout/r.cfg.Tick), 2)
	core, err := pbft.New(pbft.Config{
		ID: r.cfg.Self, Nodes: nodes, Reconfigs: reconfigs, Domain: r.cfg.Genesis.ChainID, Crypto: crypt, App: r.app,
		MaxBatch: r.cfg.Batch.MaxTxs, MaxBatchBytes: r.cfg.Batch.MaxBytes, MaxQueue: r.cfg.Batch.MaxPending,
		RequestTimeout: timeout, BatchTicks: batchTicks(r.cfg.Batch.MaxDelay, r.cfg.Tick),
		PartialInFlight: partialInFlight,
		// The protocol's constants: when a member change takes effect
		// (ledger.MembersFrom) depends on them.
		CheckpointInterval: ledger.CheckpointInterval, Window: ledger.Window,
	}, hs, certs, last)
	if err != nil {
		return nil, err
	}
	in := r.cfg.State.Members().At(last.Seq + 1)
	r.logger.Info("replica started", "node", r.cfg.Self, "view", hs.View, "executed", last.Seq, "nodes", in.N(), "member_changes", len(reconfigs))
	return core, nil
}

// partialInFlight is how many blocks may be out for the primary to cut
// a partial batch (pbft.Config.PartialInFlight): one. Each block costs
// every gateway the same fixed work (votes, a prepared certificate and a
// block written and fsynced, an index transaction), so while one is out
// the next goes on collecting: under BenchmarkPeer's max load the blocks
// grew from about 530 txs to 890. A full batch (Batch.MaxTxs) still goes
// at once, up to four blocks out.
const partialInFlight = 1

// executed is a committed block as the core knows it.
func executed(b *ledger.Block) pbft.Executed {
	x := pbft.Executed{Seq: b.Header.Height, View: b.Cert.View, Digest: b.Header.Hash()}
	for _, s := range b.Cert.Sigs {
		x.Commits = append(x.Commits, pbft.Vote{Node: s.Node, Sig: s.Sig})
	}
	return x
}

// driver is the Run goroutine's state.
type driver struct {
	r      *Replica
	core   *pbft.Core
	commit func(*chain.Round) error
	ctx    context.Context

	// Forwarded requests are checked concurrently but handed to the core
	// in the order they came in: checked is the count of checks started,
	// used the count of verdicts handed on, early the verdicts that wait
	// for one before them.
	checked, used uint64
	early         map[uint64]verdict

	clock *coreClock // the core's clock
}

// coreClock drives a core's ticks with one timer set at the next tick that
// has work (pbft.Core.NextTick), not a ticker. The core's clock runs
// while a tick is due and stops when none is, so ticks count the time
// something waited.
type coreClock struct {
	period time.Duration
	timer  *time.Timer
	c      <-chan time.Time // timer.C while armed, else nil
	at     time.Time        // when the armed timer fires
	last   time.Time        // the wall time of the core's clock; zero while stopped
}

func newCoreClock(period time.Duration) *coreClock {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &coreClock{period: period, timer: t}
}

// catchUp ticks the core for the periods passed since its clock last
// advanced, up to the first tick with work; a later one is dropped, as a
// ticker drops the ticks its reader was too busy to take. It returns the
// ticks made. The driver catches up before it hands the core any input
// (a request, a peer's message, a check's verdict, fetched blocks), so
// that the timers it starts count from the right tick.
func (k *coreClock) catchUp(core *pbft.Core, now time.Time) (int, error) {
	if k.last.IsZero() {
		return 0, nil
	}
	passed := int(now.Sub(k.last) / k.period)
	if passed <= 0 {
		return 0, nil
	}
	n := passed
	if due := core.NextTick(); due > 0 && due < n {
		n = due
	}
	for range n {
		if err := core.Tick(); err != nil {
			return 0, err
		}
	}
	if n < passed {
		k.last = now
	} else {
		k.last = k.last.Add(time.Duration(n) * k.period)
	}
	return n, nil
}

// stop stops the clock (a cluster's core that ticks every period while
// work is in progress); arm starts it again.
func (k *coreClock) stop() {
	k.timer.Stop()
	k.c, k.last = nil, time.Time{}
}

// arm sets the timer to the next tick with work, or stops the clock if
// there is none; the driver calls it at the end of each turn of its
// loop. A cluster's clock never stops: it retransmits every half
// request timeout (pbft.Core.NextTick).
func (k *coreClock) arm(core *pbft.Core, now time.Time) {
	due := core.NextTick()
	if due == 0 {
		if k.c != nil {
			k.timer.Stop()
			k.c = nil
		}
		k.last = time.Time{}
		return
	}
	switch {
	case k.last.IsZero():
		k.last = now
	case now.Sub(k.last) > k.period:
		// The loop was busy for more than a period (a block's append
		// and fsync): that counts as one tick, as a ticker's buffered
		// tick does, so a slow disk does not run out the request timer.
		k.last = now.Add(-k.period)
	}
	at := k.last.Add(time.Duration(due) * k.period)
	if k.c != nil && at.Equal(k.at) {
		return
	}
	k.timer.Reset(at.Sub(now))
	k.c, k.at = k.timer.C, at
}

func (d *driver) propose(q queuedTx) error {
	c := q.c
	d.r.app.checked[c.Tx.ID] = c
	d.r.verified.put(c)
	waited := int(time.Since(q.at) / d.r.cfg.Tick)
	err := d.core.Propose(pbft.Request{ID: c.Tx.ID, Data: c.Tx.Envelope, Waited: waited})
	if errors.Is(err, pbft.ErrOverloaded) {
		delete(d.r.app.checked, c.Tx.ID)
		return d.commit(&chain.Round{Rejected: []chain.Rejected{{ID: c.Tx.ID, Err: chain.ErrOverloaded}}})
	}
	return err
}

// verdict takes the check of a forwarded request and hands the checked
// requests to the core in the order they came in: a peer forwards a
// device's records in their order, and the primary orders them as they
// reach the core, so a record checked faster than the one before it
// would otherwise be ordered first, and the earlier one refused as a
// replay (issue 19).
func (d *driver) verdict(v verdict) error {
	d.early[v.n] = v
	for {
		next, ok := d.early[d.used]
		if !ok {
			return nil
		}
		delete(d.early, d.used)
		d.used++
		if err := d.forwarded(next); err != nil {
			return err
		}
	}
}

// forwarded hands a peer's request, now checked, to the core.
func (d *driver) forwarded(v verdict) error {
	if v.err != nil {
		return d.core.RejectFor(v.from, v.req.ID, string(ledger.ReasonOf(v.err)), v.err.Error())
	}
	if _, ok := d.r.app.checked[v.c.Tx.ID]; !ok {
		d.r.app.checked[v.c.Tx.ID] = v.c
	}
	d.r.verified.put(v.c)
	return d.core.ProposeFor(v.from, v.req)
}

// ready carries out the core's output (see pbft.Ready).
func (d *driver) ready() error {
	for d.core.HasReady() {
		rd := d.core.Ready()
		if d.r.store != nil && (rd.HardState != nil || len(rd.Certs) > 0) {
			if err := d.r.store.save(rd.HardState, rd.Certs); err != nil {
				return err
			}
		}
		for _, e := range rd.Committed {
			if err := d.execute(e); err != nil {
				return err
			}
		}
		if t := d.r.cfg.Transport; t != nil {
			for _, out := range rd.Messages {
				data := out.Msg.Encode()
				if out.To == "" {
					t.Broadcast(data)
				} else {
					t.Send(out.To, data)
				}
			}
		}
		for _, fw := range rd.Requests {
			d.check(fw)
		}
		if err := d.rejected(rd.Rejected); err != nil {
			return err
		}
		d.core.Advance()
		if rd.Fetch != nil {
			d.fetch(rd.Fetch.Seq)
		}
	}
	return nil
}

// rejected answers the requests the primary refused, if this gateway's
// own check agrees (the primary may lie) or the primary is overloaded;
// the others stay waited for, and are sent again.
func (d *driver) rejected(rejected []pbft.Rejected) error {
	round := &chain.Round{}
	for _, rj := range rejected {
		var err error
		if rj.Reason == "overloaded" {
			err = chain.ErrOverloaded
		} else if c, cerr := d.r.cfg.State.Check(rj.Data); cerr != nil {
			err = cerr
		} else if aerr := d.r.app.tipBatch().Add(c); aerr != nil {
			// The order-dependent rules (enrolled twice, a stale config
			// version, a policy's rule) hold against the committed state
			// too.
			err = aerr
		} else {
			d.r.app.checked[rj.ID] = c
			d.r.logger.Debug("primary refused a request this gateway finds valid", "tx", fmt.Sprintf("%x", rj.ID[:8]), "reason", rj.Reason)
			continue
		}
		d.core.Forget(rj.ID)
		delete(d.r.app.checked, rj.ID)
		round.Rejected = append(round.Rejected, chain.Rejected{ID: rj.ID, Err: err})
	}
	if len(round.Rejected) == 0 {
		return nil
	}
	return d.commit(round)
}

// execute commits a block the replicas agreed on.
func (d *driver) execute(e pbft.Entry) error {
	a := d.r.app
	p := a.spec[e.Digest]
	if p == nil {
		return fmt.Errorf("replica: invariant: committed block %d was never validated here", e.Seq)
	}
	b := *p.block
	b.Cert = ledger.Cert{View: e.View}
	for _, v := range e.Commits {
		b.Cert.Sigs = append(b.Cert.Sigs, ledger.Sig{Node: v.Node, Sig: v.Sig})
	}
	if err := d.commit(&chain.Round{Block: &b, Tree: p.tree, Txs: p.txs}); err != nil {
		return err
	}
	a.committed(e.Digest, e.Seq)
	return nil
}

// check queues a forwarded request for the checkers; it drops it when
// maxChecks wait already (the forwarder sends it again).
func (d *driver) check(fw pbft.Forwarded) {
	select {
	case d.r.checks <- forwardedCheck{n: d.checked, fw: fw}:
		d.checked++
	default: // swamped
	}
}

// checker checks forwarded requests off the Run goroutine until the
// driver stops.
func (d *driver) checker() {
	st := d.r.cfg.State
	for {
		select {
		case <-d.ctx.Done():
			return
		case fc := <-d.r.checks:
			c, err := st.Check(fc.fw.Data)
			select {
			case d.r.verdicts <- verdict{n: fc.n, from: fc.fw.From, req: fc.fw.Request, c: c, err: err}:
			case <-d.ctx.Done():
				return
			}
		}
	}
}

// sync fetches from a peer that stays ahead of this replica's height for
// two checks in a row: it missed blocks the others committed.
func (d *driver) sync() {
	if len(d.r.app.checked) > 2*max(d.r.cfg.Batch.MaxPending, 1000) {
		// Checked requests that never made it into a block (a view
		// changed under them): forget them; a request that still needs
		// its check is refused by Build, and its forwarder sends it again.
		clear(d.r.app.checked)
	}
	if d.r.cfg.Heights == nil {
		return
	}
	height, _ := d.r.cfg.State.Tip()
	best := uint64(0)
	for peer, h := range d.r.cfg.Heights() {
		if h > height {
			d.r.ahead[peer]++
		} else {
			d.r.ahead[peer] = 0
		}
		if d.r.ahead[peer] >= 2 && h > best {
			best = h
		}
	}
	if best > 0 {
		d.fetch(best)
	}
}

// fetch starts fetching blocks above this replica's height from a peer
// that reported being at or above target.
func (d *driver) fetch(target uint64) {
	if d.r.fetching || d.r.cfg.Transport == nil {
		return
	}
	height, _ := d.r.cfg.State.Tip()
	if target <= height {
		return
	}
	var peers []string
	for p, h := range d.r.cfg.Heights() {
		if h > height {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return
	}
	sort.Strings(peers)
	peer := peers[int(height)%len(peers)]
	d.r.fetching = true
	t := d.r.cfg.Transport
	go func() {
		ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
		defer cancel()
		blocks, err := t.Fetch(ctx, peer, height+1, maxServe)
		d.r.fetched <- fetchResult{peer: peer, blocks: blocks, err: err}
	}()
}

// transferred applies fetched blocks, each only after its certificate and
// its link to the block before checked out.
func (d *driver) transferred(f fetchResult) error {
	if f.err != nil {
		d.r.logger.Warn("state transfer failed", "peer", f.peer, "err", f.err)
		return nil
	}
	g := d.r.cfg.Genesis
	var ids [][32]byte
	var last *ledger.Block
	var reconfigs []pbft.Reconfig
	for _, data := range f.blocks {
		height, tip := d.r.cfg.State.Tip()
		b, err := ledger.DecodeBlock(data)
		if err == nil && (b.Header.Height != height+1 || string(b.Header.Prev) != string(tip[:])) {
			err = fmt.Errorf("block %d does not extend block %d", b.Header.Height, height)
		}
		if err == nil {
			// The set in force at the block's height: the state knows
			// it, since a change takes effect Window heights after the
			// block that holds it, which state transfer applied first.
			err = d.r.cfg.State.Members().VerifyCert(&b.Header, &b.Cert)
		}
		// A pruned block (a peer's retention dropped record envelopes)
		// is applied from its stubs: DecodeBlock checked their leaf
		// hashes against the certified root.
		var txs []*state.Checked
		var decoded []*ledger.Tx
		if err == nil {
			decoded, err = b.DecodeTxs(g.Params.MaxTxBytes)
		}
		for _, tx := range decoded {
			txs = append(txs, &state.Checked{Tx: tx})
			ids = append(ids, tx.ID)
		}
		if nodes, ok := reconfigOf(txs); ok && err == nil {
			reconfigs = append(reconfigs, pbft.Reconfig{Seq: b.Header.Height, Nodes: nodes})
		}
		if err != nil {
			d.r.logger.Warn("refused a block from a peer", "peer", f.peer, "err", err)
			break
		}
		if err := d.commit(&chain.Round{Block: b, Tree: b.Tree(), Txs: txs}); err != nil {
			return err
		}
		d.r.app.committed(pbft.Digest(b.Header.Hash()), b.Header.Height)
		d.r.transferred.Add(1)
		last = b
	}
	if last == nil {
		return nil
	}
	d.r.logger.Info("caught up from a peer", "peer", f.peer, "height", last.Header.Height, "blocks", len(f.blocks))
	for _, rc := range reconfigs {
		if err := d.core.Reconfigured(rc); err != nil {
			return err
		}
	}
	if err := d.core.Caught(executed(last), ids); err != nil {
		return err
	}
	if len(f.blocks) == maxServe {
		d.fetch(last.Header.Height + 1)
	}
	return nil
}

// batchTicks is Batch.MaxDelay in ticks, rounded up: how long the first
// tx of a partial batch waits for company.
func batchTicks(maxDelay, tick time.Duration) int {
	return max(int((maxDelay+tick-1)/tick), 1)
}

// TickFor is the core's clock period for a batch delay: 2 ms, or the
// delay when it is shorter. The tick also paces resends and view-change
// timeouts, so a longer batch delay does not slow them.
func TickFor(maxDelay time.Duration) time.Duration {
	if maxDelay > 0 && maxDelay < 2*time.Millisecond {
		return maxDelay
	}
	return 2 * time.Millisecond
}
