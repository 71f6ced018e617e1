package daemon

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDependencyRules keeps DESIGN.md's import rules from rotting.
func TestDependencyRules(t *testing.T) {
	const mod = "github.com/ledgergate/ledgergate/"
	out, err := exec.Command("go", "list", "-json", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{} // package (without module prefix) -> its imports
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		imports[strings.TrimPrefix(p.ImportPath, mod)] = p.Imports
	}
	ours := func(pkg string) []string {
		var r []string
		for _, imp := range imports[pkg] {
			if strings.HasPrefix(imp, mod) {
				r = append(r, strings.TrimPrefix(imp, mod))
			}
		}
		return r
	}
	allowed := map[string][]string{
		"gateway/ledger":  {},
		"gateway/pbft":    {},
		"gateway/cluster": {"gateway/pbft", "gateway/ledger"},
		"tpm":             {},
		"seeds":           {},
		"gateway/state":   {"gateway/ledger"},
		"gateway/index":   {"gateway/ledger", "gateway/state"},
		"bridge/device":   {"gateway/ledger", "seeds"},
		"webui":           {"gateway/api", "gateway/index", "gateway/ledger"},
		"gateway/egress":  {"gateway/index", "gateway/ledger"},
	}
	for pkg, ok := range allowed {
		if _, exists := imports[pkg]; !exists {
			continue // not built yet
		}
		for _, imp := range ours(pkg) {
			if !slices.Contains(ok, imp) {
				t.Errorf("%s imports %s; allowed: %v", pkg, imp, ok)
			}
		}
	}
	for pkg := range imports {
		if pkg == "gateway/cmd/ledgergate" {
			continue
		}
		if slices.Contains(ours(pkg), "gateway/daemon") {
			t.Errorf("%s imports gateway/daemon: only main may", pkg)
		}
	}
	// The consensus core does no I/O and keeps no clock or randomness of its own.
	for _, bad := range []string{"net", "os", "database/sql", "math/rand", "math/rand/v2", "time"} {
		if slices.Contains(imports["gateway/pbft"], bad) {
			t.Errorf("gateway/pbft imports %s", bad)
		}
	}
}
