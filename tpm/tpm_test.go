package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

func testLogger(t testing.TB) *slog.Logger {
	if _, bench := t.(*testing.B); bench {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustSign(t testing.TB, s Signer, msg string) (digest, sig []byte) {
	t.Helper()
	d := sha256.Sum256([]byte(msg))
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature does not verify with crypto/ecdsa")
	}
	return d[:], sig
}

func TestSwtpmCreateSignVerify(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth []byte
	}{
		{"no auth", nil},
		{"auth", []byte("node-key-auth")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newSwtpm(t).open(tc.auth)

			info, err := tp.Info()
			if err != nil {
				t.Fatal(err)
			}
			if info.Manufacturer != "IBM" || !info.Supported() || info.KeyPresent || info.NodeKey ||
				info.Handle != DefaultHandle || info.Firmware == (FirmwareVersion{}) {
				t.Fatalf("info of a fresh swtpm: %+v", info)
			}
			if bad, why := VulnerableFirmware(info); bad {
				t.Fatalf("swtpm reported as TPM-Fail vulnerable: %s", why)
			}

			pub, err := tp.CreateKey()
			if err != nil {
				t.Fatalf("create key: %v", err)
			}
			info, err = tp.Info()
			if err != nil {
				t.Fatal(err)
			}
			if !info.KeyPresent || !info.NodeKey {
				t.Fatalf("info after CreateKey: %+v", info)
			}

			s, err := tp.Signer()
			if err != nil {
				t.Fatalf("signer: %v", err)
			}
			if !pub.Equal(s.Public()) {
				t.Fatal("the signer's public key is not the created one")
			}
			if !s.Hardware() {
				t.Fatal("a TPM key must report Hardware() == true")
			}
			for _, want := range []string{"TPM 2.0 key at 0x81010001", "IBM", tp.Path()} {
				if !strings.Contains(s.Describe(), want) {
					t.Fatalf("Describe() = %q, want it to contain %q", s.Describe(), want)
				}
			}
			// Two signatures of one digest differ (fresh nonces) and both verify.
			_, a := mustSign(t, s, "vote")
			_, b := mustSign(t, s, "vote")
			if bytes.Equal(a, b) {
				t.Fatal("two ECDSA signatures of one digest are identical")
			}
		})
	}
}

