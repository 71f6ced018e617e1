package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/tpm"
)

// newCluster makes n node directories with InitKey and an admin key, and
// the spec of their genesis.
func newCluster(t *testing.T, n int) (string, GenesisSpec) {
	t.Helper()
	root := t.TempDir()
	spec := GenesisSpec{ChainID: "test-chain", Time: time.UnixMilli(1_700_000_000_000)}
	for i := 1; i <= n; i++ {
		dir := filepath.Join(root, fmt.Sprintf("node-%d", i))
		der, err := InitKey(dir, config.Dev().Signer, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := device.LoadPublicKey(filepath.Join(dir, NodePubFile))
		if err != nil || !bytes.Equal(pub, der) {
			t.Fatalf("node.pub does not read back as the key InitKey returned: %v", err)
		}
		spec.Nodes = append(spec.Nodes, NodeSpec{ID: fmt.Sprintf("node-%d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 7000+i), PubFile: filepath.Join(dir, NodePubFile)})
	}
	key, err := device.GenerateKey(ledger.ES256)
	if err != nil {
		t.Fatal(err)
	}
	if err := device.WriteKeyPair(filepath.Join(root, "ops"), key); err != nil {
		t.Fatal(err)
	}
	spec.Admins = []AdminSpec{{PubFile: filepath.Join(root, "ops.pub")}}
	return root, spec
}

func TestInitKeyAndJoin(t *testing.T) {
	root, spec := newCluster(t, 4)
	g, err := NewGenesis(spec)
	if err != nil {
		t.Fatal(err)
	}
	if g.Admins[0].ID != "ops" || g.Quorum() != 3 || g.Nodes[2].Addrs[0] != "127.0.0.1:7003" || g.Params.MaxTxBytes != ledger.DefaultMaxTxBytes {
		t.Fatalf("genesis: %+v", g)
	}
	gpath := filepath.Join(root, "genesis.json")
	if err := WriteGenesis(gpath, g, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteGenesis(gpath, g, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second WriteGenesis: %v", err)
	}
	want, _ := os.ReadFile(gpath)
	for i, n := range spec.Nodes {
		dir := filepath.Dir(n.PubFile)
		jg, id, err := Join(dir, gpath, "", config.Dev().Signer, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id != n.ID || jg.Hash() != g.Hash() {
			t.Fatalf("node %d joined as %q, hash %x", i, id, jg.Hash())
		}
		got, err := os.ReadFile(filepath.Join(dir, GenesisFile))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: genesis not copied byte for byte: %v", dir, err)
		}
		// What `run` does with the directory.
		lg, err := LoadGenesis(dir)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := tpm.LoadSoftwareKey(filepath.Join(dir, NodeKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if id, err := findNode(lg, signer); err != nil || id != n.ID {
			t.Fatalf("findNode: %q %v", id, err)
		}
		if _, _, err := Join(dir, gpath, "", config.Dev().Signer, nil); !errors.Is(err, ErrInitialized) {
			t.Fatalf("second Join: %v", err)
		}
		if _, err := InitKey(dir, config.Dev().Signer, nil); !errors.Is(err, ErrInitialized) {
			t.Fatalf("InitKey on a joined directory: %v", err)
		}
	}
}

func TestJoinRefuses(t *testing.T) {
	root, spec := newCluster(t, 4)
	g, err := NewGenesis(spec)
	if err != nil {
		t.Fatal(err)
	}
	gpath := filepath.Join(root, "genesis.json")
	if err := WriteGenesis(gpath, g, false); err != nil {
		t.Fatal(err)
	}
	// A node key the genesis does not name.
	stranger := filepath.Join(root, "stranger")
	if _, err := InitKey(stranger, config.Dev().Signer, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := InitKey(stranger, config.Dev().Signer, nil); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second InitKey: %v", err)
	}
	_, _, err = Join(stranger, gpath, "", config.Dev().Signer, nil)
	if !errors.Is(err, ErrNotMember) || !strings.Contains(err.Error(), "chain test-chain") || !strings.Contains(err.Error(), "node-4 ") {
		t.Fatalf("stranger: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stranger, GenesisFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused join left a genesis: %v", err)
	}
	// No node key.
	if _, _, err := Join(filepath.Join(root, "empty"), gpath, "", config.Dev().Signer, nil); err == nil || !strings.Contains(err.Error(), "--node-id") {
		t.Fatalf("no key: %v", err)
	}
	// An invalid genesis.
	bad := filepath.Join(root, "bad.json")
	os.WriteFile(bad, []byte(`{"chain_id": "x", "nodes": []}`), 0o644)
	if _, _, err := Join(filepath.Dir(spec.Nodes[0].PubFile), bad, "", config.Dev().Signer, nil); !errors.Is(err, ledger.ErrGenesis) {
		t.Fatalf("invalid genesis: %v", err)
	}
}

func TestNewGenesisErrors(t *testing.T) {
	root, spec := newCluster(t, 2)
	cases := []struct {
		name string
		edit func(s *GenesisSpec)
		want []string
	}{
		{"no port", func(s *GenesisSpec) { s.Nodes[0].Addr = "127.0.0.1" }, []string{`node node-1: address "127.0.0.1": want HOST:PORT`}},
		{"port range", func(s *GenesisSpec) { s.Nodes[1].Addr = "gw2.example:0" }, []string{`port "0"`}},
		{"bad host", func(s *GenesisSpec) { s.Nodes[1].Addr = "gw 2:7001" }, []string{`host "gw 2"`}},
		{"missing pub", func(s *GenesisSpec) { s.Nodes[1].PubFile = filepath.Join(root, "nope.pub") }, []string{"node node-2", "nope.pub"}},
		{"same key", func(s *GenesisSpec) { s.Nodes[1].PubFile = s.Nodes[0].PubFile }, []string{"is node node-1's key too"}},
		{"same addr", func(s *GenesisSpec) { s.Nodes[1].Addr = s.Nodes[0].Addr }, []string{"is node node-1's too"}},
		{"all at once", func(s *GenesisSpec) {
			s.Nodes[0].Addr = "x"
			s.Admins[0].PubFile = filepath.Join(root, "ghost.pub")
		}, []string{"node node-1: address", "admin ghost:"}},
		{"validate", func(s *GenesisSpec) { s.ChainID = "no spaces"; s.Nodes[1].ID = "node-1" }, []string{`chain_id "no spaces"`, `duplicate id "node-1"`}},
		{"admin key as node key", func(s *GenesisSpec) {
			k, _ := device.GenerateKey(ledger.EdDSA)
			device.WriteKeyPair(filepath.Join(root, "ed"), k)
			s.Nodes[0].PubFile = filepath.Join(root, "ed.pub")
		}, []string{"node keys must be ECDSA P-256"}},
	}
	for _, c := range cases {
		s := spec
		s.Nodes = append([]NodeSpec(nil), spec.Nodes...)
		s.Admins = append([]AdminSpec(nil), spec.Admins...)
		c.edit(&s)
		_, err := NewGenesis(s)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", c.name, err, w)
			}
		}
	}
}

func TestCheckHostPort(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"127.0.0.1:7001", true},
		{"[2001:db8::1]:7001", true},
		{"gw1.example.net:7001", true},
		{"gw1.example.net.:7001", true},
		{"localhost:1", true},
		{"localhost:65535", true},
		{"localhost:65536", false},
		{"localhost:0", false},
		{"localhost:http", false},
		{"localhost", false},
		{":7001", false},
		{"2001:db8::1:7001", false},
		{"-gw.example:7001", false},
		{"gw..example:7001", false},
		{"gw_1:7001", false},
	} {
		if err := checkHostPort(c.in); (err == nil) != c.ok {
			t.Errorf("%q: %v, want ok=%v", c.in, err, c.ok)
		}
	}
}

// TestJoinAsAdded: a node key the genesis does not name joins with an id
// as a gateway a member change adds later: the id goes to NodeIDFile,
// which the start reads back; a genesis node's id is refused.
func TestJoinAsAdded(t *testing.T) {
	root, spec := newCluster(t, 4)
	g, err := NewGenesis(spec)
	if err != nil {
		t.Fatal(err)
	}
	gpath := filepath.Join(root, "genesis.json")
	if err := WriteGenesis(gpath, g, false); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "node-5")
	if _, err := InitKey(dir, config.Dev().Signer, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Join(dir, gpath, "node-2", config.Dev().Signer, nil); !errors.Is(err, ErrNotMember) {
		t.Fatalf("joined as a genesis node's id: %v", err)
	}
	_, id, err := Join(dir, gpath, "node-5", config.Dev().Signer, nil)
	if err != nil || id != "node-5" {
		t.Fatalf("Join as node-5: %q, %v", id, err)
	}
	signer, err := OpenNodeKey(config.Dev().Signer, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer signer.Close()
	if id, err := findMember(dir, g, signer); err != nil || id != "node-5" {
		t.Fatalf("findMember: %q, %v", id, err)
	}
	m, err := ledger.NewMembers(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkMember(m, "node-5", signer); err != nil {
		t.Errorf("not named yet: %v", err)
	}
	if err := checkMember(m, "node-1", signer); err == nil {
		t.Error("a member's id with another key accepted")
	}
}
