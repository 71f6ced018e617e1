package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyTestCommand: `policy test` prints each sample's verdict and
// the rule that refused it, exits 1 if any is refused, and refuses a
// policy the gateways would refuse (a non-deterministic function, a cost
// over the limit) as they do.
func TestPolicyTestCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	policy := write("p.json", `{"version": 1, "rules": [
 {"name": "sensors-temp-only", "when": "'sensors' in device.groups", "allow": "record.stream == 'temp'"},
 {"name": "max-size", "allow": "record.size <= 4096"},
 {"name": "office-hours", "allow": "ledger.time % 86400000 >= 0"},
 {"name": "rate", "rate": {"count": 60, "window": 60000}}]}`)
	samples := write("r.json", `[
 {"device": {"id": "s1", "groups": ["sensors"]}, "record": {"stream": "temp", "size": 10, "seq": 1}, "ledger": {"time": 1}},
 {"device": {"id": "s1", "groups": ["sensors"]}, "record": {"stream": "video", "size": 10, "seq": 2}, "ledger": {"time": 1}},
 {"device": {"id": "c1", "groups": ["cameras"]}, "record": {"stream": "video", "size": 5000, "seq": 1}, "ledger": {"time": 1}},
 {"device": {"id": "c1"}, "record": {"stream": "video", "size": 4096, "seq": 2}, "ledger": {"time": 1}}]`)
	code, out, errs := runCLI("policy", "test", "--policy", policy, "--records", samples)
	want := []string{
		"1 s1/temp: ok",
		"2 s1/video: refused by sensors-temp-only: allow is false",
		"3 c1/video: refused by max-size: allow is false",
		"4 c1/video: ok",
	}
	if code != 1 || strings.TrimSpace(out) != strings.Join(want, "\n") || !strings.Contains(errs, "2 of 4 samples refused") {
		t.Errorf("policy test: exit %d\n%s%s\nwant:\n%s", code, out, errs, strings.Join(want, "\n"))
	}
	for _, c := range []struct{ name, allow, want string }{
		{"now", "now() > 0", "undeclared reference to 'now'"},
		{"cost", "device.groups.all(a, device.groups.all(b, device.groups.all(c, a + b + c != '')))", "cost up to"},
		{"not bool", "record.size", "want bool"},
	} {
		bad := write(c.name+".json", `{"version": 1, "rules": [{"name": "bad", "allow": "`+c.allow+`"}]}`)
		if code, _, errs := runCLI("policy", "test", "--policy", bad, "--records", samples); code != 1 || !strings.Contains(errs, c.want) || !strings.Contains(errs, `rule "bad"`) {
			t.Errorf("%s: exit %d: %s", c.name, code, errs)
		}
	}
	// An unknown key in the policy file is an error, not ignored.
	typo := write("typo.json", `{"version": 1, "rules": [{"name": "r", "alow": "false"}]}`)
	if code, _, errs := runCLI("policy", "test", "--policy", typo, "--records", samples); code != 1 || !strings.Contains(errs, "alow") {
		t.Errorf("typo: exit %d: %s", code, errs)
	}
}
