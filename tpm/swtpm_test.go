package tpm

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// The TPM tests run against swtpm, IBM's TPM 2.0 simulator (libtpms), as
// Debian packages it. They fail, not skip, when it is missing: the project's
// `make deps` installs it.
const installHint = "install Debian's swtpm, swtpm-tools and tpm2-tools (apt-get install swtpm swtpm-tools tpm2-tools, or make deps)"

// requireTool fails the test when a program the TPM tests drive is missing.
func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found in PATH: the TPM tests drive it as a real peer; %s", name, installHint)
	}
}

// swtpm is one running simulator. Its control socket sits at sock+".ctrl",
// where tpm2-tools' swtpm TCTI (-T swtpm:path=sock) looks for it.
type swtpm struct {
	t    testing.TB
	dir  string
	sock string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // from Wait, once done is closed
}

// newSwtpm starts a simulator with a fresh state directory.
func newSwtpm(t testing.TB) *swtpm {
	t.Helper()
	// Not t.TempDir: a Unix socket path must fit in 108 bytes, and test
	// names make TempDir paths long.
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return startSwtpm(t, dir)
}

// startSwtpm starts a simulator on the state in dir and waits, polling with
// a deadline, until its socket accepts connections.
func startSwtpm(t testing.TB, dir string) *swtpm {
	t.Helper()
	requireTool(t, "swtpm")
	sock := filepath.Join(dir, "sock")
	os.Remove(sock)
	os.Remove(sock + ".ctrl")
	s := &swtpm{t: t, dir: dir, sock: sock, done: make(chan struct{})}
	s.cmd = exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+sock+".ctrl",
		"--flags", "startup-clear,not-need-init",
		"--log", "file="+filepath.Join(dir, "swtpm.log"))
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)

	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("swtpm exited before its socket was ready: %v\n%s\n%s", s.err, out.String(), s.log())
		case <-deadline.C:
			t.Fatalf("swtpm socket %s not ready after 10s\n%s", sock, s.log())
		case <-tick.C:
		}
	}
}

func (s *swtpm) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "swtpm.log"))
	return string(b)
}

// stop shuts the TPM down in order (so that it does not count a
// non-orderly shutdown against dictionary-attack protection) and ends the
// process. It is idempotent.
func (s *swtpm) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	if tr, err := linuxudstpm.Open(s.sock); err == nil {
		tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}.Execute(tr)
		tr.Close()
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// raw opens a second, independent connection to the simulator, for tests
// that act as another user of the TPM.
func (s *swtpm) raw() transport.TPMCloser {
	s.t.Helper()
	tr, err := linuxudstpm.Open(s.sock)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { tr.Close() })
	return tr
}

// open opens the simulator with the given key auth value and closes it at
// cleanup.
func (s *swtpm) open(auth []byte) *TPM {
	s.t.Helper()
	tp, err := Open(Options{Socket: s.sock, Auth: auth, Logger: testLogger(s.t)})
	if err != nil {
		s.t.Fatalf("open swtpm: %v", err)
	}
	s.t.Cleanup(func() {
		if err := tp.Close(); err != nil && !errors.Is(err, ErrClosed) {
			s.t.Errorf("close: %v", err)
		}
	})
	return tp
}

// tcti is the tpm2-tools TCTI string for this simulator.
func (s *swtpm) tcti() string { return "swtpm:path=" + s.sock }
