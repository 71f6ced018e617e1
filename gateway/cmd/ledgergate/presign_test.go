package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/bridge/sim"
)

// TestSimPresign runs `ledgergate sim --presign` against a dev gateway
// process, and with --no-enroll against mosquitto: every message is
// acknowledged, and the broker's process, found from its MQTT address,
// is named with its CPU time per message (no timing is asserted). The
// presign flags need --presign.
func TestSimPresign(t *testing.T) {
	g := startGateway(t, filepath.Join(t.TempDir(), "data"))
	out := mustCLI(t, t.TempDir(), "sim", "--presign", "--inflight", "8", "--count", "100", "--devices", "10",
		"--api", g.api, "--data", g.data, "--broker", "tcp://"+g.mqtt)
	checkResult(t, out, 1000, g.cmd.Process.Pid, true)

	// The presign flags without --presign, and --chain-id for a gateway, are usage errors.
	for _, args := range [][]string{{"--inflight", "4"}, {"--no-enroll"}, {"--presign", "--chain-id", "x"}} {
		if _, errs, code := cli(t, t.TempDir(), append([]string{"sim"}, args...)...); code != 2 || !strings.Contains(errs, "needs --") {
			t.Errorf("sim %s: exit %d, want 2 and what it needs\n%s", strings.Join(args, " "), code, errs)
		}
	}

	m := startMosquitto(t)
	out = mustCLI(t, t.TempDir(), "sim", "--presign", "--no-enroll", "--inflight", "8", "--count", "100", "--devices", "10",
		"--broker", "tcp://"+m.addr)
	// mosquitto spends ~10 µs a message: 1,000 of them may take less than
	// one tick of /proc's CPU clock (10 ms), so its figure may be 0.
	checkResult(t, out, 1000, m.cmd.Process.Pid, false)
}

// checkResult checks sim --presign's result line: msgs all acknowledged,
// the broker's pid, a CPU time per message, positive if positive, and
// context switches per message.
func checkResult(t *testing.T, out string, msgs, pid int, positive bool) {
	t.Helper()
	r, err := parseResult(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := map[string]string{"msgs": strconv.Itoa(msgs), "acked": strconv.Itoa(msgs), "refused": "0", "unacked": "0",
		"failed": "0", "pid": strconv.Itoa(pid)}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("result %s=%q, want %q\n%s", k, r[k], v, out)
		}
	}
	if cpu, err := strconv.ParseFloat(r["cpu_us_per_msg"], 64); err != nil || cpu < 0 || positive && cpu == 0 {
		t.Errorf("result cpu_us_per_msg=%q: want a number, positive: %t\n%s", r["cpu_us_per_msg"], positive, out)
	}
	// A broker waits for bytes at least once in a thousand messages.
	if sw, err := strconv.ParseFloat(r["ctxsw_per_msg"], 64); err != nil || sw <= 0 {
		t.Errorf("result ctxsw_per_msg=%q: want a positive number\n%s", r["ctxsw_per_msg"], out)
	}
}

// parseResult reads the fields of sim --presign's "result" line.
func parseResult(out string) (map[string]string, error) {
	for line := range strings.Lines(out) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "result ")
		if !ok {
			continue
		}
		r := map[string]string{}
		for _, f := range strings.Fields(rest) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("result field %q: no =", f)
			}
			r[k] = v
		}
		return r, nil
	}
	return nil, fmt.Errorf("no result line")
}

// mosqProc is a mosquitto broker process on 127.0.0.1.
type mosqProc struct {
	addr string
	cmd  *exec.Cmd
}

// startMosquitto runs Debian's mosquitto on a port the kernel picked a
// moment before, anonymous and with no limit on messages in flight
// (its default receive maximum is 20), TCP_NODELAY as Go sets it on the
// gateway's sockets. It tries another port if that one was taken in
// between.
func startMosquitto(tb testing.TB) *mosqProc {
	tb.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			tb.Fatal("mosquitto not found: run `make deps` (Debian package mosquitto)")
		}
	}
	dir := tb.TempDir()
	for try := 0; try < 5; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, port, _ := net.SplitHostPort(addr)
		conf := filepath.Join(dir, "mosquitto.conf")
		os.WriteFile(conf, fmt.Appendf(nil, "listener %s 127.0.0.1\n%sallow_anonymous true\npersistence false\n"+
			"max_inflight_messages 0\nset_tcp_nodelay true\nlog_dest stderr\n", port, mosquittoUser), 0o644)
		m := &mosqProc{addr: addr, cmd: exec.Command(bin, "-c", conf)}
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("mosquitto-%d.log", try)))
		if err != nil {
			tb.Fatal(err)
		}
		m.cmd.Stdout, m.cmd.Stderr = log, log
		if err := m.cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		done := make(chan struct{})
		go func() { m.cmd.Wait(); log.Close(); close(done) }()
		stop := func() {
			m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				m.cmd.Process.Kill()
				<-done
			}
		}
		// Ready once it is the process that listens on addr.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			select {
			case <-done:
				deadline = time.Time{}
				continue
			default:
			}
			if pid, err := sim.ListenerPID(addr); err == nil && pid == m.cmd.Process.Pid {
				tb.Cleanup(stop)
				return m
			}
			time.Sleep(20 * time.Millisecond) // polling for the listener
		}
		stop()
		b, _ := os.ReadFile(log.Name())
		tb.Logf("mosquitto on %s did not start: %s", addr, b)
	}
	tb.Fatal("mosquitto did not start on 5 ports")
	return nil
}