// TestSwtpmTPM2ToolsInterop checks the key and signatures with independent
// tools: tpm2-tools reads the public key out of the TPM and signs with it,
// openssl verifies our signature.
func TestSwtpmTPM2ToolsInterop(t *testing.T) {
	for _, tool := range []string{"tpm2_readpublic", "tpm2_sign", "openssl"} {
		requireTool(t, tool)
	}
	sw := newSwtpm(t)
	tp := sw.open(nil)
	pub, err := tp.CreateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}

	// tpm2-tools' view of the public key is ours.
	pemPath := filepath.Join(dir, "pub.pem")
	run("tpm2_readpublic", "-T", sw.tcti(), "-c", "0x81010001", "-f", "pem", "-o", pemPath)
	b, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("tpm2_readpublic wrote no PEM: %q", b)
	}
	theirs, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(theirs) {
		t.Fatal("tpm2_readpublic's public key differs from CreateKey's")
	}

	// openssl verifies our DER signature.
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(data, []byte("block 42 commit"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, sig := mustSign(t, s, "block 42 commit")
	sigPath := filepath.Join(dir, "sig.der")
	if err := os.WriteFile(sigPath, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	run("openssl", "dgst", "-sha256", "-verify", pemPath, "-signature", sigPath, data)

	// tpm2-tools signs with the same key; crypto/ecdsa verifies it.
	theirSig := filepath.Join(dir, "their.sig")
	run("tpm2_sign", "-T", sw.tcti(), "-c", "0x81010001", "-g", "sha256", "-s", "ecdsa", "-f", "plain", "-o", theirSig, data)
	der, err := os.ReadFile(theirSig)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("block 42 commit"))
	if !ecdsa.VerifyASN1(pub, d[:], der) {
		t.Fatalf("tpm2_sign's signature does not verify with our public key: %x", der)
	}
}

func TestSwtpmRestartKeepsKey(t *testing.T) {
	auth := []byte("persist")
	sw := newSwtpm(t)
	tp := sw.open(auth)
	pub, err := tp.CreateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	sw.stop()

	sw2 := startSwtpm(t, sw.dir)
	s, err := sw2.open(auth).Signer()
	if err != nil {
		t.Fatalf("signer after restart: %v", err)
	}
	if !pub.Equal(s.Public()) {
		t.Fatal("the key changed across a TPM restart")
	}
	mustSign(t, s, "after restart")
}

// TestSwtpmSignerSurvivesTPMRestart restarts the simulator under an open
// signer with an auth value: its cached salt key is gone, and the signer
// makes a new one.
func TestSwtpmSignerSurvivesTPMRestart(t *testing.T) {
	sw := newSwtpm(t)
	tp := sw.open([]byte("salted"))
	if _, err := tp.CreateKey(); err != nil {
		t.Fatal(err)
	}
	s, err := tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	mustSign(t, s, "before")
	sw.stop()
	startSwtpm(t, sw.dir)
	mustSign(t, s, "after")
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSwtpmWrongAuth(t *testing.T) {
	sw := newSwtpm(t)
	if _, err := sw.open([]byte("right")).CreateKey(); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	for _, auth := range [][]byte{[]byte("wrong"), nil} {
		s, err := sw.open(auth).Signer()
		if err != nil {
			t.Fatalf("signer: %v", err) // reading the public key needs no auth
		}
		_, err = s.Sign(rand.Reader, d[:], crypto.SHA256)
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("auth %q: err = %v, want ErrAuth", auth, err)
		}
		if !strings.Contains(err.Error(), "wrong auth value for the node key") || !strings.Contains(err.Error(), "0x81010001") {
			t.Fatalf("unclear message: %v", err)
		}
		t.Logf("auth %q: %v", auth, err)
	}
	s, err := sw.open([]byte("right")).Signer()
	if err != nil {
		t.Fatal(err)
	}
	mustSign(t, s, "right auth still works")
}

func TestSwtpmLockout(t *testing.T) {
	requireTool(t, "tpm2_dictionarylockout")
	sw := newSwtpm(t)
	if _, err := sw.open([]byte("right")).CreateKey(); err != nil {
		t.Fatal(err)
	}
	// A second node key without an auth value, at another handle: it has
	// nothing to guess, is made noDA, and keeps signing through a lockout.
	openless, err := Open(Options{Socket: sw.sock, Handle: 0x81010002, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer openless.Close()
	if _, err := openless.CreateKey(); err != nil {
		t.Fatal(err)
	}
	noAuth, err := openless.Signer()
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := sw.open([]byte("wrong")).Signer()
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	// swtpm allows 3 failures (TPM_PT_MAX_AUTH_FAIL); stop at 10 whatever.
	fails := 0
	for ; fails < 10; fails++ {
		_, err = wrong.Sign(rand.Reader, d[:], crypto.SHA256)
		if !errors.Is(err, ErrAuth) {
			break
		}
	}
	if !errors.Is(err, ErrLockout) || fails == 0 {
		t.Fatalf("after %d wrong auth values: err = %v, want ErrLockout", fails, err)
	}
	if errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "tpm2_dictionarylockout --clear-lockout") {
		t.Fatalf("unclear lockout message: %v", err)
	}
	t.Logf("after %d wrong auth values: %v", fails, err)

	right, err := sw.open([]byte("right")).Signer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := right.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrLockout) {
		t.Fatalf("the right auth value during lockout: err = %v, want ErrLockout", err)
	}
	t.Log("signing with noAuth")
	mustSign(t, noAuth, "a key without auth value is not locked out")
	t.Log("signed with noAuth")
	// The advice in the message works.
	if out, err := exec.Command("tpm2_dictionarylockout", "-T", sw.tcti(), "--clear-lockout").CombinedOutput(); err != nil {
		t.Fatalf("tpm2_dictionarylockout --clear-lockout: %v\n%s", err, out)
	}
	mustSign(t, right, "after clearing the lockout")
}

func TestSwtpmHandleTaken(t *testing.T) {
	sw := newSwtpm(t)
	// Someone else's object at our handle: a storage key, not a node key.
	tr := sw.raw()
	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name},
		PersistentHandle: tpm2.TPMHandle(DefaultHandle),
	}).Execute(tr); err != nil {
		t.Fatal(err)
	}
	tpm2.FlushContext{FlushHandle: srk.ObjectHandle}.Execute(tr)

	tp := sw.open(nil)
	info, err := tp.Info()
	if err != nil {
		t.Fatal(err)
	}
	if !info.KeyPresent || info.NodeKey {
		t.Fatalf("info: %+v, want an object that is not a node key", info)
	}
	if _, err := tp.CreateKey(); !errors.Is(err, ErrHandleTaken) || !strings.Contains(err.Error(), "0x81010001") {
		t.Fatalf("CreateKey on a taken handle: %v, want ErrHandleTaken naming the handle", err)
	}
	if _, err := tp.Signer(); !errors.Is(err, ErrHandleTaken) {
		t.Fatalf("Signer on a foreign object: %v, want ErrHandleTaken", err)
	}
}

