package state

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// examplePolicy is docs/policy.md's example: sensors send temp only,
// a size limit for everyone, and a per-device rate limit.
func examplePolicy(version uint64) *ledger.PolicySet {
	return &ledger.PolicySet{Version: version, Rules: []ledger.Rule{
		{Name: "sensors-temp-only", When: "'sensors' in device.groups", Allow: "record.stream == 'temp'"},
		{Name: "max-size", Allow: "record.size <= 64"},
		{Name: "rate", Rate: &ledger.Rate{Count: 3, Window: 60000}},
	}}
}

func policyBody(ps *ledger.PolicySet) ledger.Body {
	return ledger.Body{Kind: ledger.KindPolicySet, PolicySet: ps}
}

func groupEnroll(id string, pub []byte, groups ...string) ledger.Body {
	b := enrollBody(id, pub)
	b.Enroll.Model, b.Enroll.Groups = "m1", groups
	return b
}

func rec(id, stream string, seq uint64, size int) ledger.Body {
	return ledger.Body{Kind: ledger.KindRecord, Record: &ledger.Record{DeviceID: id, Stream: stream, Seq: seq, Payload: bytes.Repeat([]byte{7}, size)}}
}

// block checks, batches and applies envs as one block at time t; it
// returns the refusal of each (nil: admitted), and applies the admitted.
func (f *fixture) block(t int64, envs ...[]byte) []error {
	f.t.Helper()
	errs, _ := f.blockTxs(t, envs...)
	return errs
}

// blockTxs is block that also returns the txs the block applied.
func (f *fixture) blockTxs(t int64, envs ...[]byte) ([]error, []*ledger.Tx) {
	f.t.Helper()
	b := f.st.NewBatch()
	b.SetTime(t)
	var txs []*ledger.Tx
	errs := make([]error, len(envs))
	for i, env := range envs {
		c, err := f.st.Check(env)
		if err == nil {
			err = b.Add(c)
		}
		if errs[i] = err; err == nil {
			txs = append(txs, c.Tx)
		}
	}
	f.height++
	if err := f.st.ApplyBlock(f.height, [32]byte{byte(f.height)}, t, txs); err != nil {
		f.t.Fatal(err)
	}
	return errs, txs
}

func wantPolicy(t *testing.T, err error, rule string) {
	t.Helper()
	wantReason(t, err, ledger.ReasonPolicy)
	var re *ledger.RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Detail, `rule "`+rule+`"`) {
		t.Fatalf("refusal %v does not name rule %q", err, rule)
	}
}

func TestPolicyGroupStream(t *testing.T) {
	f := newFixture(t)
	sensor, other := newP256(t), newP256(t)
	f.commit(f.sign(f.admin, "admin", groupEnroll("sensor-1", der(t, sensor), "sensors")),
		f.sign(f.admin, "admin", enrollBody("cam-1", der(t, other))))
	f.commit(f.sign(f.admin, "admin", policyBody(examplePolicy(1))))
	errs := f.block(1000,
		f.sign(sensor, "sensor-1", rec("sensor-1", "temp", 1, 8)),
		f.sign(sensor, "sensor-1", rec("sensor-1", "video", 2, 8)),
		f.sign(other, "cam-1", rec("cam-1", "video", 1, 8)),
		f.sign(other, "cam-1", rec("cam-1", "video", 2, 65)))
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("allowed records refused: %v, %v", errs[0], errs[2])
	}
	wantPolicy(t, errs[1], "sensors-temp-only")
	wantPolicy(t, errs[3], "max-size")
}

func TestPolicyRateLimit(t *testing.T) {
	f := newFixture(t)
	k := newP256(t)
	f.commit(f.sign(f.admin, "admin", enrollBody("d", der(t, k))))
	f.commit(f.sign(f.admin, "admin", policyBody(examplePolicy(1))))
	seq := uint64(0)
	next := func() []byte { seq++; return f.sign(k, "d", rec("d", "s", seq, 1)) }
	// Two in one block, one in the next: 3 in the window 60000..119999.
	if errs := f.block(60000, next(), next()); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	errs := f.block(61000, next(), next())
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	wantPolicy(t, errs[1], "rate")
	seq-- // the refused one did not commit: sign the seq again
	// The next window counts afresh.
	if errs := f.block(120000, next()); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// The counters are state: a snapshot restores them.
	enc := encodeState(t, f.st)
	st2, err := Restore(f.st.Genesis(), enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodeState(t, st2), enc) {
		t.Fatal("restored state encodes differently")
	}
	if p := st2.Policy(); p == nil || p.Set.Version != 1 || p.Height != 2 {
		t.Fatalf("restored policy %+v", p)
	}
}

