package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/tpm"
)

// Files in the data directory.
const (
	GenesisFile  = "genesis.json"
	AdminKeyFile = "admin.key"
	BlocksDir    = "blocks"
	IndexFile    = "index.db"
)

// InitOptions say how to create a new single-node chain.
type InitOptions struct {
	ChainID  string // empty: "dev-" and 8 random hex digits
	NodeID   string // empty: "node-1"
	AdminID  string // empty: "admin"
	AdminKey string // where to write the admin's private key; empty: DataDir/admin.key
	KeyFile  string // node key file; relative to DataDir
}

// ErrInitialized reports a data directory that already holds a genesis.
var ErrInitialized = errors.New("daemon: data directory already initialized")

// Init creates dir with a node key (software), an admin key and a
// single-node genesis. It refuses to touch a directory with a genesis.
func Init(dir string, o InitOptions) (*ledger.Genesis, error) {
	if o.ChainID == "" {
		var b [4]byte
		rand.Read(b[:])
		o.ChainID = "dev-" + hex.EncodeToString(b[:])
	}
	if o.NodeID == "" {
		o.NodeID = "node-1"
	}
	if o.AdminID == "" {
		o.AdminID = "admin"
	}
	if o.AdminKey == "" {
		o.AdminKey = filepath.Join(dir, AdminKeyFile)
	}
	if o.KeyFile == "" {
		o.KeyFile = "node.key"
	}
	gpath := filepath.Join(dir, GenesisFile)
	if _, err := os.Stat(gpath); err == nil {
		return nil, fmt.Errorf("%w: %s exists", ErrInitialized, gpath)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("daemon: create data dir: %w", err)
	}
	node, err := tpm.CreateSoftwareKey(keyPath(dir, o.KeyFile))
	if err != nil {
		return nil, err
	}
	admin, err := device.GenerateKey(ledger.ES256)
	if err != nil {
		return nil, err
	}
	if err := device.WriteKeyPair(o.AdminKey, admin); err != nil {
		return nil, err
	}
	nodePub, err := ledger.MarshalPublicKey(node)
	if err != nil {
		return nil, err
	}
	adminPub, err := ledger.MarshalPublicKey(admin)
	if err != nil {
		return nil, err
	}
	g := &ledger.Genesis{
		ChainID: o.ChainID,
		Time:    time.Now().UnixMilli(),
		Nodes:   []ledger.Node{{ID: o.NodeID, PublicKey: nodePub}},
		Admins:  []ledger.Admin{{ID: o.AdminID, PublicKey: adminPub}},
		Params:  ledger.Params{MaxTxBytes: ledger.DefaultMaxTxBytes},
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	js, err := g.JSON()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(gpath, js, 0o644); err != nil {
		return nil, err
	}
	return g, nil
}

// keyPath resolves a key file relative to the data directory.
func keyPath(dir, file string) string {
	if filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(dir, file)
}

// LoadGenesis reads dir's genesis.
func LoadGenesis(dir string) (*ledger.Genesis, error) {
	path := filepath.Join(dir, GenesisFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("daemon: no genesis at %s: run `ledgergate init --data %s` first (or `ledgergate run --dev`)", path, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("daemon: read genesis: %w", err)
	}
	g, err := ledger.ParseGenesis(b)
	if err != nil {
		return nil, fmt.Errorf("daemon: genesis %s: %w", path, err)
	}
	return g, nil
}

// writeFileAtomic writes data to path through a temporary file, fsyncs it,
// renames it into place and fsyncs the directory.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("daemon: create %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("daemon: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("daemon: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("daemon: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("daemon: rename %s: %w", tmp, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("daemon: open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("daemon: sync dir: %w", err)
	}
	return nil
}

// Reindex rebuilds dir's index from its block log. The gateway must be
// stopped (the log's lock says so if it is not). It returns the height.
func Reindex(ctx context.Context, dir string, logger *slog.Logger) (uint64, error) {
	blog, err := ledger.OpenLog(filepath.Join(dir, BlocksDir), ledger.LogOptions{})
	if err != nil {
		return 0, err
	}
	defer blog.Close()
	idx, err := index.Open(filepath.Join(dir, IndexFile))
	if err != nil {
		return 0, err
	}
	defer idx.Close()
	if err := idx.Reset(); err != nil {
		return 0, err
	}
	if err := CatchUpIndex(ctx, idx, blog, logger); err != nil {
		return 0, err
	}
	return blog.Len(), nil
}
