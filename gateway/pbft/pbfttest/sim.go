package pbfttest

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/pbft"
)

// Fault is a Byzantine behaviour of one replica.
type Fault string

// The Byzantine behaviours.
const (
	Honest      Fault = ""
	Equivocate  Fault = "equivocate" // as primary, sends conflicting pre-prepares to different backups
	ForgeDigest Fault = "forge"      // pre-prepares with digests that match no payload; forged senders
	Silent      Fault = "silent"     // sends nothing
	Twins       Fault = "twins"      // two replicas share one identity (Twins)
)

// Options is one simulation run.
type Options struct {
	Seed       uint64
	N          int   // replicas: 4, 7, ...
	Byzantine  Fault // the fault of replica 0 (the first primary); at most f faulty
	Requests   int   // requests submitted while faults happen
	Drop       float64
	Dup        float64
	MaxDelay   int  // ticks a message may take
	Partition  bool // cut a random minority off for a while
	Crash      bool // crash and restart a random replica
	Pause      bool // pause f+1 replicas for a long time, then resume them
	FaultTicks int  // faults stop after this many ticks
	HealTicks  int  // after the faults, all requests must commit within this
	// Reconfigs are membership changes, one after the other, at random
	// times while faults happen: each is committed as a request and
	// takes effect at its boundary (pbft.Boundary) before the next.
	Reconfigs []Op
}

// Op is a membership change.
type Op string

// The membership changes.
const (
	Add     Op = "add"     // a new replica joins, from nothing: it catches up by state transfer
	Remove  Op = "remove"  // a member leaves (only above 4 members); it keeps running, refused
	Replace Op = "replace" // a member is killed for good and a new one takes its place
)

// Scenario derives a run's options from its seed, so that every seed
// picks its own mix of faults and replays exactly.
func Scenario(seed uint64) Options {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	o := Options{Seed: seed, N: 4, Requests: 20 + r.IntN(40), MaxDelay: 1 + r.IntN(4), FaultTicks: 300 + r.IntN(300), HealTicks: 8000}
	if r.IntN(4) == 0 {
		o.N = 7
	}
	faults := []Fault{Honest, Equivocate, ForgeDigest, Silent, Twins}
	o.Byzantine = faults[r.IntN(len(faults))]
	o.Drop = []float64{0, 0.02, 0.1}[r.IntN(3)]
	o.Dup = []float64{0, 0.05}[r.IntN(2)]
	o.Partition = r.IntN(2) == 0
	o.Crash = r.IntN(2) == 0
	o.Pause = r.IntN(3) == 0 // drawn before the reconfigurations: the seeds before them kept their faults
	if r.IntN(2) == 0 {
		for range 1 + r.IntN(3) {
			o.Reconfigs = append(o.Reconfigs, []Op{Add, Remove, Replace}[r.IntN(3)])
		}
	}
	return o
}

func (o Options) String() string {
	return fmt.Sprintf("seed=%d n=%d byzantine=%q requests=%d drop=%.2f dup=%.2f delay<=%d partition=%v crash=%v pause=%v reconfigs=%v",
		o.Seed, o.N, o.Byzantine, o.Requests, o.Drop, o.Dup, o.MaxDelay, o.Partition, o.Crash, o.Pause, o.Reconfigs)
}

// replica is one simulated gateway: a core, its application, and what it
// keeps on disk across a crash (the hard state and executed blocks).
type replica struct {
	id     string
	twin   bool // the second of a Twins pair
	fault  Fault
	core   *pbft.Core
	app    *App
	hs     pbft.HardState
	certs  map[uint64]*pbft.Prepared
	chain  []pbft.Entry // executed, in order; chain[i].Seq == i+1
	down   bool
	killed bool       // replaced: down for good
	paused bool       // as under SIGSTOP: no ticks, nothing delivered; messages to it wait
	inbox  []envelope // what arrived while paused, delivered when it resumes
	crypto *Keys
}

func (r *replica) height() uint64 { return uint64(len(r.chain)) }

func (r *replica) last() pbft.Executed {
	if len(r.chain) == 0 {
		return pbft.Executed{Digest: genesis}
	}
	e := r.chain[len(r.chain)-1]
	return pbft.Executed{Seq: e.Seq, View: e.View, Digest: e.Digest, Commits: e.Commits}
}

func (r *replica) tip() pbft.Digest {
	if len(r.chain) == 0 {
		return genesis
	}
	return r.chain[len(r.chain)-1].Digest
}

var genesis = pbft.Digest(sha256.Sum256([]byte("sim genesis")))

type envelope struct {
	at   int
	to   int // index into sim.replicas
	from string
	data []byte
}

