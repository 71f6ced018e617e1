package vectors

import (
	"strings"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// policy is a policy.set body.
func policy(version uint64, rules ...ledger.Rule) *ledger.Body {
	b := body(ledger.KindPolicySet)
	b.PolicySet = &ledger.PolicySet{Version: version, Rules: rules}
	return b
}

// policyTxs writes tx-policy-set.json and adds the invalid policy.set
// txs to tx-invalid.json (protocol.md 6.21). Whether the expressions
// compile is the gateways' to judge (docs/policy.md): a vector can only
// say what the bytes are.
func (x *gen) policyTxs() {
	f := x.file("tx-policy-set", "tx", "Signed policy.set txs (protocol.md sections 5 and 6.21).", txCheck)
	typical := policy(1,
		ledger.Rule{Name: "sensors-temp-only", When: "'sensors' in device.groups", Allow: "record.stream == 'temp'"},
		ledger.Rule{Name: "max-size", Allow: "record.size <= 4096"},
		ledger.Rule{Name: "rate", Rate: &ledger.Rate{Count: 60, Window: 60000}})
	f.Cases = append(f.Cases,
		x.txCase("typical", "Sensors send temp only; records of at most 4096 bytes; at most 60 records a minute per device. Rule 3 has a rate and no expression.", "admin", x.sign("admin", "admin", typical)),
		x.txCase("lift", "Version 2 with no rules: key 2 is omitted; every rule is lifted.", "admin", x.sign("admin", "admin", policy(2))))

	inv := x.files["tx-invalid"]
	admin := x.k("admin")
	add := func(name, comment string, raw []byte, detail string) {
		env := sign1(admin.plain(), "admin", raw)
		inv.Cases = append(inv.Cases, &Case{Name: name, Comment: comment,
			Inputs: map[string]any{"author_key": "admin", "author_spki": hexs(admin.spki()), "max_tx_bytes": ledger.DefaultMaxTxBytes, "body_diag": diag(raw)},
			Hex:    hexs(env), Verdict: "ledger.ErrMalformed", Reason: "malformed", Detail: detail})
	}
	add("policy-when-only", "A rule with when and neither allow nor rate refuses nothing: a mistake.",
		enc(policy(1, ledger.Rule{Name: "r", When: "true"})), "neither allow nor rate")
	add("policy-name-twice", "Two rules named r.",
		enc(policy(1, ledger.Rule{Name: "r", Allow: "true"}, ledger.Rule{Name: "r", Allow: "false"})), "name used twice")
	add("policy-rate-window-0", "A rate with a window of 0 ms.",
		enc(policy(1, ledger.Rule{Name: "r", Rate: &ledger.Rate{Count: 1, Window: 0}})), "rate window 0 ms")
	add("policy-expr-too-long", "An allow expression of 1025 bytes.",
		enc(policy(1, ledger.Rule{Name: "r", Allow: "true" + strings.Repeat(" ", 1021)})), "at most 1024")
	add("policy-version-0", "Version 0.", enc(policy(0, ledger.Rule{Name: "r", Allow: "true"})), "version 0")
	// rules present as the empty array: it must be omitted (section 2,
	// rule 7). Built by hand: the encoder omits it.
	raw := cMap(ik(1, cText("policy.set")), ik(2, cText(chainID)), ik(25, cMap(ik(1, cUint(3)), ik(2, cArr()))))
	add("policy-empty-rules", "rules present as the empty array: omit it.", raw, "field 2 (rules): present but empty; omit it")
}
