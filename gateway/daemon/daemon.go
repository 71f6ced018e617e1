package daemon

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/ledgergate/ledgergate/bridge"
	"github.com/ledgergate/ledgergate/bridge/coap"
	"github.com/ledgergate/ledgergate/bridge/mqtt"
	"github.com/ledgergate/ledgergate/gateway/api"
	"github.com/ledgergate/ledgergate/gateway/blob"
	"github.com/ledgergate/ledgergate/gateway/chain"
	"github.com/ledgergate/ledgergate/gateway/clock"
	"github.com/ledgergate/ledgergate/gateway/cluster"
	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/directory"
	"github.com/ledgergate/ledgergate/gateway/egress"
	"github.com/ledgergate/ledgergate/gateway/front"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/replica"
	"github.com/ledgergate/ledgergate/gateway/retention"
	"github.com/ledgergate/ledgergate/gateway/snapshot"
	"github.com/ledgergate/ledgergate/gateway/state"
	"github.com/ledgergate/ledgergate/tpm"
	"github.com/ledgergate/ledgergate/webui"
)

// Options configure a Daemon.
type Options struct {
	Config  config.Config
	Version string
	Logger  *slog.Logger
	// Starting, if not nil, is called during the start, before Ready, with
	// a line that says what the start is doing: when a step that can take
	// long begins (opening the index, which may upgrade it; opening,
	// replaying or indexing the block log; joining from a peer's
	// snapshot), and at least every ReportEvery while it runs and makes
	// progress (systemd's STATUS= and EXTEND_TIMEOUT_USEC= hook in here).
	Starting func(status string)
	// Ready, if not nil, is called once every listener is bound, with the
	// API address (systemd's READY=1 hooks in here).
	Ready func(apiAddr string)
}

// Daemon is one running gateway.
type Daemon struct {
	opts   Options
	logger *slog.Logger
	start  *reporter // the start's long steps
}

// New validates the options; it does no I/O.
func New(o Options) (*Daemon, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("daemon: config: %w", err)
	}
	if o.Logger == nil {
		return nil, errors.New("daemon: no logger")
	}
	return &Daemon{opts: o, logger: o.Logger, start: newReporter(o.Logger, o.Starting)}, nil
}

// gateway is a gateway's parts, built and wired (build) with their
// commit listeners registered on the chain (listen), then run (run). Its
// closers undo the build in reverse, also after a partial one.
type gateway struct {
	// reconfigured wakes the heartbeat when a member change commits;
	// committed wakes the peer set's follower at every block.
	reconfigured, committed chan struct{}
	cfg                     config.Config
	g                       *ledger.Genesis
	nodeID                  string
	claimer                 *front.Claimer // enrolls devices of approved batches at their first CONNECT
	signer                  *NodeKey
	// key is the node key as every signature uses it: a TPM that goes
	// away makes the gateway not ready and silent, not stop (issue 20).
	key *keyWatch

	idx  *index.Index
	blog *ledger.Log
	st   *state.State
	reg  *prometheus.Registry

	snaps   *snapshot.Store // nil: snapshots off, or their directory unusable
	snapW   *snapshot.Writer
	snapLog *slog.Logger
	started startInfo // where the start took the state from

	tr          *cluster.Transport // nil for a single node
	behindPeers func() bool        // nil: a single node is never behind
	rep         *replica.Replica
	chain       *chain.Chain
	eg          *egress.Manager // nil without connectors
	pruner      *retention.Pruner
	dir         *directory.Directory
	mqtt        *mqtt.Server // nil without a listener
	coap        *coap.Server // likewise
	api         *api.Server
	ui          *webui.Server // nil without the dashboard
	seedSt      *seedState    // nil without seeds

	// The chain, and with it the replica, outlive the HTTP server so that
	// submits in flight at shutdown can still get their receipts.
	chainCtx  context.Context
	stopChain context.CancelFunc
	// Background work of the directory (blob fetches) and the dashboard
	// stops with the chain.
	bgCtx  context.Context
	stopBg context.CancelFunc

	closers []func()
}

// onClose adds f to what close undoes.
func (gw *gateway) onClose(f func()) { gw.closers = append(gw.closers, f) }

// close undoes the build and the start, in reverse order.
func (gw *gateway) close() {
	for i := len(gw.closers) - 1; i >= 0; i-- {
		gw.closers[i]()
	}
	gw.closers = nil
}

