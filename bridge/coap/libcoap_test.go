package coap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ledgergate/ledgergate/gateway/ledger"
)

// coapClient runs one of libcoap's coap-client binaries with args and
// returns its output; the test is skipped if it is not installed.
func coapClient(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s not installed (Debian: libcoap3-bin)", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// -B bounds the client's wait for an answer.
	out, err := exec.CommandContext(ctx, path, append([]string{"-B", "8"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestLibcoap posts records with libcoap's clients: over UDP
// (coap-client-notls), block-wise, and over DTLS with the device key's
// self-signed certificate (coap-client-openssl, coap-client-gnutls); and
// reads /.well-known/core.
func TestLibcoap(t *testing.T) {
	node := startNode(t)
	s := startServer(t, node, Config{})
	d := enroll(t, node, "sensor-1", ledger.ES256)
	dir := t.TempDir()
	certFile, keyFile := writePEM(t, dir, selfSigned(t, d.key, "sensor-1"))
	_, udpPort, _ := strings.Cut(s.udpAddr, ":")
	_, dtlsPort, _ := strings.Cut(s.dtlsAddr, ":")
	seq := uint64(0)
	postWith := func(t *testing.T, bin string, payload []byte, extra ...string) {
		seq++
		env := d.record(t, "temp", seq, payload)
		in, out := filepath.Join(dir, t.Name()+".cose"), filepath.Join(dir, t.Name()+".cbor")
		_ = os.MkdirAll(filepath.Dir(in), 0o755)
		if err := os.WriteFile(in, env, 0o600); err != nil {
			t.Fatal(err)
		}
		uri := "coap://127.0.0.1:" + udpPort + "/lg/v1/data/temp"
		if strings.Contains(strings.Join(extra, " "), "-c") {
			uri = "coaps://127.0.0.1:" + dtlsPort + "/lg/v1/data/temp"
		}
		args := append(append([]string{"-m", "post", "-t", "18", "-f", in, "-o", out}, extra...), uri)
		msg, err := coapClient(t, bin, args...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, msg)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("%s wrote no answer: %v\n%s", bin, err, msg)
		}
		verifyReceipt(t, node, b, env)
	}
	t.Run("udp", func(t *testing.T) { postWith(t, "coap-client-notls", []byte("21.5")) })
	t.Run("udp-blockwise", func(t *testing.T) {
		postWith(t, "coap-client-notls", bytes.Repeat([]byte("b"), 600), "-b", "64")
	})
	t.Run("dtls-openssl", func(t *testing.T) {
		postWith(t, "coap-client-openssl", []byte("22"), "-c", certFile, "-j", keyFile, "-n")
	})
	t.Run("dtls-gnutls", func(t *testing.T) {
		postWith(t, "coap-client-gnutls", []byte("23"), "-c", certFile, "-j", keyFile, "-n")
	})
	t.Run("well-known-core", func(t *testing.T) {
		out, err := coapClient(t, "coap-client-notls", "-m", "get", "coap://127.0.0.1:"+udpPort+"/.well-known/core")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "</lg/v1/data>") || !strings.Contains(out, "</lg/v1/receipts>") {
			t.Fatalf("output %q", out)
		}
	})
	t.Run("refused", func(t *testing.T) {
		env := d.record(t, "temp", 1, []byte("replayed"))
		in := filepath.Join(dir, "replay.cose")
		if err := os.WriteFile(in, env, 0o600); err != nil {
			t.Fatal(err)
		}
		out, _ := coapClient(t, "coap-client-notls", "-m", "post", "-t", "18", "-f", in, "coap://127.0.0.1:"+udpPort+"/lg/v1/data/temp")
		if !strings.Contains(out, "4.03") || !strings.Contains(out, "replay") {
			t.Fatalf("output %q, want 4.03 and replay", out)
		}
	})
}

// TestLibcoapDeviceResources: libcoap's coap-client-notls reads a
// device's manifest, its sealed blob and a firmware image in 64-byte
// Block2 blocks (-b 64), asks for a verdict with a Uri-Query, and finds
// every device resource in /.well-known/core.
func TestLibcoapDeviceResources(t *testing.T) {
	l := newDeviceLab(t)
	dir := t.TempDir()
	base := "coap://" + l.udpAddr + "/lg/v1/sensor-1/"
	getTo := func(t *testing.T, uri string, extra ...string) []byte {
		t.Helper()
		out := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
		args := append(append([]string{"-m", "get", "-o", out}, extra...), uri)
		msg, err := coapClient(t, "coap-client-notls", args...)
		if err != nil {
			t.Fatalf("coap-client-notls %s: %v\n%s", strings.Join(args, " "), err, msg)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("no answer written: %v\n%s", err, msg)
		}
		return b
	}
	sum := sha256.Sum256(l.answers.blob)
	for _, c := range []struct {
		name, uri string
		want      []byte
	}{
		{"config", base + "config", []byte("config answer 1")},
		{"verify", base + "config/verify?h=" + hex.EncodeToString(sum[:]), []byte("verdict sensor-1 " + hex.EncodeToString(sum[:]))},
		{"blob", base + "config/blob", l.answers.blob},
		{"blob-by-address", base + "config/blob/" + hex.EncodeToString(sum[:]), l.answers.blob},
		{"keys", base + "keys/sensor-2", []byte("keys of sensor-2")},
		{"image", base + "firmware/" + hex.EncodeToString(l.imageSum[:]), l.image},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := getTo(t, c.uri, "-b", "64"); !bytes.Equal(got, c.want) {
				t.Fatalf("got %d bytes %.40q, want %d", len(got), got, len(c.want))
			}
		})
	}
	t.Run("well-known-core", func(t *testing.T) {
		core := string(getTo(t, "coap://"+l.udpAddr+"/.well-known/core", "-b", "64"))
		for _, link := range []string{"</lg/v1/{device}/config>", "</lg/v1/{device}/config/verify>", "</lg/v1/{device}/config/blob>",
			"</lg/v1/{device}/config/blob/{sha256}>", "</lg/v1/{device}/config/report>", "</lg/v1/{device}/keys/{other}>",
			"</lg/v1/{device}/firmware>", "</lg/v1/{device}/firmware/{sha256}>", "</lg/v1/{device}/firmware/report>"} {
			if !strings.Contains(core, link) {
				t.Errorf("no %s in %s", link, core)
			}
		}
	})
}

