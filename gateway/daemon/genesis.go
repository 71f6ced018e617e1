package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// GenesisSpec describes the genesis of a new chain of several nodes.
type GenesisSpec struct {
	ChainID string
	Nodes   []NodeSpec
	Admins  []AdminSpec
	Time    time.Time
}

// NodeSpec is a genesis node: its id, the host:port its peers dial, and
// the file holding its public key (the node.pub of InitKey).
type NodeSpec struct {
	ID      string
	Addr    string
	PubFile string
}

// AdminSpec is a genesis admin and its public key file (the NAME.pub of
// `device keygen`); an empty ID is the file's base name without ".pub".
type AdminSpec struct {
	ID      string
	PubFile string
}

// NewGenesis reads the key files of s and builds its genesis, with the
// default parameters. It reports every problem at once: unreadable key
// files, bad addresses, two nodes with one key or one address, and
// whatever ledger.Genesis.Validate finds.
func NewGenesis(s GenesisSpec) (*ledger.Genesis, error) {
	var errs []error
	g := &ledger.Genesis{
		ChainID: s.ChainID,
		Time:    s.Time.UnixMilli(),
		Params:  ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
	}
	keys := map[string]string{}  // DER -> node id
	addrs := map[string]string{} // address -> node id
	for _, n := range s.Nodes {
		var hints []string // none: seed discovery finds the node (docs/seeds.md)
		if n.Addr != "" {
			hints = []string{n.Addr}
			if err := checkHostPort(n.Addr); err != nil {
				errs = append(errs, fmt.Errorf("daemon: node %s: address %q: %w", n.ID, n.Addr, err))
			} else if other, ok := addrs[n.Addr]; ok {
				errs = append(errs, fmt.Errorf("daemon: node %s: address %s is node %s's too", n.ID, n.Addr, other))
			}
			addrs[n.Addr] = n.ID
		}
		der, err := device.LoadPublicKey(n.PubFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("daemon: node %s: %w", n.ID, err))
		} else if other, ok := keys[string(der)]; ok {
			errs = append(errs, fmt.Errorf("daemon: node %s: %s is node %s's key too", n.ID, n.PubFile, other))
		}
		keys[string(der)] = n.ID
		g.Nodes = append(g.Nodes, ledger.Node{ID: n.ID, PublicKey: der, Addrs: hints})
	}
	for _, a := range s.Admins {
		if a.ID == "" {
			a.ID = strings.TrimSuffix(filepath.Base(a.PubFile), ".pub")
		}
		der, err := device.LoadPublicKey(a.PubFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("daemon: admin %s: %w", a.ID, err))
		}
		g.Admins = append(g.Admins, ledger.Admin{ID: a.ID, PublicKey: der})
	}
	// A key that could not be read would be reported again, as invalid.
	if len(errs) == 0 {
		if err := g.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return g, nil
}

// checkHostPort accepts host:port with an IP address or a DNS name and a
// port from 1 to 65535.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want HOST:PORT, e.g. 192.0.2.1:7001, [2001:db8::1]:7001 or gw1.example.net:7001")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("host %q: want an IP address or a DNS name", host)
	}
	return nil
}

// validHostname reports whether h is a DNS name: dot-separated labels of
// 1 to 63 letters, digits and hyphens, not starting or ending with a hyphen.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// ErrExists reports an output file that is already there.
var ErrExists = errors.New("daemon: file exists")

// WriteGenesis writes g's genesis file to path atomically. Unless
// overwrite is set, it refuses an existing file.
func WriteGenesis(path string, g *ledger.Genesis, overwrite bool) error {
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, path)
		}
	}
	js, err := g.JSON()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, js, 0o644)
}