// Run starts the gateway and blocks until ctx ends or a part fails. It
// builds the gateway's parts (build), registers their commit listeners
// on the chain (listen) and runs them (run).
func (d *Daemon) Run(ctx context.Context) error {
	clock.WatchTestOffset(ctx, d.logger)
	gw := &gateway{cfg: d.opts.Config, reconfigured: make(chan struct{}, 1), committed: make(chan struct{}, 1)}
	defer gw.close()
	gw.chainCtx, gw.stopChain = context.WithCancel(context.WithoutCancel(ctx))
	gw.onClose(gw.stopChain)
	gw.bgCtx, gw.stopBg = context.WithCancel(context.WithoutCancel(ctx))
	gw.onClose(gw.stopBg)
	if err := d.build(ctx, gw); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil // stopped while joining: nothing was written
		}
		return err
	}
	gw.listen()
	return d.run(ctx, gw)
}

// build builds and wires the gateway's parts; it binds no listener.
// ctx ends a join from a snapshot (the only step that waits on peers).
func (d *Daemon) build(ctx context.Context, gw *gateway) error {
	if err := d.openNode(gw); err != nil {
		return err
	}
	if err := d.openStorage(ctx, gw); err != nil {
		return err
	}
	if err := d.buildChain(gw); err != nil {
		return err
	}
	return d.buildFronts(gw)
}

// openNode loads the genesis (making a single-node chain on a first
// start) and opens the node key.
func (d *Daemon) openNode(gw *gateway) error {
	dir := gw.cfg.DataDir
	// The first start of a gateway without a chain makes its node key (in
	// the TPM unless a software key is configured) and a single-node
	// chain, so an installed appliance works at once. To join a cluster
	// instead, stop it, empty the data directory and run init --genesis.
	if _, err := os.Stat(filepath.Join(dir, GenesisFile)); errors.Is(err, os.ErrNotExist) {
		g, err := Init(dir, InitOptions{Signer: gw.cfg.Signer, Logger: d.logger})
		if err != nil {
			return err
		}
		d.logger.Info("created a single-node chain (to join a cluster instead: stop, empty the data directory, ledgergate init --genesis)",
			"data", dir, "chain_id", g.ChainID, "admin_key", filepath.Join(dir, AdminKeyFile))
	}
	g, err := LoadGenesis(dir)
	if err != nil {
		return err
	}
	gw.g = g
	signer, err := OpenNodeKey(gw.cfg.Signer, dir, d.logger.With("component", "tpm"))
	if err != nil {
		return err
	}
	gw.onClose(func() { signer.Close() })
	gw.signer = signer
	if gw.nodeID, err = findMember(dir, g, signer); err != nil {
		return err
	}
	if signer.Hardware() {
		d.logger.Info("node key", "key", signer.Describe())
	} else {
		d.logger.Warn("node key is a software key, not hardware-backed", "key", signer.Describe())
	}
	gw.key = newKeyWatch(signer, d.logger.With("component", "nodekey"))
	return nil
}

