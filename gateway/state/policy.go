package state

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/env"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// MaxRuleCost bounds the cost of one rule expression, both cel-go's
// estimate of its worst case when the policy is submitted and the cost it
// is allowed at each evaluation (docs/policy.md, "Limits").
const MaxRuleCost = 1000

// The variables a rule sees (docs/policy.md, "Variables").
var policyVars = []struct {
	name string
	typ  *cel.Type
	max  uint64 // the largest size of a string or list
}{
	{"device.id", cel.StringType, ledger.MaxIDLen},
	{"device.model", cel.StringType, ledger.MaxIDLen},
	{"device.groups", cel.ListType(cel.StringType), ledger.MaxGroups},
	{"record.stream", cel.StringType, ledger.MaxIDLen},
	{"record.content_type", cel.StringType, 128},
	{"record.size", cel.IntType, 0},
	{"record.seq", cel.IntType, 0},
	{"record.time", cel.IntType, 0},
	{"ledger.time", cel.IntType, 0},
	{"ledger.height", cel.IntType, 0},
}

// allowedFunctions is the whitelist of the standard library: operators,
// comparisons, arithmetic, size, the string tests and the conversions
// between numbers and strings. Everything else (timestamps and time
// zones, durations, type(), dyn(), the extension libraries with their
// string formatting) is not declared, so an expression that calls it
// does not compile.
var allowedFunctions = []string{
	operators.LogicalAnd, operators.LogicalOr, operators.LogicalNot, operators.Conditional, operators.NotStrictlyFalse,
	operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals,
	operators.Add, operators.Subtract, operators.Multiply, operators.Divide, operators.Modulo, operators.Negate,
	operators.Index, operators.In,
	overloads.Size, overloads.Contains, overloads.StartsWith, overloads.EndsWith, overloads.Matches,
	overloads.TypeConvertInt, overloads.TypeConvertUint, overloads.TypeConvertString, overloads.TypeConvertBool,
}

// allowedMacros are the macros whose result does not depend on an
// iteration order: map and filter over a map would.
var allowedMacros = []string{"has", "all", "exists", "exists_one"}

// policyEnv is the one CEL environment of rules. A cel.Env is immutable
// and safe for concurrent use once built.
var policyEnv = sync.OnceValues(func() (*cel.Env, error) {
	sub := env.NewLibrarySubset()
	for _, f := range allowedFunctions {
		sub.AddIncludedFunctions(env.NewFunction(f))
	}
	sub.AddIncludedMacros(allowedMacros...)
	opts := []cel.EnvOption{cel.StdLib(cel.StdLibSubset(sub))}
	for _, v := range policyVars {
		opts = append(opts, cel.Variable(v.name, v.typ))
	}
	return cel.NewCustomEnv(opts...)
})

// sizes tells cel-go's cost estimator how large each variable can be.
type sizes struct{}

func (sizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	p := n.Path()
	if len(p) != 1 {
		return nil
	}
	for _, v := range policyVars {
		if v.name == p[0] && v.max > 0 {
			return &cost.SizeEstimate{Min: 0, Max: v.max}
		}
	}
	return nil
}

func (sizes) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}

// Policy is a policy.set as the chain holds it: committed at Height by
// tx Tx of admin Author, its rules compiled. A Policy is never changed.
type Policy struct {
	Height uint64
	Index  uint64 // of the tx in its block
	Tx     [32]byte
	Author string
	Set    ledger.PolicySet
	Hash   [32]byte // SHA-256 of the PolicySet's encoding: the compile cache's key

	rules []rule
}

type rule struct {
	name        string
	when, allow cel.Program // nil: true
	rate        *ledger.Rate
}

// Input is what a rule sees of one record (docs/policy.md, "Variables").
type Input struct {
	DeviceID, Model string
	Groups          []string
	Stream          string
	ContentType     string
	Size            int
	Seq             uint64
	DeviceTime      int64 // the record's time, device clock, Unix ms
	LedgerTime      int64 // the block's time, Unix ms
	Height          uint64
}

