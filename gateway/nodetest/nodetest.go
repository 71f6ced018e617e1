package nodetest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/bridge/device"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/front"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/replica"
	"github.com/ledgergate/ledgergate/gateway/state"
)

// Options configure a test node. The zero value is a working node.
type Options struct {
	Dir        string        // data directory; default t.TempDir()
	ChainID    string        // default "test"
	MaxTxBytes int           // genesis max_tx_bytes; default ledger.DefaultMaxTxBytes
	Logger     *slog.Logger  // default: discard
	MaxDelay   time.Duration // how long a block waits for more txs; default 1ms
	// OnCommit, if not nil, is registered as a commit listener (chain.OnCommit):
	// it is called with every committed block, on the commit path.
	OnCommit func(*ledger.Block, []*ledger.Tx)
}

// Node is a running single-node chain.
type Node struct {
	Chain   *chain.Chain
	Genesis *ledger.Genesis
	Dir     string
	Admin   crypto.Signer // signs as "admin", the genesis' only admin

	nodeKey crypto.Signer
	opts    Options
	log     *ledger.Log
	idx     *index.Index
	cancel  context.CancelFunc
	done    chan error
}

// AdminID is the id of the genesis' admin.
const AdminID = "admin"

// timeout bounds every wait of this package for the chain.
const timeout = 10 * time.Second

// Start creates a genesis with one P-256 node key and one P-256 admin and
// runs a node on it. The node stops when the test ends.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.ChainID == "" {
		opts.ChainID = "test"
	}
	if opts.MaxTxBytes == 0 {
		opts.MaxTxBytes = ledger.DefaultMaxTxBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = time.Millisecond
	}
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nodePub, err := ledger.MarshalPublicKey(nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	adminPub, err := ledger.MarshalPublicKey(admin)
	if err != nil {
		t.Fatal(err)
	}
	g := &ledger.Genesis{
		ChainID: opts.ChainID,
		Time:    time.Now().UnixMilli(),
		Nodes:   []ledger.Node{{ID: "node-1", PublicKey: nodePub}},
		Admins:  []ledger.Admin{{ID: AdminID, PublicKey: adminPub}},
		Params:  ledger.Params{MaxTxBytes: opts.MaxTxBytes},
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	return run(t, &Node{Genesis: g, Dir: opts.Dir, Admin: admin, nodeKey: nodeKey, opts: opts})
}

// run opens n's directory, replays the log, brings the index up to it and
// runs the chain.
func run(t testing.TB, n *Node) *Node {
	t.Helper()
	st, err := state.New(n.Genesis)
	if err != nil {
		t.Fatal(err)
	}
	n.log, err = ledger.OpenLog(filepath.Join(n.Dir, "blocks"), ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chain.Replay(n.log, st, nil); err != nil {
		n.log.Close()
		t.Fatal(err)
	}
	n.idx, err = index.Open(filepath.Join(n.Dir, "index.db"))
	if err != nil {
		n.log.Close()
		t.Fatal(err)
	}
	read := func(h uint64) (*ledger.Block, error) {
		data, err := n.log.ReadHeight(h)
		if err != nil {
			return nil, err
		}
		return ledger.DecodeBlock(data)
	}
	if err := index.Rebuild(context.Background(), n.idx, n.log.Height(), read, nil); err != nil {
		n.idx.Close()
		n.log.Close()
		t.Fatal(err)
	}
	batch := chain.DefaultBatch
	batch.MaxDelay = n.opts.MaxDelay
	rep, err := replica.New(replica.Config{
		Self: "node-1", Genesis: n.Genesis, State: st, Log: n.log, Signer: n.nodeKey, Dir: filepath.Join(n.Dir, "pbft"),
		Batch: batch, Tick: batch.MaxDelay, Logger: n.opts.Logger.With("component", "pbft"),
	})
	if err != nil {
		n.idx.Close()
		n.log.Close()
		t.Fatal(err)
	}
	n.Chain = chain.New(chain.Deps{
		State: st, Log: n.log, Index: n.idx, Orderer: rep,
		Logger: n.opts.Logger.With("component", "chain"),
	})
	if n.opts.OnCommit != nil {
		n.Chain.OnCommit(n.opts.OnCommit)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.Chain.Run(ctx) }()
	t.Cleanup(func() { n.Stop(t) })
	return n
}

// Stop stops the chain and closes its files. It is idempotent.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	if err := <-n.done; err != nil {
		t.Errorf("nodetest: chain stopped with: %v", err)
	}
	if err := n.idx.Close(); err != nil {
		t.Errorf("nodetest: close index: %v", err)
	}
	if err := n.log.Close(); err != nil {
		t.Errorf("nodetest: close block log: %v", err)
	}
}

// Restart stops n and starts a new node on the same directory, genesis
// and keys, as a gateway restart does: the state is rebuilt from the
// block log. n must not be used afterwards.
func (n *Node) Restart(t testing.TB) *Node {
	t.Helper()
	n.Stop(t)
	return run(t, &Node{Genesis: n.Genesis, Dir: n.Dir, Admin: n.Admin, nodeKey: n.nodeKey, opts: n.opts})
}

// Enroll generates a device key for alg, enrolls it as device id with an
// admin tx, and returns the key once the enrollment is committed.
func (n *Node) Enroll(t testing.TB, id string, alg ledger.Alg) crypto.Signer {
	t.Helper()
	key, err := device.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ledger.MarshalPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	n.admin(t, &ledger.Body{Kind: ledger.KindEnroll, Enroll: &ledger.Enroll{DeviceID: id, PublicKey: pub}})
	return key
}

// Revoke revokes device id and returns once the revocation is committed.
func (n *Node) Revoke(t testing.TB, id string) {
	t.Helper()
	n.admin(t, &ledger.Body{Kind: ledger.KindRevoke, Revoke: &ledger.Revoke{DeviceID: id, Reason: "test"}})
}

// admin signs body as the admin and commits it.
func (n *Node) admin(t testing.TB, body *ledger.Body) {
	t.Helper()
	body.ChainID = n.Genesis.ChainID
	env, err := ledger.SignTx(n.Admin, AdminID, body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := n.Chain.Submit(ctx, env); err != nil {
		t.Fatalf("nodetest: %s %s: %v", body.Kind, body.Subject(), err)
	}
}

// NodeKey is the key of the genesis' only node, "node-1": it signs the
// node's own txs (node.heartbeat, node.snapshot).
func (n *Node) NodeKey() crypto.Signer { return n.nodeKey }

// Directory is the node's registry as front ends see it.
func (n *Node) Directory() bridge.Directory { return front.Directory(n.Chain.State(), nil) }

// Committer is the node's chain as front ends see it.
func (n *Node) Committer() bridge.Committer { return front.Committer(n.Chain, nil) }

// Index is the node's index.
func (n *Node) Index() *index.Index { return n.idx }