// openStorage opens the index and the block log, and brings the state
// and the index up to the log.
func (d *Daemon) openStorage(ctx context.Context, gw *gateway) error {
	dir, g := gw.cfg.DataDir, gw.g
	// The index first: it holds only blocks the log had made durable, so
	// the log must not take any of them for a torn tail.
	var idx *index.Index
	err := d.start.during("opening the index", func(retitle func(string)) error {
		var err error
		idx, err = index.OpenWith(filepath.Join(dir, IndexFile), index.Options{Upgrading: func(from, to int) {
			d.logger.Info("upgrading the index's schema; on a large index this takes a while", "from", from, "to", to)
			retitle(fmt.Sprintf("upgrading the index's schema from version %d to %d", from, to))
		}})
		return err
	})
	if err != nil {
		return fmt.Errorf("daemon: %w (it is rebuildable: delete it and restart)", err)
	}
	gw.onClose(func() { idx.Close() })
	gw.idx = idx
	indexed, err := idx.Height()
	if err != nil {
		return fmt.Errorf("daemon: %w (it is rebuildable: delete it and restart)", err)
	}
	if m := int64(gw.cfg.Retention.MaxBytes); m > 0 {
		// The WAL's share of a retention budget: an eighth.
		if err := idx.LimitWAL(m / 8); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
	}
	// Segments sized to a retention budget (only sealed segments are
	// pruned); a log written with other sizes reads as it is.
	var blog *ledger.Log
	// Opening reads every segment and checks every record's CRC: ~300 MB
	// at 1M txs, minutes for a large log read cold from an SD card.
	err = d.start.during("opening the block log", func(func(string)) error {
		var err error
		blog, err = ledger.OpenLog(filepath.Join(dir, BlocksDir), ledger.LogOptions{MinRecords: indexed, SegmentBytes: gw.cfg.Retention.SegmentBytes()})
		return err
	})
	if err != nil {
		return fmt.Errorf("daemon: open block log: %w", ExplainLogError(err, dir, len(g.Nodes) > 1))
	}
	gw.onClose(func() { blog.Close() })
	gw.blog = blog
	if rep := blog.Repair(); rep != nil {
		d.logger.Warn("cut torn tail of block log: a crash interrupted an append that was never acknowledged",
			"segment", rep.Segment, "offset", rep.Offset, "bytes", rep.Bytes, "block", rep.Height)
	}
	// A cluster gateway with an empty block log (new, or its disk
	// replaced) starts from a peer's certified snapshot if one serves it.
	if base, _ := blog.Base(); len(g.Nodes) > 1 && gw.cfg.Cluster.JoinFromSnapshot && base == 0 && blog.Len() == 0 {
		err := d.start.during("joining: fetching a certified snapshot from a peer", func(func(string)) error {
			_, err := d.joinFromSnapshot(ctx, gw)
			return err
		})
		if err != nil {
			return err
		}
	}
	if err := d.loadState(gw); err != nil {
		return err
	}
	if err := checkMember(gw.st.Members(), gw.nodeID, gw.signer); err != nil {
		return err
	}
	return catchUpIndex(context.Background(), idx, blog, d.logger, d.start)
}

// startInfo says how a start built its state.
type startInfo struct {
	snapshot uint64 // height of the snapshot loaded; 0: none
	replayed uint64 // blocks replayed after it
	took     time.Duration
}

// loadState builds the state: from the newest usable snapshot (see
// gateway/snapshot) and the blocks after it, else by replaying the whole
// block log. A snapshot is never fatal: one that is unusable, or whose
// later blocks do not apply, is logged and the start falls back.
func (d *Daemon) loadState(gw *gateway) error {
	dir, g, blog := gw.cfg.DataDir, gw.g, gw.blog
	start := time.Now()
	logger := d.logger.With("component", "snapshot")
	pol := snapshotPolicy(gw.cfg)
	base, _ := blog.Base()
	if pol != (snapshot.Policy{}) || base > 0 {
		store, err := snapshot.Open(filepath.Join(dir, SnapshotsDir))
		switch {
		case err != nil && base > 0:
			// A log that starts from a snapshot has nothing else to
			// start from.
			return fmt.Errorf("daemon: the block log starts after block %d (the gateway joined from a snapshot), and its snapshots are not usable: %w", base, err)
		case err != nil:
			logger.Warn("snapshots off: their directory is not usable", "err", err)
		default:
			gw.snaps = store
			gw.snaps.SpareBase(base) // the log cannot be replayed or verified without it
		}
	}
	progress := func(done, total uint64) { d.start.blocks("replaying the block log", done, total) }
	var ld snapshot.Loaded
	var err error
	if gw.snaps != nil {
		gw.st, ld, err = snapshot.Load(gw.snaps, g, blog, logger)
	} else {
		gw.st, err = state.New(g)
	}
	if err != nil {
		return err
	}
	fromTxs := gw.st.Txs()
	n, err := chain.Replay(blog, gw.st, progress)
	if err != nil && ld.Height > 0 && base > 0 {
		return fmt.Errorf("daemon: the blocks after the snapshot at %d do not apply to it, and the block log starts after block %d (the gateway joined from a snapshot), so it cannot be replayed from block 1: %w", ld.Height, base, err)
	}
	if err != nil && ld.Height > 0 {
		logger.Warn("the blocks after the snapshot do not apply to it; replaying the whole block log", "snapshot", ld.Height, "err", err)
		if gw.st, err = state.New(g); err != nil {
			return err
		}
		ld, fromTxs = snapshot.Loaded{}, 0
		n, err = chain.Replay(blog, gw.st, progress)
	}
	if err != nil {
		return ExplainLogError(err, dir, len(g.Nodes) > 1)
	}
	gw.started = startInfo{snapshot: ld.Height, replayed: n, took: time.Since(start)}
	height, _ := gw.st.Tip()
	d.logger.Info("state ready", "height", height, "snapshot", ld.Height, "replayed_blocks", n, "took", gw.started.took.Round(time.Millisecond))
	gw.snapLog = logger
	if gw.snaps != nil {
		gw.snaps.Spare(gw.st.CertifiedHeight) // peers fetch the newest certified one
		gw.snapW = snapshot.NewWriter(gw.snaps, logger)
		// A start that replayed past a snapshot point writes one of
		// where it stands (the first start after an upgrade, or after
		// snapshots were lost), so the next start is quick.
		if pol.DueSince(ld.Height, fromTxs, height, gw.st.Txs()) {
			gw.snapW.Offer(gw.st.Snapshot(), false)
		}
	}
	return nil
}

