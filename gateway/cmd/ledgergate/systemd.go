package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/ledgergate/ledgergate/gateway/daemon"
)

// startExtension is how long systemd waits for the next report of a start
// before it stops the gateway (EXTEND_TIMEOUT_USEC=). A start that makes
// progress reports at least every daemon.ReportEvery, so a long index
// rebuild or schema upgrade is not killed by the unit's start timeout
// (systemd's default, 90 s), and one that is stuck still is.
const startExtension = 12 * daemon.ReportEvery

// notifyStarting passes what a start is doing to systemd (STATUS=, shown by
// systemctl status) and extends its start timeout by startExtension.
// Outside systemd (no NOTIFY_SOCKET) it does nothing.
func notifyStarting(logger *slog.Logger, status string) {
	msg := fmt.Sprintf("STATUS=%s\nEXTEND_TIMEOUT_USEC=%d", status, startExtension.Microseconds())
	if _, err := sd.SdNotify(false, msg); err != nil {
		logger.Warn("systemd notify failed", "err", err)
	}
}

// notifyReady tells systemd (Type=notify) that every listener is bound,
// and, if the unit has WatchdogSec, pings the watchdog at half its
// interval until ctx ends. Outside systemd (no NOTIFY_SOCKET) it does
// nothing.
func notifyReady(ctx context.Context, logger *slog.Logger, api string) {
	if ok, err := sd.SdNotify(false, sd.SdNotifyReady+"\nSTATUS=serving; API on "+api); err != nil {
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
