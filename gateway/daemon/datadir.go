package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/tpm"
)

// Files in the data directory.
const (
	GenesisFile  = "genesis.json"
	AdminKeyFile = "admin.key"
	BlocksDir    = "blocks"
	BlobsDir     = "blobs" // sealed configuration blobs, by SHA-256
	IndexFile    = "index.db"
	SnapshotsDir = "snapshots" // state snapshots (gateway/snapshot)
	// NodeKeyFile is the node key (signer.key_file's default); NodePubFile
	// is its public key, which InitKey writes for the genesis builder.
	NodeKeyFile = "node.key"
	NodePubFile = "node.pub"
)

// InitOptions say how to create a new single-node chain.
type InitOptions struct {
	ChainID  string // empty: "dev-" and 8 random hex digits
	NodeID   string // empty: "node-1"
	AdminID  string // empty: "admin"
	AdminKey string // where to write the admin's private key; empty: DataDir/admin.key
	// Signer says where the node key goes: the TPM, or (explicitly) a
	// software key file under DataDir.
	Signer config.Signer
	Logger *slog.Logger // may be nil
}

// ErrInitialized reports a data directory that already holds a genesis.
var ErrInitialized = errors.New("daemon: data directory already initialized")

// Init creates dir with a node key (in the TPM, or a software key file),
// an admin key and a single-node genesis. It refuses to touch a directory
// with a genesis.
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
	if o.Signer.Kind == "" {
		o.Signer = config.Dev().Signer
	}
	gpath := filepath.Join(dir, GenesisFile)
	if _, err := os.Stat(gpath); err == nil {
		return nil, fmt.Errorf("%w: %s exists", ErrInitialized, gpath)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("daemon: create data dir: %w", err)
	}
	node, err := CreateNodeKey(o.Signer, dir, o.Logger)
	if err != nil {
		return nil, err
	}
	defer node.Close()
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

// ErrKeyExists reports a data directory that already holds a node key.
var ErrKeyExists = errors.New("daemon: node key already exists")

// ErrNotMember reports a genesis that does not name this node's key.
var ErrNotMember = errors.New("daemon: node key is not in the genesis")

