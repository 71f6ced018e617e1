package main

import (
	"context"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notifyReady tells systemd (Type=notify) that every listener is bound,
// and, if the unit has WatchdogSec, pings the watchdog at half its
// interval until ctx ends. Outside systemd (no NOTIFY_SOCKET) it does
// nothing.
func notifyReady(ctx context.Context, logger *slog.Logger) {
	if ok, err := sd.SdNotify(false, sd.SdNotifyReady); err != nil {
		logger.Warn("systemd notify failed", "err", err)
		return
	} else if !ok {
		return // not under systemd
	}
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				sd.SdNotify(false, sd.SdNotifyStopping)
				return
			case <-t.C:
				sd.SdNotify(false, sd.SdNotifyWatchdog)
			}
		}
	}()
}