// snapshotPolicy is the [snapshot] configuration as a snapshot.Policy.
func snapshotPolicy(cfg config.Config) snapshot.Policy {
	return snapshot.Policy{EveryBlocks: cfg.Snapshot.EveryBlocks, EveryTxs: cfg.Snapshot.EveryTxs}
}

// buildChain builds the metrics registry, the cluster transport, the
// replica, the egress connectors and the chain.
func (d *Daemon) buildChain(gw *gateway) error {
	cfg, g := gw.cfg, gw.g
	gw.reg = prometheus.NewRegistry()
	gw.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hardware := 0.0
	if gw.signer.Hardware() {
		hardware = 1
	}
	gw.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ledgergate_node_key_hardware",
		Help: "1 if the node key is held by a TPM, 0 for a software key.",
	}, func() float64 { return hardware }))
	started := gw.started
	gw.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ledgergate_start_replayed_blocks",
		Help: "Blocks of the block log this start replayed (after the snapshot it loaded, if any).",
	}, func() float64 { return float64(started.replayed) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ledgergate_start_snapshot_height",
		Help: "Height of the snapshot this start loaded its state from; 0: none.",
	}, func() float64 { return float64(started.snapshot) }))
	batch := chain.BatchConfig{
		MaxTxs: cfg.Batch.MaxTxs, MaxBytes: cfg.Batch.MaxBytes,
		MaxDelay: time.Duration(cfg.Batch.MaxDelay), MaxPending: cfg.Batch.MaxPending,
	}
	blobs, err := blob.Open(filepath.Join(cfg.DataDir, BlobsDir), maxBlobBytes)
	if err != nil {
		return err
	}
	h := &handler{blobs: blobs, snaps: gw.snaps, st: gw.st, log: gw.blog}
	var peerHeights func() map[string]uint64
	if len(g.Nodes) > 1 {
		if gw.tr, err = newTransport(g, gw.nodeID, cfg.Cluster.Listen, len(cfg.Seeds.Zones) > 0, gw.key, gw.st, h, d.logger); err != nil {
			return err
		}
		peerHeights = heights(gw.tr)
		gw.behindPeers = behind(gw.tr, gw.st)
	}
	gw.rep, err = replica.New(replica.Config{
		Self: gw.nodeID, Genesis: g, State: gw.st, Log: gw.blog, Signer: gw.key.waiting(gw.chainCtx), Dir: filepath.Join(cfg.DataDir, PBFTDir),
		Batch: batch, Tick: replica.TickFor(batch.MaxDelay), ViewChangeTimeout: time.Duration(cfg.Cluster.ViewChangeTimeout),
		Logger: d.logger.With("component", "pbft"), Transport: transportOrNil(gw.tr), Heights: peerHeights,
	})
	if err != nil {
		return err
	}
	h.r = gw.rep
	rep := gw.rep
	base, _ := gw.blog.Base()
	gw.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ledgergate_log_base_height",
		Help: "Height of the snapshot the block log starts from (the gateway joined from it); 0: the log starts at block 1.",
	}, func() float64 { return float64(base) }), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ledgergate_transferred_blocks_total",
		Help: "Blocks this gateway fetched from peers by state transfer (not ordered with them) since it started.",
	}, func() float64 { return float64(rep.Transferred()) }))
	// Egress connectors read committed blocks on goroutines of their own:
	// the commit path only wakes them.
	if gw.eg, err = newEgress(cfg, g, gw.nodeID, gw.blog, gw.idx, d.logger.With("component", "egress"), gw.reg); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if gw.eg != nil {
		if err := gw.eg.Open(); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
	}
	gw.chain = chain.New(chain.Deps{
		State: gw.st, Log: gw.blog, Index: gw.idx, Orderer: gw.rep,
		Logger: d.logger.With("component", "chain"), Registry: gw.reg,
		CommitTimeout: time.Duration(cfg.Batch.CommitTimeout), MaxPending: cfg.Batch.MaxPending,
	})
	// Storage is measured with or without a retention policy: usage is in
	// the status and the metrics either way.
	ix := filepath.Join(cfg.DataDir, IndexFile)
	gw.pruner, err = retention.New(retention.Config{
		Keep: time.Duration(cfg.Retention.Keep), MaxBytes: int64(cfg.Retention.MaxBytes), Interval: time.Duration(cfg.Retention.Interval),
		Paths: []string{filepath.Join(cfg.DataDir, BlocksDir), ix, ix + "-wal", ix + "-shm"},
	}, retention.Deps{Log: gw.blog, Index: gw.idx, Logger: d.logger.With("component", "retention"), Registry: gw.reg,
		Hold: egressHold(gw.eg)})
	if err != nil {
		return err
	}
	dd := directory.Deps{Chain: gw.chain, Index: gw.idx, Blobs: blobs, Logger: d.logger.With("component", "directory")}
	if gw.tr != nil {
		dd.Fetch = fetchBlob(gw.tr)
	}
	gw.dir = directory.New(dd)
	gw.onClose(gw.dir.Wait)
	return nil
}

