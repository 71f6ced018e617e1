package pbfttest

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
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
}

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
	o.Pause = r.IntN(3) == 0 // drawn last: the seeds before it kept their scenarios
	return o
}

func (o Options) String() string {
	return fmt.Sprintf("seed=%d n=%d byzantine=%q requests=%d drop=%.2f dup=%.2f delay<=%d partition=%v crash=%v pause=%v",
		o.Seed, o.N, o.Byzantine, o.Requests, o.Drop, o.Dup, o.MaxDelay, o.Partition, o.Crash, o.Pause)
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
	q        int
}

// Run runs one simulation and returns the first invariant it saw broken,
// or a liveness failure.
func Run(o Options) error { return runWith(o, nil) }

func runWith(o Options, after func(*Sim)) error {
	s := &Sim{o: o, rng: rand.New(rand.NewPCG(o.Seed, 1)), secrets: map[string][]byte{}, cut: map[int]bool{}, decided: map[uint64]pbft.Digest{}}
	f := (o.N - 1) / 3
	s.q = (o.N+f)/2 + 1
	for i := range o.N {
		id := fmt.Sprintf("n%d", i)
		s.nodes = append(s.nodes, id)
		s.secrets[id] = []byte("secret of " + id)
	}
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
	for _, e := range r.chain {
		r.app.Exec(e)
	}
	if r.certs == nil {
		r.certs = map[uint64]*pbft.Prepared{}
	}
	var certs []*pbft.Prepared
	for _, p := range r.certs {
		certs = append(certs, p)
	}
	c, err := pbft.New(pbft.Config{
		ID: r.id, Nodes: s.nodes, Domain: "sim", Crypto: r.crypto, App: r.app,
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
	return nil
}

func (s *Sim) honest(r *replica) bool { return r.fault == Honest }

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
		crashIdx = s.rng.IntN(len(s.replicas))
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
		paused = s.rng.Perm(len(s.replicas))[:(o.N-1)/3+1]
	}
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
				s.cut[s.rng.IntN(len(s.replicas))] = true
			}
		}
		if o.Partition && s.now == partTo {
			s.cut = map[int]bool{}
		}
		if crashIdx >= 0 && s.now == crashAt {
			s.replicas[crashIdx].down = true
		}
		if crashIdx >= 0 && s.now == crashAt+crashFor {
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
			}
		}
		if s.now == healAt {
			for i := range 10 {
				req := fmt.Sprintf("req-final-%d", i)
				final = append(final, req)
				if _, err := s.submit(req); err != nil {
					return err
				}
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
		if s.now <= healAt || !s.allExecuted(final) || !s.allExecuted(must) {
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
				if s.honest(r) {
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
		st := r.core.Status()
		lag = append(lag, fmt.Sprintf("%s(%s): view %d changing %v executed %d waiting %d queued %d", r.id, r.fault, st.View, st.Changing, st.Executed, st.Waiting, st.Queued))
	}
	what := "requests did not all commit"
	switch {
	case s.allExecuted(final) && s.allExecuted(must) && after == nil && s.allExecuted(beats):
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
		if s.honest(r) {
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
		if !s.honest(r) {
			continue
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
	for i, r := range s.replicas {
		if s.honest(r) && !r.down && !r.paused {
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
		if !s.honest(r) {
			continue
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
	}
	return nil
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
	signers := map[string]bool{}
	for _, v := range e.Commits {
		if signers[v.Node] || !k.Verify(v.Node, VoteBytes(e.Seq, e.View, e.Digest), v.Sig) {
			return fmt.Errorf("certificate: bad or repeated signature by %s", v.Node)
		}
		signers[v.Node] = true
	}
	if len(signers) < s.q {
		return fmt.Errorf("certificate: %d signers, quorum is %d", len(signers), s.q)
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

// Replicas returns how many replicas run, counting both twins.
func (s *Sim) Replicas() int { return len(s.replicas) }

// trace runs o and summarizes what each replica executed.
func trace(o Options) string {
	var out []string
	err := runWith(o, func(s *Sim) {
		for _, r := range s.replicas {
			st := r.core.Status()
			d := r.tip()
			out = append(out, fmt.Sprintf("%s:h%d:v%d:%x", r.id, r.height(), st.View, d[:4]))
		}
	})
	return fmt.Sprint(err, out)
}