// TestPolicyTakesEffectAtItsHeight: records before a policy.set pass,
// after it (in its block and later) are judged; the history says when.
func TestPolicyTakesEffectAtItsHeight(t *testing.T) {
	f := newFixture(t)
	k := newP256(t)
	f.commit(f.sign(f.admin, "admin", enrollBody("d", der(t, k))))
	big := func(seq uint64) []byte { return f.sign(k, "d", rec("d", "s", seq, 100)) }
	errs := f.block(1, big(1), f.sign(f.admin, "admin", policyBody(examplePolicy(1))), big(2))
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	wantPolicy(t, errs[2], "max-size")
	wantPolicy(t, f.block(2, big(2))[0], "max-size")
	// Lifted by version 2, with no rules.
	f.commit(f.sign(f.admin, "admin", policyBody(&ledger.PolicySet{Version: 2})))
	if err := f.block(3, big(2))[0]; err != nil {
		t.Fatal(err)
	}
	h := f.st.PolicyHistory()
	if len(h) != 2 || h[0].Height != 2 || h[0].Index != 1 || h[1].Height != 4 {
		t.Fatalf("history %+v", h)
	}
	if p := f.st.PolicyAt(1); p != nil {
		t.Fatalf("policy at 1: %+v", p)
	}
	if p := f.st.PolicyAt(3); p == nil || p.Set.Version != 1 {
		t.Fatalf("policy at 3: %+v", p)
	}
	// A stale version is refused.
	_, err := f.st.Check(f.sign(f.admin, "admin", policyBody(examplePolicy(2))))
	wantReason(t, err, ledger.ReasonStaleVersion)
}

// TestPolicyRefusedAtSubmission: what cannot compile, is not boolean,
// calls a function outside the whitelist (non-deterministic ones among
// them) or may cost more than MaxRuleCost is refused when submitted, and
// in a block.
func TestPolicyRefusedAtSubmission(t *testing.T) {
	f := newFixture(t)
	cases := []struct{ name, expr, want string }{
		{"syntax", "record.size <=", "Syntax error"},
		{"not bool", "record.size + 1", "want bool"},
		{"unknown variable", "record.payload == b''", "undeclared reference"},
		{"now", "now() > 0", "undeclared reference to 'now'"},
		{"timestamp", "timestamp('2026-01-01T00:00:00Z') < timestamp('2027-01-01T00:00:00Z')", "undeclared reference to 'timestamp'"},
		{"duration", "duration('1h') > duration('1m')", "undeclared reference to 'duration'"},
		{"format", "'%s'.format([device.groups]) != ''", "undeclared reference to 'format'"},
		{"random", "rand() > 0", "undeclared reference to 'rand'"},
		{"map macro", "device.groups.map(g, g + 'x').size() > 0", "undeclared reference to 'map'"},
		{"type", "type(record.size) == int", "undeclared reference to 'type'"},
		{"cost", "device.groups.all(a, device.groups.all(b, device.groups.all(c, a + b + c != '')))", "cost up to"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps := &ledger.PolicySet{Version: 1, Rules: []ledger.Rule{{Name: "bad-rule", Allow: c.expr}}}
			_, err := f.st.Check(f.sign(f.admin, "admin", policyBody(ps)))
			wantReason(t, err, ledger.ReasonMalformed)
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `rule "bad-rule"`) {
				t.Fatalf("got %v, want it to say %q and name the rule", err, c.want)
			}
			// A primary that proposes it anyway: the batch refuses it.
			tx, derr := ledger.DecodeTx(f.sign(f.admin, "admin", policyBody(ps)), 0)
			if derr != nil {
				t.Fatal(derr)
			}
			wantReason(t, f.st.NewBatch().Add(&Checked{Tx: tx}), ledger.ReasonMalformed)
		})
	}
	// More rules with a rate than MaxRatedRules.
	many := &ledger.PolicySet{Version: 1}
	for i := range MaxRatedRules + 1 {
		many.Rules = append(many.Rules, ledger.Rule{Name: fmt.Sprintf("r%d", i), Rate: &ledger.Rate{Count: 1, Window: 1}})
	}
	_, err := f.st.Check(f.sign(f.admin, "admin", policyBody(many)))
	wantReason(t, err, ledger.ReasonMalformed)
	// Deterministic macros and functions compile.
	ok := &ledger.PolicySet{Version: 1, Rules: []ledger.Rule{{Name: "ok"}}}
	ok.Rules[0].Allow = "device.groups.exists(g, g.startsWith('s')) || record.stream.matches('^t[a-z]+$') || size(device.model) < 3 || string(record.seq) == '1'"
	if _, err := CompilePolicy(ok); err != nil {
		t.Fatal(err)
	}
}