// buildFronts builds what devices, operators and peers talk to: the MQTT
// and CoAP front ends, the API and the dashboard.
func (d *Daemon) buildFronts(gw *gateway) error {
	cfg, g := gw.cfg, gw.g
	var err error
	limiter := bridge.NewLimiter(bridge.DefaultMaxPendingBytes) // records waiting to commit, over all front ends
	ms := newMembership(gw.st, gw.chain)
	gw.claimer = front.NewClaimer(gw.st, gw.chain, gw.key, gw.nodeID, d.logger.With("component", "fleet"))
	gw.mqtt, err = newMQTT(cfg.MQTT, gw.chain, gw.st, gw.behindPeers, gw.dir, ms, limiter, gw.claimer, d.logger.With("component", "mqtt"), gw.reg)
	if err != nil {
		return err
	}
	gw.coap, err = newCoAP(cfg.CoAP, cfg.DataDir, gw.chain, gw.st, gw.behindPeers, gw.dir, ms, limiter, d.logger.With("component", "coap"), gw.reg)
	if err != nil {
		return err
	}
	gh := g.Hash()
	srv := api.New(api.NodeInfo{
		ChainID: g.ChainID, NodeID: gw.nodeID, GenesisHash: hex.EncodeToString(gh[:]), Version: d.opts.Version,
		KeyHardware: gw.signer.Hardware(), Key: gw.signer.Describe(), Nodes: len(g.Nodes), Quorum: g.Quorum(),
		MaxTxBytes: g.Params.MaxTxBytes,
	}, front.Ledger(gw.chain, gw.behindPeers), gw.idx, gw.reg, d.logger.With("component", "api"))
	gw.api = srv
	cstatus := clusterStatus(gw.rep, gw.tr, gw.st)
	gw.reg.MustRegister(newClusterMetrics(cstatus))
	srv.SetCluster(cstatus)
	srv.SetMembers(membersInfo(gw.st))
	srv.SetPolicy(policySource{gw.st})
	srv.SetHealth(health(gw.st, gw.rep, gw.tr, time.Duration(cfg.Batch.CommitTimeout), gw.chain.Halted, gw.key.health, gw.chain.Stalled))
	srv.SetMaxUploads(cfg.API.MaxUploads)
	srv.SetDirectory(gw.dir, gw.idx)
	srv.SetFirmware(gw.dir, gw.idx)
	srv.SetMembership(ms)
	srv.SetFleet(fleetView{gw.st, gw.claimer})
	if eg := gw.eg; eg != nil {
		srv.SetEgress(func() any { return eg.Status() })
	}
	srv.SetStorage(func() any { return gw.pruner.Status() })
	// The token store is read even when no route asks for tokens (the
	// dashboard and the CLI manage them): a corrupt one stops the start
	// rather than open the API.
	tokens, err := api.OpenTokens(filepath.Join(cfg.DataDir, api.TokensFile), d.logger.With("component", "api"))
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if gw.tr != nil && len(cfg.Seeds.Zones) > 0 {
		gw.seedSt = newSeedState(cfg.Seeds)
	}
	gw.ui, err = newWebUI(webuiDeps{cfg: cfg, g: g, api: srv, chain: gw.chain, index: gw.idx, reg: gw.reg, mqtt: gw.mqtt, seeds: gw.seedSt,
		dir: gw.dir, fleet: fleetView{gw.st, gw.claimer}, policy: policySource{gw.st}, tokens: tokens, logger: d.logger.With("component", "webui")})
	if err != nil {
		return err
	}
	if gw.ui != nil {
		srv.Mount(gw.ui)
	}
	return srv.SetAuth(authPolicy(cfg.API, tokens, gw.ui, d.logger))
}