// activation hands a rule its variables without a map: cel-go asks for
// each by name.
type activation struct {
	in     *Input
	groups ref.Val
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "device.id":
		return types.String(a.in.DeviceID), true
	case "device.model":
		return types.String(a.in.Model), true
	case "device.groups":
		if a.groups == nil {
			a.groups = types.NewStringList(types.DefaultTypeAdapter, a.in.Groups)
		}
		return a.groups, true
	case "record.stream":
		return types.String(a.in.Stream), true
	case "record.content_type":
		return types.String(a.in.ContentType), true
	case "record.size":
		return types.Int(a.in.Size), true
	case "record.seq":
		return types.Int(int64(a.in.Seq)), true
	case "record.time":
		return types.Int(a.in.DeviceTime), true
	case "ledger.time":
		return types.Int(a.in.LedgerTime), true
	case "ledger.height":
		return types.Int(int64(a.in.Height)), true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// ErrPolicyCompile is wrapped by CompilePolicy's errors: a rule does not
// compile, is not boolean, uses a function outside the whitelist, or
// may cost more than MaxRuleCost.
var ErrPolicyCompile = errors.New("state: policy does not compile")

// CompilePolicy checks and compiles a policy's rules. The state compiles
// each policy once (cached by its hash); `ledgergate policy test` calls
// this to try a policy before it is set.
func CompilePolicy(ps *ledger.PolicySet) (*Policy, error) {
	if err := ps.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicyCompile, err)
	}
	e, err := policyEnv()
	if err != nil {
		return nil, fmt.Errorf("state: invariant: cel environment: %v", err)
	}
	p := &Policy{Set: *ps, Hash: policyHash(ps)}
	rated := 0
	for _, r := range ps.Rules {
		if r.Rate != nil {
			if rated++; rated > MaxRatedRules {
				return nil, fmt.Errorf("%w: rule %q: more than %d rules with a rate", ErrPolicyCompile, r.Name, MaxRatedRules)
			}
		}
		cr := rule{name: r.Name, rate: r.Rate}
		for _, x := range []struct {
			what, src string
			prg       *cel.Program
		}{{"when", r.When, &cr.when}, {"allow", r.Allow, &cr.allow}} {
			if x.src == "" {
				continue
			}
			prg, err := compileExpr(e, x.src)
			if err != nil {
				return nil, fmt.Errorf("%w: rule %q: %s: %v", ErrPolicyCompile, r.Name, x.what, err)
			}
			*x.prg = prg
		}
		p.rules = append(p.rules, cr)
	}
	return p, nil
}

func compileExpr(e *cel.Env, src string) (cel.Program, error) {
	ast, iss := e.Compile(src)
	if iss.Err() != nil {
		return nil, errors.New(strings.ReplaceAll(iss.Err().Error(), "\n", " "))
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("type %s, want bool", ast.OutputType())
	}
	est, err := e.EstimateCost(ast, sizes{})
	if err != nil {
		return nil, fmt.Errorf("cost: %v", err)
	}
	if est.Max > MaxRuleCost {
		return nil, fmt.Errorf("cost up to %d, at most %d", est.Max, MaxRuleCost)
	}
	return e.Program(ast, cel.CostLimit(MaxRuleCost), cel.EvalOptions(cel.OptOptimize))
}

// policyHash is the SHA-256 of a policy's deterministic encoding.
func policyHash(ps *ledger.PolicySet) [32]byte {
	b, err := snapEncMode.Marshal(ps)
	if err != nil {
		panic("state: invariant: encode policy: " + err.Error())
	}
	return sha256.Sum256(b)
}

// Verdict is a policy's answer for one record: Rule names the rule that
// refuses it ("" if none does) and Detail says why.
type Verdict struct {
	Rule   string
	Detail string
}

// OK reports whether the record passes.
func (v Verdict) OK() bool { return v.Rule == "" }

// Eval evaluates the rules in order on in. over(i, rate) reports whether
// the device has used up rule i's rate in the current window; nil: no
// rate is used up (as `policy test` runs it). The first rule that
// refuses decides. An expression that fails at run time (over its cost,
// a division by zero) refuses, the same way on every gateway.
func (p *Policy) Eval(in *Input, over func(i int, r *ledger.Rate) bool) Verdict {
	if p == nil {
		return Verdict{}
	}
	act := &activation{in: in}
	for i := range p.rules {
		r := &p.rules[i]
		if r.when != nil {
			ok, err := evalBool(r.when, act)
			if err != nil {
				return Verdict{Rule: r.name, Detail: fmt.Sprintf("when: %v", err)}
			}
			if !ok {
				continue
			}
		}
		if r.allow != nil {
			ok, err := evalBool(r.allow, act)
			if err != nil {
				return Verdict{Rule: r.name, Detail: fmt.Sprintf("allow: %v", err)}
			}
			if !ok {
				return Verdict{Rule: r.name, Detail: "allow is false"}
			}
		}
		if r.rate != nil && over != nil && over(i, r.rate) {
			return Verdict{Rule: r.name, Detail: fmt.Sprintf("rate: at most %d records in %d ms of ledger time", r.rate.Count, r.rate.Window)}
		}
	}
	return Verdict{}
}

