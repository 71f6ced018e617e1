// Package clock is the gateway's wall clock: the time it writes into
// blocks and heartbeats and checks device tokens and firmware expiry
// against. It is time.Now, unless a test shifts it to inject clock jumps
// (the chaos suite, docs/chaos.md).
//
// Only wall-clock readings go through Now. Durations and deadlines keep
// using time.Now and timers, which run on the monotonic clock that a step
// of the system clock does not move either.
package clock

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// TestOffsetEnv names the environment variable that turns on the test
// hook: the path of a file holding a Go duration ("90s", "-4m"), which
// Now adds to the system clock. The file is read again every
// pollInterval, so a test jumps a running gateway's clock by rewriting
// it. A missing or empty file means no offset, so replace the file whole
// (write another and rename it): rewritten in place, it is empty for a
// moment.
const TestOffsetEnv = "LEDGERGATE_TEST_CLOCK_FILE"

const pollInterval = 50 * time.Millisecond

var offset atomic.Int64 // nanoseconds

// Now returns the wall clock, shifted by the test offset if one is set.
func Now() time.Time {
	if o := offset.Load(); o != 0 {
		return time.Now().Add(time.Duration(o))
	}
	return time.Now()
}

// WatchTestOffset follows the file TestOffsetEnv names, if it is set,
// until ctx ends. It logs a warning first: a gateway whose clock a file
// can move is a test gateway.
func WatchTestOffset(ctx context.Context, logger *slog.Logger) {
	path := os.Getenv(TestOffsetEnv)
	if path == "" {
		return
	}
	logger.Warn("test clock hook on: the wall clock follows the offset in the file", "env", TestOffsetEnv, "file", path)
	read := func() {
		b, err := os.ReadFile(path)
		s := strings.TrimSpace(string(b))
		if err != nil || s == "" {
			set(logger, 0)
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			logger.Warn("test clock hook: not a duration", "file", path, "err", err)
			return
		}
		set(logger, d)
	}
	read()
	go func() {
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				read()
			}
		}
	}()
}

func set(logger *slog.Logger, d time.Duration) {
	if old := time.Duration(offset.Swap(int64(d))); old != d {
		logger.Warn("test clock hook: the wall clock jumped", "offset", d, "by", d-old)
	}
}