// InitKey creates dir holding only a node key (software), for a node that
// joins a chain whose genesis is built elsewhere (see Join). The public key
// goes to dir/node.pub as a PEM SubjectPublicKeyInfo, the format of the
// NAME.pub of `device keygen`; it returns that key's DER. It refuses a
// directory that holds a genesis or a node key.
func InitKey(dir string, signer config.Signer, logger *slog.Logger) ([]byte, error) {
	gpath := filepath.Join(dir, GenesisFile)
	if _, err := os.Stat(gpath); err == nil {
		return nil, fmt.Errorf("%w: %s exists", ErrInitialized, gpath)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("daemon: create data dir: %w", err)
	}
	node, err := CreateNodeKey(signer, dir, logger)
	if err != nil {
		return nil, err
	}
	defer node.Close()
	der, err := ledger.MarshalPublicKey(node)
	if err != nil {
		return nil, err
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := writeFileAtomic(filepath.Join(dir, NodePubFile), pub, 0o644); err != nil {
		return nil, err
	}
	return der, nil
}

// Join installs the genesis file at genesisPath as dir's genesis. dir must
// hold a node key (InitKey) and no genesis; the genesis must be valid and
// name the node key among its nodes. The file is copied byte for byte and
// atomically, so every node of the chain holds the same genesis.json. Join
// returns the genesis and this node's id in it.
//
// With as not empty, a node key the genesis does not name joins as node
// as: a gateway that a member change (cluster.reconfig) is to add, which
// follows the chain until the change names it with its key; its id goes
// to NodeIDFile.
func Join(dir, genesisPath, as string, s config.Signer, logger *slog.Logger) (*ledger.Genesis, string, error) {
	gpath := filepath.Join(dir, GenesisFile)
	if _, err := os.Stat(gpath); err == nil {
		return nil, "", fmt.Errorf("%w: %s exists", ErrInitialized, gpath)
	}
	signer, err := OpenNodeKey(s, dir, logger)
	if errors.Is(err, tpm.ErrNoKey) {
		return nil, "", fmt.Errorf("%w: run `ledgergate init --data %s --node-id ID` first and have its %s put in the genesis", err, dir, NodePubFile)
	}
	if err != nil {
		return nil, "", err
	}
	defer signer.Close()
	kpath := signer.Describe()
	b, err := os.ReadFile(genesisPath)
	if err != nil {
		return nil, "", fmt.Errorf("daemon: read genesis: %w", err)
	}
	g, err := ledger.ParseGenesis(b)
	if err != nil {
		return nil, "", fmt.Errorf("daemon: genesis %s: %w", genesisPath, err)
	}
	id, err := findNode(g, signer)
	if err != nil && as != "" && len(g.Nodes) > 1 {
		// A gateway a member change adds (`ledgergate cluster add`):
		// it follows the chain from the genesis nodes until the change
		// names it with this key.
		if _, taken := g.Node(as); taken {
			return nil, "", fmt.Errorf("%w: %s is a genesis node with another key: a gateway added later needs a new id", ErrNotMember, as)
		}
		if !ledger.ValidID(as) {
			return nil, "", fmt.Errorf("daemon: invalid node id %q", as)
		}
		if err := writeFileAtomic(filepath.Join(dir, NodeIDFile), []byte(as+"\n"), 0o644); err != nil {
			return nil, "", err
		}
		id, err = as, nil
	} else if err == nil && as != "" && as != id {
		return nil, "", fmt.Errorf("%w: the node key is genesis node %s's, not %s's", ErrNotMember, id, as)
	}
	if err != nil {
		der, _ := ledger.MarshalPublicKey(signer) // findNode read the same key
		nodes := make([]string, len(g.Nodes))
		for i, n := range g.Nodes {
			nodes[i] = n.ID + " " + KeyFingerprint(n.PublicKey)
		}
		return nil, "", fmt.Errorf("%w: the node key (%s) is key %s, chain %s has nodes %s: run `ledgergate init --genesis` in the data directory whose %s went into the genesis, or have the genesis rebuilt with %s",
			ErrNotMember, kpath, KeyFingerprint(der), g.ChainID, strings.Join(nodes, ", "),
			NodePubFile, filepath.Join(dir, NodePubFile))
	}
	if err := writeFileAtomic(gpath, b, 0o644); err != nil {
		return nil, "", err
	}
	return g, id, nil
}

// KeyFingerprint is the hex SHA-256 of a DER SubjectPublicKeyInfo, as the
// API reports a device key's fingerprint: for comparing keys out of band.
func KeyFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
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
	return blog.Height(), nil
}

// ExplainLogError adds to a *ledger.CorruptError in err what the operator
// of the gateway in dir can do; other errors are returned as they are.
// cluster says whether the chain has other gateways to fetch blocks from.
func ExplainLogError(err error, dir string, cluster bool) error {
	var ce *ledger.CorruptError
	if !errors.As(err, &ce) {
		return err
	}
	blocks := filepath.Join(dir, BlocksDir)
	seg := filepath.Join(blocks, ce.Segment)
	var b strings.Builder
	fmt.Fprintf(&b, "the block log is damaged at block %d (%s, offset %d); the gateway does not start on it, "+
		"as it never drops a block that may have been acknowledged. First keep a copy of %s. Then either restore the data directory from a backup, or ",
		ce.Height, seg, ce.Offset, blocks)
	cut := fmt.Sprintf("cut the log before block %d (`truncate -s %d %s`, and move aside the segments after %s) and start the gateway", ce.Height, ce.Offset, seg, ce.Segment)
	if cluster {
		fmt.Fprintf(&b, "%s: it gets block %d and those after it back from its peers, certified", cut, ce.Height)
	} else {
		fmt.Fprintf(&b, "%s: a single gateway then loses block %d and every block after it, records that devices were told were committed", cut, ce.Height)
	}
	return fmt.Errorf("%w\n%s", err, b.String())
}
