package ledger

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// KindPolicySet sets the chain's policy: the rules every data.record is
// checked against from the height of its block on (docs/protocol.md
// section 6.21, docs/policy.md).
const KindPolicySet Kind = "policy.set" // admin: the access rules records must pass

// Limits of a policy (docs/protocol.md section 6.21).
const (
	MaxPolicyRules        = 64   // rules in one policy
	MaxRuleExpr           = 1024 // bytes of one CEL expression
	MaxRateCount   uint64 = 1 << 32
	MaxRateWindow  uint64 = 31 * 24 * 3600 * 1000 // ms: 31 days
)

// PolicySet is the whole policy in force from its block on: its rules in
// order, each a name and CEL expressions over the device, the record and
// the ledger. Version numbers the chain's policies (strictly increasing);
// an empty rule list lifts every rule.
type PolicySet struct {
	Version uint64 `cbor:"1,keyasint" json:"version"`
	Rules   []Rule `cbor:"2,keyasint,omitempty" json:"rules"`
}

// Rule is one rule of a policy. A record the rule applies to (When is
// true, or empty) is refused unless Allow is true (or empty) and, if
// Rate is set, the device has sent fewer than Rate.Count records the rule
// applied to in the current window of ledger time.
type Rule struct {
	Name  string `cbor:"1,keyasint" json:"name"`
	When  string `cbor:"2,keyasint,omitempty" json:"when,omitempty"`  // CEL, bool; empty: every record
	Allow string `cbor:"3,keyasint,omitempty" json:"allow,omitempty"` // CEL, bool; empty: true
	Rate  *Rate  `cbor:"4,keyasint,omitempty" json:"rate,omitempty"`
}

// Rate limits the records of one device a rule applies to: at most Count
// in each window of Window milliseconds of ledger time (windows start at
// multiples of Window since the Unix epoch).
type Rate struct {
	Count  uint64 `cbor:"1,keyasint" json:"count"`
	Window uint64 `cbor:"2,keyasint" json:"window"` // ms
}

// errNoRule: a rule that can refuse nothing is a mistake.
var errNoRule = errors.New("neither allow nor rate: when alone refuses nothing")

// Validate checks a policy's syntax: rule names, expression sizes and
// rates. Whether the expressions compile is the state's to check.
func (p *PolicySet) Validate() error {
	if p.Version == 0 || p.Version > math.MaxInt64 {
		return fmt.Errorf("version %d: want 1 to 2^63-1", p.Version)
	}
	if len(p.Rules) > MaxPolicyRules {
		return fmt.Errorf("%d rules, at most %d", len(p.Rules), MaxPolicyRules)
	}
	names := map[string]bool{}
	for i := range p.Rules {
		r := &p.Rules[i]
		if !ValidID(r.Name) {
			return fmt.Errorf("rule %d: invalid name %q", i, r.Name)
		}
		if names[r.Name] {
			return fmt.Errorf("rule %q: name used twice", r.Name)
		}
		names[r.Name] = true
		for _, e := range []struct{ what, expr string }{{"when", r.When}, {"allow", r.Allow}} {
			if len(e.expr) > MaxRuleExpr {
				return fmt.Errorf("rule %q: %s is %d bytes, at most %d", r.Name, e.what, len(e.expr), MaxRuleExpr)
			}
			if !utf8.ValidString(e.expr) {
				return fmt.Errorf("rule %q: %s is not UTF-8", r.Name, e.what)
			}
		}
		if r.Allow == "" && r.Rate == nil {
			return fmt.Errorf("rule %q: %w", r.Name, errNoRule)
		}
		if r.Rate != nil {
			if r.Rate.Count == 0 || r.Rate.Count > MaxRateCount {
				return fmt.Errorf("rule %q: rate count %d: want 1 to 2^32", r.Name, r.Rate.Count)
			}
			if r.Rate.Window == 0 || r.Rate.Window > MaxRateWindow {
				return fmt.Errorf("rule %q: rate window %d ms: want 1 to %d", r.Name, r.Rate.Window, MaxRateWindow)
			}
		}
	}
	return nil
}
