package daemon

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

// mayImport is DESIGN.md's table of which of our packages each package
// may import directly. Every package of the module has a row: a new
// package fails TestDependencyRules until it gets one. What a package
// reaches through its imports is checked too: only the packages its
// allowed imports may reach, row by row (reach).
var mayImport = map[string][]string{
	// Leaves: nothing of ours.
	"gateway/ledger": {},
	"gateway/pbft":   {},
	"tpm":            {},
	"seeds":          {},
	"gateway/clock":  {},
	"gateway/blob":   {},
	"gateway/config": {},

	"gateway/state":     {"gateway/ledger"},
	"gateway/index":     {"gateway/ledger", "gateway/state"},
	"gateway/snapshot":  {"gateway/ledger", "gateway/state"},
	"gateway/cluster":   {"gateway/pbft", "gateway/ledger"},
	"gateway/chain":     {"gateway/ledger", "gateway/state", "gateway/index", "gateway/clock"},
	"gateway/replica":   {"gateway/pbft", "gateway/ledger", "gateway/state", "gateway/cluster", "gateway/chain", "gateway/clock"},
	"gateway/directory": {"gateway/ledger", "gateway/index", "gateway/chain", "gateway/blob", "gateway/clock", "bridge"},
	"gateway/egress":    {"gateway/index", "gateway/ledger"},
	"gateway/retention": {"gateway/index", "gateway/ledger"},
	"gateway/api":       {"gateway/chain", "gateway/clock", "gateway/directory", "gateway/index", "gateway/ledger"},
	"gateway/front":     {"bridge", "gateway/chain", "gateway/ledger", "gateway/state"},
	"webui":             {"gateway/api", "gateway/index", "gateway/ledger"},

	// Front ends and the device side: the bridge's interfaces and the
	// ledger's formats, never the gateway's internals.
	"bridge":        {"gateway/ledger"},
	"bridge/mqtt":   {"bridge", "gateway/ledger"},
	"bridge/coap":   {"bridge", "gateway/ledger"},
	"bridge/device": {"gateway/ledger", "seeds"},
	"bridge/sim":    {"bridge/device", "gateway/ledger"},

	// Test helpers.
	"bridge/device/vectors":     {},
	"gateway/ledger/spectest":   {"gateway/ledger"},
	"gateway/ledger/ledgertest": {"gateway/ledger"},
	"gateway/pbft/pbfttest":     {"gateway/pbft"},
	"seeds/seedstest":           {},
	"gateway/nodetest": {"bridge", "bridge/device", "gateway/chain", "gateway/front", "gateway/index", "gateway/ledger",
		"gateway/replica", "gateway/state"},

	// The composition root and main: anything.
	"gateway/daemon":         nil,
	"gateway/cmd/ledgergate": nil,
}

// frontEnds are the packages that must not reach the gateway's internals
// even indirectly: of gateway/, only the ledger's formats.
var frontEnds = []string{"bridge", "bridge/mqtt", "bridge/coap", "bridge/device", "bridge/sim"}

// TestDependencyRules keeps DESIGN.md's import rules from rotting: for
// every package of the module, its direct imports of ours (mayImport)
// and everything it imports transitively (go list's Deps).
func TestDependencyRules(t *testing.T) {
	const mod = "github.com/ledgergate/ledgergate/"
	out, err := exec.Command("go", "list", "-json", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Imports    []string // direct
		Deps       []string // transitive
	}
	pkgs := map[string]pkg{} // by path without the module prefix
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, mod)] = p
	}
	ours := func(paths []string) []string {
		var r []string
		for _, imp := range paths {
			if s, ok := strings.CutPrefix(imp, mod); ok {
				r = append(r, s)
			}
		}
		return r
	}
	names := make([]string, 0, len(pkgs))
	for name := range pkgs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := pkgs[name]
		allowed, ok := mayImport[name]
		if !ok {
			t.Errorf("%s has no row in mayImport: add what it may import (DESIGN.md)", name)
			continue
		}
		if allowed == nil {
			continue // daemon, main
		}
		for _, imp := range ours(p.Imports) {
			if !slices.Contains(allowed, imp) {
				t.Errorf("%s imports %s; allowed: %v", name, imp, allowed)
			}
		}
		r := reach(name)
		for _, dep := range ours(p.Deps) {
			if !r[dep] {
				t.Errorf("%s depends on %s (transitively); it may reach only %v", name, dep, keys(r))
			}
		}
	}
	for _, name := range names {
		deps := ours(pkgs[name].Deps)
		if name != "gateway/cmd/ledgergate" && slices.Contains(deps, "gateway/daemon") {
			t.Errorf("%s depends on gateway/daemon: only main may", name)
		}
		if slices.Contains(frontEnds, name) {
			for _, dep := range deps {
				if strings.HasPrefix(dep, "gateway/") && dep != "gateway/ledger" {
					t.Errorf("front end %s depends on %s: of the gateway, front ends use only gateway/ledger", name, dep)
				}
			}
		}
	}
	// The consensus core does no I/O and keeps no clock or randomness of
	// its own (the standard library's own imports aside).
	for _, bad := range []string{"net", "os", "database/sql", "math/rand", "math/rand/v2", "time"} {
		if slices.Contains(pkgs["gateway/pbft"].Imports, bad) {
			t.Errorf("gateway/pbft imports %s", bad)
		}
	}
}

// reach is what name may depend on: its allowed imports and, for each,
// what that one may reach; nil rows (daemon, main) are not followed.
func reach(name string) map[string]bool {
	r := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		for _, imp := range mayImport[p] {
			if !r[imp] {
				r[imp] = true
				walk(imp)
			}
		}
	}
	walk(name)
	return r
}

func keys(m map[string]bool) []string {
	r := make([]string, 0, len(m))
	for k := range m {
		r = append(r, k)
	}
	sort.Strings(r)
	return r
}