func TestSwtpmKeyExists(t *testing.T) {
	tp := newSwtpm(t).open(nil)
	if _, err := tp.Signer(); !errors.Is(err, ErrNoNodeKey) {
		t.Fatalf("Signer before CreateKey: %v, want ErrNoNodeKey", err)
	}
	pub, err := tp.CreateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.CreateKey(); !errors.Is(err, ErrKeyExists) || !strings.Contains(err.Error(), "0x81010001") {
		t.Fatalf("second CreateKey: %v, want ErrKeyExists naming the handle", err)
	}
	s, err := tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(s.Public()) {
		t.Fatal("a second CreateKey replaced the key")
	}
}

func TestNoTPM(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "tpmrm0")
	for _, o := range []Options{{Device: missing}, {Socket: missing}} {
		_, err := Open(o)
		if !errors.Is(err, ErrNoTPM) || !strings.Contains(err.Error(), missing) {
			t.Fatalf("Open(%+v) = %v, want ErrNoTPM naming the path", o, err)
		}
	}

	// A socket file with nobody listening behind it: a simulator that died.
	dir, err := os.MkdirTemp("", "deadsock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := Open(Options{Socket: sock}); !errors.Is(err, ErrNoTPM) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("Open on a dead socket = %v, want ErrNoTPM naming the path", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("zero options: %v", err)
	}
	err := Options{Device: "/dev/tpmrm0", Socket: "/run/swtpm.sock", Handle: 0x81800000, Auth: make([]byte, 33)}.Validate()
	for _, want := range []string{"not both", "0x81800000", "33 bytes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate() = %v, want every problem, including %q", err, want)
		}
	}
	if _, err := Open(Options{Handle: 0x80000001}); err == nil || errors.Is(err, ErrNoTPM) {
		t.Fatalf("Open with a transient handle: %v, want a validation error", err)
	}
}

