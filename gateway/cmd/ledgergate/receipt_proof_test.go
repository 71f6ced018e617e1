package main

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReceiptVerifyProof checks `receipt verify --proof` with the
// protocol's membership vectors (docs/vectors/membership.json): a
// receipt certified after a member change fails with the genesis alone,
// verifies with the proof, and a proof with a bad link is refused.
func TestReceiptVerifyProof(t *testing.T) {
	vecs := filepath.Join("..", "..", "..", "docs", "vectors")
	read := func(name string) map[string]any {
		b, err := os.ReadFile(filepath.Join(vecs, name))
		if err != nil {
			t.Fatal(err)
		}
		var f struct{ Cases []map[string]any }
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		out := map[string]any{}
		for _, c := range f.Cases {
			out[c["name"].(string)] = c
		}
		return out
	}
	dir := t.TempDir()
	write := func(name, hx string) string {
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gen := read("genesis.json")["main"].(map[string]any)
	genesis := write("genesis.json", gen["hex"].(string))
	mem := read("membership.json")
	two := mem["two-changes"].(map[string]any)
	proof := write("proof.cbor", two["hex"].(string))
	bad := write("bad.cbor", mem["bad-link-wrong-set"].(map[string]any)["hex"].(string))
	receipt := write("receipt.cbor", two["inputs"].(map[string]any)["receipt"].(string))

	if code, out, errs := runCLI("receipt", "verify", "--genesis", genesis, receipt); code == 0 || !strings.Contains(errs, "--proof") {
		t.Fatalf("without the proof: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs := runCLI("receipt", "verify", "--genesis", genesis, "--proof", proof, receipt)
	if code != 0 || !strings.Contains(out, "valid: ") || !strings.Contains(out, "in block 161") {
		t.Fatalf("with the proof: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := runCLI("receipt", "verify", "--genesis", genesis, "--proof", bad, receipt); code == 0 || !strings.Contains(errs, "membership proof receipt 1") {
		t.Fatalf("with a bad proof: exit %d\n%s%s", code, out, errs)
	}
}
