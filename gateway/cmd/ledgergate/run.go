package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/ledgergate/ledgergate/gateway/config"
	"github.com/ledgergate/ledgergate/gateway/daemon"
)

func cmdRun(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "run")
	dev := fs.Bool("dev", false, "embedded default: one node, data in ./ledgergate-data, a software key, API on 127.0.0.1:8080; no config file needed")
	cfgPath := fs.String("config", "", "configuration file (default: "+e.defaultConfigDesc()+"; with --dev, only a file given here is read)")
	data := fs.String("data", "", "data directory (overrides data_dir)")
	listen := fs.String("listen", "", "API address, e.g. 127.0.0.1:8080 (overrides api.listen)")
	mqttListen := fs.String("mqtt", "", "MQTT address, e.g. 127.0.0.1:1883 (overrides mqtt.listen; \"off\" turns it off)")
	coapListen := fs.String("coap", "", "CoAP UDP address, e.g. 127.0.0.1:5683 (overrides coap.listen; \"off\" turns it off)")
	dtlsListen := fs.String("coap-dtls", "", "CoAP DTLS address, e.g. 127.0.0.1:5684 (overrides coap.dtls_listen; \"off\" turns it off)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(e, *dev, *cfgPath)
	if err != nil {
		return err
	}
	if *data != "" {
		cfg.DataDir = *data
	}
	if *listen != "" {
		cfg.API.Listen = *listen
	}
	for _, o := range []struct{ flag, field *string }{
		{mqttListen, &cfg.MQTT.Listen}, {coapListen, &cfg.CoAP.Listen}, {dtlsListen, &cfg.CoAP.DTLSListen},
	} {
		switch *o.flag {
		case "":
		case "off":
			*o.field = ""
		default:
			*o.field = *o.flag
		}
	}
	logger, err := newLogger(e, cfg.Log)
	if err != nil {
		return err
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Version: version, Logger: logger,
		Starting: func(status string) { notifyStarting(logger, status) },
		Ready:    func(api string) { notifyReady(ctx, logger, api) }})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// loadConfig picks the configuration: an explicit file, else the default
// file if it exists (not with --dev), else the built-in defaults.
func loadConfig(e *env, dev bool, path string) (config.Config, error) {
	base := config.Default()
	if dev {
		base = config.Dev()
	}
	if path == "" && !dev {
		path = e.existingDefaultConfig()
	}
	if path == "" {
		return base, base.Validate()
	}
	return config.Load(path, base)
}

func newLogger(e *env, c config.LogLevel) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(e.stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts)), nil
}

func cmdInit(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "init")
	data := fs.String("data", "", "data directory to create (default: data_dir of the configuration, "+config.Default().DataDir+")")
	cfgPath := fs.String("config", "", "configuration file, for [signer] (default: "+e.defaultConfigDesc()+")")
	softwareKey := fs.Bool("software-key", false, "keep the node key in a software key file (DATA/"+daemon.NodeKeyFile+") instead of the TPM; the gateway then needs [signer] kind = \"software\" (run --dev has it)")
	chainID := fs.String("chain-id", "", "chain id (default: dev- and 8 random hex digits)")
	nodeID := fs.String("node-id", "node-1", "this node's id in the genesis; given alone, init makes only the node key, to join a chain of several gateways")
	adminID := fs.String("admin-id", "admin", "the admin's id in the genesis")
	adminKey := fs.String("admin-key", "", "where to write the admin private key (default DATA/admin.key); keep it offline in production")
	keyOnly := fs.Bool("key-only", false, "make only the node key and its public key DATA/"+daemon.NodePubFile+", to join a chain built with 'genesis new'")
	genesis := fs.String("genesis", "", "join the chain of this genesis file: DATA holds a node key from --node-id, and the genesis names it (or, with --node-id, a gateway that 'ledgergate cluster add' adds later under that id)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(e, false, *cfgPath)
	if err != nil {
		return err
	}
	if *data == "" {
		*data = cfg.DataDir
	}
	if *softwareKey {
		cfg.Signer.Kind = "software"
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["node-id"] && !set["chain-id"] && !set["admin-id"] && !set["admin-key"] && *genesis == "" {
		// `init --node-id ID`: the first step of joining a cluster.
		*keyOnly = true
	}
	switch {
	case *keyOnly && *genesis != "":
		return usageError(fs, "--key-only and --genesis are two steps: make the key, build the genesis with its .pub, then join")
	case *keyOnly:
		if err := only(fs, "with --key-only", "data", "node-id", "key-only", "config", "software-key"); err != nil {
			return err
		}
		return initKey(e, *data, *nodeID, cfg.Signer)
	case *genesis != "":
		if err := only(fs, "with --genesis", "data", "genesis", "config", "software-key", "node-id"); err != nil {
			return err
		}
		as := ""
		if set["node-id"] {
			as = *nodeID
		}
		return initJoin(e, *data, *genesis, as, cfg.Signer)
	}
	g, err := daemon.Init(*data, daemon.InitOptions{ChainID: *chainID, NodeID: *nodeID, AdminID: *adminID, AdminKey: *adminKey, Signer: cfg.Signer})
	if errors.Is(err, daemon.ErrInitialized) {
		return &exitError{code: 1, err: err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "initialized %s: chain %s, node %s (%s), admin %s\n",
		*data, g.ChainID, g.Nodes[0].ID, keyKind(cfg.Signer), g.Admins[0].ID)
	return nil
}

// keyKind says where the configured node key lives.
func keyKind(s config.Signer) string {
	if s.Kind == "software" {
		return "software key, not hardware-backed"
	}
	return "key in the TPM at " + s.TPMHandle
}
