package coap

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