// TestLibcoapObserveManifest: coap-client-notls observing a device's
// manifest in 64-byte blocks (-s, -b 64) gets the current one and, after
// Changed, the new one, each larger than a block.
func TestLibcoapObserveManifest(t *testing.T) {
	path, err := exec.LookPath("coap-client-notls")
	if err != nil {
		t.Skip("coap-client-notls not installed (Debian: libcoap3-bin)")
	}
	l := newDeviceLab(t)
	v1, v2 := strings.Repeat("first manifest ", 100), strings.Repeat("second manifest ", 100)
	l.answers.set(l.answers.configs, "sensor-1", []byte(v1))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// -s 4: observe for 4 s, then deregister and exit.
	cmd := exec.CommandContext(ctx, path, "-B", "8", "-s", "4", "-b", "64", "-m", "get", "coap://"+l.udpAddr+"/lg/v1/sensor-1/config")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The first manifest whole, before it changes: a change between its
	// blocks (a new ETag) makes libcoap start over with the new one.
	eventually(t, "the first manifest", func() bool { return strings.Contains(out.String(), v1) })
	l.answers.set(l.answers.configs, "sensor-1", []byte(v2))
	l.Changed([]string{"sensor-1"})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("coap-client-notls: %v\n%s", err, out.String())
	}
	if got := out.String(); !strings.Contains(got, v1) || !strings.Contains(got, v2) {
		t.Fatalf("output %q: want both manifests whole", got)
	}
}

// lockedBuffer is a bytes.Buffer that a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