// Sim is one simulation.
type Sim struct {
	o        Options
	rng      *rand.Rand
	nodes    []string
	secrets  map[string][]byte
	replicas []*replica
	inflight []envelope
	now      int
	cut      map[int]bool // partitioned replicas
	decided  map[uint64]pbft.Digest
	// truth is the member sets as the decided chain gives them: every
	// replica's core must know a prefix of it (all switch at one seq),
	// and every certificate counts members of its seq's set only.
	truth   []pbft.Epoch
	genesis []string // the first member set
	joiners []int    // replicas not started yet, for Add and Replace
	initial int      // replicas started at tick 0 (the twins included)
	opNodes []string // the member set the last reconfiguration asked for
	opReq   string   // its request
	opSent  int      // the tick it was last submitted
	opDone  bool     // it committed
	fills   int
	learned uint64         // the highest seq the truth has
	mustAt  map[string]int // request -> the replica it was given to
	late    []*replica     // new replicas to start once the last change took effect
}

// Run runs one simulation and returns the first invariant it saw broken,
// or a liveness failure.
func Run(o Options) error { return runWith(o, nil) }

func runWith(o Options, after func(*Sim)) error {
	s := &Sim{o: o, rng: rand.New(rand.NewPCG(o.Seed, 1)), secrets: map[string][]byte{}, cut: map[int]bool{}, decided: map[uint64]pbft.Digest{}}
	for i := range o.N {
		id := fmt.Sprintf("n%d", i)
		s.nodes = append(s.nodes, id)
		s.secrets[id] = []byte("secret of " + id)
	}
	s.genesis = slices.Clone(s.nodes)
	s.truth = []pbft.Epoch{{Start: 1, Nodes: s.genesis}}
	for i, id := range s.nodes {
		fault := Honest
		if i == 0 {
			fault = o.Byzantine
		}
		s.replicas = append(s.replicas, &replica{id: id, fault: fault})
		if i == 0 && fault == Twins {
			s.replicas = append(s.replicas, &replica{id: id, fault: fault, twin: true})
		}
	}
	for _, r := range s.replicas {
		if err := s.boot(r); err != nil {
			return err
		}
	}
	// The replicas Add and Replace start: down (not started) until then.
	s.initial, s.mustAt = len(s.replicas), map[string]int{}
	for _, op := range o.Reconfigs {
		if op == Remove {
			continue
		}
		id := fmt.Sprintf("n%d", len(s.nodes))
		s.nodes = append(s.nodes, id)
		s.secrets[id] = []byte("secret of " + id)
		s.joiners = append(s.joiners, len(s.replicas))
		s.replicas = append(s.replicas, &replica{id: id, down: true})
	}
	err := s.run()
	if after != nil {
		after(s)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	return nil
}

func (s *Sim) boot(r *replica) error {
	r.crypto = &Keys{Self: r.id, Secrets: s.secrets}
	r.app = NewApp(r.id, genesis)
	var reconfigs []pbft.Reconfig
	for _, e := range r.chain {
		r.app.Exec(e)
		if nodes, ok := r.app.Reconfig(e.Seq, e.Payload); ok {
			reconfigs = append(reconfigs, pbft.Reconfig{Seq: e.Seq, Nodes: nodes})
		}
	}
	if r.certs == nil {
		r.certs = map[uint64]*pbft.Prepared{}
	}
	var certs []*pbft.Prepared
	for _, p := range r.certs {
		certs = append(certs, p)
	}
	c, err := pbft.New(pbft.Config{
		ID: r.id, Nodes: s.genesis, Reconfigs: reconfigs, Domain: "sim", Crypto: r.crypto, App: r.app,
		CheckpointInterval: 8, RequestTimeout: 40, MaxBatch: 8,
		// 1 to 4 (the default) proposals out before a partial batch
		// waits, from the seed without drawing from rng, so that seeds
		// recorded before still replay.
		PartialInFlight: 1 + s.o.Seed%4,
	}, r.hs, certs, r.last())
	if err != nil {
		return err
	}
	r.core, r.down = c, false
	return s.checkEpochs(r)
}

// Sim's checks run with CheckpointInterval 8 and the default window.
const (
	simInterval = 8
	simWindow   = 4 * simInterval
)

func (s *Sim) honest(r *replica) bool { return r.fault == Honest }

// final reports whether r is a member of the last member set: the
// liveness checks are about those (a removed or killed replica is out).
func (s *Sim) final(r *replica) bool {
	return !r.killed && slices.Contains(s.truth[len(s.truth)-1].Nodes, r.id)
}

// epochAt returns the member set of seq, as the decided chain gives it.
func (s *Sim) epochAt(seq uint64) pbft.Epoch {
	i := len(s.truth) - 1
	for i > 0 && s.truth[i].Start > seq {
		i--
	}
	return s.truth[i]
}

func quorum(n int) int { f := (n - 1) / 3; return (n+f)/2 + 1 }

// learn adds a decided block's reconfiguration to the truth, as every
// core must: the first honest replica to execute seq decided it.
func (s *Sim) learn(e pbft.Entry) error {
	nodes, ok := (&App{}).Reconfig(e.Seq, e.Payload)
	if !ok {
		return nil
	}
	start := pbft.Boundary(e.Seq, simInterval, simWindow) + 1
	last := s.truth[len(s.truth)-1]
	switch {
	case start < last.Start:
		return fmt.Errorf("invariant: reconfiguration at %d takes effect at %d, before one at %d", e.Seq, start, last.Start)
	case start == last.Start && len(s.truth) > 1:
		s.truth[len(s.truth)-1] = pbft.Epoch{Start: start, Nodes: nodes}
	default:
		s.truth = append(s.truth, pbft.Epoch{Start: start, Nodes: nodes})
	}
	return nil
}

// checkEpochs checks that r's core knows a prefix of the member sets the
// chain gives: every replica switches at the same sequence number.
func (s *Sim) checkEpochs(r *replica) error {
	got := r.core.Epochs()
	if len(got) > len(s.truth) {
		return fmt.Errorf("invariant: %s knows %d member sets, the chain gives %d", r.id, len(got), len(s.truth))
	}
	for i, e := range got {
		if e.Start != s.truth[i].Start || !slices.Equal(e.Nodes, s.truth[i].Nodes) {
			return fmt.Errorf("invariant: %s has member set %v from %d, the chain %v from %d", r.id, e.Nodes, e.Start, s.truth[i].Nodes, s.truth[i].Start)
		}
	}
	return nil
}

// checkPrepared checks a prepared certificate: 2f+1 distinct members of
// its seq's set (no certificate counts a non-member).
func (s *Sim) checkPrepared(r *replica, p *pbft.Prepared) error {
	pp := p.PrePrepare
	ep := s.epochAt(pp.Seq)
	from := map[string]bool{}
	for _, m := range p.Prepares {
		if !slices.Contains(ep.Nodes, m.From) {
			return fmt.Errorf("invariant: %s prepared s%d with a prepare of %s, not a member of %v", r.id, pp.Seq, m.From, ep.Nodes)
		}
		from[m.From] = true
	}
	if len(from) < quorum(len(ep.Nodes)) || !slices.Contains(ep.Nodes, pp.From) {
		return fmt.Errorf("invariant: %s prepared s%d with %d prepares of %v (pre-prepare by %s)", r.id, pp.Seq, len(from), ep.Nodes, pp.From)
	}
	return nil
}

func (s *Sim) run() error {
	o := s.o
	// must commit: the requests given to a replica that did not crash
	// before they committed (a crash loses a gateway's unacknowledged
	// requests; its clients would send them again).
	var must []string
	// Requests during the faulty phase, at random times to random replicas.
	at := map[int][]string{}
	for i := range o.Requests {
		t := s.rng.IntN(o.FaultTicks)
		at[t] = append(at[t], fmt.Sprintf("req-%d", i))
	}
	var partFrom, partTo, crashAt, crashFor int
	crashIdx := -1
	if o.Partition {
		partFrom = s.rng.IntN(o.FaultTicks)
		partTo = partFrom + 50 + s.rng.IntN(o.FaultTicks)
	}
	if o.Crash {
		crashAt = s.rng.IntN(o.FaultTicks)
		crashFor = 20 + s.rng.IntN(200)
		crashIdx = s.rng.IntN(s.initial)
	}
	var pauseAt, pauseFor int
	var paused []int
	if o.Pause {
		// As kill -STOP of f+1 gateways for a long time (issue 20): the
		// others lose their quorum and ask for views that cannot start;
		// the paused ones wake up where they stopped, their timers
		// included, and find everything sent to them meanwhile.
		pauseAt = s.rng.IntN(o.FaultTicks)
		pauseFor = 200 + s.rng.IntN(800) // 5 to 25 request timeouts
		paused = s.rng.Perm(s.initial)[:(o.N-1)/3+1]
	}
	var opAt []int
	for range o.Reconfigs {
		opAt = append(opAt, s.rng.IntN(o.FaultTicks))
	}
	slices.Sort(opAt)
	nextOp := 0
	healAt := max(o.FaultTicks, partTo, crashAt+crashFor, pauseAt+pauseFor) + 1
	var final, after, beats []string
	for s.now = 0; s.now < healAt+o.HealTicks; s.now++ {
		faulty := s.now < healAt
		if o.Pause && (s.now == pauseAt || s.now == pauseAt+pauseFor) {
			for _, i := range paused {
				r := s.replicas[i]
				r.paused = s.now == pauseAt
				for _, e := range r.inbox {
					e.at = s.now + s.rng.IntN(s.o.MaxDelay)
					s.inflight = append(s.inflight, e)
				}
				r.inbox = nil
			}
		}
		if o.Partition && s.now == partFrom {
			f := (o.N - 1) / 3
			for range 1 + s.rng.IntN(max(f, 1)) {
				s.cut[s.rng.IntN(s.initial)] = true
			}
		}
		if o.Partition && s.now == partTo {
			s.cut = map[int]bool{}
		}
		if crashIdx >= 0 && s.now == crashAt {
			s.replicas[crashIdx].down = true
		}
		if crashIdx >= 0 && s.now == crashAt+crashFor && !s.replicas[crashIdx].killed {
			if err := s.boot(s.replicas[crashIdx]); err != nil {
				return err
			}
		}
		for _, req := range at[s.now] {
			i, err := s.submit(req)
			if err != nil {
				return err
			}
			if i >= 0 && (i != crashIdx || s.now >= crashAt+crashFor) {
				must = append(must, req)
				s.mustAt[req] = i
			}
		}
		if nextOp < len(opAt) && s.now >= opAt[nextOp] && s.settled() {
			if err := s.reconfigure(o.Reconfigs[nextOp], nextOp); err != nil {
				return err
			}
			nextOp++
		}
		if err := s.pushReconfig(); err != nil {
			return err
		}
		if s.now == healAt {
			for i := range 10 {
				req := fmt.Sprintf("req-final-%d", i)
				final = append(final, req)
				i, err := s.submit(req)
				if err != nil {
					return err
				}
				s.mustAt[req] = i
			}
		}
		if err := s.deliver(faulty); err != nil {
			return err
		}
		for _, i := range s.rng.Perm(len(s.replicas)) {
			r := s.replicas[i]
			if r.down || r.paused {
				continue
			}
			if err := r.core.Tick(); err != nil {
				return fmt.Errorf("tick %s: %w", r.id, err)
			}
			if err := s.handle(i, faulty); err != nil {
				return err
			}
			if s.now%25 == i%25 {
				if err := s.sync(i); err != nil {
					return err
				}
			}
		}
		if s.now <= healAt || !s.allExecuted(s.kept(final)) || !s.allExecuted(s.kept(must)) || nextOp < len(opAt) || !s.settled() || !s.switched() {
			continue
		}
		if !s.oneView() || !s.allExecuted(beats) {
			// A chain does not go idle: ledgergate's primary commits a
			// heartbeat tx when no block committed for a while, and its
			// devices keep sending. Here, a request every 100 ticks at
			// the next honest replica.
			if after == nil && (s.now-healAt)%100 == 0 {
				i := s.nextHonest(len(beats))
				req := fmt.Sprintf("req-beat-%d", len(beats))
				beats = append(beats, req)
				if err := s.replicas[i].core.Propose(pbft.NewRequest([]byte(req))); err != nil {
					return fmt.Errorf("propose at %s: %w", s.replicas[i].id, err)
				}
				if err := s.handle(i, false); err != nil {
					return err
				}
			}
			continue
		}
		// Every request committed and the honest replicas share one view,
		// none of them changing. They must go on committing: a request at
		// each of them (a gateway left out of the view, as in issue 20,
		// executes blocks by state transfer but gets none of its own
		// devices' records ordered).
		if after == nil {
			for i, r := range s.replicas {
				if s.honest(r) && s.final(r) {
					req := fmt.Sprintf("req-after-%d", i)
					after = append(after, req)
					if err := r.core.Propose(pbft.NewRequest([]byte(req))); err != nil {
						return fmt.Errorf("propose at %s: %w", r.id, err)
					}
					if err := s.handle(i, false); err != nil {
						return err
					}
				}
			}
			continue
		}
		if s.allExecuted(after) {
			return nil
		}
	}
	var lag []string
	for _, r := range s.replicas {
		if r.core == nil {
			lag = append(lag, fmt.Sprintf("%s: never started", r.id))
			continue
		}
		st := r.core.Status()
		lag = append(lag, fmt.Sprintf("%s(%s): view %d changing %v executed %d waiting %d queued %d epoch %d member %v pending %d down %v killed %v",
			r.id, r.fault, st.View, st.Changing, st.Executed, st.Waiting, st.Queued, st.Epoch, st.Member, st.Pending, r.down, r.killed))
	}
	what := "requests did not all commit"
	switch {
	case nextOp < len(opAt) || !s.settled() || !s.switched():
		what = fmt.Sprintf("the reconfigurations did not all take effect (%d of %d asked; member sets %v)", nextOp, len(opAt), s.truth)
	case s.allExecuted(s.kept(final)) && s.allExecuted(s.kept(must)) && after == nil && s.allExecuted(beats):
		what = "the honest replicas did not settle in one view"
	case after != nil:
		what = "a request at each honest replica, once they agreed on a view, did not all commit"
	}
	return fmt.Errorf("liveness: after healing at tick %d, %s in %d ticks:\n  %s", healAt, what, o.HealTicks, strings.Join(lag, "\n  "))
}

// nextHonest returns the index of the k-th honest replica, round robin.
func (s *Sim) nextHonest(k int) int {
	var honest []int
	for i, r := range s.replicas {
		if s.honest(r) && s.final(r) {
			honest = append(honest, i)
		}
	}
	return honest[k%len(honest)]
}

// oneView reports whether the honest replicas are all in one view and
// none of them is changing views.
func (s *Sim) oneView() bool {
	view := -1
	for _, r := range s.replicas {
		if !s.honest(r) || !s.final(r) {
			continue
		}
		if r.core == nil {
			return false
		}
		st := r.core.Status()
		if st.Changing || (view >= 0 && uint64(view) != st.View) {
			return false
		}
		view = int(st.View)
	}
	return true
}

// submit gives a request to a random honest replica that is up, and
// returns which (-1: none was up).
func (s *Sim) submit(req string) (int, error) {
	var up []int
	last := s.truth[len(s.truth)-1].Nodes
	for i, r := range s.replicas {
		if s.honest(r) && !r.down && !r.paused && slices.Contains(last, r.id) {
			up = append(up, i)
		}
	}
	if len(up) == 0 {
		return -1, nil
	}
	i := up[s.rng.IntN(len(up))]
	if err := s.replicas[i].core.Propose(pbft.NewRequest([]byte(req))); err != nil {
		return i, fmt.Errorf("propose at %s: %w", s.replicas[i].id, err)
	}
	return i, s.handle(i, true)
}

// allExecuted reports whether every honest replica executed reqs.
func (s *Sim) allExecuted(reqs []string) bool {
	for _, r := range s.replicas {
		if !s.honest(r) || !s.final(r) {
			continue
		}
		if r.core == nil {
			return false // a new replica not started yet
		}
		for _, q := range reqs {
			if !r.app.Executed(q) {
				return false
			}
		}
	}
	return true
}

// deliver steps the messages due now, in a random order.
func (s *Sim) deliver(faulty bool) error {
	var due, later []envelope
	for _, e := range s.inflight {
		if e.at <= s.now && s.replicas[e.to].paused {
			s.replicas[e.to].inbox = append(s.replicas[e.to].inbox, e)
		} else if e.at <= s.now {
			due = append(due, e)
		} else {
			later = append(later, e)
		}
	}
	s.inflight = later
	s.rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	for _, e := range due {
		r := s.replicas[e.to]
		if r.down {
			continue
		}
		m, err := pbft.Decode(e.data)
		if err != nil {
			return fmt.Errorf("decode a message from %s: %w", e.from, err)
		}
		if err := r.core.Step(m); err != nil {
			return fmt.Errorf("step %s at %s: %w", m.Type, r.id, err)
		}
		if err := s.handle(e.to, faulty); err != nil {
			return err
		}
		if r.fault != Honest && m.Type == pbft.TypePrePrepare && !slices.Contains(s.epochAt(m.Seq).Nodes, r.id) {
			s.voteAnyway(e.to, m, faulty)
		}
	}
	return nil
}

// voteAnyway is a Byzantine replica that was removed (or is not in yet):
// it prepares and commits what the members' primary proposes, signed
// with its own key, as if it were still a member. No certificate may
// count these votes (checkPrepared, checkEntry).
func (s *Sim) voteAnyway(i int, pp *pbft.Message, faulty bool) {
	r := s.replicas[i]
	for _, typ := range []pbft.Type{pbft.TypePrepare, pbft.TypeCommit} {
		m := &pbft.Message{Type: typ, From: r.id, View: pp.View, Seq: pp.Seq, Digest: pp.Digest}
		data := pbft.SignBytes("sim", m)
		if typ == pbft.TypeCommit {
			data = VoteBytes(pp.Seq, pp.View, pbft.Digest(pp.Digest))
		}
		m.Sig, _ = r.crypto.Sign(data)
		s.send(i, pbft.Outbound{Msg: m}, faulty)
	}
}

// handle carries out a replica's Ready: persist, execute, send.
func (s *Sim) handle(i int, faulty bool) error {
	r := s.replicas[i]
	for r.core.HasReady() {
		rd := r.core.Ready()
		if rd.HardState != nil {
			r.hs = *rd.HardState
			for s := range r.certs {
				if s <= r.hs.Stable {
					delete(r.certs, s)
				}
			}
		}
		for _, p := range rd.Certs {
			if err := s.checkPrepared(r, p); err != nil {
				return err
			}
			r.certs[p.PrePrepare.Seq] = p
		}
		for _, e := range rd.Committed {
			if err := s.execute(r, e); err != nil {
				return err
			}
		}
		for _, out := range rd.Messages {
			s.send(i, out, faulty)
		}
		for _, rj := range rd.Rejected {
			// The simulated application's only reason is replay: agree
			// only if the request executed here too.
			if r.app.Executed(string(rj.Data)) {
				r.core.Forget(rj.ID)
			}
		}
		for _, fw := range rd.Requests {
			var err error
			if reason := r.app.Check(fw.Data); reason != "" {
				err = r.core.RejectFor(fw.From, fw.ID, reason, "")
			} else {
				err = r.core.ProposeFor(fw.From, fw.Request)
			}
			if err != nil {
				return err
			}
		}
		r.core.Advance()
		if err := s.checkEpochs(r); err != nil {
			return err
		}
		if rd.Fetch != nil {
			if err := s.fetch(i, rd.Fetch.Seq); err != nil {
				return err
			}
		}
	}
	return nil
}

// execute appends a committed block after checking the invariants: it
// extends the replica's chain, carries 2f+1 valid commit signatures, and
// no honest replica committed another block at its height.
func (s *Sim) execute(r *replica, e pbft.Entry) error {
	if e.Seq != r.height()+1 {
		return fmt.Errorf("invariant: %s executed %d after %d", r.id, e.Seq, r.height())
	}
	if err := s.checkEntry(e, r.tip()); err != nil {
		return fmt.Errorf("invariant: %s executed %d: %w", r.id, e.Seq, err)
	}
	if s.honest(r) {
		if d, ok := s.decided[e.Seq]; ok && d != e.Digest {
			return fmt.Errorf("invariant: %s committed %x at %d, another honest replica %x", r.id, e.Digest[:4], e.Seq, d[:4])
		}
		s.decided[e.Seq] = e.Digest
	}
	// Every replica executes in order, so the first to execute a seq
	// executed all below: the truth grows in order. (A Byzantine
	// replica's core executes what the others certified, too.)
	if e.Seq > s.learned {
		if err := s.learn(e); err != nil {
			return err
		}
		s.learned = e.Seq
	}
	r.app.Exec(e)
	r.chain = append(r.chain, e)
	return nil
}

// checkEntry checks a committed block: digest, parent, certificate.
func (s *Sim) checkEntry(e pbft.Entry, parent pbft.Digest) error {
	if pbft.Digest(sha256.Sum256(e.Payload)) != e.Digest {
		return fmt.Errorf("digest does not match the payload")
	}
	b, err := DecodeBlock(e.Payload)
	if err != nil {
		return err
	}
	if pbft.Digest(b.Parent) != parent {
		return fmt.Errorf("block does not extend the chain")
	}
	k := &Keys{Secrets: s.secrets}
	ep := s.epochAt(e.Seq)
	signers := map[string]bool{}
	for _, v := range e.Commits {
		if signers[v.Node] || !k.Verify(v.Node, VoteBytes(e.Seq, e.View, e.Digest), v.Sig) {
			return fmt.Errorf("certificate: bad or repeated signature by %s", v.Node)
		}
		if !slices.Contains(ep.Nodes, v.Node) {
			return fmt.Errorf("certificate: signed by %s, not a member of %v", v.Node, ep.Nodes)
		}
		signers[v.Node] = true
	}
	if q := quorum(len(ep.Nodes)); len(signers) < q {
		return fmt.Errorf("certificate: %d signers, quorum is %d", len(signers), q)
	}
	return nil
}

// send puts a message on the simulated network, where it may be
// dropped, duplicated or delayed, and where a Byzantine sender rewrites it.
func (s *Sim) send(i int, out pbft.Outbound, faulty bool) {
	r := s.replicas[i]
	if r.fault == Silent {
		return
	}
	for j, to := range s.replicas {
		if to.id == r.id || (out.To != "" && out.To != to.id) {
			continue
		}
		m := s.byzantine(r, j, out.Msg)
		if m == nil {
			continue
		}
		data := m.Encode()
		if s.cut[i] != s.cut[j] {
			continue
		}
		if faulty && s.rng.Float64() < s.o.Drop {
			continue
		}
		copies := 1
		if faulty && s.rng.Float64() < s.o.Dup {
			copies = 2
		}
		for range copies {
			s.inflight = append(s.inflight, envelope{at: s.now + 1 + s.rng.IntN(s.o.MaxDelay), to: j, from: r.id, data: data})
		}
		if r.fault == ForgeDigest && s.rng.IntN(4) == 0 {
			// A message claiming to be from someone else, signed with our key.
			f := *m
			f.From = s.nodes[s.rng.IntN(len(s.nodes))]
			s.inflight = append(s.inflight, envelope{at: s.now + 1, to: j, from: "forged:" + r.id, data: f.Encode()})
		}
	}
}

// byzantine rewrites what a faulty replica sends to replica j.
func (s *Sim) byzantine(r *replica, j int, m *pbft.Message) *pbft.Message {
	if m.Type != pbft.TypePrePrepare {
		return m
	}
	switch r.fault {
	case Equivocate:
		if j%2 == 1 {
			return m
		}
		b, err := DecodeBlock(m.Payload)
		if err != nil {
			return m
		}
		b.Proposer = fmt.Sprintf("%s#%d", b.Proposer, s.rng.Uint64()) // a second, conflicting block
		alt := *m
		alt.Payload = b.Encode()
		d := sha256.Sum256(alt.Payload)
		alt.Digest = d[:]
		return s.resign(r, &alt)
	case ForgeDigest:
		if s.rng.IntN(2) == 0 {
			return m
		}
		alt := *m
		d := make([]byte, 32)
		for k := range d {
			d[k] = byte(s.rng.Uint32())
		}
		alt.Digest = d
		return s.resign(r, &alt)
	}
	return m
}

// resign signs a rewritten message with the faulty replica's own key.
func (s *Sim) resign(r *replica, m *pbft.Message) *pbft.Message {
	sig, _ := r.crypto.Sign(pbft.SignBytes("sim", m))
	m.Sig = sig
	return m
}

// sync is the driver's periodic height exchange: a replica that sees a
// peer ahead fetches from it.
func (s *Sim) sync(i int) error {
	r := s.replicas[i]
	j := s.rng.IntN(len(s.replicas))
	if j == i || s.replicas[j].down || s.replicas[j].paused || s.cut[i] != s.cut[j] || s.replicas[j].height() <= r.height() {
		return nil
	}
	return s.transfer(i, j)
}

// fetch is state transfer to target from a random replica that has it.
func (s *Sim) fetch(i int, target uint64) error {
	var from []int
	for j, p := range s.replicas {
		if j != i && !p.down && !p.paused && s.cut[i] == s.cut[j] && p.height() > s.replicas[i].height() {
			from = append(from, j)
		}
	}
	if len(from) == 0 {
		return nil
	}
	return s.transfer(i, from[s.rng.IntN(len(from))])
}

// transfer copies the blocks replica i lacks from replica j, checking
// each certificate and the chain, as gateway/cluster does.
func (s *Sim) transfer(i, j int) error {
	r, p := s.replicas[i], s.replicas[j]
	start := r.height()
	var ids [][32]byte
	for _, e := range p.chain[start:] {
		if err := s.checkEntry(e, r.tip()); err != nil {
			return nil // a bad block from a faulty peer: stop, try another later
		}
		if err := s.execute(r, e); err != nil {
			return err
		}
		if nodes, ok := r.app.Reconfig(e.Seq, e.Payload); ok {
			if err := r.core.Reconfigured(pbft.Reconfig{Seq: e.Seq, Nodes: nodes}); err != nil {
				return err
			}
		}
		b, _ := DecodeBlock(e.Payload)
		for _, q := range b.Reqs {
			ids = append(ids, pbft.RequestID(q))
		}
	}
	if r.height() == start {
		return nil
	}
	if err := r.core.Caught(r.last(), ids); err != nil {
		return err
	}
	return s.handle(i, true)
}

// reconfigure asks for membership change k: the new set goes to every
// honest member that is up, as an admin would submit the tx.
func (s *Sim) reconfigure(op Op, k int) error {
	cur := slices.Clone(s.truth[len(s.truth)-1].Nodes)
	f := (len(cur) - 1) / 3
	victim := cur[s.rng.IntN(len(cur))]
	// A killed member is a fault until the boundary: with a Byzantine
	// member and f = 1 the set could not reach it. Replace the faulty one.
	if op == Replace && f == 1 && s.o.Byzantine != Honest && slices.Contains(cur, s.replicas[0].id) {
		victim = s.replicas[0].id
	}
	var nodes []string
	switch op {
	case Remove:
		if len(cur) <= 4 {
			return nil // n >= 4: nothing to remove
		}
		nodes = slices.DeleteFunc(cur, func(id string) bool { return id == victim })
	case Add, Replace:
		j := s.replicas[s.joiners[0]]
		s.joiners = s.joiners[1:]
		// Half the new replicas start at once and follow the old set
		// to the boundary; the others only once the chain is past it
		// (a gateway installed late), and catch up from nothing.
		if s.rng.IntN(2) == 0 {
			if err := s.boot(j); err != nil {
				return err
			}
		} else {
			s.late = append(s.late, j)
		}
		if op == Add {
			nodes = append(cur, j.id)
			break
		}
		for _, r := range s.replicas {
			if r.id == victim {
				r.down, r.killed = true, true
			}
		}
		nodes = cur
		nodes[slices.Index(nodes, victim)] = j.id
	}
	s.opNodes, s.opDone = nodes, false
	s.opReq = fmt.Sprintf("%s%d:%s", ReconfigPrefix, k, strings.Join(nodes, ","))
	s.opSent = -1
	return s.pushReconfig()
}

// pushReconfig submits the pending reconfiguration to every honest member
// that is up, again every few timeouts until it committed (the replica
// it went to may have crashed), and keeps blocks coming until the chain
// reaches its boundary, as ledgergate's heartbeats do.
func (s *Sim) pushReconfig() error {
	if s.opReq == "" {
		return nil
	}
	if !s.opDone && (s.opSent < 0 || s.now-s.opSent >= 300) {
		s.opSent = s.now
		for i, r := range s.replicas {
			if s.honest(r) && !r.down && !r.paused && slices.Contains(s.truth[len(s.truth)-1].Nodes, r.id) {
				if err := r.core.Propose(pbft.NewRequest([]byte(s.opReq))); err != nil {
					return fmt.Errorf("propose at %s: %w", r.id, err)
				}
				if err := s.handle(i, true); err != nil {
					return err
				}
			}
		}
	}
	if s.reached(1) {
		for _, j := range s.late {
			if err := s.boot(j); err != nil {
				return err
			}
		}
		s.late = nil
	}
	if !s.settled() && s.now%3 == 0 {
		s.fills++
		if _, err := s.submit(fmt.Sprintf("req-fill-%d", s.fills)); err != nil {
			return err
		}
	}
	return nil
}

// settled reports whether the last reconfiguration committed and some
// replica executed past its boundary.
func (s *Sim) settled() bool { return s.reached(0) }

// reached reports whether the last reconfiguration committed and some
// replica executed up to before beyond the new set's first height (1:
// the boundary, the old set's last).
func (s *Sim) reached(before uint64) bool {
	if s.opReq == "" {
		return true
	}
	if !s.opDone {
		last := s.truth[len(s.truth)-1]
		s.opDone = slices.Equal(last.Nodes, s.opNodes)
		if !s.opDone {
			return false
		}
	}
	start := s.truth[len(s.truth)-1].Start - before
	for _, r := range s.replicas {
		if r.height() >= start {
			return true
		}
	}
	return false
}

// switched reports whether every honest replica of the last member set
// is in it.
func (s *Sim) switched() bool {
	last := s.truth[len(s.truth)-1]
	for _, r := range s.replicas {
		if s.honest(r) && s.final(r) && (r.core == nil || r.core.Status().Epoch != last.Start) {
			return false
		}
	}
	return true
}

// kept returns the requests given to replicas still in the last member
// set: a removed or killed gateway's unacknowledged requests may be lost,
// as a crashed one's.
func (s *Sim) kept(reqs []string) []string {
	var out []string
	for _, q := range reqs {
		if i, ok := s.mustAt[q]; !ok || (i >= 0 && s.final(s.replicas[i])) {
			out = append(out, q)
		}
	}
	return out
}

// Replicas returns how many replicas run, counting both twins.
func (s *Sim) Replicas() int { return len(s.replicas) }

// trace runs o and summarizes what each replica executed.
func trace(o Options) string {
	var out []string
	err := runWith(o, func(s *Sim) {
		for _, r := range s.replicas {
			if r.core == nil {
				out = append(out, r.id+":never started")
				continue
			}
			st := r.core.Status()
			d := r.tip()
			out = append(out, fmt.Sprintf("%s:h%d:v%d:%x", r.id, r.height(), st.View, d[:4]))
		}
	})
	return fmt.Sprint(err, out)
}
