package pbft_test

// Scripted interaction tests (raft's interaction_test.go): each
// testdata/*.txt file drives N cores through one scenario, one command at
// a time, and states what each command must print. Messages are never
// delivered on their own: the script says which to deliver or drop, so a
// scenario reads as the message flow it is about.
//
// A script is a list of commands, each followed by "----", its expected
// output and a blank line; lines starting with "#" are comments. Run with
// -update to rewrite the expected output after a deliberate change:
//
//	go test ./gateway/pbft -run TestInteraction -update
//
// The commands:
//
//	config [n=4] [spare=0] [checkpoint=16] [timeout=10] [batch=1] [inflight=4] [partial=inflight] [batchticks=1] [driver=doc]
//	        must come first if present; builds the cluster n0..n{n-1},
//	        and spare replicas after them that are no members of the
//	        genesis set (a reconfiguration may add them). A request
//	        "reconfig:TAG:n0,n1,..." commits a new member set (pbfttest).
//	        driver=doc: call Advance after ProposeFor, RejectFor and
//	        Caught, as doc.go orders the driver's duties, instead of
//	        before them (both orders must work: advance_drops_*.txt)
//	propose n1 req-a [req-b ...]
//	        Propose at a replica
//	tick n2|all [count]
//	        Tick a replica, or every live one in node order, count times
//	deliver [from=n1,..] [to=n2,..] [type=prepare,..] [seq=1,..] [drop]
//	        deliver the queued messages that match, in queue order, until
//	        none match; what a recipient sends goes to the end of the
//	        queue. drop: drop those that match instead
//	crash n0 / restart n0
//	        lose a replica's memory / rebuild it from what it persisted:
//	        HardState, prepared certificates and executed chain. Messages
//	        to a replica that is down are lost.
//	wipe n0
//	        lose what a replica that is down persisted too (its data
//	        directory deleted): restart builds it from nothing
//	next n0
//	        how many ticks from now a replica's next tick with work is
//	        (Core.NextTick; 0: none until an input)
//	status  each replica's Status and executed chain
//	queued  the undelivered messages, in queue order
//
// Copies of one broadcast that are next to each other print on one line
// (n0->n1,n2,n3) when listed or dropped.
//
// A command's output lists what happened, replica by replica: messages
// sent ("n0 broadcasts ..." or "n0 sends n1 ..."), prepared certificates,
// executed proposals, status changes (view, changing, stable, low), state
// transfers and rejections. Digests print as their first 4 bytes in hex.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/pbft"
	"github.com/ledgergate/ledgergate/gateway/pbft/pbfttest"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata/*.txt")

// TestInteraction runs every script in testdata.
func TestInteraction(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			res, err := runScript(path, string(data))
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if res.rewritten != string(data) {
					if err := os.WriteFile(path, []byte(res.rewritten), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			for _, d := range res.diffs {
				t.Error(d)
			}
		})
	}
}

// TestInteractionMismatch checks that the harness can fail: a wrong
// expected output is reported, and -update would write the real one.
func TestInteractionMismatch(t *testing.T) {
	script := "# seq 1 cannot execute without messages\npropose n1 req-a\n----\nn1 executes s1\n"
	res, err := runScript("inline", script)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.diffs) != 1 || !strings.Contains(res.diffs[0], "inline:2: propose n1 req-a") {
		t.Fatalf("diffs = %q, want one for line 2", res.diffs)
	}
	want := "# seq 1 cannot execute without messages\npropose n1 req-a\n----\nn1 sends n0 request req-a\n"
	if res.rewritten != want {
		t.Fatalf("rewritten:\n%s\nwant:\n%s", res.rewritten, want)
	}
	for _, bad := range []string{
		"propose n1 req-a\nn1 sends n0 request req-a\n",        // no ----
		"fly n1\n----\nok\n",                                   // unknown command
		"tick n9\n----\nok\n",                                  // unknown replica
		"propose n1 req-a\n----\nok\n\nconfig n=7\n----\nok\n", // config too late
	} {
		if _, err := runScript("inline", bad); err == nil {
			t.Errorf("script %q ran, want an error", bad)
		}
	}
}

// script is a parsed script: commands with the text before each.
type script struct {
	steps    []step
	trailing []string // comments and blank lines after the last command
}

type step struct {
	line int      // of the command, from 1
	pre  []string // comments and blank lines before the command
	cmd  string
	want string
}

func parseScript(name, text string) (*script, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	s := &script{}
	var pre []string
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			pre = append(pre, l)
			i++
			continue
		}
		st := step{line: i + 1, pre: pre, cmd: l}
		pre = nil
		i++
		if i >= len(lines) || lines[i] != "----" {
			return nil, fmt.Errorf("%s:%d: want ---- after the command", name, st.line)
		}
		i++
		var out []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			out = append(out, lines[i])
		}
		st.want = strings.Join(out, "\n")
		s.steps = append(s.steps, st)
	}
	s.trailing = pre
	return s, nil
}

type result struct {
	rewritten string   // the script with the outputs the commands gave
	diffs     []string // one per command whose output differs
}

// runScript runs a script on a fresh cluster. An error means the script
// could not run: bad syntax, a failed core or a broken invariant.
func runScript(name, text string) (*result, error) {
	s, err := parseScript(name, text)
	if err != nil {
		return nil, err
	}
	var h *cluster
	var w strings.Builder
	res := &result{}
	for _, st := range s.steps {
		var out bytes.Buffer
		args := strings.Fields(st.cmd)
		if args[0] == "config" {
			if h != nil {
				return nil, fmt.Errorf("%s:%d: config must be the first command", name, st.line)
			}
			o, err := parseOptions(args[1:])
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", name, st.line, err)
			}
			if h, err = newCluster(o, &out); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", name, st.line, err)
			}
		} else {
			if h == nil {
				if h, err = newCluster(defaultOptions(), &out); err != nil {
					return nil, err
				}
			}
			h.out = &out
			if err := h.run(args); err != nil {
				return nil, fmt.Errorf("%s:%d: %s: %w", name, st.line, st.cmd, err)
			}
		}
		got := strings.TrimSuffix(out.String(), "\n")
		if got == "" {
			got = "ok"
		}
		if got != st.want {
			res.diffs = append(res.diffs, fmt.Sprintf("%s:%d: %s\nwant:\n%s\ngot:\n%s", name, st.line, st.cmd, st.want, got))
		}
		for _, l := range st.pre {
			w.WriteString(l + "\n")
		}
		w.WriteString(st.cmd + "\n----\n" + got + "\n")
	}
	for _, l := range s.trailing {
		w.WriteString(l + "\n")
	}
	res.rewritten = w.String()
	return res, nil
}

// options configures a cluster.
type options struct {
	n          int
	spare      int
	checkpoint uint64
	timeout    int
	batch      int
	inflight   uint64
	partial    uint64
	batchTicks int
	docOrder   bool // the driver calls Advance last, after ProposeFor, RejectFor and Caught, as doc.go orders it
}

// defaultOptions cuts a proposal per request (batch 1) so that a script
// needs no tick to get a pre-prepare out.
func defaultOptions() options {
	return options{n: 4, checkpoint: 16, timeout: 10, batch: 1, inflight: 4}
}

func parseOptions(args []string) (options, error) {
	o := defaultOptions()
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if a == "driver=doc" {
			o.docOrder = true
			continue
		}
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n <= 0 {
			return o, fmt.Errorf("bad option %q", a)
		}
		switch k {
		case "n":
			o.n = n
		case "spare":
			o.spare = n
		case "checkpoint":
			o.checkpoint = uint64(n)
		case "timeout":
			o.timeout = n
		case "batch":
			o.batch = n
		case "inflight":
			o.inflight = uint64(n)
		case "partial":
			o.partial = uint64(n)
		case "batchticks":
			o.batchTicks = n
		default:
			return o, fmt.Errorf("unknown option %q", k)
		}
	}
	return o, nil
}

// cluster is N replicas and the messages between them.
type cluster struct {
	o       options
	nodes   []string
	secrets map[string][]byte
	reps    []*replica
	wire    []envelope
	out     io.Writer
	indent  string          // before each event line
	sent    []*pbft.Message // every message sent, if record
	record  bool
	names   map[[32]byte]string    // request ids, to print rejections
	decided map[uint64]pbft.Digest // what any replica executed at a seq
	genesis []string               // the first member set
	epochs  []pbft.Epoch           // member sets as the executed chain gives them
	learned uint64                 // the highest seq epochs has
}

// replica is a core and its driver's durable state.
type replica struct {
	id    string
	core  *pbft.Core
	app   *pbfttest.App
	hs    pbft.HardState
	certs map[uint64]*pbft.Prepared
	chain []pbft.Entry // chain[i].Seq == i+1
	down  bool
	ticks int
}

type envelope struct {
	from, to string
	msg      *pbft.Message
}

var genesis = pbft.Digest(sha256.Sum256([]byte("interaction genesis")))

func newCluster(o options, out io.Writer) (*cluster, error) {
	if o.n < 1 {
		return nil, errors.New("need a replica")
	}
	h := &cluster{o: o, secrets: map[string][]byte{}, out: out, names: map[[32]byte]string{},
		decided: map[uint64]pbft.Digest{}}
	for i := range o.n + o.spare {
		id := fmt.Sprintf("n%d", i)
		h.nodes = append(h.nodes, id)
		h.secrets[id] = []byte("secret of " + id)
	}
	h.genesis = h.nodes[:o.n]
	h.epochs = []pbft.Epoch{{Start: 1, Nodes: h.genesis}}
	for _, id := range h.nodes {
		r := &replica{id: id, certs: map[uint64]*pbft.Prepared{}}
		h.reps = append(h.reps, r)
		if err := h.boot(r); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// boot builds a replica's core from what it persisted.
func (h *cluster) boot(r *replica) error {
	r.app = pbfttest.NewApp(r.id, genesis)
	var reconfigs []pbft.Reconfig
	for _, e := range r.chain {
		r.app.Exec(e)
		if nodes, ok := r.app.Reconfig(e.Seq, e.Payload); ok {
			reconfigs = append(reconfigs, pbft.Reconfig{Seq: e.Seq, Nodes: nodes})
		}
	}
	var certs []*pbft.Prepared
	for _, s := range slices.Sorted(maps.Keys(r.certs)) {
		certs = append(certs, r.certs[s])
	}
	c, err := pbft.New(pbft.Config{
		ID: r.id, Nodes: h.genesis, Reconfigs: reconfigs, Domain: "interaction", Crypto: &pbfttest.Keys{Self: r.id, Secrets: h.secrets}, App: r.app,
		CheckpointInterval: h.o.checkpoint, RequestTimeout: h.o.timeout, MaxBatch: h.o.batch, MaxInFlight: h.o.inflight,
		PartialInFlight: h.o.partial, BatchTicks: h.o.batchTicks,
	}, r.hs, certs, r.last())
	if err != nil {
		return err
	}
	r.core, r.down, r.ticks = c, false, 0
	return h.handle(r)
}

func (r *replica) last() pbft.Executed {
	if len(r.chain) == 0 {
		return pbft.Executed{Digest: genesis}
	}
	e := r.chain[len(r.chain)-1]
	return pbft.Executed{Seq: e.Seq, View: e.View, Digest: e.Digest, Commits: e.Commits}
}

func (r *replica) tip() pbft.Digest { return r.last().Digest }

func (h *cluster) replica(id string) (*replica, error) {
	for _, r := range h.reps {
		if r.id == id {
			return r, nil
		}
	}
	return nil, fmt.Errorf("no replica %q", id)
}

func (h *cluster) printf(format string, args ...any) {
	fmt.Fprintf(h.out, h.indent+format+"\n", args...)
}

// run carries out one command.
func (h *cluster) run(args []string) error {
	switch args[0] {
	case "propose":
		if len(args) < 3 {
			return errors.New("usage: propose REPLICA REQ...")
		}
		r, err := h.live(args[1])
		if err != nil {
			return err
		}
		for _, req := range args[2:] {
			if err := h.propose(r, req); err != nil {
				return err
			}
		}
		return nil
	case "tick":
		if len(args) < 2 || len(args) > 3 {
			return errors.New("usage: tick REPLICA|all [COUNT]")
		}
		count := 1
		if len(args) == 3 {
			n, err := strconv.Atoi(args[2])
			if err != nil || n < 1 {
				return fmt.Errorf("bad count %q", args[2])
			}
			count = n
		}
		return h.tick(args[1], count)
	case "deliver":
		return h.deliverCmd(args[1:])
	case "crash":
		r, err := h.live(arg(args, 1))
		if err != nil {
			return err
		}
		r.down, r.core = true, nil
		return nil
	case "wipe":
		r, err := h.replica(arg(args, 1))
		if err != nil {
			return err
		}
		if !r.down {
			return fmt.Errorf("%s is up", r.id)
		}
		r.hs, r.certs, r.chain = pbft.HardState{}, map[uint64]*pbft.Prepared{}, nil
		return nil
	case "restart":
		r, err := h.replica(arg(args, 1))
		if err != nil {
			return err
		}
		if !r.down {
			return fmt.Errorf("%s is up", r.id)
		}
		return h.status1(r, func() error { return h.boot(r) })
	case "next":
		r, err := h.live(arg(args, 1))
		if err != nil {
			return err
		}
		h.printf("%s next tick in %d", r.id, r.core.NextTick())
		return nil
	case "status":
		h.status()
		return nil
	case "queued":
		for _, l := range h.grouped(h.wire) {
			h.printf("%s", l)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func arg(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}

func (h *cluster) live(id string) (*replica, error) {
	r, err := h.replica(id)
	if err != nil {
		return nil, err
	}
	if r.down {
		return nil, fmt.Errorf("%s is down", id)
	}
	return r, nil
}

func (h *cluster) propose(r *replica, req string) error {
	h.names[pbft.RequestID([]byte(req))] = req
	return h.status1(r, func() error { return r.core.Propose(pbft.NewRequest([]byte(req))) })
}

func (h *cluster) tick(who string, count int) error {
	var reps []*replica
	if who == "all" {
		reps = h.reps
	} else {
		r, err := h.live(who)
		if err != nil {
			return err
		}
		reps = []*replica{r}
	}
	for range count {
		for _, r := range reps {
			if r.down {
				continue
			}
			r.ticks++
			next := r.core.NextTick()
			var buf bytes.Buffer
			out := h.out
			h.out, h.indent = &buf, "  "
			err := h.status1(r, r.core.Tick)
			h.out, h.indent = out, ""
			if err != nil {
				return err
			}
			// A driver that sleeps until NextTick must miss nothing.
			if buf.Len() > 0 && next != 1 {
				return fmt.Errorf("%s tick %d did something, but NextTick said %d ticks:\n%s", r.id, r.ticks, next, buf.Bytes())
			}
			if buf.Len() > 0 {
				h.printf("%s tick %d:", r.id, r.ticks)
				out.Write(buf.Bytes())
			}
		}
	}
	return nil
}

// filter selects queued messages.
type filter struct {
	from, to, types, seqs []string
}

func (f filter) match(e envelope) bool {
	in := func(set []string, v string) bool { return len(set) == 0 || slices.Contains(set, v) }
	return in(f.from, e.from) && in(f.to, e.to) && in(f.types, e.msg.Type.String()) &&
		in(f.seqs, strconv.FormatUint(e.msg.Seq, 10))
}

func (h *cluster) deliverCmd(args []string) error {
	var f filter
	drop := false
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "from":
			f.from = strings.Split(v, ",")
		case "to":
			f.to = strings.Split(v, ",")
		case "type":
			f.types = strings.Split(v, ",")
		case "seq":
			f.seqs = strings.Split(v, ",")
		case "drop":
			drop = true
		default:
			return fmt.Errorf("bad filter %q", a)
		}
	}
	if drop {
		var dropped []envelope
		h.wire = slices.DeleteFunc(h.wire, func(e envelope) bool {
			if f.match(e) {
				dropped = append(dropped, e)
				return true
			}
			return false
		})
		for _, l := range h.grouped(dropped) {
			h.printf("%s dropped", l)
		}
		return nil
	}
	for n := 0; ; n++ {
		if n > 100_000 {
			return errors.New("messages keep coming: a delivery loop")
		}
		i := slices.IndexFunc(h.wire, f.match)
		if i < 0 {
			return nil
		}
		e := h.wire[i]
		h.wire = slices.Delete(h.wire, i, i+1)
		if err := h.deliver(e); err != nil {
			return err
		}
	}
}

// grouped prints messages one line each, the copies of a broadcast that
// follow each other on one line: n0->n1,n2,n3 pre-prepare ...
func (h *cluster) grouped(envs []envelope) []string {
	var lines []string
	for i := 0; i < len(envs); {
		e, to := envs[i], []string{envs[i].to}
		for i++; i < len(envs) && envs[i].msg == e.msg; i++ {
			to = append(to, envs[i].to)
		}
		lines = append(lines, fmt.Sprintf("%s->%s %s", e.from, strings.Join(to, ","), h.format(e.msg)))
	}
	return lines
}

// deliver steps one message at its recipient and handles what follows.
func (h *cluster) deliver(e envelope) error {
	line := fmt.Sprintf("%s->%s %s", e.from, e.to, h.format(e.msg))
	r, err := h.replica(e.to)
	if err != nil {
		return err
	}
	if r.down {
		h.printf("%s lost: %s is down", line, r.id)
		return nil
	}
	h.printf("%s", line)
	h.indent = "  "
	defer func() { h.indent = "" }()
	return h.status1(r, func() error { return r.core.Step(e.msg) })
}

// status1 runs f on r, handles r's Ready, and prints how r's status changed.
func (h *cluster) status1(r *replica, f func() error) error {
	var before pbft.Status
	if r.core != nil {
		before = r.core.Status()
	}
	if err := f(); err != nil {
		return err
	}
	if err := h.handle(r); err != nil {
		return err
	}
	after := r.core.Status()
	var ch []string
	if after.View != before.View {
		ch = append(ch, fmt.Sprintf("view=%d", after.View))
	}
	if after.Changing != before.Changing {
		ch = append(ch, fmt.Sprintf("changing=%v", after.Changing))
	}
	if after.Stable != before.Stable {
		ch = append(ch, fmt.Sprintf("stable=%d", after.Stable))
	}
	if after.Low != before.Low {
		ch = append(ch, fmt.Sprintf("low=%d", after.Low))
	}
	if len(ch) > 0 {
		h.printf("%s now %s", r.id, strings.Join(ch, " "))
	}
	return nil
}

// handle is the driver's loop over Ready (pbft doc.go, driver duty 3).
func (h *cluster) handle(r *replica) error {
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
			pp := p.PrePrepare
			r.certs[pp.Seq] = p
			h.printf("%s prepared s%d v%d %s", r.id, pp.Seq, pp.View, short(pp.Digest))
		}
		for _, e := range rd.Committed {
			if err := h.execute(r, e); err != nil {
				return err
			}
			var signers []string
			for _, v := range e.Commits {
				signers = append(signers, v.Node)
			}
			h.printf("%s executes s%d v%d %s %s commits=%s", r.id, e.Seq, e.View, short(e.Digest[:]), reqsOf(e.Payload), strings.Join(signers, ","))
		}
		for _, o := range rd.Messages {
			if err := h.send(r, o); err != nil {
				return err
			}
		}
		if !h.o.docOrder {
			// Advance first; driver=doc calls it after the calls below,
			// and what they make must survive it.
			r.core.Advance()
		}
		for _, rj := range rd.Rejected {
			h.printf("%s rejected %s: %s", r.id, rj.Data, rj.Reason)
			if r.app.Executed(string(rj.Data)) {
				r.core.Forget(rj.ID)
			}
		}
		for _, fw := range rd.Requests {
			h.names[fw.ID] = string(fw.Data)
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
		if rd.Fetch != nil {
			if err := h.fetch(r, rd.Fetch); err != nil {
				return err
			}
		}
		if h.o.docOrder {
			r.core.Advance()
		}
	}
	return nil
}

// send puts a message on the wire, through its encoding, once per
// recipient; a message to a replica that is down is lost.
func (h *cluster) send(r *replica, o pbft.Outbound) error {
	m, err := pbft.Decode(o.Msg.Encode())
	if err != nil {
		return fmt.Errorf("%s sent a message that does not decode: %w", r.id, err)
	}
	if h.record {
		h.sent = append(h.sent, m)
	}
	if o.To == "" {
		h.printf("%s broadcasts %s", r.id, h.format(m))
	} else {
		h.printf("%s sends %s %s", r.id, o.To, h.format(m))
	}
	for _, p := range h.reps {
		if p != r && !p.down && (o.To == "" || o.To == p.id) {
			h.wire = append(h.wire, envelope{from: r.id, to: p.id, msg: m})
		}
	}
	return nil
}

// execute appends a committed proposal to r's chain after checking it: it
// extends the chain, carries a valid commit certificate, and agrees with
// what every other replica executed at its seq.
func (h *cluster) execute(r *replica, e pbft.Entry) error {
	if e.Seq != uint64(len(r.chain))+1 {
		return fmt.Errorf("invariant: %s executed s%d after s%d", r.id, e.Seq, len(r.chain))
	}
	b, err := pbfttest.DecodeBlock(e.Payload)
	if err != nil || pbft.Digest(sha256.Sum256(e.Payload)) != e.Digest || pbft.Digest(b.Parent) != r.tip() {
		return fmt.Errorf("invariant: %s executed s%d that does not extend its chain", r.id, e.Seq)
	}
	k := &pbfttest.Keys{Secrets: h.secrets}
	members := h.epochs[0].Nodes
	for _, ep := range h.epochs {
		if ep.Start <= e.Seq {
			members = ep.Nodes
		}
	}
	signers := map[string]bool{}
	for _, v := range e.Commits {
		if signers[v.Node] || !slices.Contains(members, v.Node) || !k.Verify(v.Node, k.VoteBytes(e.Seq, e.View, e.Digest), v.Sig) {
			return fmt.Errorf("invariant: %s executed s%d with a bad commit by %s", r.id, e.Seq, v.Node)
		}
		signers[v.Node] = true
	}
	f := (len(members) - 1) / 3
	if q := (len(members)+f)/2 + 1; len(signers) < q {
		return fmt.Errorf("invariant: %s executed s%d with %d commits, quorum %d", r.id, e.Seq, len(signers), q)
	}
	if nodes, ok := r.app.Reconfig(e.Seq, e.Payload); ok && e.Seq > h.learned {
		start := pbft.Boundary(e.Seq, h.o.checkpoint, 4*h.o.checkpoint) + 1
		if last := h.epochs[len(h.epochs)-1]; last.Start == start {
			h.epochs[len(h.epochs)-1].Nodes = nodes
		} else {
			h.epochs = append(h.epochs, pbft.Epoch{Start: start, Nodes: nodes})
		}
		h.printf("%s: member set %s from s%d", r.id, strings.Join(nodes, ","), start)
	}
	h.learned = max(h.learned, e.Seq)
	if d, ok := h.decided[e.Seq]; ok && d != e.Digest {
		return fmt.Errorf("invariant: %s executed %s at s%d, another replica %s", r.id, short(e.Digest[:]), e.Seq, short(d[:]))
	}
	h.decided[e.Seq] = e.Digest
	r.app.Exec(e)
	r.chain = append(r.chain, e)
	return nil
}

// fetch is state transfer: copy the chain of the first live replica that
// reached the target, then tell the core.
func (h *cluster) fetch(r *replica, t *pbft.Target) error {
	for _, p := range h.reps {
		if p == r || p.down || uint64(len(p.chain)) < t.Seq || p.chain[t.Seq-1].Digest != t.Digest {
			continue
		}
		start := len(r.chain)
		if start >= len(p.chain) {
			return nil
		}
		var ids [][32]byte
		for _, e := range p.chain[start:] {
			if err := h.execute(r, e); err != nil {
				return err
			}
			if nodes, ok := r.app.Reconfig(e.Seq, e.Payload); ok {
				if err := r.core.Reconfigured(pbft.Reconfig{Seq: e.Seq, Nodes: nodes}); err != nil {
					return err
				}
			}
			b, _ := pbfttest.DecodeBlock(e.Payload)
			for _, q := range b.Reqs {
				ids = append(ids, pbft.RequestID(q))
			}
		}
		h.printf("%s fetched s%d-s%d from %s", r.id, start+1, len(r.chain), p.id)
		return r.core.Caught(r.last(), ids)
	}
	h.printf("%s wants s%d %s: no replica has it", r.id, t.Seq, short(t.Digest[:]))
	return nil
}

func (h *cluster) status() {
	for _, r := range h.reps {
		var chain []string
		for _, e := range r.chain {
			chain = append(chain, short(e.Digest[:]))
		}
		if r.down {
			h.printf("%s: down; chain [%s]", r.id, strings.Join(chain, " "))
			continue
		}
		st := r.core.Status()
		changing := ""
		if st.Changing {
			changing = " changing"
		}
		epoch := ""
		if len(h.epochs) > 1 {
			epoch = fmt.Sprintf(" epoch s%d member %v", st.Epoch, st.Member)
			if st.Pending != 0 {
				epoch += fmt.Sprintf(" pending s%d", st.Pending)
			}
		}
		h.printf("%s: view %d%s primary %s%s stable %d low %d executed %d waiting %d queued %d inflight %d; chain [%s]",
			r.id, st.View, changing, st.Primary, epoch, st.Stable, st.Low, st.Executed, st.Waiting, st.Queued, st.InFlight, strings.Join(chain, " "))
	}
}

// format prints a message on one line.
func (h *cluster) format(m *pbft.Message) string {
	switch m.Type {
	case pbft.TypeRequest:
		return fmt.Sprintf("request %s", m.Payload)
	case pbft.TypePrePrepare:
		return fmt.Sprintf("pre-prepare v%d s%d %s %s", m.View, m.Seq, short(m.Digest), reqsOf(m.Payload))
	case pbft.TypePrepare, pbft.TypeCommit:
		return fmt.Sprintf("%s v%d s%d %s", m.Type, m.View, m.Seq, short(m.Digest))
	case pbft.TypeCheckpoint:
		return fmt.Sprintf("checkpoint s%d %s", m.Seq, short(m.Digest))
	case pbft.TypeViewChange:
		s := fmt.Sprintf("view-change v%d stable=s%d", m.View, m.Seq)
		if x := m.Executed; x != nil {
			s += fmt.Sprintf(" executed=s%d/%s", x.Seq, short(x.Digest[:]))
		}
		var ps []string
		for _, p := range m.Prepared {
			ps = append(ps, fmt.Sprintf("s%d/v%d/%s", p.PrePrepare.Seq, p.PrePrepare.View, short(p.PrePrepare.Digest)))
		}
		return s + " prepared=[" + strings.Join(ps, " ") + "]"
	case pbft.TypeNewView:
		var from, pps []string
		for _, vc := range m.ViewChanges {
			from = append(from, vc.From)
		}
		for _, pp := range m.PrePrepares {
			pps = append(pps, fmt.Sprintf("s%d/%s%s", pp.Seq, short(pp.Digest), reqsOf(pp.Payload)))
		}
		return fmt.Sprintf("new-view v%d view-changes=%s re-proposes=[%s]", m.View, strings.Join(from, ","), strings.Join(pps, " "))
	case pbft.TypeReject:
		name, ok := h.names[[32]byte(m.Digest)]
		if !ok {
			name = short(m.Digest)
		}
		return fmt.Sprintf("reject %s: %s", name, m.Payload)
	case pbft.TypeViewQuery:
		return fmt.Sprintf("view-query v%d", m.View)
	}
	return m.Type.String()
}

func short(d []byte) string {
	if len(d) < 4 {
		return hex.EncodeToString(d)
	}
	return hex.EncodeToString(d[:4])
}

// reqsOf lists the requests of a proposal.
func reqsOf(payload []byte) string {
	b, err := pbfttest.DecodeBlock(payload)
	if err != nil {
		return "[?]"
	}
	var names []string
	for _, r := range b.Reqs {
		names = append(names, string(r))
	}
	return "[" + strings.Join(names, " ") + "]"
}