// TestPolicyCompiledOnce: the state compiles a policy once, whatever
// the number of records and batches.
func TestPolicyCompiledOnce(t *testing.T) {
	f := newFixture(t)
	k := newP256(t)
	f.commit(f.sign(f.admin, "admin", enrollBody("d", der(t, k))), f.sign(f.admin, "admin", policyBody(examplePolicy(1))))
	p := f.st.Policy()
	for i := uint64(1); i <= 3; i++ {
		f.block(int64(i), f.sign(k, "d", rec("d", "s", i, 1)))
	}
	if f.st.Policy() != p {
		t.Fatal("policy replaced")
	}
	q, err := f.st.compiled(&p.Set)
	if err != nil || q.rules == nil || &q.rules[0] != &p.rules[0] {
		t.Fatal("the state compiled the policy again")
	}
}

// FuzzPolicyEval evaluates the example policy and a policy of the fuzzer's
// own expressions on random records: it never panics, gives the same
// verdict twice, and refuses by a rule's name only.
func FuzzPolicyEval(f *testing.F) {
	f.Add("temp", "sensors", "application/json", 10, uint64(1), int64(0), int64(0), "record.size < 5")
	f.Add("video", "", "", 1000, uint64(99), int64(-5), int64(1<<40), "device.groups.exists(g, g == record.stream)")
	f.Add("x", "a", "b", 0, uint64(1<<62), int64(1), int64(2), "record.seq / (record.size - record.size) > 0")
	f.Fuzz(func(t *testing.T, stream, group, ct string, size int, seq uint64, dt, lt int64, expr string) {
		if len(expr) > ledger.MaxRuleExpr || size < 0 || size > 1<<20 {
			return
		}
		in := &Input{DeviceID: "d", Model: "m", Groups: []string{group}, Stream: stream, ContentType: ct, Size: size, Seq: seq, DeviceTime: dt, LedgerTime: lt, Height: 9}
		for _, ps := range []*ledger.PolicySet{examplePolicy(1), {Version: 1, Rules: []ledger.Rule{{Name: "fuzz", When: "record.size >= 0", Allow: expr}}}} {
			p, err := CompilePolicy(ps)
			if err != nil {
				continue
			}
			over := func(i int, r *ledger.Rate) bool { return (seq+uint64(i))%2 == 0 }
			v1, v2 := p.Eval(in, over), p.Eval(in, over)
			if v1 != v2 {
				t.Fatalf("verdicts differ: %+v, %+v", v1, v2)
			}
			if !v1.OK() && !strings.Contains("sensors-temp-only max-size rate fuzz", v1.Rule) {
				t.Fatalf("refused by %q", v1.Rule)
			}
		}
	})
}

// BenchmarkPolicyEval is the cost of judging one record under a typical
// policy: a group's streams, a size limit, a content type and a rate.
func BenchmarkPolicyEval(b *testing.B) {
	ps := examplePolicy(1)
	ps.Rules = append(ps.Rules, ledger.Rule{Name: "json-only", When: "record.stream != 'video'", Allow: "record.content_type == 'application/json' || record.content_type == ''"})
	p, err := CompilePolicy(ps)
	if err != nil {
		b.Fatal(err)
	}
	in := &Input{DeviceID: "sensor-0001", Model: "m1", Groups: []string{"floor-2", "sensors"}, Stream: "temp", ContentType: "application/json", Size: 48, Seq: 1, LedgerTime: 1 << 40}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	for b.Loop() {
		in.Seq = rng.Uint64N(1 << 40)
		if v := p.Eval(in, func(int, *ledger.Rate) bool { return false }); !v.OK() {
			b.Fatal(v)
		}
	}
}

