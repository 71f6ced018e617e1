package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTimerSlack: a gateway started the usual way runs every thread with
// timerSlack, having executed itself once for it (same PID); one started
// with a larger slack already set, as systemd's TimerSlackNSec= does it,
// keeps that slack and does not execute itself again.
func TestTimerSlack(t *testing.T) {
	t.Run("plain start", func(t *testing.T) {
		g := startGateway(t, filepath.Join(t.TempDir(), "data"), "--mqtt", "off", "--coap", "off", "--coap-dtls", "off")
		pid := g.cmd.Process.Pid
		checkThreadSlack(t, pid, int(timerSlack))
		if !execedForSlack(t, pid) {
			t.Error("the gateway has the slack but did not execute itself for it")
		}
	})
	t.Run("set before exec", func(t *testing.T) {
		const slack = 2 * int(timerSlack)
		start := func(cmd *exec.Cmd) error { return startWithSlack(cmd, slack) }
		g := startGatewayBy(t, start, nil, filepath.Join(t.TempDir(), "data"), "--mqtt", "off", "--coap", "off", "--coap-dtls", "off")
		pid := g.cmd.Process.Pid
		checkThreadSlack(t, pid, slack)
		if execedForSlack(t, pid) {
			t.Error("the gateway executed itself again though its slack was set")
		}
	})
}

// startWithSlack starts cmd from a thread whose timer slack is slack: the
// child inherits it, as from systemd. The thread ends with its goroutine.
func startWithSlack(cmd *exec.Cmd, slack int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(slack), 0, 0, 0); err != nil {
			errc <- err
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// checkThreadSlack fails t unless every thread of pid has a timer slack of want.
func checkThreadSlack(t *testing.T, pid, want int) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%s/timerslack_ns", task.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("thread %s of %d threads: timer slack %d ns, want %d", task.Name(), len(tasks), got, want)
		}
	}
}

// execedForSlack tells whether pid's program was executed by
// raiseTimerSlack: the environment it was executed with has the mark.
func execedForSlack(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(strings.Split(string(b), "\x00"), slackExecEnv+"=1")
}