// TestSwtpmExportRefused shows that the private key cannot leave the TPM:
// the package has no export call, the TPM refuses TPM2_Duplicate on the
// key, refuses it even on a key whose policy allows duplication because
// fixedParent is set, and TPM2_ReadPublic returns only the public area.
func TestSwtpmExportRefused(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[*TPM](), reflect.TypeFor[*HardwareSigner]()} {
		for i := range typ.NumMethod() {
			if m := typ.Method(i).Name; strings.Contains(m, "Export") || strings.Contains(m, "Private") {
				t.Errorf("%v has a method %s", typ, m)
			}
		}
	}

	sw := newSwtpm(t)
	tp := sw.open([]byte("auth"))
	if _, err := tp.CreateKey(); err != nil {
		t.Fatal(err)
	}
	tr := sw.raw()
	rp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(DefaultHandle)}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	if a := pub.ObjectAttributes; !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || a.EncryptedDuplication {
		t.Fatalf("node key attributes %+v", a)
	}
	if len(pub.AuthPolicy.Buffer) != 0 {
		t.Fatalf("node key has an authPolicy %x: a policy could grant the DUP role", pub.AuthPolicy.Buffer)
	}
	// The response holds the public area and names, and nothing more: the
	// name is the digest of that public area alone.
	if name, err := tpm2.ObjectName(pub); err != nil || !bytes.Equal(name.Buffer, rp.Name.Buffer) {
		t.Fatalf("name %x does not commit to the public area alone (%v)", rp.Name.Buffer, err)
	}

	// TPM2_Duplicate needs the DUP role, which only a policy session
	// satisfying the key's authPolicy grants. Try it to a NULL parent
	// with a policy session for TPM_CC_Duplicate.
	dup := func(h tpm2.TPMHandle, name tpm2.TPM2BName) error {
		_, err := tpm2.Duplicate{
			ObjectHandle: tpm2.AuthHandle{Handle: h, Name: name,
				Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(tr transport.TPM, s tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
					_, err := tpm2.PolicyCommandCode{PolicySession: s, Code: tpm2.TPMCCDuplicate}.Execute(tr)
					return err
				})},
			NewParentHandle: tpm2.TPMRHNull,
			Symmetric:       tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
		}.Execute(tr)
		return err
	}
	err = dup(tpm2.TPMHandle(DefaultHandle), rp.Name)
	var rc tpm2.TPMRC
	if !errors.As(err, &rc) {
		t.Fatalf("TPM2_Duplicate of the node key: %v, want the TPM to refuse it", err)
	}
	t.Logf("TPM2_Duplicate of the node key refused: %v", err)

	// A fixedParent key whose policy does grant TPM2_Duplicate: the TPM
	// still refuses, for fixedParent (TPM_RC_ATTRIBUTES, Part 3, 13.1).
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := (tpm2.PolicyCommandCode{Code: tpm2.TPMCCDuplicate}).Update(calc); err != nil {
		t.Fatal(err)
	}
	tmpl := nodeKeyTemplate()
	tmpl.AuthPolicy = tpm2.TPM2BDigest{Buffer: calc.Hash().Digest}
	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: srk.ObjectHandle}.Execute(tr)
	k, err := tpm2.CreateLoaded{
		ParentHandle: tpm2.NamedHandle{Handle: srk.ObjectHandle, Name: srk.Name},
		InPublic:     tpm2.New2BTemplate(&tmpl),
	}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: k.ObjectHandle}.Execute(tr)
	if err := dup(k.ObjectHandle, k.Name); !errors.Is(err, tpm2.TPMRCAttributes) {
		t.Fatalf("TPM2_Duplicate of a fixedParent key with a duplication policy: %v, want TPM_RC_ATTRIBUTES", err)
	}
}

