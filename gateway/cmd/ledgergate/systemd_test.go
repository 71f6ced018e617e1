package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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
	watchdog := func(m string) bool { return strings.Contains(m, "WATCHDOG=1") }
	for !(len(got) > 0 && strings.Contains(got[0], "READY=1") && slices.ContainsFunc(got, watchdog)) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(buf[:n]))
	}
}