// rated calls f with each rule that has a rate and applies to in.
func (p *Policy) rated(in *Input, f func(i int, r *ledger.Rate)) {
	if p == nil {
		return
	}
	var act *activation
	for i := range p.rules {
		r := &p.rules[i]
		if r.rate == nil {
			continue
		}
		if r.when != nil {
			if act == nil {
				act = &activation{in: in}
			}
			if ok, err := evalBool(r.when, act); err != nil || !ok {
				continue
			}
		}
		f(i, r.rate)
	}
}

func evalBool(prg cel.Program, act *activation) (bool, error) {
	v, _, err := prg.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("value of type %s, want bool", v.Type())
	}
	return bool(b), nil
}

// rateKey names one device's counter of one rule.
type rateKey struct{ rule, device string }

// rateCount is the count of a device's records one rule applied to in
// the window that starts at Window*rule's window ms.
type rateCount struct {
	Window uint64 // ledger time / the rule's window
	Count  uint64
}

// windowOf is the index of the window of length w (ms) time t falls in;
// times before the epoch share window 0.
func windowOf(t int64, w uint64) uint64 {
	if t < 0 {
		return 0
	}
	return uint64(t) / w
}

// MaxRatedRules is the most rules of a policy that have a rate: each
// costs a counter per device in the state.
const MaxRatedRules = 8

// policyCacheMax bounds the compiled policies a State keeps.
const policyCacheMax = 16

// compiled returns ps compiled, from the cache when it was compiled
// before: a policy is compiled once, not per record.
func (s *State) compiled(ps *ledger.PolicySet) (*Policy, error) {
	h := policyHash(ps)
	s.pmu.Lock()
	p, ok := s.pcache[h]
	s.pmu.Unlock()
	if ok {
		return p, nil
	}
	p, err := CompilePolicy(ps)
	if err != nil {
		return nil, err
	}
	s.pmu.Lock()
	if len(s.pcache) >= policyCacheMax {
		clear(s.pcache)
	}
	s.pcache[h] = p
	s.pmu.Unlock()
	return p, nil
}

// withTx returns a copy of p as committed at height by tx.
func (p *Policy) withTx(height, index uint64, tx *ledger.Tx) *Policy {
	c := *p
	c.Height, c.Index, c.Tx, c.Author = height, index, tx.ID, tx.Author
	return &c
}

// Policy returns the policy in force after the last applied block, nil if
// none was ever set. A Policy is never changed: callers may keep it.
func (s *State) Policy() *Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n := len(s.policies); n > 0 {
		return s.policies[n-1]
	}
	return nil
}

// PolicyAt returns the policy in force for the txs of the block at
// height that follow every policy.set of that block (nil: none).
func (s *State) PolicyAt(height uint64) *Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var p *Policy
	for _, x := range s.policies {
		if x.Height > height {
			break
		}
		p = x
	}
	return p
}

// PolicyHistory returns every policy.set committed, oldest first.
func (s *State) PolicyHistory() []*Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]*Policy(nil), s.policies...)
}

// policyLocked is the policy in force now.
func (s *State) policyLocked() *Policy {
	if n := len(s.policies); n > 0 {
		return s.policies[n-1]
	}
	return nil
}

// checkPolicySet compiles a policy.set's rules and checks its version
// against last: what is refused at submission and in a block.
func (s *State) checkPolicySet(ps *ledger.PolicySet, last uint64) (*Policy, error) {
	if ps.Version <= last {
		return nil, reject(ledger.ReasonStaleVersion, "policy version %d, last is %d", ps.Version, last)
	}
	p, err := s.compiled(ps)
	if err != nil {
		return nil, reject(ledger.ReasonMalformed, "%v", err)
	}
	return p, nil
}

// policyVersion is the version of the policy in force (0: none).
func (s *State) policyVersion() uint64 {
	if p := s.Policy(); p != nil {
		return p.Set.Version
	}
	return 0
}

// inputOf is what the rules see of a record by d in a block at height
// with time t.
func inputOf(d *Device, r *ledger.Record, height uint64, t int64) Input {
	return Input{DeviceID: d.ID, Model: d.Model, Groups: d.Groups, Stream: r.Stream, ContentType: r.ContentType,
		Size: len(r.Payload), Seq: r.Seq, DeviceTime: r.Time, LedgerTime: t, Height: height}
}

// decodePolicySet reads a policy's encoding from a snapshot.
func decodePolicySet(b []byte) (*ledger.PolicySet, error) {
	var ps ledger.PolicySet
	if err := snapDecMode.Unmarshal(b, &ps); err != nil {
		return nil, err
	}
	again, err := snapEncMode.Marshal(&ps)
	if err != nil || string(again) != string(b) {
		return nil, errors.New("policy not in deterministic encoding")
	}
	return &ps, nil
}
