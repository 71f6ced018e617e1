package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), &env{stdout: &out, stderr: &errb, stdin: strings.NewReader("")}, args)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	for _, c := range commands() {
		args := append(strings.Fields(c.name), "--help")
		code, out, errs := runCLI(args...)
		if code != 0 || !strings.Contains(out+errs, "Usage: ledgergate "+c.name) {
			t.Errorf("%s --help: exit %d\n%s%s", c.name, code, out, errs)
		}
	}
	if code, out, _ := runCLI("--help"); code != 0 || !strings.Contains(out, "device keygen") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	if code, _, errs := runCLI("device"); code != 2 || !strings.Contains(errs, "device enroll") {
		t.Errorf("device: exit %d\n%s", code, errs)
	}
	if code, _, errs := runCLI("frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown command: exit %d\n%s", code, errs)
	}
	// A missing required flag is a usage error (exit 2) that names the flag.
	if code, _, errs := runCLI("device", "keygen"); code != 2 || !strings.Contains(errs, "missing --out") {
		t.Errorf("device keygen without --out: exit %d\n%s", code, errs)
	}
	if code, _, errs := runCLI("device", "keygen", "--out", t.TempDir()+"/k", "--alg", "rsa"); code != 1 || !strings.Contains(errs, "es256 or ed25519") {
		t.Errorf("device keygen --alg rsa: exit %d\n%s", code, errs)
	}
}