// listen registers the commit listeners on the chain, in this order:
// the dashboard, the directory, the front ends (see frontListeners), and
// the egress connectors, which the commit path only wakes.
func (gw *gateway) listen() {
	ch := gw.chain
	if gw.ui != nil {
		ch.OnCommit(gw.ui.Committed)
	}
	woken, committed := gw.reconfigured, gw.committed
	ch.OnCommit(func(_ *ledger.Block, txs []*ledger.Tx) {
		select {
		case committed <- struct{}{}:
		default:
		}
		for _, tx := range txs {
			if tx.Body.Kind == ledger.KindReconfig {
				select {
				case woken <- struct{}{}:
				default:
				}
			}
		}
	})
	dir, ctx := gw.dir, gw.bgCtx
	ch.OnCommit(func(_ *ledger.Block, txs []*ledger.Tx) { dir.Committed(ctx, txs) })
	for _, l := range frontListeners(gw.mqtt, gw.coap, dir) {
		ch.OnCommit(l)
	}
	if eg := gw.eg; eg != nil {
		ch.OnCommit(func(*ledger.Block, []*ledger.Tx) { eg.Committed() })
	}
	if w := gw.snapW; w != nil {
		// The copy is taken here, on the commit path, while the state is
		// at this block; the writer encodes and writes it on its own
		// goroutine.
		st, pol := gw.st, snapshotPolicy(gw.cfg)
		certified := st.CertifiedHeight()
		ch.OnCommit(func(b *ledger.Block, txs []*ledger.Tx) {
			after := st.Txs()
			if pol.Due(b.Header.Height, after-uint64(len(txs)), after) {
				if sn := st.Snapshot(); sn.Height == b.Header.Height {
					w.Offer(sn, true)
				}
			}
			if h := st.CertifiedHeight(); h != certified {
				certified = h
				gw.snapLog.Info("snapshot certified", "height", h, "block", b.Header.Height)
			}
		})
	}
}