// TestPolicyReplay: the blocks a chain with a policy committed, replayed
// into a new state as `ledger verify` does (Batch.Add at each block's
// time, then ApplyBlock), are admitted again and leave the same snapshot:
// the same verdicts, the same counters.
func TestPolicyReplay(t *testing.T) {
	f := newFixture(t)
	k := newP256(t)
	type blk struct {
		t   int64
		txs []*ledger.Tx
	}
	var log []blk
	block := func(tm int64, envs ...[]byte) []error {
		errs, txs := f.blockTxs(tm, envs...)
		log = append(log, blk{tm, txs})
		return errs
	}
	block(1, f.sign(f.admin, "admin", groupEnroll("s", der(t, k), "sensors")))
	block(2, f.sign(k, "s", rec("s", "video", 1, 100))) // before the policy
	refused := 0
	seq := uint64(1)
	for i := range 12 {
		envs := [][]byte{}
		if i == 3 {
			envs = append(envs, f.sign(f.admin, "admin", policyBody(examplePolicy(1))))
		}
		for j := range 3 {
			seq++
			stream := []string{"temp", "video", "temp"}[j]
			envs = append(envs, f.sign(k, "s", rec("s", stream, seq, 10*j)))
		}
		for _, err := range block(int64(30000*i), envs...) {
			if err != nil {
				wantReason(t, err, ledger.ReasonPolicy)
				refused++
			}
		}
	}
	if refused == 0 {
		t.Fatal("the policy refused nothing")
	}
	st2, err := New(f.st.Genesis())
	if err != nil {
		t.Fatal(err)
	}
	for h, bl := range log {
		b := st2.NewBatch()
		b.SetTime(bl.t)
		for _, tx := range bl.txs {
			c, err := st2.CheckTx(tx)
			if err == nil {
				err = b.Add(c)
			}
			if err != nil {
				t.Fatalf("replay block %d: %v", h+1, err)
			}
		}
		if err := st2.ApplyBlock(uint64(h+1), [32]byte{byte(h + 1)}, bl.t, bl.txs); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(encodeState(t, st2), encodeState(t, f.st)) {
		t.Fatal("the replayed state differs")
	}
}

// TestSnapshotWithoutPolicy: a chain with no policy and no device
// attributes has no key 17, so its snapshots hash as before policies.
func TestSnapshotWithoutPolicy(t *testing.T) {
	f := newFixture(t)
	f.commit(f.sign(f.admin, "admin", enrollBody("d", der(t, newP256(t)))))
	var m map[uint64]any
	if err := snapDecMode.Unmarshal(encodeState(t, f.st), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m[17]; ok {
		t.Fatal("key 17 without a policy or attributes")
	}
	f.commit(f.sign(f.admin, "admin", groupEnroll("g", der(t, newP256(t)), "sensors")))
	m = nil
	if err := snapDecMode.Unmarshal(encodeState(t, f.st), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m[17]; !ok {
		t.Fatal("no key 17 for a device with groups")
	}
}

// BenchmarkPolicyJudge is what a policy adds to admitting one record to a
// block (Batch.Add): the same record under no policy and under the
// typical one (its rate large enough never to refuse).
func BenchmarkPolicyJudge(b *testing.B) {
	for _, withPolicy := range []bool{false, true} {
		name := "none"
		if withPolicy {
			name = "typical"
		}
		b.Run(name, func(b *testing.B) {
			t := &testing.T{} // the fixture's helpers take a *testing.T
			f := newFixture(t)
			envs := [][]byte{f.sign(f.admin, "admin", groupEnroll("sensor-0001", der(t, newP256(t)), "floor-2", "sensors"))}
			if withPolicy {
				ps := examplePolicy(1)
				ps.Rules[2].Rate.Count = 1 << 32
				envs = append(envs, f.sign(f.admin, "admin", policyBody(ps)))
			}
			f.commit(envs...)
			d, _ := f.st.Device("sensor-0001")
			batch := f.st.NewBatch()
			batch.SetTime(1 << 40)
			var seq uint64
			b.ReportAllocs()
			for b.Loop() {
				seq++
				tx := &ledger.Tx{Author: "sensor-0001", Body: ledger.Body{Kind: ledger.KindRecord, ChainID: chainID,
					Record: &ledger.Record{DeviceID: "sensor-0001", Stream: "temp", Seq: seq, ContentType: "application/json", Payload: make([]byte, 48)}}}
				tx.ID[0], tx.ID[1], tx.ID[2], tx.ID[3] = byte(seq), byte(seq>>8), byte(seq>>16), byte(seq>>24)
				if err := batch.Add(&Checked{Tx: tx, Key: d.Key}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
