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
	"github.com/ledgergate/ledgergate/gateway/front"
	"github.com/ledgergate/ledgergate/gateway/index"
	"github.com/ledgergate/ledgergate/gateway/ledger"
	"github.com/ledgergate/ledgergate/gateway/replica"
	"github.com/ledgergate/ledgergate/gateway/state"
	"github.com/ledgergate/ledgergate/tpm"
	"github.com/ledgergate/ledgergate/webui"
)

// Options configure a Daemon.
type Options struct {
	Config  config.Config
	Version string
	Logger  *slog.Logger
	// Ready, if not nil, is called once every listener is bound, with the
	// API address (systemd's READY=1 hooks in here).
	Ready func(apiAddr string)
}

// Daemon is one running gateway.
type Daemon struct {
	opts   Options
	logger *slog.Logger
}

// New validates the options; it does no I/O.
func New(o Options) (*Daemon, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("daemon: config: %w", err)
	}
	if o.Logger == nil {
		return nil, errors.New("daemon: no logger")
	}
	return &Daemon{opts: o, logger: o.Logger}, nil
}

// Run starts the gateway and blocks until ctx ends or a part fails.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.opts.Config
	dir := cfg.DataDir
	clock.WatchTestOffset(ctx, d.logger)
	// The first start of a gateway without a chain makes its node key (in
	// the TPM unless a software key is configured) and a single-node
	// chain, so an installed appliance works at once. To join a cluster
	// instead, stop it, empty the data directory and run init --genesis.
	if _, err := os.Stat(filepath.Join(dir, GenesisFile)); errors.Is(err, os.ErrNotExist) {
		g, err := Init(dir, InitOptions{Signer: cfg.Signer, Logger: d.logger})
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
	signer, err := OpenNodeKey(cfg.Signer, dir, d.logger.With("component", "tpm"))
	if err != nil {
		return err
	}
	defer signer.Close()
	nodeID, err := findNode(g, signer)
	if err != nil {
		return err
	}
	if signer.Hardware() {
		d.logger.Info("node key", "key", signer.Describe())
	} else {
		d.logger.Warn("node key is a software key, not hardware-backed", "key", signer.Describe())
	}
	// Every signature from here on goes through key: a TPM that goes away
	// makes the gateway not ready and silent, not stop (issue 20).
	key := newKeyWatch(signer, d.logger.With("component", "nodekey"))
	// The chain, and with it the replica, outlive the HTTP server so that
	// submits in flight at shutdown can still get their receipts.
	chainCtx, stopChain := context.WithCancel(context.WithoutCancel(ctx))
	defer stopChain()

	// The index first: it holds only blocks the log had made durable, so
	// the log must not take any of them for a torn tail.
	idx, err := index.Open(filepath.Join(dir, IndexFile))
	if err != nil {
		return fmt.Errorf("daemon: %w (it is rebuildable: delete it and restart)", err)
	}
	defer idx.Close()
	indexed, err := idx.Height()
	if err != nil {
		return fmt.Errorf("daemon: %w (it is rebuildable: delete it and restart)", err)
	}
	blog, err := ledger.OpenLog(filepath.Join(dir, BlocksDir), ledger.LogOptions{MinRecords: indexed})
	if err != nil {
		return fmt.Errorf("daemon: open block log: %w", ExplainLogError(err, dir, len(g.Nodes) > 1))
	}
	defer blog.Close()
	if rep := blog.Repair(); rep != nil {
		d.logger.Warn("cut torn tail of block log: a crash interrupted an append that was never acknowledged",
			"segment", rep.Segment, "offset", rep.Offset, "bytes", rep.Bytes, "block", rep.Height)
	}
	st, err := state.New(g)
	if err != nil {
		return err
	}
	if err := chain.Replay(blog, st, func(done, total uint64) {
		d.logger.Info("replaying block log", "block", done, "of", total)
	}); err != nil {
		return ExplainLogError(err, dir, len(g.Nodes) > 1)
	}
	if err := CatchUpIndex(context.Background(), idx, blog, d.logger); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hardware := 0.0
	if signer.Hardware() {
		hardware = 1
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ledgergate_node_key_hardware",
		Help: "1 if the node key is held by a TPM, 0 for a software key.",
	}, func() float64 { return hardware }))
	batch := chain.BatchConfig{
		MaxTxs: cfg.Batch.MaxTxs, MaxBytes: cfg.Batch.MaxBytes,
		MaxDelay: time.Duration(cfg.Batch.MaxDelay), MaxPending: cfg.Batch.MaxPending,
	}
	blobs, err := blob.Open(filepath.Join(dir, BlobsDir), maxBlobBytes)
	if err != nil {
		return err
	}
	h := &handler{blobs: blobs}
	var tr *cluster.Transport
	var peerHeights func() map[string]uint64
	var behindPeers func() bool // nil: a single node is never behind
	if len(g.Nodes) > 1 {
		if tr, err = newTransport(g, nodeID, cfg.Cluster.Listen, len(cfg.Seeds.Zones) > 0, key, st, h, d.logger); err != nil {
			return err
		}
		peerHeights = heights(tr)
		behindPeers = behind(tr, st, g.Quorum())
	}
	rep, err := replica.New(replica.Config{
		Self: nodeID, Genesis: g, State: st, Log: blog, Signer: key.waiting(chainCtx), Dir: filepath.Join(dir, PBFTDir),
		Batch: batch, Tick: batch.MaxDelay, ViewChangeTimeout: time.Duration(cfg.Cluster.ViewChangeTimeout),
		Logger: d.logger.With("component", "pbft"), Transport: transportOrNil(tr), Heights: peerHeights,
	})
	if err != nil {
		return err
	}
	h.r = rep
	cstatus := clusterStatus(rep, tr, st)
	reg.MustRegister(newClusterMetrics(cstatus))
	var mqttFront *mqtt.Server      // set before the chain runs
	var coapFront *coap.Server      // likewise
	var devDir *directory.Directory // likewise
	var ui *webui.Server            // likewise
	// Background work of the directory (blob fetches) stops with the chain.
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()
	// Egress connectors read committed blocks on goroutines of their own:
	// the commit path only wakes them.
	eg, err := newEgress(cfg, g, nodeID, blog, idx, d.logger.With("component", "egress"), reg)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if eg != nil {
		if err := eg.Open(); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
	}
	committed := onCommit(bgCtx, func() *mqtt.Server { return mqttFront }, func() *coap.Server { return coapFront },
		func() *directory.Directory { return devDir }, func() *webui.Server { return ui })
	if eg != nil {
		frontCommitted := committed
		committed = func(b *ledger.Block, txs []*ledger.Tx) {
			frontCommitted(b, txs)
			eg.Committed()
		}
	}
	ch := chain.New(chain.Deps{
		State: st, Log: blog, Index: idx, Orderer: rep,
		Logger: d.logger.With("component", "chain"), Registry: reg,
		CommitTimeout: time.Duration(cfg.Batch.CommitTimeout), MaxPending: cfg.Batch.MaxPending,
		OnCommit: committed,
	})
	dd := directory.Deps{Chain: ch, Index: idx, Blobs: blobs, Logger: d.logger.With("component", "directory")}
	if tr != nil {
		dd.Fetch = fetchBlob(tr)
	}
	devDir = directory.New(dd)
	defer devDir.Wait()
	limiter := bridge.NewLimiter(bridge.DefaultMaxPendingBytes) // records waiting to commit, over all front ends
	mqttFront, err = newMQTT(cfg.MQTT, ch, st, behindPeers, devDir, limiter, d.logger.With("component", "mqtt"), reg)
	if err != nil {
		return err
	}
	coapFront, err = newCoAP(cfg.CoAP, dir, ch, st, behindPeers, devDir, limiter, d.logger.With("component", "coap"), reg)
	if err != nil {
		return err
	}
	gh := g.Hash()
	srv := api.New(api.NodeInfo{
		ChainID: g.ChainID, NodeID: nodeID, GenesisHash: hex.EncodeToString(gh[:]), Version: d.opts.Version,
		KeyHardware: signer.Hardware(), Key: signer.Describe(), Nodes: len(g.Nodes), Quorum: g.Quorum(),
		MaxTxBytes: g.Params.MaxTxBytes,
	}, front.Ledger(ch, behindPeers), idx, reg, d.logger.With("component", "api"))
	srv.SetCluster(cstatus)
	srv.SetHealth(health(g, rep, tr, time.Duration(cfg.Batch.CommitTimeout), ch.Halted, key.health, ch.Stalled))
	srv.SetMaxUploads(cfg.API.MaxUploads)
	srv.SetDirectory(devDir, idx)
	srv.SetFirmware(devDir, idx)
	if eg != nil {
		srv.SetEgress(func() any { return eg.Status() })
	}
	// The token store is read even when no route asks for tokens (the
	// dashboard and the CLI manage them): a corrupt one stops the start
	// rather than open the API.
	tokens, err := api.OpenTokens(filepath.Join(dir, api.TokensFile), d.logger.With("component", "api"))
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	var seedSt *seedState
	if tr != nil && len(cfg.Seeds.Zones) > 0 {
		seedSt = newSeedState(cfg.Seeds)
	}
	ui, err = newWebUI(webuiDeps{cfg: cfg, g: g, api: srv, chain: ch, index: idx, reg: reg, mqtt: mqttFront, seeds: seedSt,
		tokens: tokens, logger: d.logger.With("component", "webui")})
	if err != nil {
		return err
	}
	if ui != nil {
		srv.Mount(ui)
		go ui.Run(bgCtx)
	}
	if err := srv.SetAuth(authPolicy(cfg.API, tokens, ui, d.logger)); err != nil {
		return err
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
	if mqttFront != nil {
		if err := mqttFront.Start(); err != nil {
			ln.Close()
			return fmt.Errorf("daemon: mqtt: %w", err)
		}
		defer mqttFront.Close()
		tcpAddr, tlsAddr := mqttFront.Addrs()
		mqttAddr = tcpAddr
		if tlsAddr != "" {
			d.logger.Info("mqtt tls listening", "mqtts", tlsAddr)
		}
	}
	coapAddr, dtlsAddr := "", ""
	if coapFront != nil {
		if err := coapFront.Start(); err != nil {
			ln.Close()
			return fmt.Errorf("daemon: coap: %w", err)
		}
		defer coapFront.Close()
		coapAddr, dtlsAddr = coapFront.Addrs()
	}
	hs := &http.Server{
		Handler: srv, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(d.logger.With("component", "http").Handler(), slog.LevelWarn),
	}
	if ui != nil {
		hs.RegisterOnShutdown(ui.Shutdown) // open live pages must not hold up the shutdown
	}

	go key.run(chainCtx)
	grp, gctx := errgroup.WithContext(ctx)
	var chainErr error
	chainDone := make(chan struct{})
	go func() {
		chainErr = ch.Run(chainCtx)
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
					"data", dir, "err", chainErr)
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
	if tr != nil {
		disc, err := NewSeeds(cfg.Seeds, dir, d.logger.With("component", "seeds"))
		if err != nil {
			ln.Close()
			return err
		}
		if disc != nil {
			go discoverPeers(chainCtx, disc, g, nodeID, tr, seedSt, d.logger.With("component", "seeds"))
		}
		// The transport runs as long as the chain: peers need this
		// replica's votes to commit what is in flight at shutdown.
		trErr := make(chan error, 1)
		go func() { trErr <- tr.Run(chainCtx) }()
		defer tr.Close()
		select {
		case <-tr.Ready():
			clusterAddr = tr.Addr()
		case err := <-trErr:
			ln.Close()
			return fmt.Errorf("daemon: cluster: %w", err)
		}
	}
	if hb := time.Duration(cfg.Batch.Heartbeat); hb > 0 {
		grp.Go(func() error {
			heartbeat(gctx, hb, nodeID, key, ch, rep, d.logger.With("component", "heartbeat"))
			return nil
		})
	}
	if eg != nil {
		grp.Go(func() error { return eg.Run(gctx) })
	}
	grp.Go(func() error {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("daemon: api: %w", err)
		}
		return nil
	})
	grp.Go(func() error {
		<-gctx.Done()
		srv.SetReady(false)
		if mqttFront != nil {
			mqttFront.Close() // stop taking device messages while the chain still commits those in flight
		}
		if coapFront != nil {
			coapFront.Close()
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 10*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	})
	srv.SetReady(true)
	// Before "ready": whoever waits for that line finds the token logged.
	if ui != nil {
		if tok := ui.SetupToken(); tok != "" {
			d.logger.Warn("the dashboard has no operator password yet: open its setup page and enter this one-time token",
				"url", apiURL+"/setup", "token", tok)
		}
	}
	height, _ := st.Tip()
	d.logger.Info("ledgergate ready", "api", apiURL, "mqtt", mqttAddr, "coap", coapAddr, "dtls", dtlsAddr, "chain_id", g.ChainID,
		"node", nodeID, "height", height, "nodes", len(g.Nodes), "cluster", clusterAddr, "version", d.opts.Version)
	if d.opts.Ready != nil {
		d.opts.Ready(ln.Addr().String())
	}
	err = grp.Wait()
	stopBg()
	stopChain()
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
// log (the log was cut) is rebuilt from scratch.
func CatchUpIndex(ctx context.Context, idx *index.Index, blog *ledger.Log, logger *slog.Logger) error {
	read := func(h uint64) (*ledger.Block, error) {
		data, err := blog.Read(h - 1)
		if err != nil {
			return nil, err
		}
		return ledger.DecodeBlock(data)
	}
	progress := func(done, total uint64) { logger.Info("indexing", "block", done, "of", total) }
	err := index.Rebuild(ctx, idx, blog.Len(), read, progress)
	if errors.Is(err, index.ErrAhead) {
		logger.Warn("index is ahead of the block log; rebuilding it")
		if err := idx.Reset(); err != nil {
			return err
		}
		err = index.Rebuild(ctx, idx, blog.Len(), read, progress)
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
