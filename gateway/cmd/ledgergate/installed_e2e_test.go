package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile writes a test file and returns its path.
func writeFile(t testing.TB, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiHost is the host:port of an API URL.
func apiHost(t testing.TB, api string) string {
	t.Helper()
	u, err := url.Parse(api)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestCLIInstalledConfig: the CLI takes the API address, the data
// directory and the genesis from the gateway's configuration (the default
// file, named here by $LEDGERGATE_CONFIG, or --config); a flag given wins;
// a configuration that does not parse is an error naming it; without one
// the built-in defaults hold; an unreachable API is named with where its
// address came from.
func TestCLIInstalledConfig(t *testing.T) {
	data := t.TempDir()
	g := startGateway(t, data)
	work := t.TempDir() // an empty working directory: no ./ledgergate-data
	cfg := writeFile(t, filepath.Join(t.TempDir(), "ledgergate.toml"),
		fmt.Sprintf("data_dir = %q\n[api]\nlisten = %q\n", data, apiHost(t, g.api)))
	asDefault := []string{configEnv + "=" + cfg}

	// data_dir (admin.key) and api.listen from the default file.
	mustCLI(t, work, "device", "keygen", "--out", filepath.Join(work, "d1"))
	if out, errs, code := cliEnv(t, work, asDefault, "device", "enroll", "--id", "d1", "--pubkey", filepath.Join(work, "d1.pub")); code != 0 ||
		!strings.Contains(out, "committed in block") {
		t.Fatalf("device enroll with the default configuration: exit %d\n%s%s", code, out, errs)
	}
	// The same from --config, with no default file.
	mustCLI(t, work, "device", "keygen", "--out", filepath.Join(work, "d2"))
	mustCLI(t, work, "device", "enroll", "--config", cfg, "--id", "d2", "--pubkey", filepath.Join(work, "d2.pub"))
	if out, errs, code := cliEnv(t, work, asDefault, "device", "list"); code != 0 || !strings.Contains(out, "d1") || !strings.Contains(out, "d2") {
		t.Fatalf("device list: exit %d\n%s%s", code, out, errs)
	}
	// The genesis: DATA/genesis.json of data_dir (the chain id to sign for).
	if out, errs, code := cliEnv(t, work, asDefault, "device", "token", "--key", filepath.Join(work, "d1"), "--id", "d1"); code != 0 || out == "" {
		t.Fatalf("device token with the genesis of data_dir: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := cliEnv(t, work, asDefault, "ledger", "verify"); code != 0 || !strings.Contains(out, "ok: ") {
		t.Fatalf("ledger verify of data_dir: exit %d\n%s%s", code, out, errs)
	}

	// A flag wins over the file, and the error says where the address came from.
	dead := "http://127.0.0.1:1"
	_, errs, code := cliEnv(t, work, asDefault, "device", "list", "--api", dead)
	if code == 0 || !strings.Contains(errs, dead) || !strings.Contains(errs, "from --api") {
		t.Fatalf("device list --api %s: exit %d\n%s", dead, code, errs)
	}
	if _, errs, code := cliEnv(t, work, asDefault, "ledger", "verify", "--data", filepath.Join(work, "nowhere")); code == 0 || !strings.Contains(errs, filepath.Join(work, "nowhere")) {
		t.Fatalf("ledger verify --data nowhere: exit %d\n%s", code, errs)
	}
	other := filepath.Join(work, "other-genesis.json")
	if _, errs, code := cliEnv(t, work, asDefault, "device", "token", "--key", filepath.Join(work, "d1"), "--id", "d1", "--genesis", other); code == 0 || !strings.Contains(errs, other) {
		t.Fatalf("device token --genesis other: exit %d\n%s", code, errs)
	}
	// An API address in the file that nobody answers at: named, with its source.
	deadCfg := writeFile(t, filepath.Join(t.TempDir(), "dead.toml"), "[api]\nlisten = \"127.0.0.1:1\"\n")
	if _, errs, code := cliEnv(t, work, []string{configEnv + "=" + deadCfg}, "device", "list"); code == 0 ||
		!strings.Contains(errs, "http://127.0.0.1:1 (from "+deadCfg+" api.listen)") {
		t.Fatalf("device list with an unreachable api.listen: exit %d\n%s", code, errs)
	}

	// A file that does not parse is an error naming it, whether it is the
	// default file or --config, and even with every flag given.
	broken := writeFile(t, filepath.Join(t.TempDir(), "broken.toml"), "[api\nlisten = \n")
	for _, tc := range []struct {
		env  []string
		args []string
	}{
		{[]string{configEnv + "=" + broken}, []string{"device", "list"}},
		{nil, []string{"device", "list", "--config", broken}},
		{nil, []string{"ledger", "verify", "--config", broken, "--data", data}},
		{[]string{configEnv + "=" + broken}, []string{"receipt", "verify", filepath.Join(work, "r.cbor")}},
	} {
		_, errs, code := cliEnv(t, work, tc.env, tc.args...)
		if code != 1 || !strings.Contains(errs, broken) {
			t.Errorf("%v with a broken configuration: exit %d, want 1 and the file named\n%s", tc.args, code, errs)
		}
	}
	// A default file that does not exist is no error: the built-in
	// defaults hold (./ledgergate-data, http://127.0.0.1:8080).
	for _, env := range [][]string{nil, {configEnv + "=" + filepath.Join(work, "missing.toml")}} {
		_, errs, code := cliEnv(t, work, env, "ledger", "verify")
		if code == 0 || !strings.Contains(errs, filepath.Join("ledgergate-data", "genesis.json")) {
			t.Errorf("ledger verify without a configuration (%v): exit %d, want the default data directory\n%s", env, code, errs)
		}
		_, errs, code = cliEnv(t, work, env, "device", "list")
		if code == 0 || !strings.Contains(errs, "http://127.0.0.1:8080 (from built-in default)") {
			t.Errorf("device list without a configuration (%v): exit %d, want the default API\n%s", env, code, errs)
		}
	}
	// The old defaults: a ./ledgergate-data in the working directory.
	if err := os.Symlink(data, filepath.Join(work, "ledgergate-data")); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := cli(t, work, "ledger", "verify"); code != 0 || !strings.Contains(out, "ok: ") {
		t.Fatalf("ledger verify of ./ledgergate-data: exit %d\n%s%s", code, out, errs)
	}
}

// TestCLIInstalledConfigTLS: an API served over HTTPS (api.tls_cert) is
// reached at https://, pinned to the configured certificate, which need
// not name 127.0.0.1.
func TestCLIInstalledConfigTLS(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := writeSelfSigned(t, dir, "gateway.example")
	runCfg := writeFile(t, filepath.Join(dir, "run.toml"),
		fmt.Sprintf("[api]\ntls_cert = %q\ntls_key = %q\n", certPath, keyPath))
	data := t.TempDir()
	g := startGateway(t, data, "--config", runCfg)
	if !strings.HasPrefix(g.api, "https://") {
		t.Fatalf("gateway API %s, want https", g.api)
	}
	cliCfg := writeFile(t, filepath.Join(dir, "cli.toml"), fmt.Sprintf("data_dir = %q\n[api]\nlisten = %q\ntls_cert = %q\ntls_key = %q\n",
		data, apiHost(t, g.api), certPath, keyPath))
	if out, errs, code := cli(t, dir, "device", "list", "--config", cliCfg); code != 0 {
		t.Fatalf("device list over HTTPS: exit %d\n%s%s", code, out, errs)
	}
	// Another certificate in the file: the gateway's is refused.
	otherCert, _ := writeSelfSigned(t, t.TempDir(), "gateway.example")
	badCfg := writeFile(t, filepath.Join(dir, "bad.toml"), fmt.Sprintf("data_dir = %q\n[api]\nlisten = %q\ntls_cert = %q\ntls_key = %q\n",
		data, apiHost(t, g.api), otherCert, keyPath))
	if _, errs, code := cli(t, dir, "device", "list", "--config", badCfg); code == 0 || !strings.Contains(errs, "not the one in api.tls_cert") {
		t.Fatalf("device list with another pinned certificate: exit %d\n%s", code, errs)
	}
}

// writeSelfSigned writes a self-signed P-256 certificate for name and its
// key, as PEM files in dir.
func writeSelfSigned(t testing.TB, dir, name string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath := writeFile(t, filepath.Join(dir, "api.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyPath := writeFile(t, filepath.Join(dir, "api.key"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})))
	return certPath, keyPath
}
