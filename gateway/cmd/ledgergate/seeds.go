package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ledgergate/ledgergate/gateway/daemon"
)

func cmdSeedsCheck(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "seeds check")
	cfgPath := fs.String("config", "", "configuration file with a [seeds] section (default: "+e.defaultConfigDesc()+")")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(e, false, *cfgPath)
	if err != nil {
		return err
	}
	d, err := daemon.NewSeeds(cfg.Seeds, cfg.DataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if d == nil {
		return fmt.Errorf("no seed zones configured: set [seeds] zones, anchors_file and servers")
	}
	res, err := d.Discover(ctx)
	if res != nil {
		for _, l := range res.Chain {
			fmt.Fprintf(e.stdout, "  %s\n", l)
		}
	}
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("bogus or failed: %w", err)}
	}
	fmt.Fprintf(e.stdout, "validated peers (refresh in %s):\n", res.TTL())
	for _, p := range res.Peers {
		fmt.Fprintf(e.stdout, "  %s at %v, key sha256 %x, from %v\n", p.ID, p.Addrs, p.KeySHA256, p.Zones)
	}
	return nil
}