func TestSwtpmConcurrentSign(t *testing.T) {
	tp := newSwtpm(t).open([]byte("concurrent"))
	if _, err := tp.CreateKey(); err != nil {
		t.Fatal(err)
	}
	s, err := tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 6 {
				d := sha256.Sum256(fmt.Appendf(nil, "g%d/%d", g, i))
				sig, err := s.Sign(nil, d[:], crypto.SHA256)
				if err != nil {
					errs <- err
					return
				}
				if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
					errs <- errors.New("a concurrent signature does not verify")
					return
				}
			}
		})
	}
	// Info shares the transport with the signers.
	wg.Go(func() {
		if _, err := tp.Info(); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSwtpmSignRejectsBadInput(t *testing.T) {
	tp := newSwtpm(t).open(nil)
	if _, err := tp.CreateKey(); err != nil {
		t.Fatal(err)
	}
	s, err := tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	for name, call := range map[string]func() ([]byte, error){
		"nil opts":     func() ([]byte, error) { return s.Sign(nil, d[:], nil) },
		"SHA-384":      func() ([]byte, error) { return s.Sign(nil, make([]byte, 48), crypto.SHA384) },
		"short digest": func() ([]byte, error) { return s.Sign(nil, d[:31], crypto.SHA256) },
		"no digest":    func() ([]byte, error) { return s.Sign(nil, nil, crypto.SHA256) },
	} {
		if _, err := call(); err == nil || !strings.HasPrefix(err.Error(), "tpm: ") {
			t.Errorf("%s: err = %v, want a tpm: error", name, err)
		}
	}

	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sign after Close: %v, want ErrClosed", err)
	}
	if _, err := tp.Info(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Info after Close: %v, want ErrClosed", err)
	}
}

// TestSwtpmPacesVulnerableFirmware makes the signer believe it runs on a
// TPM-Fail firmware and checks that each signature is padded to RateLimit.
func TestSwtpmPacesVulnerableFirmware(t *testing.T) {
	sw := newSwtpm(t)
	tp, err := Open(Options{Socket: sw.sock, RateLimit: 250 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if _, err := tp.CreateKey(); err != nil {
		t.Fatal(err)
	}
	tp.fixed.manufacturer, tp.fixed.firmware = "INTC", FirmwareVersion{11, 8, 50, 3399}
	s, err := tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	if s.pace.min != 250*time.Millisecond || !strings.Contains(s.Describe(), "CVE-2019-11090") {
		t.Fatalf("pace %v, Describe %q", s.pace.min, s.Describe())
	}
	// A fake clock: each reading is 10ms after the previous one.
	clock := time.Unix(0, 0)
	var slept []time.Duration
	s.pace.now = func() time.Time { clock = clock.Add(10 * time.Millisecond); return clock }
	s.pace.sleep = func(d time.Duration) { slept = append(slept, d) }
	mustSign(t, s, "paced")
	if len(slept) != 1 || slept[0] != 240*time.Millisecond {
		t.Fatalf("slept %v, want [240ms]", slept)
	}

	// A negative RateLimit turns pacing off, and Describe says so.
	tp.rateLimit = -1
	s, err = tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	if s.pace.min != 0 || !strings.Contains(s.Describe(), "NOT paced") {
		t.Fatalf("pace %v, Describe %q", s.pace.min, s.Describe())
	}
}

func TestPacer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		min     time.Duration
		elapsed time.Duration
		want    []time.Duration
	}{
		{"off", 0, time.Millisecond, nil},
		{"fast signature is padded", 100 * time.Millisecond, 30 * time.Millisecond, []time.Duration{70 * time.Millisecond}},
		{"slow signature is not", 100 * time.Millisecond, 150 * time.Millisecond, nil},
		{"exact", 100 * time.Millisecond, 100 * time.Millisecond, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1000, 0)
			var slept []time.Duration
			p := pacer{
				min:   tc.min,
				now:   func() time.Time { return start.Add(tc.elapsed) },
				sleep: func(d time.Duration) { slept = append(slept, d) },
			}
			p.wait(start)
			if !reflect.DeepEqual(slept, tc.want) {
				t.Fatalf("slept %v, want %v", slept, tc.want)
			}
		})
	}
}

