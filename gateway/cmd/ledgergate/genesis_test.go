package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGenesisFourNodes is docs/cluster.md's set-up with the binary: four
// node keys, an admin key, the genesis, and four joins.
func TestGenesisFourNodes(t *testing.T) {
	dir := t.TempDir()
	var nodeFlags []string
	for i := 1; i <= 4; i++ {
		data := fmt.Sprintf("node-%d", i)
		out := mustCLI(t, dir, "init", "--software-key", "--data", data, "--node-id", data, "--key-only")
		pub, err := os.ReadFile(filepath.Join(dir, data, "node.pub"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, string(pub)) || !strings.Contains(out, filepath.Join(data, "node.pub")) {
			t.Fatalf("init --key-only does not print the public key:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dir, data, "genesis.json")); !os.IsNotExist(err) {
			t.Fatalf("init --key-only made a genesis: %v", err)
		}
		nodeFlags = append(nodeFlags, "--node", fmt.Sprintf("%s,127.0.0.1:%d,%s/node.pub", data, 7000+i, data))
	}
	mustCLI(t, dir, "device", "keygen", "--alg", "es256", "--out", "admin")
	args := append([]string{"genesis", "new", "--chain-id", "site-1", "--admin", "admin.pub", "--out", "genesis.json"}, nodeFlags...)
	if out := mustCLI(t, dir, args...); !strings.Contains(out, "quorum 3") {
		t.Fatalf("genesis new: %s", out)
	}
	want, _ := os.ReadFile(filepath.Join(dir, "genesis.json"))

	out := mustCLI(t, dir, "genesis", "show", "genesis.json")
	for _, re := range []string{`(?m)^chain\s+site-1$`, `(?m)^hash\s+[0-9a-f]{64}$`, `(?m)^n\s+4$`, `(?m)^f\s+1$`, `(?m)^quorum\s+3$`,
		`(?m)^node-3\s+127\.0\.0\.1:7003\s+[0-9a-f]{64}$`, `(?m)^admin\s+[0-9a-f]{64}$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("genesis show lacks %s:\n%s", re, out)
		}
	}
	hash := regexp.MustCompile(`(?m)^hash\s+(\S+)$`).FindStringSubmatch(out)[1]

	for i := 1; i <= 4; i++ {
		data := fmt.Sprintf("node-%d", i)
		out := mustCLI(t, dir, "init", "--software-key", "--data", data, "--genesis", "genesis.json")
		if !strings.Contains(out, "joined chain site-1 as node "+data) || !strings.Contains(out, hash) {
			t.Fatalf("init --genesis: %s", out)
		}
		got, err := os.ReadFile(filepath.Join(dir, data, "genesis.json"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s/genesis.json differs from genesis.json: %v", data, err)
		}
	}
	// Joining twice is refused, and the genesis stays.
	if _, errs, code := cli(t, dir, "init", "--software-key", "--data", "node-1", "--genesis", "genesis.json"); code != 1 || !strings.Contains(errs, "already initialized") {
		t.Fatalf("second join: exit %d %s", code, errs)
	}
}

// TestGenesisErrors checks that the set-up's mistakes fail clearly.
func TestGenesisErrors(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, dir, "init", "--software-key", "--data", "a", "--key-only")
	mustCLI(t, dir, "init", "--software-key", "--data", "b", "--key-only")
	mustCLI(t, dir, "device", "keygen", "--out", "ops")

	// A second --key-only keeps the first key.
	key, _ := os.ReadFile(filepath.Join(dir, "a", "node.key"))
	if _, errs, code := cli(t, dir, "init", "--software-key", "--data", "a", "--key-only"); code != 1 || !strings.Contains(errs, "node key already exists") {
		t.Fatalf("second --key-only: exit %d %s", code, errs)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "a", "node.key")); !bytes.Equal(again, key) {
		t.Fatal("second --key-only replaced the key")
	}

	// genesis new: a bad HOST:PORT, a missing .pub, a malformed --node.
	for _, c := range []struct {
		node string
		code int
		want string
	}{
		{"gw1,127.0.0.1,a/node.pub", 1, `node gw1: address "127.0.0.1": want HOST:PORT`},
		{"gw1,127.0.0.1:70000,a/node.pub", 1, `port "70000": want 1 to 65535`},
		{"gw1,127.0.0.1:7001,nowhere/node.pub", 1, "node gw1: device: read nowhere/node.pub"},
		{"gw1,127.0.0.1:7001", 2, `--node "gw1,127.0.0.1:7001": want ID,HOST:PORT,KEY.pub`},
	} {
		_, errs, code := cli(t, dir, "genesis", "new", "--chain-id", "c", "--node", c.node, "--admin", "ops.pub", "--out", "g.json")
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("--node %s: exit %d, want %d and %q:\n%s", c.node, code, c.code, c.want, errs)
		}
	}
	if _, errs, code := cli(t, dir, "genesis", "new", "--chain-id", "c", "--node", "gw1,127.0.0.1:7001,a/node.pub", "--out", "g.json"); code != 2 || !strings.Contains(errs, "missing --admin") {
		t.Errorf("no --admin: exit %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "g.json")); !os.IsNotExist(err) {
		t.Fatalf("a failed genesis new wrote its file: %v", err)
	}

	// A genesis without b's key: b cannot join it.
	mustCLI(t, dir, "genesis", "new", "--chain-id", "site-a", "--node", "gw1,127.0.0.1:7001,a/node.pub", "--admin", "ops.pub", "--out", "g.json")
	if _, errs, code := cli(t, dir, "genesis", "new", "--chain-id", "site-a", "--node", "gw1,127.0.0.1:7001,a/node.pub", "--admin", "ops.pub", "--out", "g.json"); code != 1 || !strings.Contains(errs, "--force") {
		t.Errorf("overwrite without --force: exit %d %s", code, errs)
	}
	_, errs, code := cli(t, dir, "init", "--software-key", "--data", "b", "--genesis", "g.json")
	if code != 1 || !strings.Contains(errs, "node key is not in the genesis") || !strings.Contains(errs, "chain site-a") || !strings.Contains(errs, filepath.Join("b", "node.pub")) {
		t.Fatalf("join with a foreign key: exit %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "b", "genesis.json")); !os.IsNotExist(err) {
		t.Fatalf("a refused join wrote a genesis: %v", err)
	}
	// Joining needs a key first; the flags of the two steps do not mix.
	if _, errs, code := cli(t, dir, "init", "--software-key", "--data", "c", "--genesis", "g.json"); code != 1 || !strings.Contains(errs, "--node-id ID") {
		t.Fatalf("join without a key: exit %d %s", code, errs)
	}
	if _, errs, code := cli(t, dir, "init", "--software-key", "--data", "c", "--genesis", "g.json", "--chain-id", "x"); code != 2 || !strings.Contains(errs, "--chain-id cannot be used with --genesis") {
		t.Fatalf("--genesis with --chain-id: exit %d %s", code, errs)
	}
	if _, errs, code := cli(t, dir, "init", "--software-key", "--data", "c", "--genesis", "g.json", "--key-only"); code != 2 || !strings.Contains(errs, "two steps") {
		t.Fatalf("--genesis with --key-only: exit %d %s", code, errs)
	}
	if _, errs, code := cli(t, dir, "genesis", "show", "nope.json"); code != 1 || !strings.Contains(errs, "nope.json") {
		t.Fatalf("show a missing file: exit %d %s", code, errs)
	}
}
