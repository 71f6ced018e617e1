package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// policyHelp ends the help of the policy commands.
const policyHelp = `
A policy is a list of named rules in CEL that every data.record must pass
(docs/policy.md). The file is JSON:
  {"version": 1, "rules": [
    {"name": "sensors-temp-only", "when": "'sensors' in device.groups", "allow": "record.stream == 'temp'"},
    {"name": "max-size", "allow": "record.size <= 4096"},
    {"name": "rate", "rate": {"count": 60, "window": 60000}}]}
A policy.set replaces the whole policy from its block on; its version must be
above the one in force. 'policy test' tries a policy on sample records first.
`

// readPolicyFile reads a policy's JSON, strictly.
func readPolicyFile(path string) (*ledger.PolicySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ps ledger.PolicySet
	if err := strictJSON(b, &ps); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return &ps, nil
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func cmdPolicySet(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy set")
	addHelp(fs, policyHelp)
	file := fs.String("policy", "", "the policy, a JSON file")
	admin := addAdminFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "policy"); err != nil {
		return err
	}
	ps, err := readPolicyFile(*file)
	if err != nil {
		return err
	}
	// Compiled here first: the gateway would refuse it the same way.
	if _, err := state.CompilePolicy(ps); err != nil {
		return err
	}
	st, err := admin.api.client().status(ctx)
	if err != nil {
		return err
	}
	rb, err := admin.sign(ctx, st.ChainID, ledger.Body{Kind: ledger.KindPolicySet, PolicySet: ps})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "policy.set version %d (%d rules): committed in block %d, tx %s\nin force for the records after it in that block and every later one\n",
		ps.Version, len(ps.Rules), rb.Height, rb.TxID)
	return nil
}

func cmdPolicyShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy show")
	addHelp(fs, policyHelp)
	target := apiFlag(fs)
	height := fs.Uint64("height", 0, "the policy in force after the block at this height (default: the gateway's tip)")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	path := "/api/v1/policy"
	if isSet(fs, "height") {
		path += "?height=" + strconv.FormatUint(*height, 10)
	}
	var p api.Policy
	if err := target.client().do(ctx, http.MethodGet, path, "", nil, &p); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(p)
	}
	if p.Policy == nil {
		fmt.Fprintf(e.stdout, "no policy in force at height %d: every record of an enrolled device is taken\n", p.Height)
		return nil
	}
	fmt.Fprintf(e.stdout, "policy in force at height %d: version %d, set in block %d (tx %s) by %s\n", p.Height, p.Policy.Version, p.Policy.Height, p.Policy.Tx, p.Policy.Author)
	printRules(e.stdout, p.Policy.Rules)
	return nil
}

func printRules(w io.Writer, rules []ledger.Rule) {
	if len(rules) == 0 {
		fmt.Fprintln(w, "  no rules: every record is taken")
	}
	for i, r := range rules {
		var parts []string
		if r.When != "" {
			parts = append(parts, "when "+r.When)
		}
		if r.Allow != "" {
			parts = append(parts, "allow "+r.Allow)
		}
		if r.Rate != nil {
			parts = append(parts, fmt.Sprintf("rate %d per %d ms per device", r.Rate.Count, r.Rate.Window))
		}
		fmt.Fprintf(w, "  %d. %s: %s\n", i+1, r.Name, strings.Join(parts, "; "))
	}
}

func cmdPolicyHistory(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy history")
	addHelp(fs, policyHelp)
	target := apiFlag(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var h api.PolicyHistory
	if err := target.client().do(ctx, http.MethodGet, "/api/v1/policy/history", "", nil, &h); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(h)
	}
	if len(h.Changes) == 0 {
		fmt.Fprintf(e.stdout, "no policy was ever set (tip %d)\n", h.Height)
		return nil
	}
	for _, c := range h.Changes {
		fmt.Fprintf(e.stdout, "version %d: block %d tx %d (%s) by %s, %d rules\n", c.Version, c.Height, c.Index, c.Tx, c.Author, len(c.Rules))
		printRules(e.stdout, c.Rules)
	}
	return nil
}

// sample is one record of 'policy test' (docs/policy.md).
type sample struct {
	Device struct {
		ID     string   `json:"id"`
		Model  string   `json:"model"`
		Groups []string `json:"groups"`
	} `json:"device"`
	Record struct {
		Stream      string `json:"stream"`
		ContentType string `json:"content_type"`
		Size        int    `json:"size"`
		Seq         uint64 `json:"seq"`
		Time        int64  `json:"time"`
	} `json:"record"`
	Ledger struct {
		Time   int64  `json:"time"`
		Height uint64 `json:"height"`
	} `json:"ledger"`
}

func cmdPolicyTest(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy test")
	addHelp(fs, policyHelp+`Samples are a JSON array of
  {"device": {"id", "model", "groups"}, "record": {"stream", "content_type", "size", "seq", "time"}, "ledger": {"time", "height"}}
Each prints "ok" or "refused by RULE: why"; rates are not simulated. The exit
status is 1 if any sample is refused.
`)
	file := fs.String("policy", "", "the policy, a JSON file")
	records := fs.String("records", "", "the sample records, a JSON file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := need(fs, "policy", "records"); err != nil {
		return err
	}
	ps, err := readPolicyFile(*file)
	if err != nil {
		return err
	}
	p, err := state.CompilePolicy(ps)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(*records)
	if err != nil {
		return err
	}
	var samples []sample
	if err := strictJSON(b, &samples); err != nil {
		return fmt.Errorf("records %s: %w", *records, err)
	}
	refused := 0
	for i, s := range samples {
		in := &state.Input{DeviceID: s.Device.ID, Model: s.Device.Model, Groups: s.Device.Groups, Stream: s.Record.Stream,
			ContentType: s.Record.ContentType, Size: s.Record.Size, Seq: s.Record.Seq, DeviceTime: s.Record.Time,
			LedgerTime: s.Ledger.Time, Height: s.Ledger.Height}
		v := p.Eval(in, nil)
		if v.OK() {
			fmt.Fprintf(e.stdout, "%d %s/%s: ok\n", i+1, s.Device.ID, s.Record.Stream)
			continue
		}
		refused++
		fmt.Fprintf(e.stdout, "%d %s/%s: refused by %s: %s\n", i+1, s.Device.ID, s.Record.Stream, v.Rule, v.Detail)
	}
	if refused > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d samples refused", refused, len(samples))}
	}
	return nil
}

// isSet reports whether the flag name was given.
func isSet(fs *flagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