// signWithin signs until it works, polling with a deadline: after the TPM
// comes back, the signer reconnects on its own backoff.
func signWithin(t *testing.T, s Signer, within time.Duration) {
	t.Helper()
	d := sha256.Sum256([]byte("back"))
	deadline := time.Now().Add(within)
	for {
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err == nil {
			if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
				t.Fatal("signature does not verify")
			}
			return
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("sign while the TPM comes back: %v, want ErrUnavailable until it works", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the signer did not reconnect within %s: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the reconnect backoff
	}
}

// TestSwtpmTPMGoneAndBack: the simulator stops under an open signer and
// starts again on the same socket and state. While it is gone, Sign fails
// fast with ErrUnavailable (a condition to retry, not a broken key); once
// it is back, the signer reconnects by itself and signs with the same key.
// Issue 20, defect 3.
func TestSwtpmTPMGoneAndBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth []byte
	}{
		{"no auth", nil},
		{"auth", []byte("salted")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := newSwtpm(t)
			tp := sw.open(tc.auth)
			if _, err := tp.CreateKey(); err != nil {
				t.Fatal(err)
			}
			s, err := tp.Signer()
			if err != nil {
				t.Fatal(err)
			}
			mustSign(t, s, "before")

			sw.stop()
			os.Remove(sw.sock) // the socket gone, as when swtpm's unit stops
			d := sha256.Sum256([]byte("gone"))
			for range 3 {
				start := time.Now()
				_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("sign without the TPM: %v, want ErrUnavailable", err)
				}
				if el := time.Since(start); el > 2*time.Second {
					t.Errorf("sign without the TPM took %s", el)
				}
				t.Logf("without the TPM: %v", err)
			}
			if _, err := tp.Info(); !errors.Is(err, ErrUnavailable) {
				t.Errorf("info without the TPM: %v, want ErrUnavailable", err)
			}

			startSwtpm(t, sw.dir)
			signWithin(t, s, 15*time.Second)
			mustSign(t, s, "after")
			if err := tp.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSwtpmOtherTPMBack: what answers at the socket after the TPM went away
// holds no node key (its state was lost): the signer refuses to sign, with
// ErrUnavailable that says why, and does not sign with anything else.
func TestSwtpmOtherTPMBack(t *testing.T) {
	sw := newSwtpm(t)
	tp := sw.open(nil)
	if _, err := tp.CreateKey(); err != nil {
		t.Fatal(err)
	}
	s, err := tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	mustSign(t, s, "before")
	sw.stop()
	entries, err := os.ReadDir(sw.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "tpm2-") { // the simulator's NVRAM: a new TPM
			os.Remove(filepath.Join(sw.dir, e.Name()))
		}
	}
	startSwtpm(t, sw.dir)
	d := sha256.Sum256([]byte("other"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err == nil {
			t.Fatal("signed after the TPM lost the node key")
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("sign: %v, want ErrUnavailable", err)
		}
		if strings.Contains(err.Error(), "no node key") {
			t.Logf("%v", err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sign: %v, want it to say there is no node key", err)
		}
		time.Sleep(20 * time.Millisecond) // polling the reconnect backoff
	}
}

// TestSwtpmReconnectBackoff: while the TPM is gone, reconnects are tried
// at most once per backoff interval, which doubles from 100ms to 5s; calls
// in between fail at once; a reconnect that works resets it.
func TestSwtpmReconnectBackoff(t *testing.T) {
	sw := newSwtpm(t)
	tp := sw.open(nil)
	if _, err := tp.CreateKey(); err != nil {
		t.Fatal(err)
	}
	s, err := tp.Signer()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	tp.now = func() time.Time { return now }
	sw.stop()
	os.Remove(sw.sock)
	d := sha256.Sum256([]byte("x"))
	if _, err := s.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("sign: %v", err)
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, w := range want {
		w *= time.Millisecond
		_, err := s.Sign(nil, d[:], crypto.SHA256) // tries, fails, waits w
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), fmt.Sprintf("next try in %s", w)) {
			t.Fatalf("try %d: %v, want next try in %s", i, err, w)
		}
		now = now.Add(w - time.Millisecond)
		_, err = s.Sign(nil, d[:], crypto.SHA256) // too early: no try
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "next try in 1ms") {
			t.Fatalf("before try %d: %v, want next try in 1ms", i+1, err)
		}
		now = now.Add(time.Millisecond)
	}
	startSwtpm(t, sw.dir)
	mustSign(t, s, "back")
	if tp.backoff != 0 || tp.down != nil {
		t.Fatalf("after the TPM came back: backoff %s, down %v", tp.backoff, tp.down)
	}
}