// run binds the listeners, runs every part and blocks until ctx ends or
// a part fails; then it stops them in reverse order.
func (d *Daemon) run(ctx context.Context, gw *gateway) error {
	cfg, g := gw.cfg, gw.g
	if gw.ui != nil {
		go gw.ui.Run(gw.bgCtx)
	}
	tcpLn, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("daemon: listen api: %w", err)
	}
	ln, apiURL, err := apiListener(cfg.API, tcpLn)
	if err != nil {
		tcpLn.Close()
		return err
	}
	mqttAddr := ""
	if gw.mqtt != nil {
		if err := gw.mqtt.Start(); err != nil {
			ln.Close()
			return fmt.Errorf("daemon: mqtt: %w", err)
		}
		gw.onClose(func() { gw.mqtt.Close() })
		tcpAddr, tlsAddr := gw.mqtt.Addrs()
		mqttAddr = tcpAddr
		if tlsAddr != "" {
			d.logger.Info("mqtt tls listening", "mqtts", tlsAddr)
		}
	}
	coapAddr, dtlsAddr := "", ""
	if gw.coap != nil {
		if err := gw.coap.Start(); err != nil {
			ln.Close()
			return fmt.Errorf("daemon: coap: %w", err)
		}
		gw.onClose(func() { gw.coap.Close() })
		coapAddr, dtlsAddr = gw.coap.Addrs()
	}
	hs := &http.Server{
		Handler: gw.api, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(d.logger.With("component", "http").Handler(), slog.LevelWarn),
	}
	if gw.ui != nil {
		hs.RegisterOnShutdown(gw.ui.Shutdown) // open live pages must not hold up the shutdown
	}

	go gw.key.run(gw.chainCtx)
	if w := gw.snapW; w != nil {
		wctx, stop := context.WithCancel(gw.bgCtx)
		due := make(chan attestation, 1)
		w.Written = func(height uint64, hash [32]byte, isDue bool) {
			if !isDue {
				return
			}
			select { // the newest only: a node's attestations must rise
			case <-due:
			default:
			}
			due <- attestation{height, hash}
		}
		done := make(chan struct{}, 2)
		go func() {
			defer func() { done <- struct{}{} }()
			w.Run(wctx)
		}()
		go func() {
			defer func() { done <- struct{}{} }()
			attest(wctx, due, gw.nodeID, gw.key, gw.chain, gw.snapLog)
		}()
		gw.onClose(func() { stop(); <-done; <-done })
	}
	// Retention runs beside the chain, off the commit path, and stops
	// before the log and the index close.
	prCtx, stopPruner := context.WithCancel(gw.bgCtx)
	prDone := make(chan struct{})
	go func() {
		defer close(prDone)
		gw.pruner.Run(prCtx)
	}()
	gw.onClose(func() { stopPruner(); <-prDone; gw.pruner.Close() })
	grp, gctx := errgroup.WithContext(ctx)
	var chainErr error
	chainDone := make(chan struct{})
	go func() {
		chainErr = gw.chain.Run(gw.chainCtx)
		close(chainDone)
	}()
	grp.Go(func() error {
		select {
		case <-chainDone:
			if errors.Is(chainErr, chain.ErrStorageFull) {
				// Fail-stop for writes only: the chain commits nothing
				// more and refuses txs as storage_full, while the API and
				// the dashboard answer, read-only, so an operator sees why.
				d.logger.Error("storage full: stopped committing until restarted; free space on the data directory's file system, then restart the gateway",
					"data", cfg.DataDir, "err", chainErr)
				<-gctx.Done()
				return nil
			}
			if chainErr != nil {
				return chainErr
			}
			return errors.New("daemon: chain stopped")
		case <-gctx.Done():
			return nil
		}
	})
	clusterAddr := ""
	if tr := gw.tr; tr != nil {
		disc, err := NewSeeds(cfg.Seeds, cfg.DataDir, d.logger.With("component", "seeds"))
		if err != nil {
			ln.Close()
			return err
		}
		if disc != nil {
			go discoverPeers(gw.chainCtx, disc, g, gw.nodeID, tr, gw.seedSt, d.logger.With("component", "seeds"))
		}
		go followMembers(gw.chainCtx, tr, gw.st, gw.nodeID, len(cfg.Seeds.Zones) > 0, gw.committed, d.logger.With("component", "cluster"))
		// The transport runs as long as the chain: peers need this
		// replica's votes to commit what is in flight at shutdown.
		trErr := make(chan error, 1)
		go func() { trErr <- tr.Run(gw.chainCtx) }()
		gw.onClose(func() { tr.Close() })
		select {
		case <-tr.Ready():
			clusterAddr = tr.Addr()
		case err := <-trErr:
			ln.Close()
			return fmt.Errorf("daemon: cluster: %w", err)
		}
	}
	// With heartbeats off (0), a cluster still commits them while a
	// member change is pending (see heartbeat).
	if hb := time.Duration(cfg.Batch.Heartbeat); hb > 0 || len(g.Nodes) > 1 {
		grp.Go(func() error {
			heartbeat(gctx, hb, gw.nodeID, gw.key, gw.chain, gw.rep, gw.reconfigured, d.logger.With("component", "heartbeat"))
			return nil
		})
	}
	if gw.eg != nil {
		grp.Go(func() error { return gw.eg.Run(gctx) })
	}
	grp.Go(func() error {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("daemon: api: %w", err)
		}
		return nil
	})
	grp.Go(func() error {
		<-gctx.Done()
		gw.api.SetReady(false)
		if gw.mqtt != nil {
			gw.mqtt.Close() // stop taking device messages while the chain still commits those in flight
		}
		if gw.coap != nil {
			gw.coap.Close()
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 10*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	gw.api.SetReady(true)
	// Before "ready": whoever waits for that line finds the token logged.
	if gw.ui != nil {
		if tok := gw.ui.SetupToken(); tok != "" {
			d.logger.Warn("the dashboard has no operator password yet: open its setup page and enter this one-time token",
				"url", apiURL+"/setup", "token", tok)
		}
	}
	height, _ := gw.st.Tip()
	d.logger.Info("ledgergate ready", "api", apiURL, "mqtt", mqttAddr, "coap", coapAddr, "dtls", dtlsAddr, "chain_id", g.ChainID,
		"node", gw.nodeID, "height", height, "nodes", len(g.Nodes), "cluster", clusterAddr, "version", d.opts.Version)
	if d.opts.Ready != nil {
		d.opts.Ready(ln.Addr().String())
	}
	err = grp.Wait()
	gw.stopBg()
	gw.stopChain()
	select {
	case <-chainDone:
		// A replica that waited for the node key when the chain stopped
		// ends with context.Canceled: that is the stop, not a failure.
		if err == nil && !errors.Is(chainErr, context.Canceled) {
			err = chainErr
		}
	case <-time.After(10 * time.Second):
		d.logger.Error("chain did not stop in time")
	}
	d.logger.Info("ledgergate stopped")
	return err
}

// CatchUpIndex applies the blocks the index lacks; an index ahead of the
// log (the log was cut), or of another base than the log's (a log that
// starts from a snapshot), is rebuilt from scratch, from the log's base.
func CatchUpIndex(ctx context.Context, idx *index.Index, blog *ledger.Log, logger *slog.Logger) error {
	return catchUpIndex(ctx, idx, blog, logger, newReporter(logger, nil))
}

// catchUpIndex is CatchUpIndex reporting its progress to rep.
func catchUpIndex(ctx context.Context, idx *index.Index, blog *ledger.Log, logger *slog.Logger, rep *reporter) error {
	read := func(h uint64) (*ledger.Block, error) {
		data, err := blog.ReadHeight(h)
		if err != nil {
			return nil, err
		}
		return ledger.DecodeBlock(data)
	}
	base, _ := blog.Base()
	ibase, err := idx.Base()
	if err != nil {
		return fmt.Errorf("daemon: index: %w", err)
	}
	if ibase != base {
		logger.Warn("index starts at another height than the block log; rebuilding it", "index_base", ibase, "log_base", base)
		if err := idx.Reset(); err != nil {
			return err
		}
		if err := idx.SetBase(base); err != nil {
			return err
		}
	}
	progress := func(done, total uint64) { rep.blocks("indexing the block log", done, total) }
	err = index.Rebuild(ctx, idx, blog.Height(), read, progress)
	if errors.Is(err, index.ErrAhead) {
		logger.Warn("index is ahead of the block log; rebuilding it")
		if err := idx.Reset(); err != nil {
			return err
		}
		err = index.Rebuild(ctx, idx, blog.Height(), read, progress)
	}
	if err != nil {
		return fmt.Errorf("daemon: index: %w", err)
	}
	return nil
}

// findNode returns the id of the genesis node whose key is signer's.
func findNode(g *ledger.Genesis, signer tpm.Signer) (string, error) {
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("daemon: node key is %T, want ECDSA P-256", signer.Public())
	}
	for _, n := range g.Nodes {
		pk, err := ledger.ParsePublicKey(n.PublicKey)
		if err != nil {
			continue
		}
		if ec, ok := pk.Key.(*ecdsa.PublicKey); ok && ec.Equal(pub) {
			return n.ID, nil
		}
	}
	return "", fmt.Errorf("daemon: the node key (%s) belongs to no node of genesis %s", signer.Describe(), g.ChainID)
}

// transportOrNil keeps a nil *cluster.Transport from becoming a non-nil
// interface.
func transportOrNil(t *cluster.Transport) replica.Transport {
	if t == nil {
		return nil
	}
	return t
}

// egressHold is the lowest block the egress connectors that run here have
// not delivered in full: retention's age limit waits for them. None: no
// hold.
func egressHold(eg *egress.Manager) func() (uint64, bool) {
	if eg == nil {
		return nil
	}
	return func() (uint64, bool) {
		var low uint64
		held := false
		for _, s := range eg.Cursors() {
			if !held || s < low {
				low, held = s, true
			}
		}
		return low, held
	}
}
