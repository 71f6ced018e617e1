package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// timerSlack is how late the kernel may fire any timer of the gateway, so
// that it can merge wake-ups (the kernel's default is 50 µs). While the
// gateway has work, the Go runtime's sysmon thread sleeps 20 µs at a time
// (golang/go#18236); at 1,000 msgs/s those wake-ups cost ~25 µs of CPU a
// message, and 1 ms of slack takes them off without changing a latency
// (docs/benchmarks.md, "Timer slack"). The gateway's finest timer, the
// replica's tick, is 2 ms.
const timerSlack = time.Millisecond

// slackExecEnv marks the one exec of raiseTimerSlack, so that a kernel that
// does not keep the slack across exec cannot make it loop.
const slackExecEnv = "LEDGERGATE_TIMERSLACK_EXEC"

// raiseTimerSlack makes the process run with timerSlack. A thread's slack
// is inherited by the threads it starts, and the runtime starts its threads
// (sysmon first) before main, so the slack must be in place before the
// process starts: systemd's TimerSlackNSec= does that (the unit sets it),
// and otherwise the gateway executes itself again, once, from a thread
// with the slack set. It returns only if the slack is in place, or cannot
// be; the error says why not.
func raiseTimerSlack() error {
	again := os.Getenv(slackExecEnv) != ""
	os.Unsetenv(slackExecEnv)
	slack, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return fmt.Errorf("reading the timer slack: %w", err)
	}
	if slack >= int(timerSlack) || again {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(timerSlack), 0, 0, 0); err != nil {
		return fmt.Errorf("setting the timer slack: %w", err)
	}
	err = syscall.Exec("/proc/self/exe", os.Args, append(os.Environ(), slackExecEnv+"=1"))
	// Only a failed exec returns; this thread's slack does no harm.
	return fmt.Errorf("executing again with a timer slack of %s: %w", timerSlack, err)
}
