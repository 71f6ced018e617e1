package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// TestSystemdNotify: under systemd (NOTIFY_SOCKET, WATCHDOG_USEC) the
// gateway sends READY=1 once it serves, then WATCHDOG=1 pings.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := exec.Command(ledgergateBin, "run", "--dev", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--mqtt", "off", "--coap", "off", "--coap-dtls", "off")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var got []string
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	ready := func(m string) bool { return strings.Contains(m, "READY=1") }
	watchdog := func(m string) bool { return strings.Contains(m, "WATCHDOG=1") }
	// The start's status lines come first (TestSystemdStartProgress).
	for !(slices.ContainsFunc(got, ready) && slices.IndexFunc(got, watchdog) > slices.IndexFunc(got, ready)) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(buf[:n]))
	}
}

// TestSystemdStartProgress: a start that rebuilds the index from the block
// log tells systemd what it does and extends its start timeout as it goes
// (STATUS=, EXTEND_TIMEOUT_USEC=), before READY=1; without that, the
// unit's start timeout (90 s) would kill every start of a gateway whose
// index takes longer to rebuild or upgrade, and Restart= would start it
// over, for ever.
func TestSystemdStartProgress(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	g := startGateway(t, data)
	a := loadAdmin(t, g)
	for d := range 3 {
		a.enroll(t, g.api, fmt.Sprintf("dev-%d", d), ledger.EdDSA)
	}
	g.stop()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(data, "index.db"+suffix))
	}

	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g = startGatewayEnv(t, []string{"NOTIFY_SOCKET=" + sock}, data)
	var got []string
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for !slices.ContainsFunc(got, func(m string) bool { return strings.Contains(m, "READY=1") }) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(buf[:n]))
	}
	ready := got[len(got)-1]
	if !strings.Contains(ready, "STATUS=serving; API on "+strings.TrimPrefix(g.api, "http://")) {
		t.Errorf("READY without the status of a serving gateway: %q", ready)
	}
	extend := fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", startExtension.Microseconds())
	var statuses []string
	for _, m := range got[:len(got)-1] {
		status, ok := strings.CutPrefix(m, "STATUS=")
		status, rest, _ := strings.Cut(status, "\n")
		if !ok || rest != extend {
			t.Errorf("before READY: %q, want a STATUS= line and %s", m, extend)
		}
		statuses = append(statuses, status)
	}
	// The index is opened, then built from the whole log: its last report
	// says so.
	indexed := regexp.MustCompile(`^indexing the block log: block (\d+) of (\d+)$`)
	if len(statuses) < 2 || statuses[0] != "opening the index" {
		t.Fatalf("statuses before READY: %q, want \"opening the index\" first", statuses)
	}
	if m := indexed.FindStringSubmatch(statuses[len(statuses)-1]); m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("statuses before READY: %q, want the last to be the index built to the log's height", statuses)
	}
}

// unitFile is a parsed systemd unit: section -> key -> values, in order.
type unitFile map[string]map[string][]string

// parseUnit reads a unit file as systemd.syntax(7) has it: [Section]
// headers, Key=Value lines, # and ; comments. Continuation lines are not
// needed by ours and are refused.
func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: continuation lines are not parsed here", path, i+1)
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a setting in a section: %q", path, i+1, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u
}

// one returns the single value of section's key, failing the test when
// it is missing or set more than once.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %q, want one value", section, key, v)
	}
	return v[0]
}

// TestSystemdUnitRestarts: the shipped unit brings a gateway that fails
// back by itself, for as long as the cause lasts (issue 20, defect 11).
// systemd cannot run here (no systemd as PID 1), so this reads the unit
// and has systemd-analyze verify it; packaging/README.md says how it was
// checked under a real systemd.
//
//   - [Unit] StartLimitIntervalSec=0: systemd's default start limit (5
//     starts in 10s) could leave a gateway whose start fails for a while
//     "failed" for good;
//   - [Service] Restart=on-failure: a crash, a non-zero exit or the
//     watchdog restarts it; a clean exit on SIGTERM does not;
//   - RestartSec= paces the retries: at least 1s, at most 30s;
//   - no setting systemd 252 (Debian 12) does not know: RestartSteps= and
//     RestartMaxDelaySec= came in 254 and would only be warned about.
func TestSystemdUnitRestarts(t *testing.T) {
	unit := filepath.Join("..", "..", "..", "systemd", "ledgergate.service")
	u := parseUnit(t, unit)
	if v := u.one(t, "Unit", "StartLimitIntervalSec"); v != "0" {
		t.Errorf("[Unit] StartLimitIntervalSec=%s, want 0 (never give up)", v)
	}
	if v, ok := u["Service"]["StartLimitIntervalSec"]; ok {
		t.Errorf("[Service] StartLimitIntervalSec=%v: it belongs in [Unit]", v)
	}
	if v := u.one(t, "Service", "Restart"); v != "on-failure" {
		t.Errorf("Restart=%s, want on-failure", v)
	}
	rs := u.one(t, "Service", "RestartSec")
	d, err := time.ParseDuration(rs)
	if err != nil || d < time.Second || d > 30*time.Second {
		t.Errorf("RestartSec=%s (%v): want 1s to 30s", rs, err)
	}
	for _, k := range []string{"RestartSteps", "RestartMaxDelaySec"} {
		if v, ok := u["Service"][k]; ok {
			t.Errorf("%s=%v: systemd 252 (Debian 12) does not know it", k, v)
		}
	}
	if v := u.one(t, "Service", "Type"); v != "notify" {
		t.Errorf("Type=%s, want notify", v)
	}
	if _, ok := u["Service"]["WatchdogSec"]; !ok {
		t.Error("no WatchdogSec: a hung gateway would never be restarted")
	}

	// systemd-analyze verify, as packaging/test.sh runs it: on a copy whose
	// ExecStart is the binary under test, with MANPATH at the man page.
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze not found: `make deps` installs Debian's systemd")
	}
	dir := t.TempDir()
	man := filepath.Join(dir, "man", "man1")
	if err := os.MkdirAll(man, 0o755); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join("..", "..", "..", "packaging", "ledgergate.1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(man, "ledgergate.1"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "\nExecStart=/usr/bin/ledgergate ", "\nExecStart="+ledgergateBin+" ", 1)
	if !strings.Contains(text, "ExecStart="+ledgergateBin+" run ") {
		t.Fatal("ExecStart not rewritten")
	}
	copyPath := filepath.Join(dir, "ledgergate.service")
	if err := os.WriteFile(copyPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-analyze", "verify", copyPath)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(dir, "man"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// verify also reports other units of this machine; ours must be clean.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "ledgergate") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
